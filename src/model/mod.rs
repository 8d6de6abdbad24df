//! Models as ONNX messages: reading and writing them whole or structure-only ([`io`]), the wire
//! format that carries weights over undecoded ([`wire`], [`source`]), message constructors and
//! readers ([`proto`]), the temporary file an output is written to ([`temporary`]).

pub mod io;
pub mod proto;
pub mod query;
pub mod source;
pub mod temporary;
pub mod validate;
pub mod walk;
pub mod wire;
