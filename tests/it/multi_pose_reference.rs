//! Crafted situations for the multi-pose reference (`src/reference/multi_pose.rs`). Unless a test says otherwise the heads are
//! 17x17, stride 16, logits -10 everywhere (sigmoid ~4.5e-5, far below T), offsets and
//! displacements 0: a root at cell (y, x) then puts every keypoint at (16y, 16x).

use onnx_posefix::contract::{ScoreMode, KEYPOINT_NAMES as PART_NAMES, POSE_CHAIN};
use onnx_posefix::reference::multi_pose::*;

const H: usize = 17;
const W: usize = 17;
const LOW: f32 = -10.0;

#[derive(Clone)]
struct Synth {
    h: usize,
    w: usize,
    hm: Vec<f32>,
    off: Vec<f32>,
    fwd: Vec<f32>,
    bwd: Vec<f32>,
    mode: ScoreMode,
    stride: u32,
}

impl Synth {
    fn new() -> Self {
        Self::sized(H, W)
    }
    fn sized(h: usize, w: usize) -> Self {
        Synth {
            h,
            w,
            hm: vec![LOW; 17 * h * w],
            off: vec![0.0; 34 * h * w],
            fwd: vec![0.0; 32 * h * w],
            bwd: vec![0.0; 32 * h * w],
            mode: ScoreMode::Sigmoid,
            stride: 16,
        }
    }
    fn i(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.h + y) * self.w + x
    }
    fn hm(&mut self, k: usize, y: usize, x: usize, v: f32) -> &mut Self {
        let i = self.i(k, y, x);
        self.hm[i] = v;
        self
    }
    /// Offsets of keypoint k at cell (y, x): (dy, dx).
    fn off(&mut self, k: usize, y: usize, x: usize, dy: f32, dx: f32) -> &mut Self {
        let (a, b) = (self.i(k, y, x), self.i(k + 17, y, x));
        self.off[a] = dy;
        self.off[b] = dx;
        self
    }
    fn fwd(&mut self, e: usize, y: usize, x: usize, dy: f32, dx: f32) -> &mut Self {
        let (a, b) = (self.i(e, y, x), self.i(e + 16, y, x));
        self.fwd[a] = dy;
        self.fwd[b] = dx;
        self
    }
    fn bwd(&mut self, e: usize, y: usize, x: usize, dy: f32, dx: f32) -> &mut Self {
        let (a, b) = (self.i(e, y, x), self.i(e + 16, y, x));
        self.bwd[a] = dy;
        self.bwd[b] = dx;
        self
    }
    fn heads(&self) -> HeadMaps<'_> {
        HeadMaps::new(&self.hm, &self.off, &self.fwd, &self.bwd, (self.h, self.w), self.stride, self.mode).unwrap()
    }
    /// Decodes with both forms, checks they agree, returns the poses.
    fn decode(&self, params: &MultiPoseParams) -> Vec<Pose> {
        let h = self.heads();
        let a = decode_multiple_poses(&h, params);
        let b = decode_multiple_poses_unrolled(&h, params);
        // Compared through Debug so that NaN fields compare equal.
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "queue and unrolled forms disagree");
        a
    }
}

fn params(n: usize) -> MultiPoseParams {
    MultiPoseParams { max_poses: n, ..MultiPoseParams::default() }
}

fn roots(poses: &[Pose]) -> Vec<(usize, usize, usize)> {
    poses.iter().map(|p| (p.root.y, p.root.x, p.root.keypoint)).collect()
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

#[test]
fn defaults_match_posenet_multi_person_config() {
    let p = MultiPoseParams::default();
    assert_eq!((p.max_poses, p.score_threshold, p.nms_radius), (5, 0.5, 20.0));
}

#[test]
fn pose_chain_is_tfjs_and_spans_all_keypoints() {
    let name = |s: &str| PART_NAMES.iter().position(|n| *n == s).unwrap();
    let chain = [
        ("nose", "leftEye"),
        ("leftEye", "leftEar"),
        ("nose", "rightEye"),
        ("rightEye", "rightEar"),
        ("nose", "leftShoulder"),
        ("leftShoulder", "leftElbow"),
        ("leftElbow", "leftWrist"),
        ("leftShoulder", "leftHip"),
        ("leftHip", "leftKnee"),
        ("leftKnee", "leftAnkle"),
        ("nose", "rightShoulder"),
        ("rightShoulder", "rightElbow"),
        ("rightElbow", "rightWrist"),
        ("rightShoulder", "rightHip"),
        ("rightHip", "rightKnee"),
        ("rightKnee", "rightAnkle"),
    ];
    for (e, (p, c)) in chain.iter().enumerate() {
        assert_eq!(POSE_CHAIN[e], (name(p), name(c)), "edge {e}");
    }
}

#[test]
fn single_root_decodes_all_keypoints_at_its_cell() {
    let mut s = Synth::new();
    s.hm(5, 4, 7, 2.0);
    let poses = s.decode(&params(5));
    assert_eq!(poses.len(), 1);
    let p = &poses[0];
    assert_eq!(roots(&poses), vec![(4, 7, 5)]);
    for (k, kp) in p.keypoints.iter().enumerate() {
        assert_eq!((kp.x, kp.y, kp.cell), (112.0, 64.0, (4, 7)));
        let want = if k == 5 { sigmoid(2.0) } else { sigmoid(LOW) };
        assert_eq!(kp.score, want, "k={k}");
    }
    let mut sum = 0.0f32;
    for kp in &p.keypoints {
        sum += kp.score;
    }
    assert_eq!(p.score, sum / 17.0);
}

#[test]
fn equal_scores_go_in_scan_order_y_then_x_then_k() {
    let mut s = Synth::new();
    // All equal and far apart: order must be (3,9,k5), (4,1,k0), (4,1,k2)->suppressed? no: k2 of
    // pose (4,1,k0) is at the same place, so suppressed; then (4,12,k0), (9,0,k16).
    s.hm(0, 4, 1, 1.5).hm(2, 4, 1, 1.5).hm(5, 3, 9, 1.5).hm(0, 4, 12, 1.5).hm(16, 9, 0, 1.5);
    let poses = s.decode(&params(10));
    assert_eq!(roots(&poses), vec![(3, 9, 5), (4, 1, 0), (4, 12, 0), (9, 0, 16)]);
    // A larger value still goes first, wherever it is in scan order.
    s.hm(16, 9, 0, 1.5000001);
    let poses = s.decode(&params(10));
    assert_eq!(roots(&poses), vec![(9, 0, 16), (3, 9, 5), (4, 1, 0), (4, 12, 0)]);
}

#[test]
fn equal_neighbours_are_both_local_maxima_and_the_first_suppresses_the_second() {
    let mut s = Synth::new();
    s.hm(0, 5, 5, 1.0).hm(0, 5, 6, 1.0);
    let h = s.heads();
    let c = candidates(&h, &params(5));
    assert_eq!(c.iter().map(|c| (c.y, c.x)).collect::<Vec<_>>(), vec![(5, 5), (5, 6)]);
    // (5,6) sits 16 px from pose 0's nose: suppressed.
    assert_eq!(roots(&s.decode(&params(5))), vec![(5, 5, 0)]);
    // Strictly greater neighbour: only it is a candidate.
    s.hm(0, 5, 6, 1.0000001);
    let c = candidates(&s.heads(), &params(5));
    assert_eq!(c.iter().map(|c| (c.y, c.x)).collect::<Vec<_>>(), vec![(5, 6)]);
}

#[test]
fn local_maximum_window_is_3x3_and_per_keypoint() {
    let mut s = Synth::new();
    // (6,6) is beaten by its diagonal neighbour (7,7), not by (6,8) two cells away, nor by
    // another keypoint's map.
    s.hm(3, 6, 6, 1.0).hm(3, 7, 7, 1.1).hm(3, 6, 8, 5.0).hm(4, 6, 6, 9.0);
    let c = candidates(&s.heads(), &params(5));
    let got: Vec<_> = c.iter().map(|c| (c.y, c.x, c.keypoint)).collect();
    // (7,7) is beaten by (6,8), which is in its window.
    assert_eq!(got, vec![(6, 6, 4), (6, 8, 3)]);
}

#[test]
fn border_candidates_use_clipped_windows() {
    let mut s = Synth::new();
    s.hm(0, 0, 0, 3.0).hm(0, 1, 1, 2.0); // corner beats its inner diagonal
    s.hm(1, 16, 16, 2.0).hm(1, 15, 16, 2.5); // corner beaten by the cell above
    s.hm(2, 0, 16, 1.0); // top-right corner alone
    s.hm(3, 16, 0, 1.0).hm(3, 16, 2, 4.0); // bottom-left, a beater outside its window
    let c = candidates(&s.heads(), &params(5));
    let got: Vec<_> = c.iter().map(|c| (c.y, c.x, c.keypoint)).collect();
    assert_eq!(got, vec![(0, 0, 0), (0, 16, 2), (15, 16, 1), (16, 0, 3), (16, 2, 3)]);
    let poses = s.decode(&params(10));
    let pos: Vec<_> = poses.iter().map(|p| (p.keypoints[p.root.keypoint].x, p.keypoints[p.root.keypoint].y)).collect();
    assert_eq!(pos, vec![(32.0, 256.0), (0.0, 0.0), (256.0, 240.0), (256.0, 0.0), (0.0, 256.0)]);
}

#[test]
fn root_exactly_at_r_is_rejected_just_past_it_accepted() {
    // Pose 0: nose root at cell (5,5) -> (80, 80). Candidate nose at cell (6,7) -> (96, 112)
    // + offsets (dy, dx) = (-4, -16) -> (92, 96): dy = 12, dx = 16, d^2 = 400 = R^2 exactly.
    let mut s = Synth::new();
    s.hm(0, 5, 5, 3.0).hm(0, 6, 7, 2.0).off(0, 6, 7, -4.0, -16.0);
    let h = s.heads();
    let c = candidates(&h, &params(5));
    let second = c.iter().find(|c| (c.y, c.x) == (6, 7)).unwrap();
    assert_eq!(candidate_position(&h, 16, second), (92.0, 96.0));
    assert_eq!(squared_distance(92.0, 96.0, 80.0, 80.0), 400.0);
    assert_eq!(roots(&s.decode(&params(5))), vec![(5, 5, 0)]);
    // One f32 ulp of x (at 96) further away: x = 96 + 2^-17, d^2 = 400.00024 > 400: accepted.
    s.off(0, 6, 7, -4.0, -16.0 + 1.0 / 131072.0);
    let h = s.heads();
    assert_eq!(candidate_position(&h, 16, second).1, 96.0 + 1.0 / 131072.0);
    assert_eq!(roots(&s.decode(&params(5))), vec![(5, 5, 0), (6, 7, 0)]);
    // R = 0 (tfjs's estimateMultiplePoses would refuse it, decodeMultiplePoses does not): only
    // identical positions suppress. (10,10) with offsets (-80,-80) sits exactly at (80,80).
    let p0 = MultiPoseParams { nms_radius: 0.0, ..params(5) };
    s.hm(0, 10, 10, 2.5).off(0, 10, 10, -80.0, -80.0);
    assert_eq!(roots(&s.decode(&p0)), vec![(5, 5, 0), (6, 7, 0)]);
    assert_eq!(roots(&s.decode(&params(5))), vec![(5, 5, 0), (6, 7, 0)]);
}

#[test]
fn pose_score_leaves_out_keypoints_within_r_of_an_earlier_pose_inclusive() {
    // Pose 0 at cell (5,5): all keypoints at (80,80). Pose 1's root k=9 (leftWrist) at (5,8):
    // (80,128), 48 px away. Every other keypoint of pose 1 but rightAnkle (16) is put exactly
    // 20 px (dy=12, dx=16) from (80,80), at (92,96): offsets (12,-32) at cell (5,8) for the first
    // refinement from the root's cell, (-4,0) at cell (6,6) for the second and for traversals
    // from (92,96). rightAnkle keeps zero offsets: (96,96), 22.6 px away.
    let mut s = Synth::new();
    s.hm(0, 5, 5, 3.0).hm(9, 5, 8, 2.0);
    for k in 0..17 {
        if k != 9 && k != 16 {
            s.off(k, 5, 8, 12.0, -32.0).off(k, 6, 6, -4.0, 0.0);
        }
    }
    let poses = s.decode(&params(5));
    assert_eq!(roots(&poses), vec![(5, 5, 0), (5, 8, 9)]);
    let p1 = &poses[1];
    for k in 0..17 {
        if k != 9 && k != 16 {
            assert_eq!((p1.keypoints[k].y, p1.keypoints[k].x), (92.0, 96.0), "k={k}");
        }
    }
    assert_eq!((p1.keypoints[16].y, p1.keypoints[16].x), (96.0, 96.0));
    // Only keypoints 9 and 16 count (the others are within R, inclusive), summed in order.
    assert_eq!(p1.score, (0.0 + p1.keypoints[9].score + p1.keypoints[16].score) / 17.0);
    // Pose 0 has no earlier pose: all 17 count.
    let mut sum = 0.0f32;
    for kp in &poses[0].keypoints {
        sum += kp.score;
    }
    assert_eq!(poses[0].score, sum / 17.0);
}

#[test]
fn displacements_off_the_grid_clamp_the_cell_not_the_position() {
    // Root nose at (8,8) -> (128,128). Forward edge 0 (nose -> leftEye) displacement (+1000,
    // -1000): the point (1128, -872) reads cell (16, 0); the leftEye offsets there are (3, -5),
    // so leftEye = (16*16 + 3, 0*16 - 5) = (259, -5): outside the image, never clamped.
    let mut s = Synth::new();
    s.hm(0, 8, 8, 2.0).fwd(0, 8, 8, 1000.0, -1000.0).off(1, 16, 0, 3.0, -5.0).hm(1, 16, 0, 0.25);
    let p = &s.decode(&params(1))[0];
    let le = p.keypoints[1];
    assert_eq!((le.y, le.x, le.cell), (259.0, -5.0, (16, 0)));
    assert_eq!(le.score, sigmoid(0.25));
    // Its child leftEar (edge 1) is read from leftEye's cell (cell(259) = 16, cell(-5) = 0).
    s.fwd(1, 16, 0, -7.0, 2.0);
    let p = &s.decode(&params(1))[0];
    assert_eq!(p.keypoints[3].cell, (16, 0)); // (252, -3) -> cells (16, 0)
                                              // Infinite and NaN displacements: +inf -> last cell, -inf and NaN -> cell 0.
    s.fwd(2, 8, 8, f32::INFINITY, f32::NAN).off(2, 16, 0, 1.0, 2.0);
    let p = &s.decode(&params(1))[0];
    assert_eq!((p.keypoints[2].y, p.keypoints[2].x, p.keypoints[2].cell), (257.0, 2.0, (16, 0)));
    s.fwd(2, 8, 8, f32::NEG_INFINITY, 1e30).off(2, 0, 16, 4.0, 6.0);
    let p = &s.decode(&params(1))[0];
    assert_eq!((p.keypoints[2].y, p.keypoints[2].x, p.keypoints[2].cell), (4.0, 262.0, (0, 16)));
}

#[test]
fn cell_rounds_half_up_and_clamps() {
    let s = 16.0;
    assert_eq!(cell(8.0, s, 17), 1); // 0.5 -> 1 (half to even would give 0)
    assert_eq!(cell(40.0, s, 17), 3); // 2.5 -> 3 (half to even: 2)
    assert_eq!(cell(24.0, s, 17), 2); // 1.5 -> 2
    assert_eq!(cell(7.9999995, s, 17), 1); // documented: q = 0.5 - 2^-25, q + 0.5 rounds to 1.0
    assert_eq!(cell(7.999999, s, 17), 0); // q = 0.5 - 2^-24: 0
    assert_eq!(cell(-8.0, s, 17), 0); // -0.5 -> 0 (Math.round gives -0, clamped 0)
    assert_eq!(cell(-8.000001, s, 17), 0); // -> -1 clamped
    assert_eq!(cell(263.99998, s, 17), 16);
    assert_eq!(cell(264.0, s, 17), 16); // 16.5 -> 17 clamped to 16
    assert_eq!(cell(f32::NAN, s, 17), 0);
    assert_eq!(cell(f32::INFINITY, s, 17), 16);
    assert_eq!(cell(f32::NEG_INFINITY, s, 17), 0);
    assert_eq!(cell(f32::MAX, s, 17), 16);
    // A stride that is not a power of two divides: 36 / 24 = 1.5 -> 2.
    assert_eq!(cell(36.0, 24.0, 17), 2);
    assert_eq!(cell(12.0, 24.0, 17), 1);
}

#[test]
fn half_cell_in_traversal_rounds_up() {
    // Root nose at cell (0,0) -> (0,0). Backward... nose is the chain's root, so everything is
    // forward. Edge 0 displacement (8, 40) -> (8, 40) -> cells (1, 3), not (0, 2).
    let mut s = Synth::new();
    s.hm(0, 0, 0, 2.0).fwd(0, 0, 0, 8.0, 40.0);
    let p = &s.decode(&params(1))[0];
    assert_eq!((p.keypoints[1].y, p.keypoints[1].x, p.keypoints[1].cell), (16.0, 48.0, (1, 3)));
    // The documented deviation from Math.round: x = 8 - 2^-21, q = 0.5 - 2^-25, q + 0.5 rounds
    // to 1.0 in f32: cell 1 (tfjs: cell 0, x = 0; shown by tfjs/crafted.js).
    s.fwd(0, 0, 0, 0.0, 8.0 - 1.0 / 2097152.0);
    let p = &s.decode(&params(1))[0];
    assert_eq!((p.keypoints[1].x, p.keypoints[1].cell), (16.0, (0, 1)));
}

#[test]
fn two_offset_refinements() {
    // Root nose at (4,4) -> (64,64). Edge 0 displacement (0, 32) -> (64, 96): cell (4,6).
    // leftEye offsets at (4,6): (0, 20) -> (64, 116): cell (4,7). Offsets at (4,7): (1, -3) ->
    // (65, 109). With one refinement it would stay (64, 116); a third would read cell (4,7) again.
    let mut s = Synth::new();
    s.hm(0, 4, 4, 2.0).fwd(0, 4, 4, 0.0, 32.0).off(1, 4, 6, 0.0, 20.0).off(1, 4, 7, 1.0, -3.0);
    s.hm(1, 4, 7, 0.75).hm(1, 4, 6, 0.0);
    let p = &s.decode(&params(1))[0];
    let le = p.keypoints[1];
    assert_eq!((le.y, le.x, le.cell), (65.0, 109.0, (4, 7)));
    assert_eq!(le.score, sigmoid(0.75));
}

#[test]
fn backward_then_forward_with_the_right_displacements() {
    // Root leftWrist (9) at cell (8,8) -> (128,128). Backward: edge 6 (7 <- 9), 5 (5 <- 7), 4
    // (0 <- 5); then forward from nose along 0, 1, 2, 3, 10.., and from leftShoulder 7 (-> 11)...
    // Give bwd edge 6 at (8,8) (-32, 0): leftElbow at cell (6,8) -> (96,128); fwd edge 6 at
    // (8,8) (+32, 0) must NOT be used (leftWrist is already decoded).
    let mut s = Synth::new();
    s.hm(9, 8, 8, 2.0).bwd(6, 8, 8, -32.0, 0.0).fwd(6, 8, 8, 32.0, 0.0);
    // leftElbow -> leftShoulder by bwd edge 5 at leftElbow's cell (6,8): (0, -32) -> (96, 96).
    s.bwd(5, 6, 8, 0.0, -32.0).fwd(5, 6, 8, 0.0, 64.0);
    // leftShoulder -> nose by bwd edge 4 at (6,6): (-64, 0) -> (32, 96).
    s.bwd(4, 6, 6, -64.0, 0.0);
    // nose -> leftEye forward edge 0 at (2,6): (0, 16) -> (32, 112). bwd edge 0 there is a decoy.
    s.fwd(0, 2, 6, 0.0, 16.0).bwd(0, 2, 6, 100.0, 100.0);
    // leftShoulder -> leftHip forward edge 7 at (6,6): (48, 0) -> (144, 96).
    s.fwd(7, 6, 6, 48.0, 0.0).bwd(7, 6, 6, -48.0, 0.0);
    let p = &s.decode(&params(1))[0];
    let at = |k: usize| (p.keypoints[k].y, p.keypoints[k].x);
    assert_eq!(at(9), (128.0, 128.0));
    assert_eq!(at(7), (96.0, 128.0));
    assert_eq!(at(5), (96.0, 96.0));
    assert_eq!(at(0), (32.0, 96.0));
    assert_eq!(at(1), (32.0, 112.0));
    assert_eq!(at(11), (144.0, 96.0));
    // Everything else sits where its parent is (zero displacement there).
    assert_eq!(at(3), (32.0, 112.0)); // leftEar from leftEye
    assert_eq!(at(2), (32.0, 96.0)); // rightEye from nose
    assert_eq!(at(13), (144.0, 96.0)); // leftKnee from leftHip
}

#[test]
fn fewer_candidates_than_n_and_fixed_output() {
    let mut s = Synth::new();
    s.hm(0, 2, 2, 1.0).hm(0, 10, 10, 2.0);
    let poses = s.decode(&params(5));
    assert_eq!(roots(&poses), vec![(10, 10, 0), (2, 2, 0)]);
    let fixed = to_fixed(&[poses.clone(), vec![]], 5);
    assert_eq!((fixed.batch, fixed.max_poses), (2, 5));
    assert_eq!(fixed.poses.len(), 2 * 5 * 17 * 3);
    assert_eq!(fixed.pose_scores, vec![poses[0].score, poses[1].score, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]);
    let kp = |b: usize, n: usize, k: usize| {
        let i = ((b * 5 + n) * 17 + k) * 3;
        [fixed.poses[i], fixed.poses[i + 1], fixed.poses[i + 2]]
    };
    assert_eq!(kp(0, 0, 0), [160.0, 160.0, sigmoid(2.0)]);
    assert_eq!(kp(0, 1, 4), [32.0, 32.0, sigmoid(LOW)]);
    for n in 2..5 {
        for k in 0..17 {
            assert_eq!(kp(0, n, k), [0.0; 3]);
        }
    }
    for n in 0..5 {
        for k in 0..17 {
            assert_eq!(kp(1, n, k), [0.0; 3]);
        }
    }
    // More poses than N slots: the extra ones are dropped.
    assert_eq!(to_fixed(std::slice::from_ref(&poses), 1).pose_scores, vec![poses[0].score]);
}

#[test]
fn no_candidates_at_all() {
    let s = Synth::new();
    assert!(s.decode(&params(5)).is_empty());
    let fixed = to_fixed(&[vec![]], 3);
    assert!(fixed.pose_scores.iter().all(|&v| v == -1.0));
    assert!(fixed.poses.iter().all(|&v| v == 0.0));
    // Just below the threshold (logit < 0) is not a candidate; exactly at it is.
    let mut s = Synth::new();
    s.hm(0, 3, 3, -1e-30);
    assert!(s.decode(&params(5)).is_empty());
    s.hm(0, 3, 3, 0.0);
    assert_eq!(s.decode(&params(5)).len(), 1);
    // N = 0: nothing.
    assert!(s.decode(&params(0)).is_empty());
}

#[test]
fn all_equal_maps() {
    let mut s = Synth::new();
    s.hm.iter_mut().for_each(|v| *v = 1.0);
    let h = s.heads();
    assert_eq!(candidates(&h, &params(5)).len(), 17 * 17 * 17);
    // Scan order; a candidate within 20 px of an accepted pose's keypoint is suppressed. Row 0
    // takes every other cell (16 px apart is suppressed), row 1 the odd cells (22.6 px from the
    // diagonal neighbours), ...: the cells with y + x even.
    let poses = s.decode(&params(12));
    let want: Vec<_> = (0..9).map(|i| (0, 2 * i, 0)).chain((0..3).map(|i| (1, 2 * i + 1, 0))).collect();
    assert_eq!(roots(&poses), want);
    for p in &poses {
        assert_eq!(p.score, {
            let mut sum = 0.0f32;
            for _ in 0..17 {
                sum += sigmoid(1.0);
            }
            sum / 17.0
        });
    }
    // 145 cells have y + x even; then nothing is left.
    let all = s.decode(&params(1000));
    assert_eq!(all.len(), 145);
    assert!(all.iter().all(|p| (p.root.y + p.root.x) % 2 == 0 && p.root.keypoint == 0));
}

#[test]
fn thresholds_in_the_logit_domain() {
    assert_eq!(decision_threshold(0.5, ScoreMode::Sigmoid), 0.0);
    assert_eq!(decision_threshold(0.0, ScoreMode::Sigmoid), f32::NEG_INFINITY);
    assert_eq!(decision_threshold(1.0, ScoreMode::Sigmoid), f32::INFINITY);
    assert!(decision_threshold(1.5, ScoreMode::Sigmoid).is_nan());
    assert_eq!(decision_threshold(0.3, ScoreMode::Raw), 0.3);
    let mut s = Synth::new();
    s.hm(0, 3, 3, f32::MAX);
    // T = 1: +inf, nothing passes (tfjs would take the saturated score 1.0).
    assert!(s.decode(&MultiPoseParams { score_threshold: 1.0, ..params(5) }).is_empty());
    // T = 0: every non-NaN local maximum (here the flat -10 background too).
    let all = candidates(&s.heads(), &MultiPoseParams { score_threshold: 0.0, ..params(5) });
    assert_eq!(all.len(), 16 * 17 * 17 + 1 + (17 * 17 - 9));
    // T = 0.75: ln(3) in f32.
    let t = decision_threshold(0.75, ScoreMode::Sigmoid);
    assert_eq!(t, 3.0f32.ln());
    s.hm(1, 8, 8, t).hm(2, 8, 8, f32::from_bits(t.to_bits() - 1));
    let c = candidates(&s.heads(), &MultiPoseParams { score_threshold: 0.75, ..params(5) });
    assert_eq!(c.iter().map(|c| c.keypoint).collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn raw_mode_decides_and_scores_on_the_values() {
    let mut s = Synth::new();
    s.mode = ScoreMode::Raw;
    s.hm.iter_mut().for_each(|v| *v = 0.1);
    s.hm(0, 3, 3, 0.5).hm(0, 9, 9, 0.49999997).hm(4, 12, 2, 0.9);
    let poses = s.decode(&params(5));
    assert_eq!(roots(&poses), vec![(12, 2, 4), (3, 3, 0)]);
    assert_eq!(poses[0].keypoints[4].score, 0.9);
    assert_eq!(poses[0].keypoints[0].score, 0.1);
}

#[test]
fn non_finite_heatmaps() {
    let mut s = Synth::new();
    // +inf ties with f32::MAX (clamped): both candidates; the first in scan order leads.
    s.hm(0, 2, 2, f32::MAX).hm(0, 10, 10, f32::INFINITY);
    let poses = s.decode(&params(5));
    assert_eq!(roots(&poses), vec![(2, 2, 0), (10, 10, 0)]);
    assert_eq!(poses[1].root.value, f32::MAX);
    assert_eq!(poses[1].keypoints[0].score, 1.0);
    // A NaN cell is never a candidate and never beats a neighbour.
    let mut s = Synth::new();
    s.hm(3, 5, 5, f32::NAN).hm(3, 5, 6, 0.5);
    let c = candidates(&s.heads(), &params(5));
    assert_eq!(c.iter().map(|c| (c.y, c.x, c.keypoint)).collect::<Vec<_>>(), vec![(5, 6, 3)]);
    // A NaN score read by the traversal makes the pose score NaN.
    s.hm(0, 5, 6, f32::NAN);
    let p = &s.decode(&params(5))[0];
    assert!(p.keypoints[0].score.is_nan() && p.score.is_nan());
    // -inf everywhere: no candidate at T = 0.5; at T = 0 all are (clamped to f32::MIN).
    let mut s = Synth::new();
    s.hm.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
    assert!(s.decode(&params(5)).is_empty());
    let p = s.decode(&MultiPoseParams { score_threshold: 0.0, ..params(1) });
    assert_eq!((p.len(), p[0].keypoints[0].score), (1, 0.0));
}

#[test]
fn nan_positions_never_suppress() {
    // Offsets NaN at the first root: its keypoints are NaN and suppress nothing.
    let mut s = Synth::new();
    // The second root, (7,7) with offsets (-32,-32), sits exactly at (80,80), where pose 0's nose
    // would be without the NaN: its squared distance is NaN, so it is accepted.
    s.hm(0, 5, 5, 3.0).off(0, 5, 5, f32::NAN, 0.0).hm(0, 7, 7, 2.0).off(0, 7, 7, -32.0, -32.0);
    let poses = s.decode(&params(5));
    assert_eq!(roots(&poses), vec![(5, 5, 0), (7, 7, 0)]);
    assert!(poses[0].keypoints[0].y.is_nan());
    // A NaN root position is not suppressed by its own pose: the unrolled form must not take it
    // again (the "taken" mask); with N = 5 there are still just the two poses.
    assert_eq!(poses.len(), 2);
    // Same with an infinite offset (inf - inf = NaN) and with R = NaN.
    s.off(0, 5, 5, f32::INFINITY, 0.0);
    assert_eq!(roots(&s.decode(&params(5))), vec![(5, 5, 0), (7, 7, 0)]);
    s.off(0, 5, 5, 0.0, 0.0);
    assert_eq!(roots(&s.decode(&MultiPoseParams { nms_radius: f32::NAN, ..params(5) })), vec![(5, 5, 0), (7, 7, 0)]);
}

#[test]
fn shape_errors() {
    let z = vec![0.0f32; 34 * 4];
    assert!(HeadMaps::new(&z[..17 * 4], &z, &z[..32 * 4], &z[..32 * 4], (2, 2), 16, ScoreMode::Sigmoid).is_ok());
    let e = HeadMaps::new(&z[..17 * 4], &z[..33 * 4], &z[..32 * 4], &z[..32 * 4], (2, 2), 16, ScoreMode::Sigmoid)
        .unwrap_err();
    assert_eq!((e.head, e.expected, e.actual), ("offsets", 136, 132));
    assert!(HeadMaps::new(&[], &[], &[], &[], (0, 5), 16, ScoreMode::Sigmoid).is_err());
}

#[test]
fn one_by_one_and_non_square_grids() {
    let mut s = Synth::sized(1, 1);
    s.hm(7, 0, 0, 0.5).off(7, 0, 0, 3.0, 4.0);
    let poses = s.decode(&params(3));
    assert_eq!(poses.len(), 1);
    assert_eq!((poses[0].keypoints[7].y, poses[0].keypoints[7].x), (3.0, 4.0));
    let mut s = Synth::sized(3, 9);
    s.hm(0, 2, 8, 1.0).fwd(0, 2, 8, 100.0, 100.0);
    let p = &s.decode(&params(1))[0];
    assert_eq!(p.keypoints[1].cell, (2, 8));
}

/// A small seeded generator (xorshift64*), so the random cases are reproducible without crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

#[test]
fn queue_and_unrolled_forms_agree_on_random_heads() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut total = 0;
    for case in 0..200 {
        let (h, w) = (1 + (rng.next() % 12) as usize, 1 + (rng.next() % 12) as usize);
        let mut s = Synth::sized(h, w);
        // Coarse logits to create ties, some plateaus.
        let coarse = case % 3 == 0;
        for v in s.hm.iter_mut() {
            let u = rng.uniform(-3.0, 3.0);
            *v = if coarse { (u * 2.0).round() / 2.0 } else { u };
        }
        for v in s.off.iter_mut() {
            *v = rng.uniform(-12.0, 12.0);
        }
        for v in s.fwd.iter_mut().chain(s.bwd.iter_mut()) {
            *v = rng.uniform(-48.0, 48.0);
        }
        let p = MultiPoseParams {
            max_poses: 1 + (rng.next() % 20) as usize,
            score_threshold: [0.0, 0.3, 0.5, 0.8][case % 4],
            nms_radius: [0.0, 8.0, 20.0, 40.0][(case / 4) % 4],
        };
        s.stride = [8, 16, 24, 32][(case / 16) % 4];
        total += s.decode(&p).len(); // asserts both forms agree
    }
    assert!(total > 500, "only {total} poses");
}

/// Both forms on the heads the real model computes (tract) for every shared photo: real heatmaps
/// have plateaus, near-ties and many candidates that the crafted and random heads above lack.
#[test]
fn queue_and_unrolled_forms_agree_on_the_real_heads() {
    // Without the photos: a note, or a failure in CI.
    let Some(photos) = crate::common::shared_photos() else { return };
    assert!(photos.len() >= 20, "{} shared photos", photos.len());
    let (mut decoded, mut crowded) = (0, 0);
    for (photo, heads) in photos.iter().zip(crate::common::real_model_heads(&photos)) {
        let heads =
            HeadMaps::new(&heads[0], &heads[1], &heads[2], &heads[3], (17, 17), 16, ScoreMode::Sigmoid).unwrap();
        for max_poses in [1, 5, 10, 50] {
            for nms_radius in [10.0, 20.0, 30.0] {
                let prm = MultiPoseParams { max_poses, nms_radius, ..MultiPoseParams::default() };
                let queue = decode_multiple_poses(&heads, &prm);
                let unrolled = decode_multiple_poses_unrolled(&heads, &prm);
                assert_eq!(queue, unrolled, "{}, N = {max_poses}, R = {nms_radius}", photo.display());
                decoded += queue.len();
                crowded += usize::from(max_poses == 5 && nms_radius == 20.0 && queue.len() >= 2);
            }
        }
    }
    eprintln!("{} photos: {decoded} poses over 12 settings, {crowded} photos with several at N = 5", photos.len());
    // Agreement on nothing would prove nothing: the photos give many poses, several per photo.
    assert!(decoded >= 500 && crowded >= 10, "{decoded} poses, {crowded} photos with several at N = 5");
}
