//! The multi-pose decoder appended to a model (work in progress: built and checked in tract
//! against [`crate::reference::multi_pose`], not yet offered by the command line, which waits for
//! its cost to come down: see `docs/multi-pose-decoder.md`).
//!
//! `poses [B, N, 17, 3]` (x, y, score per keypoint, model-input pixels) and `pose_scores [B, N]`,
//! slots past the poses found at -1 with zero keypoints: tfjs posenet 2.2.2's
//! `decodeMultiplePoses` as N unrolled rounds of "the best live candidate", with the reference's
//! f32 arithmetic (see its module doc for every rounding). The ops are the single-pose decoder's
//! ([`crate::decoders::graph`]) plus Floor and Relu; no comparison, no bool tensor, no Concat.
//! NCHW heads only, so far.
//!
//! Per frame: `v` the clamped heatmaps; `live`, 1.0 at the candidates (a 3x3 MaxPool equal to
//! `v`, and `v >= thr`); every candidate's position (offsets plus the cell grid); the heads the
//! traversal reads, reordered by 1x1 Convs to the 16 edges' sources and targets.
//!
//! Per round: the best live candidate (max over the grid by MaxPool, over the channels by a
//! MaxPool on a reshape; ties to the first in scan order `(y, x, k)` by a rank, as single pose);
//! the root's position and score by sums of one term; the pose in 4 backward then 4 forward
//! sweeps, each over all 16 edges at once, masked to the edges whose source is decoded and whose
//! target is not (the chain is a tree of depth 4, and each target depends only on its source,
//! so level by level is tfjs's arithmetic); then the candidates within R of the pose's keypoint,
//! and the root itself, are no longer live. The pose score sums the keypoint scores not within R
//! of an earlier pose's keypoint (a 1x1 Conv of ones: its summation order is the runtime's, so
//! the pose score matches the reference within float error, not bit for bit).
//!
//! As in the single-pose decoder, a cell is read by multiplying a one-hot map and summing: a
//! non-finite value anywhere in a map that is read turns the read NaN, where the reference reads
//! the one cell. Heads with NaN or infinite offsets or displacements are out of the contract.

use crate::contract::{Layout, ScoreMode, NUM_KEYPOINTS, POSE_CHAIN, VALUES_PER_KEYPOINT};
use crate::decoders::graph::{Cells, GraphBuilder};
use crate::error::{Error, Result};
use crate::model::proto;

const EDGES: usize = POSE_CHAIN.len();
/// Sweeps per direction: the depth of [`POSE_CHAIN`] as a tree rooted at the nose.
const SWEEPS: usize = 4;
const REFINE_STEPS: usize = 2;

/// What to decode and where to put it.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiPoseSpec {
    pub heatmaps: String,
    pub offsets: String,
    pub displacement_fwd: String,
    pub displacement_bwd: String,
    /// The heads' layout (all four share it). Only NCHW is built so far.
    pub layout: Layout,
    pub grid: (usize, usize),
    pub stride: u32,
    pub scores: ScoreMode,
    pub max_poses: usize,
    pub score_threshold: f32,
    pub nms_radius: f32,
    pub poses: String,
    pub pose_scores: String,
}

/// One keypoint value per channel, `[B, 17, 1, 1]`: y, x, score and the 0/1 "decoded" flag;
/// and `cells`, `[B, 17, H, W]`, each decoded keypoint's cell (the cell of its position) one-hot,
/// so that a sweep reads where its sources are without computing their cells again.
struct PoseState {
    y: String,
    x: String,
    score: String,
    decoded: String,
    cells: String,
}

/// What one traversal direction reads: per edge (channel e), the displacement head's y and x,
/// and the target keypoint's offsets and scores; and which keypoints are each edge's ends.
struct Direction {
    disp_y: String,
    disp_x: String,
    target_off_y: String,
    target_off_x: String,
    target_score: String,
    sources: [usize; EDGES],
    targets: [usize; EDGES],
}

struct Builder<'a> {
    b: &'a mut GraphBuilder,
    h: usize,
    w: usize,
    stride: f32,
}

impl Builder<'_> {
    fn cells(&self) -> Cells {
        Cells::Grid { height: self.h, width: self.w }
    }

    /// 1.0 where `t <= 0`, 0.0 where `t > 0` (any positive f32, down to 2^-149), by arithmetic.
    fn at_most_zero(&mut self, hint: &str, t: &str) -> String {
        let gain = self.b.scalar_f32("two_pow_100", 1.2676506e30, 1);
        let scaled = self.b.op("Mul", &format!("{hint}_scaled"), &[t, &gain], vec![]);
        let scaled = self.b.clip(&format!("{hint}_scaled_clipped"), &scaled, -1.0, 1.0);
        let positive = self.b.op("Relu", &format!("{hint}_positive"), &[&scaled], vec![]);
        let scaled = self.b.op("Mul", &format!("{hint}_scaled_twice"), &[&positive, &gain], vec![]);
        let above = self.b.clip(&format!("{hint}_above"), &scaled, -1.0, 1.0);
        let one = self.b.scalar_f32("one", 1.0, 1);
        self.b.op("Sub", hint, &[&one, &above], vec![])
    }

    /// The cell index of pixel coordinate `p` along an axis of `size` cells, as the reference's
    /// `cell`: `clamp(floor(p / stride + 0.5), 0, size - 1)`, computed as
    /// `floor(clip(p / stride + 0.5, 0.5, size - 0.5))` (the same for every non-NaN `p`, and its
    /// bounds are never 0, which a Clip-6 attribute cannot hold).
    fn cell(&mut self, hint: &str, p: &str, size: usize) -> String {
        let stride = self.b.scalar_f32("stride", self.stride, 1);
        let q = self.b.op("Div", &format!("{hint}_q"), &[p, &stride], vec![]);
        let half = self.b.scalar_f32("half", 0.5, 1);
        let q = self.b.op("Add", &format!("{hint}_q_half"), &[&q, &half], vec![]);
        let q = self.b.clip(&format!("{hint}_q_clamped"), &q, 0.5, size as f32 - 0.5);
        self.b.op("Floor", hint, &[&q], vec![])
    }

    /// The one-hot map `[B, C, H, W]` of cells `(cy, cx)` (`[B, C, 1, 1]`, integers), through the
    /// flat index `cy*W + cx` (one comparison instead of one per axis).
    fn onehot(&mut self, hint: &str, cy: &str, cx: &str) -> String {
        let (h, w) = (self.h, self.w);
        let index: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        let index = self.b.const_f32("grid_index", &[1, 1, h as i64, w as i64], &index);
        let width = self.b.scalar_f32("grid_width", w as f32, 1);
        let row = self.b.op("Mul", &format!("{hint}_row_start"), &[cy, &width], vec![]);
        let at = self.b.op("Add", &format!("{hint}_index"), &[&row, cx], vec![]);
        self.equal_integers(hint, &index, &at)
    }

    /// 1.0 where the integers `a` and `b` are equal, 0.0 elsewhere: `1 - clip((a - b)^2, -1, 1)`.
    fn equal_integers(&mut self, hint: &str, a: &str, b: &str) -> String {
        let d = self.b.op("Sub", &format!("{hint}_diff"), &[a, b], vec![]);
        let d2 = self.b.op("Mul", &format!("{hint}_diff_sq"), &[&d, &d], vec![]);
        let apart = self.b.clip(&format!("{hint}_apart"), &d2, -1.0, 1.0);
        let one = self.b.scalar_f32("one", 1.0, 1);
        self.b.op("Sub", hint, &[&one, &apart], vec![])
    }

    /// The value of `map` (`[B, C, H, W]`, `channels` = C) at the one cell `onehot` marks,
    /// `[B, C, 1, 1]`: the product summed over the map by a depthwise Conv with a kernel of ones
    /// the size of the map (one op where MaxPool needs four: every other term is an exact zero,
    /// so the sum is the term).
    fn read(&mut self, hint: &str, map: &str, onehot: &str, channels: usize) -> String {
        let picked = self.b.op("Mul", &format!("{hint}_picked"), &[map, onehot], vec![]);
        let (h, w) = (self.h, self.w);
        let ones = self.b.const_f32(
            &format!("sum_over_grid_{channels}"),
            &[channels as i64, 1, h as i64, w as i64],
            &vec![1.0; channels * h * w],
        );
        self.b.op(
            "Conv",
            hint,
            &[&picked, &ones],
            vec![proto::attr_ints("kernel_shape", &[h as i64, w as i64]), proto::attr_int("group", channels as i64)],
        )
    }

    /// The largest value over channels and cells, `[B, 1, 1, 1]`.
    fn global_max(&mut self, hint: &str, x: &str, channels: usize) -> String {
        let cells = self.cells();
        let per_channel = self.b.max_over(&format!("{hint}_per_channel"), x, cells);
        let column = self.b.reshape(&format!("{hint}_column"), &per_channel, &[-1, 1, channels as i64, 1]);
        self.b.max_over(hint, &column, Cells::Grid { height: channels, width: 1 })
    }

    /// The 1x1 Conv sending each edge's value to its target keypoint (edges into one keypoint
    /// add up; at most one of them is active).
    fn scatter_to_keypoints(&mut self, hint: &str, x: &str, targets: &[usize; EDGES]) -> String {
        let mut weights = vec![0.0f32; NUM_KEYPOINTS * EDGES];
        for (e, &t) in targets.iter().enumerate() {
            weights[t * EDGES + e] = 1.0;
        }
        let weights =
            self.b.const_f32(&format!("{hint}_weights"), &[NUM_KEYPOINTS as i64, EDGES as i64, 1, 1], &weights);
        self.b.op("Conv", hint, &[x, &weights], vec![proto::attr_ints("kernel_shape", &[1, 1])])
    }

    fn pick(&mut self, hint: &str, x: &str, sources: &[usize], inputs: usize) -> String {
        let sources: Vec<Option<usize>> = sources.iter().map(|&s| Some(s)).collect();
        self.b.pick_channels(hint, x, &sources, inputs)
    }

    /// One sweep over all edges in `dir`: every edge whose source is decoded and whose target is
    /// not decodes its target.
    fn sweep(&mut self, hint: &str, s: PoseState, dir: &Direction) -> PoseState {
        let k = NUM_KEYPOINTS;
        let sy = self.pick(&format!("{hint}_src_y"), &s.y, &dir.sources, k);
        let sx = self.pick(&format!("{hint}_src_x"), &s.x, &dir.sources, k);
        let sd = self.pick(&format!("{hint}_src_decoded"), &s.decoded, &dir.sources, k);
        let td = self.pick(&format!("{hint}_tgt_decoded"), &s.decoded, &dir.targets, k);
        let both = self.b.op("Mul", &format!("{hint}_both_decoded"), &[&sd, &td], vec![]);
        let active = self.b.op("Sub", &format!("{hint}_active"), &[&sd, &both], vec![]);

        let (h, w) = (self.h, self.w);
        let at = self.pick(&format!("{hint}_src_cell"), &s.cells, &dir.sources, k);
        let dy = self.read(&format!("{hint}_disp_y"), &dir.disp_y, &at, EDGES);
        let dx = self.read(&format!("{hint}_disp_x"), &dir.disp_x, &at, EDGES);
        let mut py = self.b.op("Add", &format!("{hint}_displaced_y"), &[&sy, &dy], vec![]);
        let mut px = self.b.op("Add", &format!("{hint}_displaced_x"), &[&sx, &dx], vec![]);
        let stride = self.b.scalar_f32("stride", self.stride, 1);
        for step in 0..REFINE_STEPS {
            let cy = self.cell(&format!("{hint}_refine{step}_row"), &py, h);
            let cx = self.cell(&format!("{hint}_refine{step}_col"), &px, w);
            let at = self.onehot(&format!("{hint}_refine{step}_cell"), &cy, &cx);
            let oy = self.read(&format!("{hint}_refine{step}_off_y"), &dir.target_off_y, &at, EDGES);
            let ox = self.read(&format!("{hint}_refine{step}_off_x"), &dir.target_off_x, &at, EDGES);
            let base_y = self.b.op("Mul", &format!("{hint}_refine{step}_base_y"), &[&cy, &stride], vec![]);
            let base_x = self.b.op("Mul", &format!("{hint}_refine{step}_base_x"), &[&cx, &stride], vec![]);
            py = self.b.op("Add", &format!("{hint}_refine{step}_y"), &[&base_y, &oy], vec![]);
            px = self.b.op("Add", &format!("{hint}_refine{step}_x"), &[&base_x, &ox], vec![]);
        }
        let cy = self.cell(&format!("{hint}_score_row"), &py, h);
        let cx = self.cell(&format!("{hint}_score_col"), &px, w);
        let at = self.onehot(&format!("{hint}_score_cell"), &cy, &cx);
        let score = self.read(&format!("{hint}_score"), &dir.target_score, &at, EDGES);

        let mut update = |name: &str, value: &str, into: &str| -> String {
            let masked = self.b.op("Mul", &format!("{hint}_{name}_masked"), &[value, &active], vec![]);
            let scattered = self.scatter_to_keypoints(&format!("{hint}_{name}_to_keypoints"), &masked, &dir.targets);
            self.b.op("Add", &format!("{hint}_{name}"), &[into, &scattered], vec![])
        };
        let y = update("y", &py, &s.y);
        let x = update("x", &px, &s.x);
        let score = update("score", &score, &s.score);
        let cells = update("cells", &at, &s.cells);
        let scattered = self.scatter_to_keypoints(&format!("{hint}_decoded_to_keypoints"), &active, &dir.targets);
        let decoded = self.b.op("Add", &format!("{hint}_decoded"), &[&s.decoded, &scattered], vec![]);
        PoseState { y, x, score, decoded, cells }
    }

    /// `(ay - by)^2 + (ax - bx)^2` as the reference's `squared_distance`.
    fn squared_distance(&mut self, hint: &str, ay: &str, ax: &str, by: &str, bx: &str) -> String {
        let dy = self.b.op("Sub", &format!("{hint}_dy"), &[ay, by], vec![]);
        let dx = self.b.op("Sub", &format!("{hint}_dx"), &[ax, bx], vec![]);
        let dy2 = self.b.op("Mul", &format!("{hint}_dy2"), &[&dy, &dy], vec![]);
        let dx2 = self.b.op("Mul", &format!("{hint}_dx2"), &[&dx, &dx], vec![]);
        self.b.op("Add", hint, &[&dy2, &dx2], vec![])
    }
}

/// Appends the multi-pose decoder for `spec` to `b`.
pub fn build(b: &mut GraphBuilder, spec: &MultiPoseSpec) -> Result<()> {
    let (h, w) = spec.grid;
    let cells = h * w;
    if cells == 0 || NUM_KEYPOINTS * cells > 1 << 24 || spec.max_poses == 0 {
        return Err(Error::Unsupported(format!(
            "a {h}x{w} grid or {} poses is outside the decoder's range",
            spec.max_poses
        )));
    }
    if spec.layout != Layout::Nchw {
        return Err(Error::Unsupported(format!(
            "the multi-pose decoder reads NCHW heads only so far; these are {}",
            spec.layout
        )));
    }
    let k = NUM_KEYPOINTS;
    let mut g = Builder { b, h, w, stride: spec.stride as f32 };

    // Per frame.
    let v = g.b.clamp_finite("mp_heatmaps_finite", &spec.heatmaps);
    let scores = match spec.scores {
        ScoreMode::Sigmoid => g.b.op("Sigmoid", "mp_scores", &[&v], vec![]),
        ScoreMode::Raw => v.clone(),
    };
    let window = g.b.op(
        "MaxPool",
        "mp_local_max",
        &[&v],
        vec![
            proto::attr_ints("kernel_shape", &[3, 3]),
            proto::attr_ints("pads", &[1, 1, 1, 1]),
            proto::attr_ints("strides", &[1, 1]),
        ],
    );
    let is_local_max = g.b.select_maxima("mp_is_local_max", &v, &window);
    let threshold = match spec.scores {
        ScoreMode::Sigmoid => (spec.score_threshold / (1.0 - spec.score_threshold)).ln(),
        ScoreMode::Raw => spec.score_threshold,
    };
    let threshold = g.b.scalar_f32("mp_threshold", threshold, 1);
    let below = g.b.op("Sub", "mp_threshold_gap", &[&threshold, &v], vec![]);
    let passes = g.at_most_zero("mp_passes", &below);
    let mut live = g.b.op("Mul", "mp_live", &[&is_local_max, &passes], vec![]);

    let stride = spec.stride as f32;
    let grid: Vec<f32> =
        (0..2 * k).flat_map(|c| (0..cells).map(move |i| (if c < k { i / w } else { i % w }) as f32 * stride)).collect();
    let grid = g.b.const_f32("mp_grid_px", &[1, 2 * k as i64, h as i64, w as i64], &grid);
    let positions = g.b.op("Add", "mp_candidate_positions", &[&spec.offsets, &grid], vec![]);
    let ys: Vec<usize> = (0..k).collect();
    let xs: Vec<usize> = (k..2 * k).collect();
    let cand_y = g.pick("mp_candidate_y", &positions, &ys, 2 * k);
    let cand_x = g.pick("mp_candidate_x", &positions, &xs, 2 * k);
    // Scan order (y, x, k): the first candidate gets the largest rank.
    let ranks: Vec<f32> = (0..k).flat_map(|kp| (0..cells).map(move |i| (k * cells - (i * k + kp)) as f32)).collect();
    let ranks = g.b.const_f32("mp_scan_rank", &[1, k as i64, h as i64, w as i64], &ranks);

    let parents: [usize; EDGES] = POSE_CHAIN.map(|(p, _)| p);
    let children: [usize; EDGES] = POSE_CHAIN.map(|(_, c)| c);
    let first: Vec<usize> = (0..EDGES).collect();
    let second: Vec<usize> = (EDGES..2 * EDGES).collect();
    let direction = |g: &mut Builder, name: &str, disp: &str, sources, targets: [usize; EDGES]| {
        let tgt_y: Vec<usize> = targets.to_vec();
        let tgt_x: Vec<usize> = targets.iter().map(|t| t + k).collect();
        Direction {
            disp_y: g.pick(&format!("mp_{name}_disp_y"), disp, &first, 2 * EDGES),
            disp_x: g.pick(&format!("mp_{name}_disp_x"), disp, &second, 2 * EDGES),
            target_off_y: g.pick(&format!("mp_{name}_target_off_y"), &spec.offsets, &tgt_y, 2 * k),
            target_off_x: g.pick(&format!("mp_{name}_target_off_x"), &spec.offsets, &tgt_x, 2 * k),
            target_score: g.pick(&format!("mp_{name}_target_score"), &scores, &targets, k),
            sources,
            targets,
        }
    };
    let backward = direction(&mut g, "bwd", &spec.displacement_bwd, children, parents);
    let forward = direction(&mut g, "fwd", &spec.displacement_fwd, parents, children);

    let flt_max = g.b.scalar_f32("flt_max", f32::MAX, 1);
    let one = g.b.scalar_f32("one", 1.0, 1);
    // R^2 in f32, as the reference squares it; made where first read (one round reads none).
    let r2 = spec.nms_radius * spec.nms_radius;
    let mut earlier: Vec<(String, String)> = vec![];
    let mut pose_rows = vec![];
    let mut score_rows = vec![];
    for r in 0..spec.max_poses {
        let p = format!("mp_round{r}");
        // The best live candidate: dead cells at -FLT_MAX, below every live one but one at
        // -FLT_MAX itself, which `is_best` keeps apart by multiplying with `live` again.
        let dead = g.b.op("Sub", &format!("{p}_dead"), &[&live, &one], vec![]);
        let dead = g.b.op("Mul", &format!("{p}_dead_low"), &[&dead, &flt_max], vec![]);
        let kept = g.b.op("Mul", &format!("{p}_kept"), &[&v, &live], vec![]);
        let masked = g.b.op("Add", &format!("{p}_masked"), &[&kept, &dead], vec![]);
        let best = g.global_max(&format!("{p}_best"), &masked, k);
        let is_best = g.b.select_maxima(&format!("{p}_is_best"), &masked, &best);
        let is_best = g.b.op("Mul", &format!("{p}_is_best_live"), &[&is_best, &live], vec![]);
        let ranked = g.b.op("Mul", &format!("{p}_ranked"), &[&is_best, &ranks], vec![]);
        let top = g.global_max(&format!("{p}_top"), &ranked, k);
        let root = g.b.select_maxima(&format!("{p}_root_any"), &ranked, &top);
        let root = g.b.op("Mul", &format!("{p}_root"), &[&root, &is_best], vec![]);
        let found = g.b.clip(&format!("{p}_found"), &top, -1.0, 1.0);

        let cells_axes = g.cells();
        let decoded = g.b.max_over(&format!("{p}_root_keypoint"), &root, cells_axes);
        let y = g.read(&format!("{p}_root_y"), &cand_y, &root, k);
        let x = g.read(&format!("{p}_root_x"), &cand_x, &root, k);
        let score = g.read(&format!("{p}_root_score"), &scores, &root, k);
        // The root's cell as the traversal reads it: the cell of its position, which an offset
        // over half a cell moves off the candidate's own cell.
        let cy = g.cell(&format!("{p}_root_row"), &y, h);
        let cx = g.cell(&format!("{p}_root_col"), &x, w);
        let at = g.onehot(&format!("{p}_root_cell"), &cy, &cx);
        let cells = g.b.op("Mul", &format!("{p}_root_cells"), &[&at, &decoded], vec![]);
        let mut state = PoseState { y, x, score, decoded, cells };
        for (name, dir) in [("back", &backward), ("forth", &forward)] {
            for s in 0..SWEEPS {
                state = g.sweep(&format!("{p}_{name}{s}"), state, dir);
            }
        }

        // The pose score: keypoint scores not within R of the same keypoint of an earlier pose.
        let mut counted = state.score.clone();
        for (j, (ey, ex)) in earlier.iter().enumerate() {
            let d2 = g.squared_distance(&format!("{p}_vs{j}_d2"), &state.y, &state.x, ey, ex);
            let r2 = g.b.scalar_f32("mp_nms_radius_sq", r2, 1);
            let gap = g.b.op("Sub", &format!("{p}_vs{j}_gap"), &[&d2, &r2], vec![]);
            let near = g.at_most_zero(&format!("{p}_vs{j}_near"), &gap);
            let far = g.b.op("Sub", &format!("{p}_vs{j}_far"), &[&one, &near], vec![]);
            counted = g.b.op("Mul", &format!("{p}_vs{j}_counted"), &[&counted, &far], vec![]);
        }
        let ones = g.b.const_f32(&format!("{p}_sum_weights"), &[1, k as i64, 1, 1], &[1.0; NUM_KEYPOINTS]);
        let sum = g.b.op(
            "Conv",
            &format!("{p}_score_sum"),
            &[&counted, &ones],
            vec![proto::attr_ints("kernel_shape", &[1, 1])],
        );
        let count = g.b.scalar_f32("mp_keypoints", k as f32, 1);
        let mean = g.b.op("Div", &format!("{p}_pose_score_found"), &[&sum, &count], vec![]);
        // found * mean + (found - 1): the mean, or -1 for an empty slot.
        let mean = g.b.op("Mul", &format!("{p}_pose_score_kept"), &[&mean, &found], vec![]);
        let empty = g.b.op("Sub", &format!("{p}_empty"), &[&found, &one], vec![]);
        score_rows.push(g.b.op("Add", &format!("{p}_pose_score"), &[&mean, &empty], vec![]));

        // Rows (x, y, score) per keypoint, as the single-pose decoder lays them out.
        let from = |c: usize, which: usize| (c % 3 == which).then_some(c / 3);
        let xs: Vec<Option<usize>> = (0..3 * k).map(|c| from(c, 0)).collect();
        let ys: Vec<Option<usize>> = (0..3 * k).map(|c| from(c, 1)).collect();
        let ss: Vec<Option<usize>> = (0..3 * k).map(|c| from(c, 2)).collect();
        let rx = g.b.pick_channels(&format!("{p}_rows_x"), &state.x, &xs, k);
        let ry = g.b.pick_channels(&format!("{p}_rows_y"), &state.y, &ys, k);
        let rs = g.b.pick_channels(&format!("{p}_rows_score"), &state.score, &ss, k);
        let rows = g.b.op("Add", &format!("{p}_rows_xy"), &[&rx, &ry], vec![]);
        pose_rows.push(g.b.op("Add", &format!("{p}_rows"), &[&rows, &rs], vec![]));

        if r + 1 < spec.max_poses {
            // Candidates within R of the pose's same keypoint, and the root, are no longer live.
            let d2 = g.squared_distance(&format!("{p}_nms_d2"), &cand_y, &cand_x, &state.y, &state.x);
            let r2 = g.b.scalar_f32("mp_nms_radius_sq", r2, 1);
            let gap = g.b.op("Sub", &format!("{p}_nms_gap"), &[&d2, &r2], vec![]);
            let near = g.at_most_zero(&format!("{p}_nms_near"), &gap);
            let near = g.b.op("Mul", &format!("{p}_nms_near_found"), &[&near, &found], vec![]);
            let keep = g.b.op("Sub", &format!("{p}_nms_keep"), &[&one, &near], vec![]);
            live = g.b.op("Mul", &format!("{p}_live_after_nms"), &[&live, &keep], vec![]);
            let not_root = g.b.op("Sub", &format!("{p}_not_root"), &[&one, &root], vec![]);
            live = g.b.op("Mul", &format!("{p}_live_next"), &[&live, &not_root], vec![]);
            earlier.push((state.y.clone(), state.x.clone()));
        }
    }

    // Slot r of the outputs: 1x1 Convs placing each round's channels, added (one term each).
    let n = spec.max_poses;
    let per_pose = k * VALUES_PER_KEYPOINT;
    let mut poses: Option<String> = None;
    let mut pose_scores: Option<String> = None;
    for (r, (rows, score)) in pose_rows.iter().zip(&score_rows).enumerate() {
        let place: Vec<Option<usize>> =
            (0..n * per_pose).map(|c| (c / per_pose == r).then_some(c % per_pose)).collect();
        let placed = g.b.pick_channels(&format!("mp_slot{r}_rows"), rows, &place, per_pose);
        poses = Some(match poses {
            None => placed,
            Some(acc) => g.b.op("Add", &format!("mp_slots_to{r}_rows"), &[&acc, &placed], vec![]),
        });
        let place: Vec<Option<usize>> = (0..n).map(|c| (c == r).then_some(0)).collect();
        let placed = g.b.pick_channels(&format!("mp_slot{r}_score"), score, &place, 1);
        pose_scores = Some(match pose_scores {
            None => placed,
            Some(acc) => g.b.op("Add", &format!("mp_slots_to{r}_score"), &[&acc, &placed], vec![]),
        });
    }
    let poses = poses.expect("max_poses >= 1");
    let pose_scores = pose_scores.expect("max_poses >= 1");
    let shape = g.b.const_i64("mp_poses_shape", &[4], &[-1, n as i64, k as i64, VALUES_PER_KEYPOINT as i64]);
    g.b.op_into("Reshape", "mp_poses", &[&poses, &shape], vec![], &spec.poses);
    let shape = g.b.const_i64("mp_pose_scores_shape", &[2], &[-1, n as i64]);
    g.b.op_into("Reshape", "mp_pose_scores", &[&pose_scores, &shape], vec![], &spec.pose_scores);
    Ok(())
}
