//! The keypoint decoder appended to a model, built from portable ops only.
//!
//! Design for the weakest runtime (Unity Barracuda 1.0.x): no ArgMax, Gather, Transpose, Squeeze
//! or Where; tensors of rank 4 or less; MatMul only 2-D against a constant; reductions over axis 1
//! (the last axis of the rank-2 NCHW tensors, the spatial axis of the NHWC ones); float outputs.
//!
//! With `A = H*W` heatmap cells and `hm` the heatmaps of one keypoint:
//! 1. `mx = max(hm)`; `mask = (hm == mx)` as 0/1 floats.
//! 2. First occurrence: `ranked = mask * (A - i) + [0.5 at cell 0]` gives the first maximal cell
//!    the largest rank; `onehot = (ranked == max(ranked))` has exactly one 1.0, where argmax would
//!    point. The half at cell 0 never outranks a maximal cell (ranks are >= 1) but wins when the
//!    mask is empty: tract's ReduceMax of an all `-inf` map is `f32::MIN`, not `-inf`, and
//!    other runtimes start their max the same way; the reference then picks cell 0 too.
//! 3. Positions, NCHW: the offsets times `onehot` (repeated for y and x by a Concat, so that the
//!    Mul is element-wise, which runtimes do faster than a broadcast) summed over the cells, and
//!    the cell's own position as `onehot` rows times a constant grid (`gy*stride`, `gx*stride`
//!    per cell), a 2-D MatMul. NHWC, whose maps are columns: the offsets plus the grid, times
//!    `onehot`, summed over the cells. Each sum has one non-zero term.
//! 4. The coordinates and the scores are concatenated to one row per batch item and taken to
//!    `(x, y, score)` per keypoint by a MatMul against a constant 0/1 matrix, then reshaped to
//!    `[N, 17, 3]`. For NCHW that MatMul also adds each offset to its cell's position: two
//!    non-zero terms, so exactly `gy*stride + offset` as the reference computes it in f32.
//!
//! Every constant is a small integer or a multiple of the stride, exact in f32 while
//! `A <= 2^24` and in f16 while `A <= 2048` and `(H-1)*stride <= 2048`. Because the selection
//! multiplies by 0 and 1, a non-finite offset anywhere in a keypoint's map (or a non-finite raw
//! score) turns the result NaN instead of being skipped.

use crate::contract::{Layout, ScoreMode, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use crate::error::{Error, Result};
use crate::graph::GraphBuilder;
use crate::proto;

/// Largest heatmap (in cells) whose ranks are exact integers in f32.
pub const MAX_CELLS_F32: usize = 1 << 24;
/// Largest heatmap (in cells) whose ranks are exact integers in f16.
pub const MAX_CELLS_F16: usize = 2048;

/// What to decode and where to put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecoderSpec {
    pub heatmaps: String,
    pub offsets: String,
    pub layout: Layout,
    /// Heatmap grid `(height, width)`.
    pub grid: (usize, usize),
    pub stride: u32,
    pub scores: ScoreMode,
    /// Name of the `[N, 17, 3]` output tensor.
    pub output: String,
}

/// Appends the decoder for `spec` to `b`; the last node writes `spec.output`.
pub fn build(b: &mut GraphBuilder, spec: &DecoderSpec) -> Result<()> {
    let (h, w) = spec.grid;
    let cells = h * w;
    if cells == 0 || cells > MAX_CELLS_F32 {
        return Err(Error::Unsupported(format!(
            "a {h}x{w} heatmap is outside the decoder's exact range (1 to {MAX_CELLS_F32} cells)"
        )));
    }
    let a = cells as i64;
    let k = NUM_KEYPOINTS as i64;

    // Per-keypoint maps: NCHW rows of A cells, NHWC columns of A cells.
    let (maps_shape, reduce_axis, rank_shape) = match spec.layout {
        Layout::Nchw => (vec![-1, a], 1, vec![1, a]),
        Layout::Nhwc => (vec![-1, a, k], 1, vec![1, a, 1]),
    };
    let maps = b.reshape("heatmaps_flat", &spec.heatmaps, &maps_shape);
    let max = b.reduce_max("heatmap_max", &maps, reduce_axis);
    let is_max = b.max_mask("is_max", &maps, &max);
    let ranks: Vec<f32> = (0..cells).map(|i| (cells - i) as f32).collect();
    let ranks = b.const_f32("first_cell_rank", &rank_shape, &ranks);
    let mut fallback = vec![0.0f32; cells];
    fallback[0] = 0.5;
    let fallback = b.const_f32("empty_mask_fallback", &rank_shape, &fallback);
    let ranked = b.op("Mul", "ranked_max", &[&is_max, &ranks], vec![]);
    let ranked = b.op("Add", "ranked", &[&ranked, &fallback], vec![]);
    let top = b.reduce_max("top_rank", &ranked, reduce_axis);
    let onehot = b.max_mask("argmax_onehot", &ranked, &top);

    // Grid positions in pixels, per channel pair (y, x): index c*A + cell.
    let stride = spec.stride as f32;
    let grid_yx: Vec<(f32, f32)> =
        (0..cells).map(|i| ((i / w) as f32 * stride, (i % w) as f32 * stride)).collect();
    let score = match spec.scores {
        ScoreMode::Sigmoid => b.op("Sigmoid", "score", &[&max], vec![]),
        ScoreMode::Raw => max,
    };
    let score = b.reshape("score_flat", &score, &[-1, k]);
    let joined = match spec.layout {
        Layout::Nchw => {
            // The offsets times the one-hot, the one-hot repeated for y and x by a Concat: an
            // element-wise Mul of equal shapes, which runtimes do faster than a broadcast one.
            let offsets = b.reshape("offsets_yx", &spec.offsets, &[-1, 2, k, a]);
            let onehot_rows = b.reshape("argmax_onehot_yx", &onehot, &[-1, 1, k, a]);
            let onehot_yx =
                b.op("Concat", "argmax_onehot_yx2", &[&onehot_rows, &onehot_rows], vec![proto::attr_int("axis", 1)]);
            let picked = b.op("Mul", "picked", &[&offsets, &onehot_yx], vec![]);
            let picked = b.reshape("picked_rows", &picked, &[-1, a]);
            let summed = b.reduce_sum("keypoint_yx", &picked, 1);
            let offsets_yx = b.reshape("keypoint_yx_flat", &summed, &[-1, 2 * k]);
            // The grid cell's position: the one-hot rows against the grid, [N*17, A] x [A, 2].
            let grid: Vec<f32> = grid_yx.iter().flat_map(|p| [p.0, p.1]).collect();
            let grid = b.const_f32("grid_px", &[a, 2], &grid);
            let cell_yx = b.op("MatMul", "cell_yx", &[&onehot, &grid], vec![]);
            let cell_yx = b.reshape("cell_yx_flat", &cell_yx, &[-1, 2 * k]);
            b.op("Concat", "yx_score", &[&offsets_yx, &cell_yx, &score], vec![proto::attr_int("axis", 1)])
        }
        Layout::Nhwc => {
            let grid: Vec<f32> = grid_yx.iter().flat_map(|p| [p.0, p.1]).collect();
            let grid = b.const_f32("grid_px", &[1, a, 2, 1], &grid);
            let offsets = b.reshape("offsets_yx", &spec.offsets, &[-1, a, 2, k]);
            let positions = b.op("Add", "positions", &[&offsets, &grid], vec![]);
            let onehot = b.reshape("argmax_onehot_yx", &onehot, &[-1, a, 1, k]);
            let picked = b.op("Mul", "picked", &[&positions, &onehot], vec![]);
            let summed = b.reduce_sum("keypoint_yx", &picked, 1);
            let yx = b.reshape("keypoint_yx_flat", &summed, &[-1, 2 * k]);
            b.op("Concat", "yx_score", &[&yx, &score], vec![proto::attr_int("axis", 1)])
        }
    };
    let (matrix, rows) = match spec.layout {
        Layout::Nchw => (assembly_matrix_with_cells(), 5 * k),
        Layout::Nhwc => (interleave_matrix(), 3 * k),
    };
    let interleave = b.const_f32("interleave", &[rows, 3 * k], &matrix);
    let rows = b.op("MatMul", "keypoints_rows", &[&joined, &interleave], vec![]);
    let shape = b.const_i64("keypoints_shape", &[3], &[-1, k, VALUES_PER_KEYPOINT as i64]);
    b.op_into("Reshape", "keypoints", &[&rows, &shape], vec![], &spec.output);
    Ok(())
}

/// Takes `[offset y_0..y_16, offset x_0..x_16, cell y_0, cell x_0, ..., cell x_16, s_0..s_16]`
/// to `[x_0, y_0, s_0, x_1, ...]`, each coordinate the sum of its offset and its cell's position:
/// two non-zero terms, so exactly `cell + offset` as the reference computes it in f32.
fn assembly_matrix_with_cells() -> Vec<f32> {
    let k = NUM_KEYPOINTS;
    let cols = k * VALUES_PER_KEYPOINT;
    let mut m = vec![0.0f32; 5 * k * cols];
    for kp in 0..k {
        let sources = [(0, k + kp), (0, 2 * k + 2 * kp + 1), (1, kp), (1, 2 * k + 2 * kp), (2, 4 * k + kp)];
        for (value, source_row) in sources {
            m[source_row * cols + kp * VALUES_PER_KEYPOINT + value] = 1.0;
        }
    }
    m
}

/// The permutation taking `[y_0..y_16, x_0..x_16, s_0..s_16]` to `[x_0, y_0, s_0, x_1, ...]`.
fn interleave_matrix() -> Vec<f32> {
    let k = NUM_KEYPOINTS;
    let cols = k * VALUES_PER_KEYPOINT;
    let mut m = vec![0.0f32; 3 * k * cols];
    for kp in 0..k {
        for (value, source_row) in [(0, k + kp), (1, kp), (2, 2 * k + kp)] {
            m[source_row * cols + kp * VALUES_PER_KEYPOINT + value] = 1.0;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_is_a_permutation_to_x_y_score() {
        let m = interleave_matrix();
        let input: Vec<f32> = (0..51).map(|i| i as f32).collect();
        let out: Vec<f32> = (0..51).map(|c| (0..51).map(|r| input[r] * m[r * 51 + c]).sum()).collect();
        // keypoint 2: x is row 17+2, y is row 2, score is row 34+2.
        assert_eq!(&out[6..9], &[19.0, 2.0, 36.0]);
        let mut sorted = out.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, input);
    }

    #[test]
    fn assembly_adds_offsets_to_cells_and_places_scores() {
        let m = assembly_matrix_with_cells();
        let k = NUM_KEYPOINTS;
        // Offsets y: 100+kp, x: 200+kp; cells interleaved (y, x): 1000+kp, 2000+kp; scores: kp/100.
        let mut input = vec![0.0f32; 5 * k];
        for kp in 0..k {
            let f = kp as f32;
            input[kp] = 100.0 + f;
            input[k + kp] = 200.0 + f;
            input[2 * k + 2 * kp] = 1000.0 + f;
            input[2 * k + 2 * kp + 1] = 2000.0 + f;
            input[4 * k + kp] = f / 100.0;
        }
        let out: Vec<f32> = (0..3 * k).map(|c| (0..5 * k).map(|r| input[r] * m[r * 3 * k + c]).sum()).collect();
        for kp in 0..k {
            let f = kp as f32;
            assert_eq!(&out[3 * kp..3 * kp + 3], &[2200.0 + 2.0 * f, 1100.0 + 2.0 * f, f / 100.0], "keypoint {kp}");
        }
        // Each output sums exactly its two (or, for the score, one) sources.
        for c in 0..3 * k {
            let sources = (0..5 * k).filter(|r| m[r * 3 * k + c] != 0.0).count();
            assert_eq!(sources, if c % 3 == 2 { 1 } else { 2 }, "column {c}");
        }
    }
}
