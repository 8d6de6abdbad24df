//! onnx-posefix: rewrite a PoseNet ONNX model so that it emits decoded keypoints, using only ops
//! that thin runtimes support, and prove the rewrite with tract.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod contract;
pub mod decoder;
pub mod error;
pub mod graph;
pub mod heads;
pub mod inspect;
pub mod model_io;
pub mod profiles;
pub mod proto;
pub mod prune;
pub mod reference;
pub mod render;
pub mod reroute;
pub mod rewrite;
pub mod rng;
pub mod synthetic;
pub mod tract_bridge;
pub mod verify;
pub mod wire;

pub use onnx_protobuf;
pub use tract_onnx;
