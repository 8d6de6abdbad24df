//! Reference decoders: tfjs posenet's decodings in plain Rust, written apart from any
//! graph-building code so that they can judge the subgraphs the rewrite appends
//! ([`crate::decoders`]). One module per decoder, same names: [`single_pose`] (tfjs
//! `decodeSinglePose`) and [`multi_pose`] (tfjs `decodeMultiplePoses`; its in-graph decoder is
//! still to come).

pub mod multi_pose;
pub mod single_pose;

pub use single_pose::decode;
#[cfg(feature = "testing")]
pub use single_pose::{to_array, ShapeError, ShapeProblem};

/// One decoded keypoint, in model-input pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub score: f32,
    /// The heatmap cell `(gy, gx)` it was read at: the argmax (single pose), or where the score
    /// was read (multi pose).
    pub cell: (usize, usize),
}

impl Keypoint {
    /// The keypoint as an output of type `ty` holds it: each value rounded once
    /// (`--output-type float16`).
    pub fn rounded(self, ty: crate::contract::FloatType) -> Keypoint {
        Keypoint { x: ty.round(self.x), y: ty.round(self.y), score: ty.round(self.score), ..self }
    }
}
