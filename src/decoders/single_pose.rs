//! The keypoint decoder appended to a model, built from portable ops only.
//!
//! Design for the weakest runtimes (Unity Barracuda 1.0.x, onnxruntime-web's WebGL backend,
//! ncnn, wonnx) and the converters users take models through (onnx2tf, pnnx): no ArgMax, Gather,
//! Squeeze, Concat or Where; no comparisons and no bool tensors; no ReduceMax, ReduceSum or
//! MatMul; tensors of rank 4 or less; square pools and Convs at unit strides; every op but
//! Clip in one form across opsets 9 to 21; no constant beyond the float16 range that a result
//! depends on, and none of more than one value in an element-wise op (the op choices and the
//! runtimes behind them are in [`crate::decoders::graph`]). On a GPU each node is a dispatch:
//! the decoder is 23 nodes (22 for raw scores, 2 more for NHWC heads), whatever the grid.
//!
//! NHWC heads are first taken to NCHW by a Transpose; the rest reads `[N, C, H, W]` maps with
//! A = H*W cells. Per keypoint map `hm`:
//! 1. `hm` clamped to +-FLT_MAX (so that `max - hm` is never `inf - inf`; the one tie this
//!    makes, `+inf` with `FLT_MAX`, the reference makes too), `mx` its max by MaxPool.
//! 2. `below = Ceil(Clip(mx - hm, -1, 1))`: 0 at the maxima, 1 elsewhere, exactly
//!    ([`GraphBuilder::below_max`]).
//! 3. First occurrence: `ranked = rank - below`, with `rank` a value per cell, distinct and
//!    decreasing in row-major order, in (0, 1] ([`first_cell_ranks`]; one map of the graph
//!    broadcast over the keypoints, [`GraphBuilder::per_cell_map`]): in (0, 1] at the maxima,
//!    the first the largest, and at most 0 elsewhere, still in scan order, so an empty mask
//!    (wonnx's MaxPool floor, see `max_over`) takes the first cell, where the reference puts an
//!    all -inf map. `top` its max by MaxPool.
//! 4. `miss = Ceil(top - ranked)`: 0 at the chosen cell, 1 or 2 elsewhere (`top - ranked` is at
//!    most 2, and above 0 at every other cell: two distinct floats differ).
//! 5. The values per cell in output order, `(x, y, score)` per keypoint (51 channels): the
//!    offsets plus the cell's pixel position (`gy*stride`, `gx*stride`, a map of the graph: one
//!    f32 addition, as the reference, [`GraphBuilder::cell_positions`]) reordered by a 1x1 Conv, and `sigmoid(hm)` (or `hm` for raw scores) placed
//!    by another; minus `miss * 2^14` (a 1x1 Conv of `miss`), their max over the cells by
//!    MaxPool is the chosen cell's values, exactly: every other cell is at least 2^14 lower,
//!    while positions lie within 2^14 px of each other (`MAX_POSITION_SPREAD`).
//! 6. Reshaped to `[N, 17, 3]`.
//!
//! Every constant is exact in float16 while `A <= 1793` (`MAX_CELLS_F16`), the ranks in
//! bfloat16 too: they have 8 significant bits (bfloat16's) and lie in float16's normal range;
//! the grid positions are multiples of the stride, the penalty 2^14 (at most 2^15 with the
//! values in float16's range). A non-finite offset anywhere turns the values at its cell NaN
//! (the 1x1 Conv multiplies it by zeros too), and the result is then what the runtime's MaxPool
//! makes of a NaN; a non-finite raw score does the same through the score's Conv; a NaN heatmap
//! cell makes the per-cell maps NaN there and at every cell below and right of it
//! ([`GraphBuilder::cell_maps`]). Infinite heatmaps are clamped first: the maps stay exact.

use crate::contract::{DecoderSettings, Layout, ScoreMode, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use crate::decoders::graph::{Cells, GraphBuilder};
use crate::decoders::Forms;
use crate::model::proto;
use crate::decoders::reroute::HeadInput;
use crate::error::{Error, Result};

/// Largest heatmap (in cells) whose ranks are exact in f32.
pub const MAX_CELLS_F32: usize = 1 << 24;
/// Largest heatmap (in cells) whose ranks are exact in f16 (and bf16): 1.0 and 128 ranks in each
/// of the 14 binades from 2^-14 to 1.
#[cfg(feature = "testing")]
pub const MAX_CELLS_F16: usize = 1 + 14 * EIGHT_BIT_RANKS_PER_BINADE;
/// Ranks of 8 significant bits per binade: `m / 256 * 2^-b` for m in 128..=255.
const EIGHT_BIT_RANKS_PER_BINADE: usize = 128;
/// Largest heatmap (in cells) ranked by 8-bit values: down to 2^-101, where the differences of
/// two ranks stay normal floats in float32 and bfloat16 (no flush to zero can tie them).
const MAX_CELLS_EIGHT_BIT: usize = 1 + 100 * EIGHT_BIT_RANKS_PER_BINADE;
/// What every cell but the chosen one loses before the max over the cells: the positions of one
/// keypoint must lie within this many pixels of each other for the max to be the chosen cell's.
pub const MAX_POSITION_SPREAD: f32 = 16384.0;

const K: usize = NUM_KEYPOINTS;

/// What to decode and where to put it.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderSpec<'a> {
    pub settings: &'a DecoderSettings,
    /// Where the decoder takes each head from (see [`crate::decoders::reroute`]).
    pub heatmaps_read: HeadInput,
    pub offsets_read: HeadInput,
    /// Heatmap grid `(height, width)`.
    pub grid: (usize, usize),
    /// The primitives' form, as the target profile allows.
    pub forms: Forms,
}

/// A rank per cell in row-major order, distinct, decreasing, in (0, 1]: 1.0, then the values of
/// 8 significant bits binade by binade (255/256 down to 1/2, then 255/512 down to 1/4, ...), so
/// that they are exact in bfloat16 as well as in float16 (while `A <= MAX_CELLS_F16`) and float32.
/// `(A - i) / 2^A'` (`2^A'` the power of two at least A) would need more than bfloat16's 8 bits
/// past 256 cells, and bfloat16 would tie neighbouring ranks (measured on OpenVINO's bfloat16
/// defaults: a later cell of tied maxima taken). Past [`MAX_CELLS_EIGHT_BIT`] cells, that form
/// (exact in float32 to 2^24 cells).
fn first_cell_ranks(cells: usize) -> Vec<f32> {
    if cells > MAX_CELLS_EIGHT_BIT {
        let scale = (cells as f32).log2().ceil().exp2();
        return (0..cells).map(|i| (cells - i) as f32 / scale).collect();
    }
    let per = EIGHT_BIT_RANKS_PER_BINADE;
    (0..cells)
        .map(|i| match i {
            0 => 1.0,
            i => ((2 * per - 1 - (i - 1) % per) as f32 / (2 * per) as f32) * 2f32.powi(-(((i - 1) / per) as i32)),
        })
        .collect()
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
    let grid = Cells { height: h, width: w };
    let out = 3 * K;

    let heatmaps = b.read_head("heatmaps_copy", &spec.settings.heatmaps, &spec.heatmaps_read);
    let offsets = b.read_head("offsets_copy", &spec.settings.offsets, &spec.offsets_read);
    let (heatmaps, offsets) = match spec.settings.layout {
        Layout::Nchw => (heatmaps, offsets),
        Layout::Nhwc => (b.nhwc_to_nchw("heatmaps_nchw", &heatmaps), b.nhwc_to_nchw("offsets_nchw", &offsets)),
    };
    if spec.forms == Forms::ArgMaxGather {
        build_with_argmax(b, spec, &heatmaps, &offsets);
        return Ok(());
    }

    // The first maximal cell of each map. The heatmaps have two readers here (the Clip and the
    // score below): onnxruntime-web's WebGL backend fuses a Clip into a Conv output it alone
    // reads, which breaks a head that is a graph output (see `crate::decoders::reroute`).
    let clamped = b.clamp_finite("heatmaps_finite", &heatmaps);
    let max = b.max_over("heatmap_max", &clamped, grid);
    let below = b.below_max("below_max", &clamped, &max);
    // One rank map, broadcast over the keypoints (a tensor of the graph: see `cell_maps`).
    let maps = b.cell_maps(&clamped, K, grid);
    let ranks = b.per_cell_map("first_cell_rank", &maps, 1, &first_cell_ranks(cells));
    let ranked = b.op("Sub", "ranked", &[&ranks, &below], vec![]);
    let top = b.max_over("top_rank", &ranked, grid);
    let gap = b.op("Sub", "rank_gap", &[&top, &ranked], vec![]);
    let miss = b.op("Ceil", "not_chosen", &[&gap], vec![]);

    // The values per cell in output order: (x, y, score) per keypoint.
    let from_offsets: Vec<Option<usize>> = (0..out)
        .map(|c| match c % 3 {
            0 => Some(K + c / 3),
            1 => Some(c / 3),
            _ => None,
        })
        .collect();
    // The cell's pixel position added before the reorder: a third of the constant it would be after.
    let positions = b.cell_positions("positions", &offsets, &maps, spec.settings.stride);
    let positions = b.pick_channels("positions_xy", &positions, &from_offsets, 2 * K);
    let scores = match spec.settings.scores {
        ScoreMode::Sigmoid => b.op("Sigmoid", "scores", &[&heatmaps], vec![]),
        ScoreMode::Raw => heatmaps.clone(),
    };
    let from_scores: Vec<Option<usize>> = (0..out).map(|c| (c % 3 == 2).then_some(c / 3)).collect();
    let scores = b.pick_channels("scores_placed", &scores, &from_scores, K);
    let values = b.op("Add", "values", &[&positions, &scores], vec![]);

    // Every cell but the chosen one 2^14 or 2^15 lower, then the max over the cells.
    let penalty: Vec<Option<(usize, f32)>> = (0..out).map(|c| Some((c / 3, MAX_POSITION_SPREAD))).collect();
    let penalty = b.scale_channels("not_chosen_penalty", &miss, &penalty, K);
    let values = b.op("Sub", "values_chosen", &[&values, &penalty], vec![]);
    let keypoints = b.max_over("keypoint_values", &values, grid);
    let shape = b.const_i64("keypoints_shape", &[3], &[-1, K as i64, VALUES_PER_KEYPOINT as i64]);
    b.op_into("Reshape", "keypoints", &[&keypoints, &shape], vec![], &spec.settings.output);
    Ok(())
}

/// The decoder where the target runs ArgMax and GatherElements right ([`Forms::ArgMaxGather`]):
/// 16 nodes (a critical path of 12; 15 and 12 for raw scores), not 23 and 13. The clamped heatmaps
/// of each keypoint flattened to `[N, 17, A, 1]`; ArgMax over the cells (its first maximum, as
/// the reference; opset 12's `select_last_index` left at 0); a table `[N, 17, A, 3]` of
/// `(y, x, score)` per cell (positions as the thin form makes them, one f32 addition);
/// GatherElements reads the chosen row, and a Gather puts `(x, y, score)` in output order. Fewer
/// nodes would need a reorder of the heads, which hold y before x in blocks of channels, or
/// GatherND's `batch_dims` (opset 12, and the bundled model is at 11).
fn build_with_argmax(b: &mut GraphBuilder, spec: &DecoderSpec<'_>, heatmaps: &str, offsets: &str) {
    let (h, w) = spec.grid;
    let cells = (h * w) as i64;
    let k = K as i64;
    let clamped = b.clamp_finite("heatmaps_finite", heatmaps);
    let per_cell = b.const_i64("cells_shape", &[4], &[-1, k, cells, 1]);
    let flat = b.op("Reshape", "heatmaps_cells", &[&clamped, &per_cell], vec![]);
    let chosen = b.op(
        "ArgMax",
        "chosen_cell",
        &[&flat],
        vec![proto::attr_int("axis", 2), proto::attr_int("keepdims", 1)],
    );
    let three = b.const_i64("values_per_keypoint", &[4], &[1, 1, 1, VALUES_PER_KEYPOINT as i64]);
    let chosen = b.op("Expand", "chosen_cell_per_value", &[&chosen, &three], vec![]);
    let scores = match spec.settings.scores {
        ScoreMode::Sigmoid => b.op("Sigmoid", "cell_scores", &[&flat], vec![]),
        ScoreMode::Raw => flat,
    };
    let maps = b.cell_maps(&clamped, K, Cells { height: h, width: w });
    let positions = b.cell_positions("positions", offsets, &maps, spec.settings.stride);
    let yx_shape = b.const_i64("positions_shape", &[4], &[-1, 2, k, cells]);
    let positions = b.op("Reshape", "positions_yx", &[&positions, &yx_shape], vec![]);
    let positions =
        b.op("Transpose", "positions_per_cell", &[&positions], vec![proto::attr_ints("perm", &[0, 2, 3, 1])]);
    let table = b.op("Concat", "cell_values", &[&positions, &scores], vec![proto::attr_int("axis", 3)]);
    let read =
        b.op("GatherElements", "chosen_values", &[&table, &chosen], vec![proto::attr_int("axis", 2)]);
    let shape = b.const_i64("keypoints_shape", &[3], &[-1, k, VALUES_PER_KEYPOINT as i64]);
    let read = b.op("Reshape", "chosen_values_yx", &[&read, &shape], vec![]);
    let xys = b.const_i64("xy_score_order", &[3], &[1, 0, 2]);
    b.op_into("Gather", "keypoints", &[&read, &xys], vec![proto::attr_int("axis", 2)], &spec.settings.output);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_exact_in_float16_and_in_scan_order() {
        for cells in [1, 2, 289, 1089, MAX_CELLS_F16, MAX_CELLS_F16 + 1, MAX_CELLS_EIGHT_BIT, 20_000] {
            let ranks = first_cell_ranks(cells);
            assert!(ranks[0] <= 1.0 && *ranks.last().unwrap() > 0.0);
            assert!(ranks.windows(2).all(|p| p[0] > p[1]), "{cells}");
            // 8 significant bits at most (bfloat16's) and, for float16, at least 2^-14.
            let eight_bits = |r: f32| (r * 2f32.powi(7 - r.log2().floor() as i32)).fract() == 0.0;
            if cells <= MAX_CELLS_EIGHT_BIT {
                assert!(ranks.iter().all(|&r| eight_bits(r)), "{cells}");
                // Differences of neighbours are normal floats: no flush to zero ties them.
                assert!(ranks.windows(2).all(|p| p[0] - p[1] >= f32::MIN_POSITIVE), "{cells}");
            }
            if cells <= MAX_CELLS_F16 {
                assert!(ranks.iter().all(|&r| r >= 2f32.powi(-14)), "{cells}");
            }
        }
        // One past the 8-bit table is past float16's normal range.
        assert!(first_cell_ranks(MAX_CELLS_F16 + 1).last().unwrap() < &2f32.powi(-14));
    }

    /// `x` rounded to bfloat16 (to nearest, ties to even), as a float32.
    fn bf16(x: f32) -> f32 {
        let bits = x.to_bits();
        f32::from_bits((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000)
    }

    #[test]
    fn the_first_cell_wins_in_bfloat16_arithmetic() {
        // Each op rounded to bfloat16, as OpenVINO's CPU plugin computes at its defaults: the
        // ranks are bfloat16 values, and the gaps to the top stay in (0, 2] for every other cell.
        let ranks = first_cell_ranks(1089);
        assert!(ranks.iter().all(|&r| bf16(r) == r));
        for top_at in [0, 1, 127, 128, 129, 700, 1088] {
            let top = ranks[top_at];
            for (i, &r) in ranks.iter().enumerate() {
                let miss = bf16(top - r).ceil();
                if i > top_at {
                    assert_eq!(miss, 1.0, "top {top_at}, later maximum {i}");
                }
                let off_the_maxima = bf16(top - bf16(r - 1.0)).ceil();
                assert!(off_the_maxima == 1.0 || off_the_maxima == 2.0, "top {top_at}, cell {i}");
            }
        }
    }

    #[test]
    fn the_penalty_fits_float16_and_parts_every_other_cell() {
        // miss is 1 or 2 at every other cell: at most 2 * 2^14 = 2^15 below, within float16's
        // 65504 for values within MAX_POSITION_SPREAD of 0.
        const { assert!(2.0 * MAX_POSITION_SPREAD + MAX_POSITION_SPREAD <= 65504.0) };
        // The rank gaps: with the chosen cell at 5, the later maxima are in (0, 1) below it and
        // Ceil gives 1; every cell off the maxima is in (0, 2) below it (ranked there is its
        // rank less 1), and Ceil gives 1 or 2.
        let ranks = first_cell_ranks(1089);
        let top = ranks[5];
        for (i, r) in ranks.iter().enumerate() {
            if i >= 5 {
                assert_eq!((top - r).ceil(), if i == 5 { 0.0 } else { 1.0 }, "{i}");
            }
            let off_the_maxima = (top - (r - 1.0)).ceil();
            assert!(off_the_maxima == 1.0 || off_the_maxima == 2.0, "{i}");
        }
    }
}
