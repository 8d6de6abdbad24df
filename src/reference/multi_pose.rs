//! The multi-person reference decoder: tfjs posenet 2.2.2's `decodeMultiplePoses` in plain Rust
//! (std only), written apart from any graph-building code so that it can judge the in-graph
//! multi-pose decoder (the project's issue 11). Checked against the published npm package run in
//! Node on the real model's heads for 25 photos (N = 5 and 10) and on 200 random head sets: same
//! poses and roots everywhere, every position bit-identical to tfjs's float64 value rounded once
//! to f32, keypoint scores within 2 f32 ulp (the sigmoid), pose scores within 6 ulp.
//!
//! # Contract
//! Inputs per batch item: CHW float32 heads `heatmaps [17,H,W]`, `offsets [34,H,W]` (channel k is
//! the y offset of keypoint k, k+17 its x offset), `displacement_fwd`, `displacement_bwd`
//! `[32,H,W]` (channel e is the y displacement along edge e of [`POSE_CHAIN`], e+16 the x one),
//! the output stride (in [`HeadMaps`]), and [`MultiPoseParams`] `(N, T, R)`, defaults
//! `(5, 0.5, 20)` as posenet's `MULTI_PERSON_INFERENCE_CONFIG`. `scores` is `sigmoid(heatmaps)` ([`ScoreMode::Sigmoid`]) or
//! the heatmaps themselves ([`ScoreMode::Raw`], for models whose heatmaps already end in a
//! Sigmoid).
//!
//! 1. Candidates: every `(y, x, k)` with `scores >= T` and no cell of its 3x3 window (clipped at
//!    the borders, itself included) strictly greater ([`LOCAL_MAXIMUM_RADIUS`] = 1).
//! 2. Candidates are taken in decreasing score; on equal scores the first in scan order `(y, x,
//!    k)` (row-major over the grid, keypoint fastest) goes first. A candidate is rejected when its
//!    position `(x*stride + offsets[k+17], y*stride + offsets[k])` is within R (`d^2 <= R^2`,
//!    inclusive) of keypoint k of a pose already accepted.
//! 3. An accepted candidate is the root of a new pose (its score is the root score, its position
//!    as in 2). The pose is decoded along [`POSE_CHAIN`]: first backward (edges 15..0, child ->
//!    parent, `displacement_bwd`), then forward (edges 0..15, parent -> child,
//!    `displacement_fwd`), each edge only when its source is decoded and its target is not. One
//!    step: `p' = source + displacement[e | e+16] at cell(source)`; then twice `c = cell(p')`,
//!    `p' = c*stride + offsets of the target keypoint at c`; the score is `scores` at
//!    `cell(p')`. Positions are never clamped (only cell indices are).
//! 4. The pose score is the sum, in keypoint order 0..16, of the keypoint scores that are not
//!    within R of the same keypoint of an earlier pose, divided by 17.
//! 5. Stop after N poses, or when no candidate is left.
//!
//! Steps 2-5 are equivalent to N rounds of "the best candidate not yet taken and not suppressed by
//! an accepted pose" (a rejected candidate stays rejected since poses only accumulate). "Not yet
//! taken" is needed: a root is suppressed by its own pose (d^2 = 0 <= R^2) only while its position
//! is finite and R is not NaN; a NaN or infinite root position (NaN/inf offsets) would otherwise
//! be chosen again every round. Both forms are here:
//! [`decode_multiple_poses`] (the queue, as tfjs) and [`decode_multiple_poses_unrolled`] (the
//! rounds, as the in-graph decoder); the tests check they agree.
//!
//! Output: up to N [`Pose`]s of 17 keypoints `(x, y, score)` in model-input pixels, PoseNet
//! keypoint order ([`crate::contract::KEYPOINT_NAMES`]). [`to_fixed`] lays a batch out as the graph's
//! `poses [B,N,17,3]` and `pose_scores [B,N]`, unused slots `pose_score = -1`, keypoints 0.
//!
//! # Float32 arithmetic (the graph mirrors each of these)
//! - Every value is f32; nothing is computed in f64.
//! - Heatmap values are first clamped to +-`f32::MAX` (`v.clamp(f32::MIN, f32::MAX)`, which keeps
//!   NaN), as in the single-pose reference, so `+inf` ties with `f32::MAX`. NaN never compares
//!   greater and never passes the threshold, so a NaN cell is never a candidate and never stops
//!   a neighbour from being a local maximum.
//! - DECISIONS (threshold, local maximum, candidate order, ties) are taken on the clamped heatmap
//!   values themselves, in sigmoid mode on the logits, not on sigmoid(logit). Sigmoid is monotonic,
//!   so this is tfjs's order except where f32 sigmoid maps distinct logits to one score (saturation
//!   near 1 for logits above ~17.3, or neighbouring logits sharing a rounded sigmoid): there tfjs
//!   sees a tie (both local maxima, heap order unspecified) where this reference sees a strict
//!   order. The threshold becomes `logit >= ln(T/(1-T))`, computed once in f32 as
//!   `(T / (1.0 - T)).ln()`: T = 0.5 gives exactly 0, T = 0 gives -inf (every non-NaN cell passes),
//!   T = 1 gives +inf (no cell passes, whereas tfjs accepts scores that saturated to 1.0), T outside
//!   [0, 1] gives NaN (no cell passes; tfjs's `estimateMultiplePoses` throws there). Near the
//!   threshold the two tests can also differ within float error (e.g. a logit of -1e-10 has f32
//!   sigmoid 0.5 >= 0.5 in tfjs, but fails `>= 0` here). Raw mode: decisions and scores on the
//!   clamped values, threshold T itself.
//! - Reported and summed keypoint scores: sigmoid mode `1.0 / (1.0 + (-v).exp())` in f32 on the
//!   clamped value (as the single-pose reference; tfjs's CPU backend computes
//!   `1 / (1 + Math.exp(-x))` in f64 and rounds once to f32; measured difference up to 2 ulp);
//!   raw mode the clamped value. A NaN heatmap value read by the traversal gives a NaN score.
//! - Position of a grid cell: `(c as f32) * (stride as f32) + offset`: the product is exact (small
//!   integers), then one rounded addition. Displaced point: `source + displacement`, one
//!   addition per axis. (tfjs adds the same f32 values in f64. Every final position of both is
//!   `c*stride + offset`, so when the cells agree tfjs's value rounded once to f32 is ours, barring
//!   a double rounding; measured: all 51,612 keypoints compared bit-identical.)
//! - `cell(p) = clamp(floor(p / (stride as f32) + 0.5), 0, size-1)`, as a true f32 division (for a
//!   power-of-two stride equal to a multiply by 1/stride; for other strides the division is the
//!   only form that rounds once). Half a cell rounds up (`p = 8` at stride 16 -> cell 1; `p = -8`
//!   -> `-0.5 + 0.5 = 0` -> cell 0), like `Math.round`, never half to even. The one f32 value of
//!   the quotient where `floor(q + 0.5)` differs from `Math.round(q)` is `q = 0.5 - 2^-25`
//!   (`q + 0.5` rounds to 1.0): cell 1 here, 0 in tfjs; for stride 16 that is `p = 8 - 2^-21`.
//!   The clamp is `(c as usize).min(size - 1)` (Rust's saturating cast): NaN -> 0, -inf and any
//!   negative -> 0, +inf and anything past the grid -> size-1. (tfjs's `clamp` passes NaN through
//!   and then reads `undefined`; this is the deterministic choice.)
//! - Squared distance: `dy*dy + dx*dx` with `dy = y1 - y2`, `dx = x1 - x2`, two products and one
//!   sum, each rounded to f32, no fused multiply-add; compared `<= R*R` with `R*R` one f32
//!   product. A NaN distance (NaN or opposite infinite positions, or R = NaN) never suppresses;
//!   R = 0 suppresses only identical positions; a negative R acts as |R|, as in tfjs.
//! - Pose score: an f32 running sum in keypoint order 0..16, then one f32 division by 17.
//!   (tfjs sums in f64; the two differ by a few f32 ulps.)

use std::fmt;

use crate::contract::{ScoreMode, NUM_KEYPOINTS, POSE_CHAIN, VALUES_PER_KEYPOINT};

pub use super::Keypoint;

/// Edges of [`POSE_CHAIN`].
pub const NUM_EDGES: usize = POSE_CHAIN.len();
/// tfjs's `kLocalMaximumRadius`: a candidate is a maximum of its (2r+1)x(2r+1) window.
pub const LOCAL_MAXIMUM_RADIUS: usize = 1;
/// Offset refinement steps per traversed edge (tfjs's `offsetRefineStep`).
pub const OFFSET_REFINE_STEPS: usize = 2;

pub use crate::contract::MultiPoseParams;

/// Heads whose sizes do not fit `[17|34|32|32, H, W]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadMapsError {
    /// Which head: "heatmaps", "offsets", "displacement_fwd", "displacement_bwd" or "grid".
    pub head: &'static str,
    pub expected: usize,
    pub actual: usize,
}

impl fmt::Display for HeadMapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.head == "grid" {
            write!(f, "the heads' grid has no cells")
        } else {
            write!(f, "{} holds {} values, expected {}", self.head, self.actual, self.expected)
        }
    }
}

impl std::error::Error for HeadMapsError {}

/// One batch item's heads, CHW, row-major.
#[derive(Clone, Copy, Debug)]
pub struct HeadMaps<'a> {
    heatmaps: &'a [f32],
    offsets: &'a [f32],
    displacement_fwd: &'a [f32],
    displacement_bwd: &'a [f32],
    height: usize,
    width: usize,
    /// Model-input pixels per grid cell.
    stride: u32,
    mode: ScoreMode,
}

impl<'a> HeadMaps<'a> {
    /// Checks the slice lengths: `17*H*W`, `34*H*W`, `32*H*W`, `32*H*W`, with `H, W >= 1`.
    pub fn new(
        heatmaps: &'a [f32],
        offsets: &'a [f32],
        displacement_fwd: &'a [f32],
        displacement_bwd: &'a [f32],
        (height, width): (usize, usize),
        stride: u32,
        mode: ScoreMode,
    ) -> Result<Self, HeadMapsError> {
        let cells = height * width;
        if cells == 0 {
            return Err(HeadMapsError { head: "grid", expected: 1, actual: 0 });
        }
        for (head, data, channels) in [
            ("heatmaps", heatmaps, NUM_KEYPOINTS),
            ("offsets", offsets, 2 * NUM_KEYPOINTS),
            ("displacement_fwd", displacement_fwd, 2 * NUM_EDGES),
            ("displacement_bwd", displacement_bwd, 2 * NUM_EDGES),
        ] {
            if data.len() != channels * cells {
                return Err(HeadMapsError { head, expected: channels * cells, actual: data.len() });
            }
        }
        Ok(HeadMaps { heatmaps, offsets, displacement_fwd, displacement_bwd, height, width, stride, mode })
    }

    #[cfg(feature = "testing")]
    pub fn height(&self) -> usize {
        self.height
    }

    #[cfg(feature = "testing")]
    pub fn width(&self) -> usize {
        self.width
    }

    #[cfg(feature = "testing")]
    pub fn mode(&self) -> ScoreMode {
        self.mode
    }

    fn at(&self, data: &[f32], channel: usize, y: usize, x: usize) -> f32 {
        data[(channel * self.height + y) * self.width + x]
    }

    /// The decision value of heatmap cell `(k, y, x)`: the heatmap clamped to +-`f32::MAX`.
    pub fn value(&self, k: usize, y: usize, x: usize) -> f32 {
        self.at(self.heatmaps, k, y, x).clamp(f32::MIN, f32::MAX)
    }

    /// The reported score of heatmap cell `(k, y, x)`.
    pub fn score(&self, k: usize, y: usize, x: usize) -> f32 {
        score_of(self.value(k, y, x), self.mode)
    }

    /// The position of keypoint k refined at cell `(y, x)`: `(y*stride + offsets[k], x*stride +
    /// offsets[k+17])`, returned as `(y, x)`.
    fn refined(&self, k: usize, y: usize, x: usize, stride: f32) -> (f32, f32) {
        (
            (y as f32) * stride + self.at(self.offsets, k, y, x),
            (x as f32) * stride + self.at(self.offsets, k + NUM_KEYPOINTS, y, x),
        )
    }
}

/// A score from a clamped decision value.
pub fn score_of(value: f32, mode: ScoreMode) -> f32 {
    match mode {
        ScoreMode::Sigmoid => 1.0 / (1.0 + (-value).exp()),
        ScoreMode::Raw => value,
    }
}

/// The threshold in the decision domain: `ln(T/(1-T))` in f32 for logits, T itself for raw
/// scores.
pub fn decision_threshold(score_threshold: f32, mode: ScoreMode) -> f32 {
    match mode {
        ScoreMode::Sigmoid => (score_threshold / (1.0 - score_threshold)).ln(),
        ScoreMode::Raw => score_threshold,
    }
}

/// `clamp(floor(p / stride + 0.5), 0, size - 1)`; NaN and negatives give 0, +inf gives size-1.
pub fn cell(p: f32, stride: f32, size: usize) -> usize {
    // `as usize` saturates: NaN -> 0, negative -> 0, +inf -> usize::MAX.
    ((p / stride + 0.5).floor() as usize).min(size - 1)
}

/// `dy*dy + dx*dx` in f32 with `dy = y1 - y2`, `dx = x1 - x2`.
pub fn squared_distance(y1: f32, x1: f32, y2: f32, x2: f32) -> f32 {
    let dy = y1 - y2;
    let dx = x1 - x2;
    dy * dy + dx * dx
}

/// A root candidate: a local maximum at or above the threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub keypoint: usize,
    pub y: usize,
    pub x: usize,
    /// The clamped heatmap value (the decision value).
    pub value: f32,
}

/// One decoded pose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    pub keypoints: [Keypoint; NUM_KEYPOINTS],
    pub score: f32,
    /// The candidate the pose was grown from.
    pub root: Candidate,
}

/// All candidates (step 1), in scan order `(y, x, k)`.
pub fn candidates(heads: &HeadMaps, params: &MultiPoseParams) -> Vec<Candidate> {
    let threshold = decision_threshold(params.score_threshold, heads.mode);
    let (h, w) = (heads.height, heads.width);
    let r = LOCAL_MAXIMUM_RADIUS;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for k in 0..NUM_KEYPOINTS {
                let value = heads.value(k, y, x);
                // NaN fails `>=`, and so does everything against a NaN threshold.
                let passes = value >= threshold;
                if !passes {
                    continue;
                }
                // Beaten by a strictly greater cell of the clipped window (itself included); a NaN
                // neighbour never compares greater.
                let beaten = (y.saturating_sub(r)..(y + r + 1).min(h))
                    .any(|yy| (x.saturating_sub(r)..(x + r + 1).min(w)).any(|xx| heads.value(k, yy, xx) > value));
                if !beaten {
                    out.push(Candidate { keypoint: k, y, x, value });
                }
            }
        }
    }
    out
}

/// Whether `(y, x)` is within R of keypoint k of any of `poses`.
fn suppressed(poses: &[Pose], r2: f32, k: usize, y: f32, x: f32) -> bool {
    poses.iter().any(|p| {
        let q = &p.keypoints[k];
        squared_distance(y, x, q.y, q.x) <= r2
    })
}

/// The position of a candidate (step 2), `(y, x)`.
pub fn candidate_position(heads: &HeadMaps, stride: u32, c: &Candidate) -> (f32, f32) {
    heads.refined(c.keypoint, c.y, c.x, stride as f32)
}

/// Follows edge `edge`'s displacement from `source` to keypoint `target`, then refines twice.
fn traverse(heads: &HeadMaps, stride: f32, edge: usize, source: &Keypoint, target: usize, disp: &[f32]) -> Keypoint {
    let (h, w) = (heads.height, heads.width);
    let sy = cell(source.y, stride, h);
    let sx = cell(source.x, stride, w);
    let mut py = source.y + heads.at(disp, edge, sy, sx);
    let mut px = source.x + heads.at(disp, edge + NUM_EDGES, sy, sx);
    for _ in 0..OFFSET_REFINE_STEPS {
        let cy = cell(py, stride, h);
        let cx = cell(px, stride, w);
        (py, px) = heads.refined(target, cy, cx, stride);
    }
    let cy = cell(py, stride, h);
    let cx = cell(px, stride, w);
    Keypoint { x: px, y: py, score: heads.score(target, cy, cx), cell: (cy, cx) }
}

/// Grows a pose from `root` (step 3) and scores it against `earlier` (step 4).
fn decode_pose(heads: &HeadMaps, params: &MultiPoseParams, root: &Candidate, earlier: &[Pose]) -> Pose {
    let stride = heads.stride as f32;
    let mut kps: [Option<Keypoint>; NUM_KEYPOINTS] = [None; NUM_KEYPOINTS];
    let (ry, rx) = heads.refined(root.keypoint, root.y, root.x, stride);
    kps[root.keypoint] =
        Some(Keypoint { x: rx, y: ry, score: score_of(root.value, heads.mode), cell: (root.y, root.x) });
    for (edge, &(parent, child)) in POSE_CHAIN.iter().enumerate().rev() {
        if let (Some(src), None) = (kps[child], kps[parent]) {
            kps[parent] = Some(traverse(heads, stride, edge, &src, parent, heads.displacement_bwd));
        }
    }
    for (edge, &(parent, child)) in POSE_CHAIN.iter().enumerate() {
        if let (Some(src), None) = (kps[parent], kps[child]) {
            kps[child] = Some(traverse(heads, stride, edge, &src, child, heads.displacement_fwd));
        }
    }
    // The chain is a spanning tree, so every keypoint is reached from any root.
    let keypoints = kps.map(|k| k.expect("poseChain spans all keypoints"));
    let r2 = params.nms_radius * params.nms_radius;
    let mut sum = 0.0f32;
    for (k, kp) in keypoints.iter().enumerate() {
        if !suppressed(earlier, r2, k, kp.y, kp.x) {
            sum += kp.score;
        }
    }
    Pose { keypoints, score: sum / NUM_KEYPOINTS as f32, root: *root }
}

/// Decodes up to N poses, tfjs's way: the candidates in decreasing decision value (ties in scan
/// order), each rejected when within R of its keypoint in an accepted pose.
pub fn decode_multiple_poses(heads: &HeadMaps, params: &MultiPoseParams) -> Vec<Pose> {
    let mut queue = candidates(heads, params);
    // Stable: equal values keep scan order. Candidates are never NaN.
    queue.sort_by(|a, b| b.value.partial_cmp(&a.value).expect("candidates are not NaN"));
    let r2 = params.nms_radius * params.nms_radius;
    let stride = heads.stride;
    let mut poses: Vec<Pose> = Vec::new();
    for c in &queue {
        if poses.len() >= params.max_poses {
            break;
        }
        let (y, x) = candidate_position(heads, stride, c);
        if suppressed(&poses, r2, c.keypoint, y, x) {
            continue;
        }
        let pose = decode_pose(heads, params, c, &poses);
        poses.push(pose);
    }
    poses
}

/// The same decoding as N rounds, the in-graph decoder's way: each round takes the candidate with
/// the greatest decision value (the first in scan order among equals) that is neither taken
/// already nor suppressed by an accepted pose, and stops when there is none.
///
/// The "taken" mask matters: a root is normally suppressed by its own pose (distance 0), but not
/// when its position is NaN or infinite (NaN or infinite offsets: `inf - inf` is NaN) or R is
/// NaN, and without the mask such a root would be chosen again in every round.
#[cfg(feature = "testing")]
pub fn decode_multiple_poses_unrolled(heads: &HeadMaps, params: &MultiPoseParams) -> Vec<Pose> {
    let cands = candidates(heads, params);
    let mut taken = vec![false; cands.len()];
    let r2 = params.nms_radius * params.nms_radius;
    let mut poses: Vec<Pose> = Vec::new();
    for _round in 0..params.max_poses {
        let mut best: Option<usize> = None;
        for (i, c) in cands.iter().enumerate() {
            let (y, x) = candidate_position(heads, heads.stride, c);
            if taken[i] || suppressed(&poses, r2, c.keypoint, y, x) {
                continue;
            }
            // Strict `>`: the earlier candidate in scan order keeps a tie (values are never NaN).
            if best.is_none_or(|b| c.value > cands[b].value) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        taken[i] = true;
        let pose = decode_pose(heads, params, &cands[i], &poses);
        poses.push(pose);
    }
    poses
}

/// A batch laid out as the graph's outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct FixedPoses {
    pub batch: usize,
    pub max_poses: usize,
    /// `[B, N, 17, 3]`, `(x, y, score)` last; unused slots 0.
    pub poses: Vec<f32>,
    /// `[B, N]`; unused slots -1.
    pub pose_scores: Vec<f32>,
}

/// Lays out each batch item's poses (at most `max_poses` of them; extra ones are dropped) as
/// `poses [B,N,17,3]` and `pose_scores [B,N]`.
pub fn to_fixed(items: &[Vec<Pose>], max_poses: usize) -> FixedPoses {
    let b = items.len();
    let per_pose = NUM_KEYPOINTS * VALUES_PER_KEYPOINT;
    let mut poses = vec![0.0f32; b * max_poses * per_pose];
    let mut pose_scores = vec![-1.0f32; b * max_poses];
    for (i, item) in items.iter().enumerate() {
        for (n, pose) in item.iter().take(max_poses).enumerate() {
            pose_scores[i * max_poses + n] = pose.score;
            let base = (i * max_poses + n) * per_pose;
            for (k, kp) in pose.keypoints.iter().enumerate() {
                poses[base + k * VALUES_PER_KEYPOINT..base + (k + 1) * VALUES_PER_KEYPOINT]
                    .copy_from_slice(&[kp.x, kp.y, kp.score]);
            }
        }
    }
    FixedPoses { batch: b, max_poses, poses, pose_scores }
}
