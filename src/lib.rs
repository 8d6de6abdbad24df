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
//! The modules below the facade are public for the project's own tests, benchmarks, fuzzers and
//! examples, and hidden from these docs: they may change with any release. ARCHITECTURE.md says
//! where each concern lives.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod contract;
#[doc(hidden)]
pub mod decoders;
pub mod error;
#[doc(hidden)]
pub mod heads;
#[doc(hidden)]
pub mod inspect;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod profiles;
#[doc(hidden)]
pub mod prune;
#[doc(hidden)]
pub mod reference;
#[doc(hidden)]
pub mod render;
#[doc(hidden)]
pub mod rewrite;
#[doc(hidden)]
pub mod rng;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
#[doc(hidden)]
pub mod tract_bridge;
#[doc(hidden)]
pub mod verify;

pub use contract::{DecoderSettings, FloatType, Layout, Provenance, ScoreMode, KEYPOINT_NAMES, NUM_KEYPOINTS};
pub use error::{Error, HeadCandidate, Invalid, Result};
pub use heads::HeadChoice;
pub use inspect::{inspect, Inspection};
pub use model::io::{read_model, read_structure, Durability, LoadedModel};
pub use model::query::InputShape;
pub use profiles::{Profile, PORTABLE, PROFILE_NAMES};
pub use rewrite::{rewrite, rewrite_file, OutputOptions, RewriteOptions, Rewritten};
pub use verify::{
    verify, verify_files, DecoderOverrides, Event, InputResult, Outcome, Preprocess, Report, Tolerances, VerifyOptions,
};

#[doc(hidden)]
pub use onnx_protobuf;
#[doc(hidden)]
pub use tract_onnx;
