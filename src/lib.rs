//! onnx-posefix: rewrite a PoseNet ONNX model so that it emits decoded keypoints, using only ops
//! that thin runtimes support, and prove the rewrite with tract.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod contract;
pub mod decoders;
pub mod error;
pub mod heads;
pub mod inspect;
pub mod model;
pub mod profiles;
pub mod prune;
pub mod reference;
pub mod render;
pub mod rewrite;
pub mod rng;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tract_bridge;
pub mod verify;

pub use onnx_protobuf;
pub use tract_onnx;
