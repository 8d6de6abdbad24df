//! The multi-pose decoder appended to a model (`--poses N`), checked against
//! [`crate::reference::multi_pose`]; its design and measured cost: `docs/multi-pose-decoder.md`.
//! Two forms, as the target profile allows ([`Forms`]): the thin one here, and where a proven
//! profile runs Gather, GatherElements and TopK right (opset 11 and later) the Gather form in
//! `gather.rs`, which decodes every candidate root's pose once per frame and so needs 8 nodes a
//! round where this one needs about 280.
//!
//! `poses [B, N, 17, 3]` (x, y, score per keypoint, model-input pixels) and `pose_scores [B, N]`,
//! slots past the poses found at -1 with zero keypoints: tfjs posenet 2.2.2's
//! `decodeMultiplePoses` as N unrolled rounds of "the best live candidate", with the reference's
//! f32 arithmetic (see its module doc for every rounding). The ops are the single-pose decoder's
//! ([`crate::decoders::graph`]) plus Div, Floor and Relu; no comparison, no bool tensor, no
//! Concat. All f32: the scaled indices (below) do not fit f16.
//!
//! NHWC heads are first taken to NCHW by a Transpose (see
//! [`GraphBuilder::nhwc_to_nchw`]); the rest is the NCHW decoder. Its pools are square, with unit
//! strides, like the single-pose decoder's ([`GraphBuilder::max_over`]). It shares with the
//! single-pose decoder the nodes both compute (the heads' copies, the clamped heatmaps, their
//! sigmoid): the builder makes an equal node once.
//!
//! Not float16-exact: the cell indices are scaled by 2^64, beyond float16's range (see
//! [`crate::profiles`]' float16 notes for the runtimes that compute in float16 by default, and
//! the one setting that makes them exact). Its constants are float16 values, though (2^64 is
//! made in the graph, `Builder::per_frame`): a runtime that stores constants in float16 and
//! computes in float32 (onnx2tf's float16 `.tflite`) is exact, for grids of at most 2047 cells,
//! a threshold whose logit is a float16 value (T = 0.5: 0) and an R^2 that is one (R = 20).
//!
//! The derivation, step by step, is in `docs/multi-pose-decoder.md` ("Once per frame", "N
//! rounds"); `build` follows it in four parts: `frame` (the candidates, every cell's position
//! and its cell), `level_plan` (the maps each level of the traversal reads), `rounds` (per
//! round: the best live candidate, ties to the first in scan order `(y, x, k)`; its pose,
//! traversed level by level; its score; the NMS for the next rounds) and `outputs` (each
//! round's slot). A cell is read by a lookup (`Builder::lookup`): the map less the square of the
//! scaled index difference, whose max over the grid is the cell's own value, exactly. A
//! non-finite value anywhere in a map that is read turns the read NaN or infinite, where the
//! reference reads the one cell: heads with NaN or infinite offsets or displacements are out of
//! the contract.

use std::collections::BTreeMap;

use crate::contract::{Layout, MultiPoseParams, ScoreMode, NUM_KEYPOINTS, POSE_CHAIN, VALUES_PER_KEYPOINT};
use crate::decoders::graph::{Cells, GraphBuilder};
use crate::decoders::Forms;
use crate::error::{Error, Result};
use crate::model::proto;

mod gather;

const K: usize = NUM_KEYPOINTS;
/// The pose state's channels: y, x, traversal cell and score cell of every keypoint, and one
/// channel of zeros. The odd count is for onnxruntime's CPU provider: it rewrites a Conv whose
/// input has 16 or more channels into its blocked NCHWc layout only when the count is a multiple
/// of 4, and every such Conv on the tiny state costs layout reorders around it.
const STATE: usize = 4 * K + 1;
const Y: usize = 0;
const X: usize = K;
const CELL: usize = 2 * K;
const SCORE_CELL: usize = 3 * K;
/// Flat cell indices are carried times 2^64, so that the square of a difference of two of them
/// is 0 or past FLT_MAX (+inf): "infinitely far" unless equal. Exact: integers below 2^24 times
/// a power of two. Made in the graph as [`INDEX_SCALE_ROOT`] squared three times (a float16
/// constant, see `Builder::per_frame`).
const INDEX_SCALE: f32 = 18446744073709551616.0;
const INDEX_SCALE_ROOT: f32 = 256.0;
const _: () = assert!(
    INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        * INDEX_SCALE_ROOT
        == INDEX_SCALE
);
/// A candidate's rank is `RANK_BLOCK * (cells - i) - k` (cell i, keypoint k): scan order
/// `(y, x, k)`, and a power of two at least K so that the top rank gives back i and k exactly
/// (a division by a power of two, and a floor).
const RANK_BLOCK: usize = 32;

/// What to decode and where to put it.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiPoseSpec {
    pub heatmaps: String,
    pub offsets: String,
    pub displacement_fwd: String,
    pub displacement_bwd: String,
    /// The heads' layout (all four share it).
    pub layout: Layout,
    pub grid: (usize, usize),
    pub stride: u32,
    pub scores: ScoreMode,
    /// N, T and R.
    pub params: MultiPoseParams,
    pub poses: String,
    pub pose_scores: String,
    /// The primitives' form, as the target profile allows: [`Forms::ArgMaxGather`] builds the
    /// Gather form ([`gather`]).
    pub forms: Forms,
}

/// The threshold on the clamped heatmaps: a logit in sigmoid mode. The same f32 arithmetic as
/// the reference's `decision_threshold`, written apart from it so that the reference checks it.
fn decision_threshold(spec: &MultiPoseSpec) -> f32 {
    match spec.scores {
        ScoreMode::Sigmoid => (spec.params.score_threshold / (1.0 - spec.params.score_threshold)).ln(),
        ScoreMode::Raw => spec.params.score_threshold,
    }
}

/// The edges one level of a traversal direction decodes, and for which root keypoints.
#[derive(Debug, Default)]
struct Level {
    /// In [`POSE_CHAIN`] order.
    edges: Vec<usize>,
    /// `roots[i][k]`: with the root at keypoint k, `edges[i]` decodes its target at this level.
    roots: Vec<[bool; K]>,
}

/// The smallest count of at least `n` edges that is not a multiple of 4.
fn padded_edges(n: usize) -> usize {
    if n.is_multiple_of(4) {
        n + 1
    } else {
        n
    }
}

/// The reference's traversal for every root keypoint, level by level: `[backward, forward]`.
/// Backward (edges 15..0, child to parent) decodes the root's ancestors up to the nose; forward
/// (edges 0..15, parent to child) every other keypoint from its parent. Each keypoint is decoded
/// once, from the one source the reference decodes it from, so the levels need only respect
/// that order: an edge's level is its child's depth in the chain (deepest first going backward,
/// shallowest first going forward), which puts every source a level before its targets for any
/// root. So each level holds only the edges at one depth (2, 4, 6, 4 backward; 4, 6, 4, 2
/// forward: 32 in all, each edge once each way, instead of every edge some root decodes at that
/// step of its own replay), and which of them decode is the replay's per root.
fn schedule() -> [Vec<Level>; 2] {
    // Depth in the chain's tree (the nose 0): POSE_CHAIN lists every parent before its children.
    let mut depth = [0usize; K];
    for &(parent, child) in &POSE_CHAIN {
        depth[child] = depth[parent] + 1;
    }
    let deepest = *depth.iter().max().expect("keypoints");
    let mut by_level: [Vec<BTreeMap<usize, [bool; K]>>; 2] =
        [vec![BTreeMap::new(); deepest], vec![BTreeMap::new(); deepest]];
    for (e, &(_, child)) in POSE_CHAIN.iter().enumerate() {
        by_level[0][deepest - depth[child]].insert(e, [false; K]);
        by_level[1][depth[child] - 1].insert(e, [false; K]);
    }
    for root in 0..K {
        // The reference's passes, replayed: which edges decode for this root.
        let mut known = [false; K];
        known[root] = true;
        for (e, &(parent, child)) in POSE_CHAIN.iter().enumerate().rev() {
            if known[child] && !known[parent] {
                by_level[0][deepest - depth[child]].get_mut(&e).expect("placed")[root] = true;
                known[parent] = true;
            }
        }
        for (e, &(parent, child)) in POSE_CHAIN.iter().enumerate() {
            if known[parent] && !known[child] {
                by_level[1][depth[child] - 1].get_mut(&e).expect("placed")[root] = true;
                known[child] = true;
            }
        }
    }
    by_level.map(|levels| {
        levels
            .into_iter()
            .map(|edges| Level { edges: edges.keys().copied().collect(), roots: edges.values().copied().collect() })
            .collect()
    })
}

/// Per frame, what one level reads (`E` its edges): the displacements at the source's cell
/// `[y | x]` (2E channels), the target's traversal cell (E, read at the first refinement's
/// cell: the second refinement's cell), and the target's position and cell
/// `[y | x | cell]` (3E, read at the second refinement's cell).
struct LevelMaps {
    hint: String,
    /// Each edge's (source, target) keypoints.
    ends: Vec<(usize, usize)>,
    /// As [`Level::roots`], padded.
    roots: Vec<[bool; K]>,
    disp: String,
    cells: String,
    refined: String,
}

struct Builder<'a> {
    b: &'a mut GraphBuilder,
    h: usize,
    w: usize,
    stride: f32,
    /// `2^64` ([`INDEX_SCALE`]), `[B, 1, 1, 1]`: made once per frame ([`Self::per_frame`]).
    scale: String,
    /// 17.0, `[B, 1, 1, 1]`, the pose score's divisor ([`Self::per_frame`]).
    keypoint_count: String,
    /// The scaled flat index of every cell, `[B, 1, H, W]` ([`Self::per_frame`]): made once,
    /// read by every lookup.
    cell_index: String,
}

impl Builder<'_> {
    fn cells(&self) -> Cells {
        Cells { height: self.h, width: self.w }
    }

    /// 1.0 where `t > 0` (any positive f32, down to 2^-149), 0.0 where `t <= 0`, by arithmetic:
    /// `Ceil(Clip(t, -0.5, 1))` (Ceil takes (0, 1] to 1 and [-0.5, 0] to 0), as
    /// [`GraphBuilder::below_max`]; no gain, so no constant beyond the float16 range.
    fn above_zero(&mut self, hint: &str, t: &str) -> String {
        let clipped = self.b.clip(&format!("{hint}_clipped"), t, -0.5, 1.0);
        self.b.op("Ceil", hint, &[&clipped], vec![])
    }

    /// 1.0 where `d2 > r2`, 0.0 where `d2 <= r2` (`r2` the f32 constant R*R): [`Self::above_zero`]
    /// of `d2 - r2`. (Not a Clip between `r2` and its successor, three ops fewer: wonnx writes
    /// Clip bounds with one decimal, and the successor of 400 reads 400.0.)
    fn farther_than(&mut self, hint: &str, d2: &str, r2: f32) -> String {
        let r2 = self.b.scalar_f32("mp_nms_radius_sq", r2, 1);
        let gap = self.b.op("Sub", &format!("{hint}_gap"), &[d2, &r2], vec![]);
        self.above_zero(hint, &gap)
    }

    /// A 1x1 Conv of 0/1 weights: output channel `o` is the sum of the input channels `i` of
    /// the pairs `(o, i)` (in this decoder at most one of them non-zero, or two integers, or
    /// two squares: one rounding at most, in any summation order).
    fn mix(&mut self, hint: &str, x: &str, inputs: usize, outputs: usize, pairs: &[(usize, usize)]) -> String {
        let terms: Vec<(usize, usize, f32)> = pairs.iter().map(|&(o, i)| (o, i, 1.0)).collect();
        self.weighted(hint, x, inputs, outputs, &terms, None)
    }

    /// A 1x1 Conv: output channel `o` is the sum of `w * x[i]` over the terms `(o, i, w)`, plus
    /// `bias[o]`. The decoder's terms are exact products, at most two of them non-zero in any
    /// output with a bias of 0, or integers: one rounding at most, in any summation order.
    /// (Per-channel constants enter this way, not as a `[1, C, 1, 1]` operand of an element-wise
    /// op: onnx2tf 1.29.24 transposes a rank-4 constant a second time when it is broadcast
    /// against a tensor of another shape, see `lookup`.)
    fn weighted(
        &mut self,
        hint: &str,
        x: &str,
        inputs: usize,
        outputs: usize,
        terms: &[(usize, usize, f32)],
        bias: Option<&[f32]>,
    ) -> String {
        let mut weights = vec![0.0f32; outputs * inputs];
        for &(o, i, w) in terms {
            weights[o * inputs + i] = w;
        }
        let weights = self.b.const_f32(&format!("{hint}_weights"), &[outputs as i64, inputs as i64, 1, 1], &weights);
        let mut operands = vec![x.to_string(), weights];
        if let Some(bias) = bias {
            debug_assert_eq!(bias.len(), outputs);
            operands.push(self.b.const_f32(&format!("{hint}_bias"), &[outputs as i64], bias));
        }
        let operands: Vec<&str> = operands.iter().map(String::as_str).collect();
        self.b.op("Conv", hint, &operands, vec![proto::attr_ints("kernel_shape", &[1, 1])])
    }

    fn pick(&mut self, hint: &str, x: &str, sources: &[usize], inputs: usize) -> String {
        let sources: Vec<Option<usize>> = sources.iter().map(|&s| Some(s)).collect();
        self.b.pick_channels(hint, x, &sources, inputs)
    }

    /// The cells of positions `p`, `[B, 2n, ...]` (n y channels, then n x channels), as the
    /// reference's `cell`: `clamp(floor(p / stride + 0.5), 0, size - 1)`, computed as
    /// `floor(clip(p / stride + 0.5, 0.5, m - 0.5))` with `m` the larger grid side (the same
    /// for every non-NaN `p`, and its bounds are never 0, which a Clip-6 attribute cannot hold),
    /// then on a non-square grid `c - relu(c - (size - 1))` per axis (exact on integers; the
    /// per-axis `c - (size - 1)` by a 1x1 Conv's bias, see [`Self::weighted`]).
    fn cell(&mut self, hint: &str, p: &str, n: usize) -> String {
        let (h, w) = (self.h, self.w);
        let stride = self.b.scalar_f32("stride", self.stride, 1);
        let q = self.b.op("Div", &format!("{hint}_q"), &[p, &stride], vec![]);
        let half = self.b.scalar_f32("half", 0.5, 1);
        let q = self.b.op("Add", &format!("{hint}_q_half"), &[&q, &half], vec![]);
        let q = self.b.clip(&format!("{hint}_q_clamped"), &q, 0.5, h.max(w) as f32 - 0.5);
        let c = self.b.op("Floor", &format!("{hint}_floor"), &[&q], vec![]);
        if h == w {
            return c;
        }
        let last: Vec<f32> = (0..2 * n).map(|i| -(if i < n { h - 1 } else { w - 1 } as f32)).collect();
        let same: Vec<(usize, usize, f32)> = (0..2 * n).map(|i| (i, i, 1.0)).collect();
        let past = self.weighted(&format!("{hint}_past"), &c, 2 * n, 2 * n, &same, Some(&last));
        let past = self.b.op("Relu", &format!("{hint}_past_positive"), &[&past], vec![]);
        self.b.op("Sub", hint, &[&c, &past], vec![])
    }

    /// The flat cell indices `(cy*W + cx) * 2^64` of cells `[B, 2n, ...]` (y then x), `copies`
    /// times over: `[B, copies*n, ...]`, by a 1x1 Conv of weights `W` and 1, times the frame's
    /// `2^64` ([`Self::per_frame`]). Exact: integers below 2^24, times a power of two.
    fn flat_index(&mut self, hint: &str, c: &str, n: usize, copies: usize) -> String {
        let row = self.w as f32;
        let terms: Vec<(usize, usize, f32)> =
            (0..copies * n).flat_map(|o| [(o, o % n, row), (o, n + o % n, 1.0)]).collect();
        let flat = self.weighted(&format!("{hint}_unscaled"), c, 2 * n, copies * n, &terms, None);
        let scale = self.scale.clone();
        self.b.op("Mul", hint, &[&flat, &scale], vec![])
    }

    /// The value of `map` (`[B, C, H, W]`, `channels` = C, finite) at the cells `at`
    /// (`[B, C, 1, 1]`, scaled flat indices), `[B, C, 1, 1]`: `max(map - (i - at)^2)` over the
    /// grid by MaxPool, `i` the map of scaled indices ([`Self::make_cell_index`]). The square is 0 at
    /// the cell and +inf elsewhere (see [`INDEX_SCALE`]), so the max is the cell's value itself.
    /// Three element-wise ops and a MaxPool, where a one-hot, a product and a sum take six.
    fn lookup(&mut self, hint: &str, map: &str, at: &str) -> String {
        let index = self.cell_index.clone();
        let d = self.b.op("Sub", &format!("{hint}_diff"), &[&index, at], vec![]);
        let far = self.b.op("Mul", &format!("{hint}_far"), &[&d, &d], vec![]);
        let kept = self.b.op("Sub", &format!("{hint}_kept"), &[map, &far], vec![]);
        let cells = self.cells();
        self.b.max_over(hint, &kept, cells)
    }

    /// What every round reads, made once per frame from `v` (the clamped heatmaps), as tensors
    /// of the graph of `v`'s batch rather than constants ([`GraphBuilder::cell_maps`]: a
    /// `[1, 1, H, W]` constant operand of the lookups' Sub is transposed twice by onnx2tf
    /// 1.29.24, and with a symbolic batch no constant can have the other operand's shape).
    /// - `2^64` ([`INDEX_SCALE`]), `[B, 1, 1, 1]`: `(1 * 2^8)` squared three times, `1` the max
    ///   of the ones map. Every constant of the decoder is a float16 value (onnx2tf's float16
    ///   `.tflite` stores them so and computes in float32): the scaled indices are made by
    ///   products of tensors, and no converter folds those into a constant.
    /// - The scaled flat index of every cell, `i * 2^64`, `[B, 1, H, W]` (self.cell_index).
    /// - The ranks `RANK_BLOCK * (cells - i) - k`, `[B, 17, H, W]`: `cells - i` (a float16
    ///   integer up to 2048 cells), then a 1x1 Conv of weight `RANK_BLOCK` and bias `-k`.
    ///
    /// A NaN heatmap value makes the ones NaN at its cell, and so every read and the whole
    /// decode where MaxPool propagates NaN (heatmaps with NaN are outside the contract).
    fn per_frame(&mut self, v: &str) -> String {
        let cells = self.h * self.w;
        let maps = self.b.cell_maps(v, K, self.cells());
        let one = self.b.max_over("mp_one", maps.ones(), self.cells());
        let base = self.b.scalar_f32("mp_two_pow_8", INDEX_SCALE_ROOT, 1);
        let mut scale = self.b.op("Mul", "mp_two_pow_8_tensor", &[&one, &base], vec![]);
        for power in [16, 32, 64] {
            scale = self.b.op("Mul", &format!("mp_two_pow_{power}"), &[&scale, &scale], vec![]);
        }
        self.scale = scale.clone();
        let count = self.b.scalar_f32("mp_keypoints", K as f32, 1);
        self.keypoint_count = self.b.op("Mul", "mp_keypoints_tensor", &[&one, &count], vec![]);
        let index: Vec<f32> = (0..cells).map(|i| i as f32).collect();
        let index = self.b.per_cell_map("mp_cell_number", &maps, 1, &index);
        self.cell_index = self.b.op("Mul", "mp_cell_index", &[&index, &scale], vec![]);
        // Scan order (y, x, k): the first candidate gets the largest rank (see `RANK_BLOCK`).
        let left: Vec<f32> = (0..cells).map(|i| (cells - i) as f32).collect();
        let left = self.b.per_cell_map("mp_cells_left", &maps, 1, &left);
        let terms: Vec<(usize, usize, f32)> = (0..K).map(|k| (k, 0, RANK_BLOCK as f32)).collect();
        let bias: Vec<f32> = (0..K).map(|k| -(k as f32)).collect();
        self.weighted("mp_scan_rank", &left, 1, K, &terms, Some(&bias))
    }

    /// The largest value over channels and cells, `[B, 1, 1, 1]`.
    fn global_max(&mut self, hint: &str, x: &str, channels: usize) -> String {
        let cells = self.cells();
        let per_channel = self.b.max_over(&format!("{hint}_per_channel"), x, cells);
        let column = self.b.reshape(&format!("{hint}_column"), &per_channel, &[-1, 1, channels as i64, 1]);
        self.b.max_over(hint, &column, Cells { height: channels, width: 1 })
    }

    /// `(dy^2 + dx^2)` per keypoint of positions `a - b` (each `[y | x]`, 34 channels): two
    /// products, then their sum by a 1x1 Conv (one rounding, as the reference's
    /// `squared_distance`).
    fn squared_distance(&mut self, hint: &str, a: &str, b: &str) -> String {
        let d = self.b.op("Sub", &format!("{hint}_d"), &[a, b], vec![]);
        let d2 = self.b.op("Mul", &format!("{hint}_d_sq"), &[&d, &d], vec![]);
        let pairs: Vec<(usize, usize)> = (0..K).flat_map(|k| [(k, Y + k), (k, X + k)]).collect();
        self.mix(hint, &d2, 2 * K, K, &pairs)
    }

    /// The root's keypoint one-hot `[B, 17, 1, 1]` and its pose state `[B, STATE, 1, 1]` from
    /// the top rank (`top`, `[B, 1, 1, 1]`): the rank's cell i and keypoint k, exactly (see
    /// `RANK_BLOCK`); the root's position and cell are `refined` (`[y | x | cell]` per keypoint)
    /// read at i, its score cell is i itself. Nothing live (top 0) reads as keypoint
    /// `RANK_BLOCK - 1`, which is none: the one-hot and the state are zeros.
    fn root_state(&mut self, p: &str, top: &str, refined: &str, cells: usize) -> (String, String) {
        let last_rank = (RANK_BLOCK * cells) as f32;
        let top = self.b.clip(&format!("{p}_top_clamped"), top, 1.0, last_rank);
        let last_rank = self.b.scalar_f32("mp_last_rank", last_rank, 1);
        let place = self.b.op("Sub", &format!("{p}_root_place"), &[&last_rank, &top], vec![]);
        let block = self.b.scalar_f32("mp_rank_block_inverse", 1.0 / RANK_BLOCK as f32, 1);
        let place = self.b.op("Mul", &format!("{p}_root_place_blocks"), &[&place, &block], vec![]);
        let cell = self.b.op("Floor", &format!("{p}_root_cell"), &[&place], vec![]);
        let keypoint = self.b.op("Sub", &format!("{p}_root_keypoint_fraction"), &[&place, &cell], vec![]);
        let block = self.b.scalar_f32("mp_rank_block", RANK_BLOCK as f32, 1);
        let keypoint = self.b.op("Mul", &format!("{p}_root_keypoint_index"), &[&keypoint, &block], vec![]);
        // One-hot: 1 - clip((keypoint - k)^2, -1, 1) over the keypoints k (integers). The gaps by a
        // 1x1 Conv from the one channel (weights 1, bias -k), not a [1, 17, 1, 1] constant less a
        // [B, 1, 1, 1] tensor: onnx2tf lays such a constant out on the width axis (neither operand
        // tells it where the channels are) and then fails on the Conv that reads the one-hot.
        let ones = self.b.const_f32("mp_keypoint_fan_out", &[K as i64, 1, 1, 1], &[1.0; K]);
        let bias = self.b.const_f32(
            "mp_keypoint_index_negated",
            &[K as i64],
            &(0..K).map(|k| -(k as f32)).collect::<Vec<_>>(),
        );
        let d = self.b.op(
            "Conv",
            &format!("{p}_root_keypoint_gap"),
            &[&keypoint, &ones, &bias],
            vec![proto::attr_ints("kernel_shape", &[1, 1])],
        );
        let d2 = self.b.op("Mul", &format!("{p}_root_keypoint_gap_sq"), &[&d, &d], vec![]);
        let other = self.b.clip(&format!("{p}_root_keypoint_other"), &d2, -1.0, 1.0);
        let one = self.b.scalar_f32("one", 1.0, 1);
        let root_keypoint = self.b.op("Sub", &format!("{p}_root_keypoint"), &[&one, &other], vec![]);

        let scale = self.scale.clone();
        let at = self.b.op("Mul", &format!("{p}_root_index"), &[&cell, &scale], vec![]);
        let values = self.lookup(&format!("{p}_root_values"), refined, &at);
        let thrice: Vec<usize> = (0..3 * K).map(|c| c % K).collect();
        let mask = self.pick(&format!("{p}_root_mask"), &root_keypoint, &thrice, K);
        let values = self.b.op("Mul", &format!("{p}_root_state_values"), &[&values, &mask], vec![]);
        let score_cell = self.b.op("Mul", &format!("{p}_root_score_cell"), &[&root_keypoint, &at], vec![]);
        let into_state = |first: usize, n: usize| -> Vec<Option<usize>> {
            (0..STATE).map(|c| (first..first + n).contains(&c).then(|| c - first)).collect()
        };
        let values = self.b.pick_channels(&format!("{p}_root_state_yxc"), &values, &into_state(Y, 3 * K), 3 * K);
        let score_cell =
            self.b.pick_channels(&format!("{p}_root_state_score_cell"), &score_cell, &into_state(SCORE_CELL, K), K);
        let state = self.b.op("Add", &format!("{p}_root_state"), &[&values, &score_cell], vec![]);
        (root_keypoint, state)
    }

    /// One level: every edge of `level` that is active for the root (`root_keypoint`,
    /// `[B, 17, 1, 1]` one-hot) decodes its target from its source, as the reference's
    /// `traverse`; the others add zeros to the state.
    fn level(&mut self, hint: &str, state: &str, root_keypoint: &str, maps: &LevelMaps) -> String {
        let e = maps.ends.len();
        let roots = &maps.roots;
        let (sources, targets): (Vec<usize>, Vec<usize>) = maps.ends.iter().copied().unzip();
        let pairs: Vec<(usize, usize)> =
            (0..3 * e).flat_map(|o| (0..K).filter(move |&k| roots[o % e][k]).map(move |k| (o, k))).collect();
        let active = self.mix(&format!("{hint}_active"), root_keypoint, K, 3 * e, &pairs);
        let pos: Vec<usize> = sources.iter().map(|s| Y + s).chain(sources.iter().map(|s| X + s)).collect();
        let source = self.pick(&format!("{hint}_source"), state, &pos, STATE);
        let cell: Vec<usize> = (0..2 * e).map(|i| CELL + sources[i % e]).collect();
        let source_cell = self.pick(&format!("{hint}_source_cell"), state, &cell, STATE);

        // p' = source + displacement at the source's cell.
        let disp = self.lookup(&format!("{hint}_disp"), &maps.disp, &source_cell);
        let p = self.b.op("Add", &format!("{hint}_displaced"), &[&source, &disp], vec![]);
        // First refinement's cell c0; the second's is the target's cell of its position there
        // (read from the frame's map); the position there and its cell are the target's.
        let c0 = self.cell(&format!("{hint}_cell0"), &p, e);
        let c0 = self.flat_index(&format!("{hint}_index0"), &c0, e, 1);
        let c1 = self.lookup(&format!("{hint}_index1"), &maps.cells, &c0);
        let thrice: Vec<usize> = (0..3 * e).map(|i| i % e).collect();
        let c1 = self.pick(&format!("{hint}_index1_thrice"), &c1, &thrice, e);
        let refined = self.lookup(&format!("{hint}_refined"), &maps.refined, &c1);

        let kept = self.b.op("Mul", &format!("{hint}_kept"), &[&refined, &active], vec![]);
        let pairs: Vec<(usize, usize)> = (0..e)
            .filter(|&i| roots[i].contains(&true))
            .flat_map(|i| {
                let t = targets[i];
                [(Y + t, i), (X + t, e + i), (CELL + t, 2 * e + i), (SCORE_CELL + t, 2 * e + i)]
            })
            .collect();
        let scattered = self.mix(&format!("{hint}_to_keypoints"), &kept, 3 * e, STATE, &pairs);
        self.b.op("Add", hint, &[state, &scattered], vec![])
    }
}

/// Appends the multi-pose decoder for `spec` to `b`.
pub fn build(b: &mut GraphBuilder, spec: &MultiPoseSpec) -> Result<()> {
    let (h, w) = spec.grid;
    let cells = h * w;
    if cells == 0 || RANK_BLOCK * cells > 1 << 24 || spec.params.max_poses == 0 {
        return Err(Error::Unsupported(format!(
            "a {h}x{w} grid or {} poses is outside the decoder's range",
            spec.params.max_poses
        )));
    }
    if spec.forms == Forms::ArgMaxGather {
        gather::build(b, spec);
        return Ok(());
    }
    let mut g = Builder {
        b,
        h,
        w,
        stride: spec.stride as f32,
        scale: String::new(),
        keypoint_count: String::new(),
        cell_index: String::new(),
    };

    let frame = frame(&mut g, spec);
    let plan = level_plan(&mut g, &frame);
    let (pose_rows, score_rows) = rounds(&mut g, spec, &frame, &plan);
    outputs(&mut g, spec, &pose_rows, &score_rows);
    Ok(())
}

/// What the rounds read, made once per frame: the NCHW heads, the clamped heatmaps `v`, their
/// ranks and scores, the live candidates, every cell's position per keypoint and its cell.
struct Frame {
    displacement_fwd: String,
    displacement_bwd: String,
    v: String,
    ranks: String,
    scores: String,
    one: String,
    live: String,
    /// The threshold on `v` (a logit in sigmoid mode).
    threshold_value: f32,
    positions: String,
    position_cells: String,
    refined: String,
}

/// The per-frame part (`docs/multi-pose-decoder.md`, "Once per frame").
fn frame(g: &mut Builder<'_>, spec: &MultiPoseSpec) -> Frame {
    let [heatmaps, offsets, displacement_fwd, displacement_bwd] = heads_nchw(g.b, spec);
    let v = g.b.clamp_finite("mp_heatmaps_finite", &heatmaps);
    let ranks = g.per_frame(&v);
    let scores = scores_of(g.b, spec, &heatmaps, &v);
    let window = local_max_window(g.b, &v);
    let is_local_max = g.b.below_max("mp_not_local_max", &v, &window);
    let one = g.b.scalar_f32("one", 1.0, 1);
    let is_local_max = g.b.op("Sub", "mp_is_local_max", &[&one, &is_local_max], vec![]);
    let threshold = decision_threshold(spec);
    let threshold_value = threshold;
    let threshold = g.b.scalar_f32("mp_threshold", threshold, 1);
    let below = g.b.op("Sub", "mp_threshold_gap", &[&threshold, &v], vec![]);
    let below = g.above_zero("mp_below_threshold", &below);
    let passes = g.b.op("Sub", "mp_passes", &[&one, &below], vec![]);
    let live = g.b.op("Mul", "mp_live", &[&is_local_max, &passes], vec![]);

    // Every cell's position per keypoint (`[y | x]`, offsets plus the cell's pixel position,
    // one f32 addition as the reference), and the flat index of that position's cell: where a
    // refinement at that cell leads.
    let grid = g.cells();
    let maps = g.b.cell_maps(&v, K, grid);
    let positions = g.b.cell_positions("mp_positions", &offsets, &maps, spec.stride);
    let position_cells = g.cell("mp_position_cells", &positions, K);
    let position_cells = g.flat_index("mp_position_index", &position_cells, K, 1);
    // [y | x | cell] per keypoint, 51 channels.
    let refined = g.b.pick_channels(
        "mp_refined_yx",
        &positions,
        &(0..3 * K).map(|c| (c < 2 * K).then_some(c)).collect::<Vec<_>>(),
        2 * K,
    );
    let refined_cells = g.b.pick_channels(
        "mp_refined_cells",
        &position_cells,
        &(0..3 * K).map(|c| (c >= 2 * K).then(|| c - 2 * K)).collect::<Vec<_>>(),
        K,
    );
    let refined = g.b.op("Add", "mp_refined", &[&refined, &refined_cells], vec![]);

    Frame {
        displacement_fwd,
        displacement_bwd,
        v,
        ranks,
        scores,
        one,
        live,
        threshold_value,
        positions,
        position_cells,
        refined,
    }
}

/// The maps each level of the traversal reads, reordered once per frame to its edges.
fn level_plan(g: &mut Builder<'_>, f: &Frame) -> Vec<LevelMaps> {
    let (displacement_fwd, displacement_bwd) = (&f.displacement_fwd, &f.displacement_bwd);
    let (position_cells, refined) = (&f.position_cells, &f.refined);
    let levels = schedule();
    let mut plan: Vec<LevelMaps> = vec![];
    for (dir, levels) in levels.iter().enumerate() {
        let (name, disp) = if dir == 0 { ("back", displacement_bwd) } else { ("forth", displacement_fwd) };
        // The head with a channel of zeros: onnxruntime CPU rewrites a Conv reading 32
        // channels (a multiple of 4) to NCHWc and reorders its output, so the levels' maps are
        // picked from 33 channels, behind one such Conv instead of eight.
        let d = 2 * POSE_CHAIN.len();
        let with_zeros: Vec<Option<usize>> = (0..=d).map(|c| (c < d).then_some(c)).collect();
        let disp = g.b.pick_channels(&format!("mp_{name}_displacements"), disp, &with_zeros, d);
        for (l, level) in levels.iter().enumerate() {
            let hint = format!("mp_{name}{l}");
            // Padded with never-active edges (keypoint 0 to itself, channel 0) to a count that is
            // not a multiple of 4: onnxruntime CPU rewrites a MaxPool over a multiple of its
            // NCHWc block (8 or 16) channels into that layout, reordering the whole map first.
            let n = padded_edges(level.edges.len());
            let mut ends: Vec<(usize, usize)> = level
                .edges
                .iter()
                .map(|&e| {
                    let (parent, child) = POSE_CHAIN[e];
                    if dir == 0 {
                        (child, parent)
                    } else {
                        (parent, child)
                    }
                })
                .collect();
            ends.resize(n, (0, 0));
            let mut roots = level.roots.clone();
            roots.resize(n, [false; K]);
            let mut edges = level.edges.clone();
            edges.resize(n, 0);
            let disp_channels: Vec<usize> =
                edges.iter().copied().chain(edges.iter().map(|e| e + POSE_CHAIN.len())).collect();
            let cell_channels: Vec<usize> = (0..n).map(|i| ends[i].1).collect();
            let refined_channels: Vec<usize> = (0..3 * n).map(|i| (i / n) * K + ends[i % n].1).collect();
            let maps = LevelMaps {
                hint: hint.clone(),
                ends: ends.clone(),
                roots,
                disp: g.pick(&format!("{hint}_disp_map"), &disp, &disp_channels, d + 1),
                cells: g.pick(&format!("{hint}_cell_map"), position_cells, &cell_channels, K),
                refined: g.pick(&format!("{hint}_refined_map"), refined, &refined_channels, 3 * K),
            };
            plan.push(maps);
        }
    }

    plan
}

/// The N rounds (`docs/multi-pose-decoder.md`, "N rounds"): each round's `(x, y, score)` rows
/// and its pose score.
fn rounds(g: &mut Builder<'_>, spec: &MultiPoseSpec, f: &Frame, plan: &[LevelMaps]) -> (Vec<String>, Vec<String>) {
    let cells = spec.grid.0 * spec.grid.1;
    let (v, ranks, scores, one, positions, refined) = (&f.v, &f.ranks, &f.scores, &f.one, &f.positions, &f.refined);
    let threshold_value = f.threshold_value;
    let mut live = f.live.clone();
    // R^2 in f32, as the reference squares it; made where first read (one round reads none).
    let r2 = spec.params.nms_radius * spec.params.nms_radius;
    let n = spec.params.max_poses;
    // Every pose so far, side by side in channels: slot j's `[y | x]` at channels 34j..34j+34
    // (`[B, 34 N, 1, 1]`), placed by 1x1 Convs. (Not on the last axis, `[B, 34, 1, N - 1]`, by
    // products with `[1, 1, 1, N - 1]` one-hot constants: onnx2tf lays such a constant out
    // wrongly, see `lookup`.)
    let per_yx = 2 * K;
    let mut so_far: Option<String> = None;
    let mut pose_rows = vec![];
    let mut score_rows = vec![];
    for r in 0..n {
        let p = format!("mp_round{r}");
        // The best live candidate. With a threshold >= 0 every live value is >= 0 and the dead
        // cells read 0 (v * 0); otherwise they are taken to -2^64 (the frame's scale), below
        // every live one (the threshold's logit is above -104 for any T > 0; with T = 0, live
        // values below -2^64 lose to the dead cells). The ranks keep them apart by multiplying
        // with `live` again.
        let masked = if threshold_value < 0.0 {
            let dead = g.b.op("Sub", &format!("{p}_dead"), &[&live, one], vec![]);
            let scale = g.scale.clone();
            let dead = g.b.op("Mul", &format!("{p}_dead_low"), &[&dead, &scale], vec![]);
            let kept = g.b.op("Mul", &format!("{p}_kept"), &[v, &live], vec![]);
            g.b.op("Add", &format!("{p}_masked"), &[&kept, &dead], vec![])
        } else {
            g.b.op("Mul", &format!("{p}_masked"), &[v, &live], vec![])
        };
        let best = g.global_max(&format!("{p}_best"), &masked, K);
        // The live cells' ranks at the best value (`1 - below_max`: exactly 0 or 1), 0 elsewhere:
        // the top rank is the first best live candidate's, or 0 when nothing is live.
        let below = g.b.below_max(&format!("{p}_below_best"), &masked, &best);
        let at_best = g.b.op("Sub", &format!("{p}_at_best"), &[one, &below], vec![]);
        let live_ranks = g.b.op("Mul", &format!("{p}_live_ranks"), &[&live, ranks], vec![]);
        let ranked = g.b.op("Mul", &format!("{p}_ranked"), &[&live_ranks, &at_best], vec![]);
        let top = g.global_max(&format!("{p}_top"), &ranked, K);
        // `found` is 1, or 0 when nothing is live (top 0: every cell's ranked value is 0 then).
        let found = g.b.clip(&format!("{p}_found_clipped"), &top, -1.0, 1.0);
        let found = g.b.op("Relu", &format!("{p}_found"), &[&found], vec![]);
        let (root_keypoint, mut state) = g.root_state(&p, &top, refined, cells);
        for maps in plan {
            state = g.level(&format!("{p}_{}", &maps.hint[3..]), &state, &root_keypoint, maps);
        }
        let yx: Vec<usize> = (0..2 * K).collect();
        let pose = g.pick(&format!("{p}_pose_yx"), &state, &yx, STATE);
        let score_cells: Vec<usize> = (SCORE_CELL..SCORE_CELL + K).collect();
        let score_cells = g.pick(&format!("{p}_score_cells"), &state, &score_cells, STATE);
        let score = g.lookup(&format!("{p}_keypoint_scores_read"), scores, &score_cells);
        // An empty round reads cell 0: its scores are zeros, as its positions.
        let score = g.b.op("Mul", &format!("{p}_keypoint_scores"), &[&score, &found], vec![]);

        // The pose score: keypoint scores not within R of the same keypoint of an earlier pose.
        // The pose joins the earlier ones; then one 1x1 Conv takes it less each of them
        // (`[B, 34 r, 1, 1]`, weights 1 and -1: one rounding, as a Sub), and per keypoint the
        // count of the earlier poses it is near (`r` less the count of those it is far from, a
        // Conv with bias r: integers) clipped to 1 says whether any is near.
        let mut counted = score.clone();
        if n > 1 {
            let place: Vec<Option<usize>> = (0..n * per_yx).map(|c| (c / per_yx == r).then_some(c % per_yx)).collect();
            let placed = g.b.pick_channels(&format!("{p}_pose_placed"), &pose, &place, per_yx);
            let poses_so_far = match so_far {
                None => placed,
                Some(acc) => g.b.op("Add", &format!("{p}_poses_so_far"), &[&acc, &placed], vec![]),
            };
            if r > 0 {
                let terms: Vec<(usize, usize, f32)> =
                    (0..r * per_yx).flat_map(|o| [(o, r * per_yx + o % per_yx, 1.0), (o, o, -1.0)]).collect();
                let d = g.weighted(&format!("{p}_vs_earlier_d"), &poses_so_far, n * per_yx, r * per_yx, &terms, None);
                let d2 = g.b.op("Mul", &format!("{p}_vs_earlier_d_sq"), &[&d, &d], vec![]);
                let pairs: Vec<(usize, usize)> = (0..r * K)
                    .flat_map(|o| [(o, (o / K) * per_yx + Y + o % K), (o, (o / K) * per_yx + X + o % K)])
                    .collect();
                let d2 = g.mix(&format!("{p}_vs_earlier_d2"), &d2, r * per_yx, r * K, &pairs);
                let far = g.farther_than(&format!("{p}_vs_earlier_far"), &d2, r2);
                let terms: Vec<(usize, usize, f32)> =
                    (0..K).flat_map(|k| (0..r).map(move |j| (k, j * K + k, -1.0))).collect();
                let near =
                    g.weighted(&format!("{p}_vs_earlier_near_count"), &far, r * K, K, &terms, Some(&[r as f32; K]));
                let near = g.b.clip(&format!("{p}_vs_earlier_near"), &near, -1.0, 1.0);
                let keep = g.b.op("Sub", &format!("{p}_vs_earlier_keep"), &[one, &near], vec![]);
                counted = g.b.op("Mul", &format!("{p}_counted"), &[&counted, &keep], vec![]);
            }
            so_far = Some(poses_so_far);
        }
        let ones = g.b.const_f32(&format!("{p}_sum_weights"), &[1, K as i64, 1, 1], &[1.0; NUM_KEYPOINTS]);
        let sum = g.b.op(
            "Conv",
            &format!("{p}_score_sum"),
            &[&counted, &ones],
            vec![proto::attr_ints("kernel_shape", &[1, 1])],
        );
        // Divided by a tensor, not a constant: onnx2tf writes a division by a constant as a
        // product with its reciprocal, and the float16 .tflite rounds 1/17 to float16 (pose
        // scores 2.4e-4 off).
        let count = g.keypoint_count.clone();
        let mean = g.b.op("Div", &format!("{p}_pose_score_found"), &[&sum, &count], vec![]);
        // mean + (found - 1): the mean, or -1 for an empty slot (whose scores are zeros).
        let empty = g.b.op("Sub", &format!("{p}_empty"), &[&found, one], vec![]);
        score_rows.push(g.b.op("Add", &format!("{p}_pose_score"), &[&mean, &empty], vec![]));

        // Rows (x, y, score) per keypoint, as the single-pose decoder lays them out.
        let xy: Vec<Option<usize>> = (0..3 * K)
            .map(|c| match c % 3 {
                0 => Some(X + c / 3),
                1 => Some(Y + c / 3),
                _ => None,
            })
            .collect();
        let ss: Vec<Option<usize>> = (0..3 * K).map(|c| (c % 3 == 2).then_some(c / 3)).collect();
        let rxy = g.b.pick_channels(&format!("{p}_rows_xy"), &state, &xy, STATE);
        let rs = g.b.pick_channels(&format!("{p}_rows_score"), &score, &ss, K);
        pose_rows.push(g.b.op("Add", &format!("{p}_rows"), &[&rxy, &rs], vec![]));

        if r + 1 < n {
            // Candidates within R of the pose's same keypoint are no longer live (an empty round
            // has no live candidate left to suppress). That takes the root too: its keypoint's
            // position is read from `positions` at its cell, so d2 = 0 <= R^2 (the reference's
            // "taken" mask matters only for non-finite positions or R, outside the contract).
            let d2 = g.squared_distance(&format!("{p}_nms_d2"), positions, &pose);
            let keep = g.farther_than(&format!("{p}_nms_keep"), &d2, r2);
            live = g.b.op("Mul", &format!("{p}_live_next"), &[&live, &keep], vec![]);
        }
    }

    (pose_rows, score_rows)
}

/// The four heads, NCHW: NHWC heads through a Transpose each (both forms read the same nodes).
fn heads_nchw(b: &mut GraphBuilder, spec: &MultiPoseSpec) -> [String; 4] {
    let heads = [&spec.heatmaps, &spec.offsets, &spec.displacement_fwd, &spec.displacement_bwd];
    match spec.layout {
        Layout::Nchw => heads.map(String::clone),
        Layout::Nhwc => {
            let hints = ["mp_heatmaps_nchw", "mp_offsets_nchw", "mp_displacement_fwd_nchw", "mp_displacement_bwd_nchw"];
            std::array::from_fn(|i| b.nhwc_to_nchw(hints[i], heads[i]))
        }
    }
}

/// The keypoint scores of every cell: the sigmoid of the heatmaps as they come (the same values
/// as of the clamped `v`: sigmoid(+-FLT_MAX) is sigmoid(+-inf)), the single-pose decoder's node;
/// `v` itself for raw scores.
fn scores_of(b: &mut GraphBuilder, spec: &MultiPoseSpec, heatmaps: &str, v: &str) -> String {
    match spec.scores {
        ScoreMode::Sigmoid => b.op("Sigmoid", "mp_scores", &[heatmaps], vec![]),
        ScoreMode::Raw => v.to_string(),
    }
}

/// The max of each cell's 3x3 window of `v` (the reference's local maximum, radius 1), padded
/// with MaxPool's -inf at the borders.
fn local_max_window(b: &mut GraphBuilder, v: &str) -> String {
    b.op(
        "MaxPool",
        "mp_local_max",
        &[v],
        vec![
            proto::attr_ints("kernel_shape", &[3, 3]),
            proto::attr_ints("pads", &[1, 1, 1, 1]),
            proto::attr_ints("strides", &[1, 1]),
        ],
    )
}

/// Slot r of the outputs gets round r's rows and pose score.
fn outputs(g: &mut Builder<'_>, spec: &MultiPoseSpec, pose_rows: &[String], score_rows: &[String]) {
    let n = spec.params.max_poses;
    // Slot r of the outputs: 1x1 Convs placing each round's channels, added (one term each).
    let per_pose = K * VALUES_PER_KEYPOINT;
    let mut poses: Option<String> = None;
    let mut pose_scores: Option<String> = None;
    for (r, (rows, score)) in pose_rows.iter().zip(score_rows).enumerate() {
        let place: Vec<Option<usize>> =
            (0..n * per_pose).map(|c| (c / per_pose == r).then_some(c % per_pose)).collect();
        let placed = g.b.pick_channels(&format!("mp_slot{r}_rows"), rows, &place, per_pose);
        poses = Some(match poses {
            None => placed,
            Some(acc) => g.b.op("Add", &format!("mp_slots_to{r}_rows"), &[&acc, &placed], vec![]),
        });
        // [B, 1, 1, 1] to channel r of [B, N, 1, 1] by a 1x1 Conv, not times a [1, N, 1, 1]
        // one-hot constant: onnx2tf lays such a constant out on the width axis (see `root_state`).
        let placed = g.b.pick_channels(
            &format!("mp_slot{r}_score"),
            score,
            &(0..n).map(|c| (c == r).then_some(0)).collect::<Vec<_>>(),
            1,
        );
        pose_scores = Some(match pose_scores {
            None => placed,
            Some(acc) => g.b.op("Add", &format!("mp_slots_to{r}_score"), &[&acc, &placed], vec![]),
        });
    }
    let poses = poses.expect("max_poses >= 1");
    let pose_scores = pose_scores.expect("max_poses >= 1");
    let shape = g.b.const_i64("mp_poses_shape", &[4], &[-1, n as i64, K as i64, VALUES_PER_KEYPOINT as i64]);
    g.b.op_into("Reshape", "mp_poses", &[&poses, &shape], vec![], &spec.poses);
    let shape = g.b.const_i64("mp_pose_scores_shape", &[2], &[-1, n as i64]);
    g.b.op_into("Reshape", "mp_pose_scores", &[&pose_scores, &shape], vec![], &spec.pose_scores);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn scaled_indices_are_exact_and_apart_by_infinity() {
        assert_eq!(INDEX_SCALE, 2f32.powi(64));
        let last = ((1 << 24) - 1) as f32 * INDEX_SCALE;
        assert_eq!(last / INDEX_SCALE, ((1 << 24) - 1) as f32);
        let one_apart = INDEX_SCALE - 0.0;
        assert_eq!(one_apart * one_apart, f32::INFINITY);
        assert_eq!(f32::MIN - f32::INFINITY, f32::NEG_INFINITY);
    }

    /// A constant's dims and values, by name.
    type Constants = HashMap<String, (Vec<i64>, Vec<f32>)>;

    /// The decoder's nodes and constants for NCHW heads on an `h x w` grid, with every tensor's
    /// shape (the few ops it emits, propagated from the heads').
    fn decoder_shapes(
        h: usize,
        w: usize,
        n: usize,
    ) -> (Vec<onnx_protobuf::NodeProto>, Constants, HashMap<String, Vec<i64>>) {
        use crate::decoders::graph::NameAllocator;
        let spec = MultiPoseSpec {
            heatmaps: "heatmaps".into(),
            offsets: "offsets".into(),
            displacement_fwd: "fwd".into(),
            displacement_bwd: "bwd".into(),
            layout: Layout::Nchw,
            grid: (h, w),
            stride: 16,
            scores: ScoreMode::Sigmoid,
            params: MultiPoseParams::new(n),
            poses: "poses".into(),
            pose_scores: "pose_scores".into(),
            forms: Forms::Thin,
        };
        let mut b = GraphBuilder::new(13, NameAllocator::new(Default::default()));
        build(&mut b, &spec).unwrap();
        let (nodes, initializers) = b.finish();
        let mut constants = HashMap::new();
        let mut shapes: HashMap<String, Vec<i64>> = HashMap::new();
        for t in &initializers {
            let values = proto::tensor_f32_values(t)
                .unwrap_or_else(|| proto::tensor_i64_values(t).unwrap().iter().map(|&v| v as f32).collect());
            constants.insert(t.name.clone(), (t.dims.clone(), values));
            shapes.insert(t.name.clone(), t.dims.clone());
        }
        let (h, w) = (h as i64, w as i64);
        for (head, c) in [("heatmaps", 17), ("offsets", 34), ("fwd", 32), ("bwd", 32)] {
            shapes.insert(head.into(), vec![1, c, h, w]);
        }
        let ints = |node: &onnx_protobuf::NodeProto, name: &str| {
            node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
        };
        for node in &nodes {
            let input = |i: usize| shapes[&node.input[i]].clone();
            let shape = match node.op_type.as_str() {
                "Add" | "Sub" | "Mul" | "Div" => {
                    let (a, b) = (input(0), input(1));
                    let rank = a.len().max(b.len());
                    let dim = |s: &Vec<i64>, i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
                    (0..rank)
                        .map(|i| {
                            let (x, y) = (dim(&a, i), dim(&b, i));
                            assert!(x == y || x == 1 || y == 1, "{}: {a:?} {b:?}", node.name);
                            x.max(y)
                        })
                        .collect()
                }
                "Conv" => {
                    let (x, weights) = (input(0), input(1));
                    let pads = ints(node, "pads").unwrap_or(vec![0; 4]);
                    assert_eq!(x[1], weights[1], "{}", node.name);
                    let (kh, kw) = (weights[2], weights[3]);
                    vec![x[0], weights[0], x[2] + pads[0] + pads[2] - kh + 1, x[3] + pads[1] + pads[3] - kw + 1]
                }
                "MaxPool" => {
                    let x = input(0);
                    let k = ints(node, "kernel_shape").unwrap();
                    let pads = ints(node, "pads").unwrap_or(vec![0; 4]);
                    vec![x[0], x[1], x[2] + pads[0] + pads[2] - k[0] + 1, x[3] + pads[1] + pads[3] - k[1] + 1]
                }
                "Reshape" => {
                    let (x, to) = (input(0), &constants[&node.input[1]].1);
                    let known: i64 = to.iter().filter(|&&d| d > 0.0).map(|&d| d as i64).product();
                    let all: i64 = x.iter().product();
                    to.iter().map(|&d| if d < 0.0 { all / known } else { d as i64 }).collect()
                }
                "Clip" | "Sigmoid" | "Relu" | "Floor" | "Ceil" => input(0),
                op => panic!("{}: {op} not expected", node.name),
            };
            shapes.insert(node.output[0].clone(), shape);
        }
        (nodes, constants, shapes)
    }

    fn is_float16(v: f32) -> bool {
        // 11 significant bits, within float16's range (subnormals aside: none here).
        v == 0.0 || (v.abs() <= 65504.0 && (v * 2f32.powi(10 - v.abs().log2().floor() as i32)).fract() == 0.0)
    }

    #[test]
    fn onnx2tf_reads_every_constant_as_onnx_means_it() {
        for (h, w, n) in [(17, 17, 5), (23, 17, 3), (17, 23, 2), (1, 1, 2), (33, 33, 10)] {
            let (nodes, constants, shapes) = decoder_shapes(h, w, n);
            for node in nodes.iter().filter(|n| ["Add", "Sub", "Mul", "Div"].contains(&n.op_type.as_str())) {
                for (c, other) in [(0, 1), (1, 0)] {
                    let Some((dims, values)) = constants.get(&node.input[c]) else { continue };
                    let other = &shapes[&node.input[other]];
                    // One value: a map would be transposed by onnx2tf unless it had the other
                    // operand's shape, which no constant has when the batch is symbolic.
                    assert!(values.len() == 1, "{}: {dims:?} against {other:?}", node.name);
                    if node.op_type == "Div" && c == 1 {
                        assert!(values.iter().all(|v| v.log2().fract() == 0.0), "{}: divides by {values:?}", node.name);
                    }
                }
            }
            // Every constant a float16 value (onnx2tf's float16 .tflite stores them so), but the
            // clamps to +-FLT_MAX.
            for (name, (_, values)) in &constants {
                if !name.ends_with("lowest") && !name.ends_with("highest") {
                    assert!(values.iter().all(|&v| is_float16(v)), "{name}: {values:?}");
                }
            }
        }
        assert!(is_float16(2048.0) && is_float16(34848.0) && is_float16(-0.5) && is_float16(0.0625));
        assert!(!is_float16(2049.0) && !is_float16(1.0 / 17.0) && !is_float16(65536.0));
    }

    #[test]
    fn the_schedule_decodes_every_keypoint_once_from_its_reference_source() {
        let [back, forth] = schedule();
        let edges = |levels: &[Level]| levels.iter().map(|l| l.edges.len()).collect::<Vec<_>>();
        assert_eq!(edges(&back), [2, 4, 6, 4]);
        assert_eq!(edges(&forth), [4, 6, 4, 2]);
        for root in 0..K {
            // The level after which each keypoint is known, over both directions.
            let mut known: [Option<usize>; K] = [None; K];
            known[root] = Some(0);
            for (dir, levels) in [&back, &forth].into_iter().enumerate() {
                for (l, level) in levels.iter().enumerate() {
                    let at = dir * 4 + l;
                    for (i, &e) in level.edges.iter().enumerate() {
                        if !level.roots[i][root] {
                            continue;
                        }
                        let (parent, child) = POSE_CHAIN[e];
                        let (source, target) = if dir == 0 { (child, parent) } else { (parent, child) };
                        assert!(known[source].is_some_and(|s| s <= at), "root {root} edge {e}: source unknown");
                        assert!(known[target].is_none(), "root {root} edge {e}: target decoded twice");
                        known[target] = Some(at + 1);
                    }
                }
            }
            assert!(known.iter().all(Option::is_some), "root {root}");
        }
    }
}
