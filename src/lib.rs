//! onnx-posefix rewrites a PoseNet ONNX model so that the model itself emits its decoded
//! keypoints, using only ops that thin runtimes (onnxruntime-web's WebGL backend, ncnn, wonnx,
//! Unity Barracuda, OpenCV DNN) run correctly, and proves with tract that the rewrite gives
//! exactly what tfjs posenet's decoder gives on the original model's heads.
//!
//! The API a Rust caller needs is re-exported here:
//! - [`rewrite_file`] (or [`rewrite`] on a model already read) with [`RewriteOptions`], giving a
//!   [`Rewritten`] model and what was decided on the way ([`Rewritten::summary`]);
//! - [`verify_files`] (or [`verify()`]) with [`VerifyOptions`], giving a [`Report`] whose
//!   [`Report::outcome`] says whether every keypoint was equal;
//! - [`inspect()`] a model, giving an [`Inspection`] (text or JSON);
//! - the output contract in [`contract`] ([`DecoderSettings`], [`Provenance`]) and the [`Error`]
//!   every function returns.
//!
//! ```
//! use std::path::Path;
//! use onnx_posefix::{rewrite_file, verify_files, Outcome, OutputOptions, RewriteOptions, VerifyOptions};
//!
//! let input = Path::new("models/posenet-mobilenet075-257.onnx");
//! let output = std::env::temp_dir().join("posefix-doc-example.onnx");
//! let rewritten = rewrite_file(input, &output, &RewriteOptions::default(), OutputOptions::default())?;
//! println!("{}", rewritten.summary(&output));
//! // The bundled photo, adversarial images and crafted heads, each compared keypoint by keypoint.
//! let report = verify_files(input, &output, &VerifyOptions::default(), &mut |_event| {})?;
//! assert_eq!(report.outcome(), Outcome::Equal);
//! # std::fs::remove_file(&output).ok();
//! # Ok::<(), onnx_posefix::Error>(())
//! ```
//!
//! The facade is the whole public API: the modules behind it are the crate's own. The project's
//! tests, benchmarks, fuzzers and examples open them with the `testing` feature, which the
//! product never turns on. ARCHITECTURE.md says where each concern lives.
//!
//! Features: `cli` is the binary's (not a default): clap for its flags (`cli::RewriteArgs`, which
//! the browser page's crate parses too) and indicatif for its progress bar. The library alone
//! pulls in neither.
//!
//! # The panic hook
//! tract can panic on a hostile model; the library runs every call into it under a guard that
//! turns the panic into an [`Error`] naming it. To keep such a panic from printing, the first
//! rewrite, inspection or verification replaces the process's panic hook with one that records
//! panics on a thread inside that guard and hands every other panic to the hook it replaced
//! (`std::panic::take_hook`, once per process). A caller that sets its own hook afterwards
//! should chain to the one it takes, or tract's panics print before they become errors.
//!
//! On `wasm32` (the browser page, `web/wasm`) the library is its in-memory path only: bytes in,
//! [`rewrite`] and [`inspect()`], bytes out ([`LoadedModel::from_bytes`],
//! [`Rewritten::to_bytes`]). What needs a file system or threads (reading and writing files,
//! verification) is built for native targets only.
#![warn(clippy::print_stdout, clippy::print_stderr)]

/// The crate's own modules: private, so that the facade below is the whole public API. The
/// `testing` feature (the project's tests, benches, examples and fuzzers, never the product) opens
/// them, hidden from the docs.
macro_rules! internal_modules {
    ($($(#[$attr:meta])* mod $name:ident;)*) => {$(
        $(#[$attr])* #[cfg(feature = "testing")] #[doc(hidden)] pub mod $name;
        $(#[$attr])* #[cfg(not(feature = "testing"))] mod $name;
    )*};
}

pub mod contract;
pub mod error;

internal_modules! {
    mod decoders;
    mod heads;
    mod inspect;
    mod model;
    mod profiles;
    mod prune;
    // The reference decoders judge the rewrite in verification: native only.
    #[cfg(not(target_arch = "wasm32"))]
    mod reference;
    mod render;
    mod rewrite;
    // Seeded noise for verification's adversarial inputs: native only.
    #[cfg(not(target_arch = "wasm32"))]
    mod rng;
    mod tract_bridge;
    // Verification reads photos from files and runs the two models on threads: native only.
    #[cfg(not(target_arch = "wasm32"))]
    mod verify;
}

/// The CLI's rewrite flags (clap), shared by the binary and the browser page's WebAssembly build.
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use contract::{
    DecoderSettings, FloatType, Layout, MultiPoseParams, MultiPoseSettings, Pixels, Preprocess, Provenance, ScoreMode,
    KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON, TOOL_VERSION,
};
pub use error::{one_line, Error, HeadCandidate, Invalid, Result};
pub use heads::{HeadChoice, Heads, ImageInput};
pub use inspect::{inspect, Inspection};
#[cfg(not(target_arch = "wasm32"))]
pub use model::io::{read_model, read_structure, write_atomically};
pub use model::io::{redeclared_for_size, Durability, LoadedModel};
pub use model::query::InputShape;
#[cfg(not(target_arch = "wasm32"))]
pub use model::temporary::remove_temporaries_on_interrupt;
pub use profiles::{Profile, Proof, PORTABLE, PROFILE_NAMES};
pub use render::{DrawStyle, DRAW_STYLE};
#[cfg(not(target_arch = "wasm32"))]
pub use rewrite::rewrite_file;
pub use rewrite::{rewrite, MultiPoseOptions, OutputOptions, PixelOptions, RewriteOptions, Rewritten};
#[cfg(not(target_arch = "wasm32"))]
pub use verify::{
    verify, verify_files, DecoderOverrides, Event, InputResult, Outcome, Report, Tolerances, VerifyOptions,
};

#[doc(hidden)]
pub use onnx_protobuf;
#[doc(hidden)]
pub use tract_onnx;
