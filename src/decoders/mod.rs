//! The subgraphs the rewrite adds: the decoders it appends, one module per decoder, each with its
//! output contract in its module doc, and the input normalization it may prepend; on shared
//! ground: [`graph`] builds subgraphs from the op choices that every targeted runtime runs
//! correctly, and [`reroute`] says where a decoder may read a head from.
//!
//! - [`single_pose`]: `keypoints` `[N, 17, 3]`, tfjs posenet's `decodeSinglePose`.
//! - [`multi_pose`]: `poses` `[B, N, 17, 3]` and `pose_scores` `[B, N]`, tfjs posenet's
//!   `decodeMultiplePoses` (`--poses`).
//! - [`normalize`]: pixels in, the model's normalization as its first nodes (`--pixels`).
//!
//! A decoder's plain-Rust reference lives apart from graph code, under [`crate::reference`].

/// The form a decoder's primitives ("select the first maximum", "read a map at an index") take,
/// which the target profile picks ([`crate::profiles::Profile::decoder_forms`]): the thin ops
/// every runtime in `portable` runs, or richer ops where a proven profile runs them right.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Forms {
    /// MaxPool, Clip, Ceil and 1x1 Convs (see [`graph`]).
    #[default]
    Thin,
    /// ArgMax selects, GatherElements reads (opset 11 and later).
    ArgMaxGather,
}

/// The first opset with GatherElements.
pub const GATHER_ELEMENTS_OPSET: i64 = 11;

pub mod graph;
pub mod multi_pose;
pub mod normalize;
pub mod reroute;
pub mod single_pose;
