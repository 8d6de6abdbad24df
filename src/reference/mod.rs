//! Reference decoders: tfjs posenet's decodings in plain Rust, written apart from any
//! graph-building code so that they can judge the subgraphs the rewrite appends
//! ([`crate::decoders`]). One module per decoder, same names: [`single_pose`] (tfjs
//! `decodeSinglePose`) and [`multi_pose`] (tfjs `decodeMultiplePoses`; its in-graph decoder is
//! still to come).

pub mod multi_pose;
pub mod single_pose;

pub use single_pose::{decode, to_array, Keypoint, ShapeError, ShapeProblem};
