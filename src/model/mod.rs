//! Models as ONNX messages: reading and writing them whole or structure-only ([`io`]), the wire
//! format that carries weights over undecoded ([`wire`], [`source`]), message constructors and
//! readers ([`proto`]), the temporary file an output is written to ([`temporary`]).

pub mod element_type;
pub mod io;
pub mod proto;
pub mod query;
pub mod source;
// The output's temporary file and the signal handling around it: native only (no file system
// on wasm32, where the page hands the bytes to the browser).
#[cfg(not(target_arch = "wasm32"))]
pub mod temporary;
pub mod validate;
pub mod walk;
pub mod wire;
