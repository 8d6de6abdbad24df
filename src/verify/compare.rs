//! Step 3: one pose from the reference against REWRITTEN's `keypoints`, keypoint by keypoint.
//!
//! The rewritten output has no cell, so the cell is inferred: the one whose decoded position
//! (`gy*stride + off_y`, `gx*stride + off_x`, from the same offsets the reference read) lies
//! nearest to the rewritten `(x, y)`, the reference's own cell winning ties. A keypoint matches
//! when that cell is the reference's, `|dx|` and `|dy|` are within `px`, `|dscore|` within
//! `score`, and nothing is NaN.

use serde::Serialize;
use tract_onnx::prelude::tract_ndarray::ArrayViewD;

use crate::contract::{Layout, KEYPOINT_NAMES, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use crate::reference::Keypoint;

/// How far a rewritten keypoint may be from the reference's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerances {
    /// On x and y, in model-input pixels.
    pub px: f32,
    /// On the score.
    pub score: f32,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { px: 1e-3, score: 1e-5 }
    }
}

/// The comparison of one input.
#[derive(Clone, Debug, Default)]
pub(crate) struct Comparison {
    pub keypoints: usize,
    pub mismatches: Vec<KeypointMismatch>,
    /// Over the keypoints whose values are not NaN.
    pub max_position_error: f32,
    pub max_score_error: f32,
    /// REWRITTEN's output did not have the `[N, 17, 3]` shape the reference implies.
    pub shape_error: Option<String>,
}

/// A keypoint where REWRITTEN and the reference differ.
#[derive(Clone, Debug, Serialize)]
pub struct KeypointMismatch {
    /// Batch item.
    pub batch: usize,
    /// PoseNet name (`leftEye`) and index (0..17).
    pub keypoint: String,
    pub index: usize,
    pub reference: Position,
    /// `cell` is the cell whose decoded position is nearest to REWRITTEN's `(x, y)`; `null`
    /// when x or y is NaN or infinite.
    pub rewritten: Position,
    /// `|x - x_ref|`, `|y - y_ref|`, `|score - score_ref|`; `null` for NaN.
    pub dx: f32,
    pub dy: f32,
    pub dscore: f32,
    /// A NaN in either keypoint.
    pub nan: bool,
}

/// A keypoint in model-input pixels and its heatmap cell `[gy, gx]`.
#[derive(Clone, Debug, Serialize)]
pub struct Position {
    pub x: f32,
    pub y: f32,
    pub score: f32,
    pub cell: Option<[usize; 2]>,
}

/// `|a - b|`, with equal values (infinities included) at distance 0 and NaN kept NaN.
pub(crate) fn delta(a: f32, b: f32) -> f32 {
    if a == b {
        0.0
    } else {
        (a - b).abs()
    }
}

/// Short, exact enough to read: `0`, `16`, `0.25`, `1.2e-7`, `NaN`.
pub(crate) fn number(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if (0.01..1e6).contains(&v.abs()) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// The offsets the reference read, and how cells map to pixels.
struct Cells<'a> {
    offsets: &'a ArrayViewD<'a, f32>,
    layout: Layout,
    stride: u32,
}

impl Cells<'_> {
    /// The decoded position `(y, x)` of keypoint `k` of batch item `b` at cell `(gy, gx)`.
    fn position(&self, b: usize, k: usize, (gy, gx): (usize, usize)) -> (f64, f64) {
        let (oy, ox) = match self.layout {
            Layout::Nchw => (self.offsets[[b, k, gy, gx]], self.offsets[[b, k + NUM_KEYPOINTS, gy, gx]]),
            Layout::Nhwc => (self.offsets[[b, gy, gx, k]], self.offsets[[b, gy, gx, k + NUM_KEYPOINTS]]),
        };
        let stride = self.stride as f64;
        (gy as f64 * stride + oy as f64, gx as f64 * stride + ox as f64)
    }

    /// The cell whose decoded position is nearest to `(x, y)`; `prefer` wins ties.
    fn nearest(&self, b: usize, k: usize, x: f32, y: f32, prefer: (usize, usize)) -> Option<(usize, usize)> {
        if !(x.is_finite() && y.is_finite()) {
            return None;
        }
        let (hy, wx) = self.layout.spatial_axes();
        let (h, w) = (self.offsets.shape()[hy], self.offsets.shape()[wx]);
        let distance = |cell| {
            let (py, px) = self.position(b, k, cell);
            let d = (py - y as f64).powi(2) + (px - x as f64).powi(2);
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        };
        let mut best = (prefer, distance(prefer));
        for cell in (0..h).flat_map(|gy| (0..w).map(move |gx| (gy, gx))) {
            let d = distance(cell);
            if d < best.1 {
                best = (cell, d);
            }
        }
        Some(best.0)
    }
}

/// Compares the reference poses with REWRITTEN's `[N, 17, 3]` keypoints.
pub(crate) fn compare(
    reference: &[[Keypoint; NUM_KEYPOINTS]],
    keypoints: ArrayViewD<f32>,
    offsets: ArrayViewD<f32>,
    layout: Layout,
    stride: u32,
    tol: Tolerances,
) -> Comparison {
    let cells = Cells { offsets: &offsets, layout, stride };
    let mut outcome = Comparison::default();
    let expected = [reference.len(), NUM_KEYPOINTS, VALUES_PER_KEYPOINT];
    if keypoints.shape() != expected {
        outcome.shape_error =
            Some(format!("REWRITTEN's keypoints have shape {:?}, expected {expected:?}", keypoints.shape()));
        return outcome;
    }
    for (b, pose) in reference.iter().enumerate() {
        for (k, r) in pose.iter().enumerate() {
            let (x, y, score) = (keypoints[[b, k, 0]], keypoints[[b, k, 1]], keypoints[[b, k, 2]]);
            let cell = cells.nearest(b, k, x, y, r.cell);
            let (dx, dy, dscore) = (delta(x, r.x), delta(y, r.y), delta(score, r.score));
            outcome.keypoints += 1;
            // f32::max ignores a NaN operand: the maxima are over the non-NaN values.
            outcome.max_position_error = outcome.max_position_error.max(dx).max(dy);
            outcome.max_score_error = outcome.max_score_error.max(dscore);
            let nan = [x, y, score, r.x, r.y, r.score].iter().any(|v| v.is_nan());
            let within = dx <= tol.px && dy <= tol.px && dscore <= tol.score;
            if nan || !within || cell != Some(r.cell) {
                outcome.mismatches.push(KeypointMismatch {
                    batch: b,
                    keypoint: KEYPOINT_NAMES[k].to_string(),
                    index: k,
                    reference: Position { x: r.x, y: r.y, score: r.score, cell: Some([r.cell.0, r.cell.1]) },
                    rewritten: Position { x, y, score, cell: cell.map(|(gy, gx)| [gy, gx]) },
                    dx,
                    dy,
                    dscore,
                    nan,
                });
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::tract_ndarray::{Array3, Array4};

    fn kp(x: f32, y: f32, score: f32, cell: (usize, usize)) -> Keypoint {
        Keypoint { x, y, score, cell }
    }

    #[test]
    fn infers_the_cell_and_flags_each_kind_of_difference() {
        // 2x3 grid, stride 10, zero offsets but one cell of keypoint 1 that decodes near (0, 0).
        let mut offsets = Array4::<f32>::zeros((1, 34, 2, 3));
        offsets[[0, 1, 1, 2]] = -10.0; // y of keypoint 1 at cell (1, 2): 10 - 10 = 0
        offsets[[0, 18, 1, 2]] = -20.0; // x: 20 - 20 = 0
        let mut pose = [kp(0.0, 0.0, 0.5, (0, 0)); NUM_KEYPOINTS];
        pose[2] = kp(20.0, 10.0, 0.5, (1, 2));
        let mut out = Array3::<f32>::zeros((1, 17, 3));
        for k in 0..17 {
            out[[0, k, 0]] = pose[k].x;
            out[[0, k, 1]] = pose[k].y;
            out[[0, k, 2]] = pose[k].score;
        }
        // Keypoint 2 at the neighbouring cell, keypoint 3 slightly off, keypoint 4 NaN score,
        // keypoint 5 a score error.
        out[[0, 2, 0]] = 10.0;
        out[[0, 3, 0]] = 0.01;
        out[[0, 4, 2]] = f32::NAN;
        out[[0, 5, 2]] = 0.6;
        let tol = Tolerances::default();
        let o = compare(&[pose], out.view().into_dyn(), offsets.view().into_dyn(), Layout::Nchw, 10, tol);
        assert_eq!(o.keypoints, 17);
        let named: Vec<&str> = o.mismatches.iter().map(|m| m.keypoint.as_str()).collect();
        assert_eq!(named, ["rightEye", "leftEar", "rightEar", "leftShoulder"]);
        assert_eq!(o.mismatches[0].rewritten.cell, Some([1, 1]));
        assert_eq!(o.mismatches[0].dx, 10.0);
        assert_eq!(o.mismatches[1].rewritten.cell, Some([0, 0]), "within the cell, only dx is off");
        assert!(o.mismatches[2].nan);
        assert!((o.mismatches[3].dscore - 0.1).abs() < 1e-6);
        // Keypoint 1 at (0, 0) ties with cell (1, 2), which also decodes to (0, 0): the
        // reference's cell wins the tie, so it is not a mismatch.
        assert!(!named.contains(&"leftEye"));
        assert_eq!(o.max_position_error, 10.0);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(16.0), "16");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1.25e-7), "1.2e-7");
        assert_eq!(number(f32::NAN), "NaN");
        assert_eq!(number(f32::NEG_INFINITY), "-inf");
    }

    #[test]
    fn equal_infinities_are_no_error_and_shape_errors_are_reported() {
        assert_eq!(delta(f32::NEG_INFINITY, f32::NEG_INFINITY), 0.0);
        assert!(delta(f32::NAN, 1.0).is_nan());
        let offsets = Array4::<f32>::zeros((1, 34, 2, 2));
        let pose = [kp(0.0, 0.0, 0.5, (0, 0)); NUM_KEYPOINTS];
        let bad = Array3::<f32>::zeros((1, 17, 2));
        let o =
            compare(&[pose], bad.view().into_dyn(), offsets.view().into_dyn(), Layout::Nchw, 16, Tolerances::default());
        assert!(o.shape_error.unwrap().contains("[1, 17, 2]"));
    }
}
