//! The keypoint decoder appended to a model, built from portable ops only.
//!
//! Design for the weakest runtimes (Unity Barracuda 1.0.x, onnxruntime-web's WebGL backend,
//! ncnn, wonnx): no ArgMax, Gather, Transpose, Squeeze, Concat or Where; no comparisons and no
//! bool tensors; no ReduceMax, ReduceSum or MatMul; tensors of rank 4 or less; every op but Clip
//! in one form across opsets 9 to 21 (the op choices and the runtimes that forced them are in
//! [`crate::decoders::graph`]); float outputs.
//!
//! The heatmaps are reduced where their cells lie: NCHW maps as they come, `[N, 17, H, W]` (no
//! reshape of NCHW heads: onnxruntime-web's WebGL backend reads a reshaped `[1, 34, H, W]` wrong
//! in the next element-wise op), NHWC maps as columns `[N, 1, A, 17]` with `A = H*W`. Per
//! keypoint map `hm`:
//! 1. `hm` clamped to +-FLT_MAX (so that the differences below are never `inf - inf`; the one
//!    tie this makes, `+inf` with `FLT_MAX`, the reference makes too), `mx` its max by MaxPool,
//!    and `is_max` 1.0 exactly at the cells equal to `mx`, by arithmetic
//!    ([`GraphBuilder::select_maxima`]).
//! 2. First occurrence: `ranked = is_max * (A - i) + [0.5 at cell 0]` gives the first maximal
//!    cell the largest rank; `onehot` selects the max of `ranked` the same way and has exactly
//!    one 1.0, where argmax would point. The half at cell 0 never outranks a maximal cell (ranks
//!    are >= 1) but wins when the mask is empty (a NaN max, or wonnx's MaxPool floor).
//! 3. Positions: the offsets plus a constant grid (`gy*stride` for the y channels, `gx*stride`
//!    for the x channels: one f32 addition, as the reference computes it), times `onehot`
//!    (repeated for y and x by a 1x1 Conv for NCHW, by broadcasting for NHWC), summed over the
//!    cells as `max(p) - max(-p)`: one term is non-zero, so the sum is exact.
//! 4. The coordinates `[N, 34, 1, 1]` and the scores `[N, 17, 1, 1]` (`sigmoid(mx)` or `mx`) are
//!    taken to `(x, y, score)` channels per keypoint by two 1x1 Convs against 0/1 weights, added
//!    (each channel one value plus an exact zero), and reshaped to `[N, 17, 3]`.
//!
//! Every constant is a small integer or a multiple of the stride, exact in f32 while
//! `A <= 2^24` and in f16 while `A <= 2048` and `(H-1)*stride <= 2048`. Because the selection
//! multiplies by 0 and 1, a non-finite offset anywhere in a keypoint's map turns the result NaN
//! instead of being skipped; a NaN heatmap cell gives what the runtime's Clip and MaxPool make
//! of it.

use crate::contract::{DecoderSettings, Layout, ScoreMode, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use crate::decoders::graph::{Cells, GraphBuilder};
use crate::decoders::reroute::HeadInput;
use crate::error::{Error, Result};

/// Largest heatmap (in cells) whose ranks are exact integers in f32.
pub const MAX_CELLS_F32: usize = 1 << 24;
/// Largest heatmap (in cells) whose ranks are exact integers in f16.
pub const MAX_CELLS_F16: usize = 2048;

/// What to decode and where to put it.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderSpec<'a> {
    pub settings: &'a DecoderSettings,
    /// Where the decoder takes each head from (see [`crate::decoders::reroute`]).
    pub heatmaps_read: HeadInput,
    pub offsets_read: HeadInput,
    /// Heatmap grid `(height, width)`.
    pub grid: (usize, usize),
}

/// Appends the decoder for `spec` to `b`; the last node writes `spec.settings.output`.
pub fn build(b: &mut GraphBuilder, spec: &DecoderSpec<'_>) -> Result<()> {
    let (h, w) = spec.grid;
    let cells = h * w;
    if cells == 0 || cells > MAX_CELLS_F32 {
        return Err(Error::Unsupported(format!(
            "a {h}x{w} heatmap is outside the decoder's exact range (1 to {MAX_CELLS_F32} cells)"
        )));
    }
    let a = cells as i64;
    let k = NUM_KEYPOINTS as i64;

    let heatmaps = b.read_head("heatmaps_copy", &spec.settings.heatmaps, &spec.heatmaps_read);
    let offsets = b.read_head("offsets_copy", &spec.settings.offsets, &spec.offsets_read);
    // The heatmaps where their cells lie: NCHW as they come, NHWC as columns [N, 1, A, 17].
    let (cell_axes, cell_shape, heatmaps) = match spec.settings.layout {
        Layout::Nchw => (Cells::Grid { height: h, width: w }, vec![1, 1, h as i64, w as i64], heatmaps),
        Layout::Nhwc => {
            let columns = b.reshape("heatmap_columns", &heatmaps, &[-1, 1, a, k]);
            (Cells::Column { cells }, vec![1, 1, a, 1], columns)
        }
    };
    // Clamped after the max (the same value: clamping is monotone) so that the heads have two
    // readers: onnxruntime-web's WebGL backend fuses a Clip into a Conv output it alone reads,
    // which breaks a head that is a graph output (see `crate::decoders::reroute`).
    let max = b.max_over("heatmap_max_raw", &heatmaps, cell_axes);
    let max = b.clamp_finite("heatmap_max", &max);
    let clamped = b.clamp_finite("heatmaps_finite", &heatmaps);
    let is_max = b.select_maxima("is_max", &clamped, &max);
    let ranks: Vec<f32> = (0..cells).map(|i| (cells - i) as f32).collect();
    let ranks = b.const_f32("first_cell_rank", &cell_shape, &ranks);
    let mut fallback = vec![0.0f32; cells];
    fallback[0] = 0.5;
    let fallback = b.const_f32("empty_mask_fallback", &cell_shape, &fallback);
    let ranked = b.op("Mul", "ranked_max", &[&is_max, &ranks], vec![]);
    let ranked = b.op("Add", "ranked", &[&ranked, &fallback], vec![]);
    let top = b.max_over("top_rank", &ranked, cell_axes);
    let onehot = b.select_maxima("argmax_onehot", &ranked, &top);

    // The cell's position in pixels: `gy*stride` for the y offsets, `gx*stride` for the x ones.
    let stride = spec.settings.stride as f32;
    let position = |axis: usize, cell: usize| (if axis == 0 { cell / w } else { cell % w }) as f32 * stride;
    let two = 0..2;
    let (yx, score) = match spec.settings.layout {
        Layout::Nchw => {
            // One-hot repeated for the y and the x channels: offset channel c reads map c % 17.
            let repeat: Vec<Option<usize>> = (0..2 * NUM_KEYPOINTS).map(|c| Some(c % NUM_KEYPOINTS)).collect();
            let onehot_yx = b.pick_channels("argmax_onehot_yx", &onehot, &repeat, NUM_KEYPOINTS);
            let grid: Vec<f32> =
                (0..2 * NUM_KEYPOINTS).flat_map(|c| (0..cells).map(move |i| position(c / NUM_KEYPOINTS, i))).collect();
            let grid = b.const_f32("grid_px", &[1, 2 * k, h as i64, w as i64], &grid);
            let positions = b.op("Add", "positions", &[&offsets, &grid], vec![]);
            let picked = b.op("Mul", "picked", &[&positions, &onehot_yx], vec![]);
            (b.sum_of_one_term("keypoint_yx", &picked, cell_axes), max)
        }
        Layout::Nhwc => {
            // Offsets as [N, A, 2, 17] (y then x per cell), the one-hot as [N, A, 1, 17] and the
            // grid as [1, A, 2, 1]: both element-wise ops broadcast. onnxruntime-web's WebGL
            // backend reads a reshaped input wrong in an element-wise op of equal shapes when
            // the reshape changes the tensor's 2-D texture ([A, 34] to [2A, 17] here); a
            // broadcasting op indexes its inputs by element and reads them right.
            let offsets = b.reshape("offsets_by_cell", &offsets, &[-1, a, 2, k]);
            let onehot = b.reshape("argmax_onehot_by_cell", &onehot, &[-1, a, 1, k]);
            let grid: Vec<f32> = (0..cells).flat_map(|i| two.clone().map(move |axis| position(axis, i))).collect();
            let grid = b.const_f32("grid_px", &[1, a, 2, 1], &grid);
            let positions = b.op("Add", "positions", &[&offsets, &grid], vec![]);
            let picked = b.op("Mul", "picked", &[&positions, &onehot], vec![]);
            let picked = b.reshape("picked_columns", &picked, &[-1, 1, a, 2 * k]);
            let yx = b.sum_of_one_term("keypoint_yx", &picked, cell_axes);
            // [N, 1, 1, C] to [N, C, 1, 1]: the same values in the same order.
            let yx = b.reshape("keypoint_yx_channels", &yx, &[-1, 2 * k, 1, 1]);
            (yx, b.reshape("heatmap_max_channels", &max, &[-1, k, 1, 1]))
        }
    };
    let score = match spec.settings.scores {
        ScoreMode::Sigmoid => b.op("Sigmoid", "score", &[&score], vec![]),
        ScoreMode::Raw => score,
    };

    // Channels (x, y, score) per keypoint, from the y, x channels and the score channels: two
    // channel picks added (each output channel is one value plus an exact zero).
    let from_yx: Vec<Option<usize>> = (0..3 * NUM_KEYPOINTS)
        .map(|c| match c % 3 {
            0 => Some(NUM_KEYPOINTS + c / 3),
            1 => Some(c / 3),
            _ => None,
        })
        .collect();
    let from_score: Vec<Option<usize>> = (0..3 * NUM_KEYPOINTS).map(|c| (c % 3 == 2).then_some(c / 3)).collect();
    let xy = b.pick_channels("keypoints_xy", &yx, &from_yx, 2 * NUM_KEYPOINTS);
    let scores = b.pick_channels("keypoints_score", &score, &from_score, NUM_KEYPOINTS);
    let rows = b.op("Add", "keypoints_rows", &[&xy, &scores], vec![]);
    let shape = b.const_i64("keypoints_shape", &[3], &[-1, k, VALUES_PER_KEYPOINT as i64]);
    b.op_into("Reshape", "keypoints", &[&rows, &shape], vec![], &spec.settings.output);
    Ok(())
}
