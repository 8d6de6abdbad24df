//! The crafted heads: ties, huge values, infinities, borders, the NMS radius and the threshold.

use tract_onnx::prelude::tract_ndarray::{Array4, ArrayD, Axis};

use crate::contract::{Layout, MultiPoseParams, ScoreMode, NUM_KEYPOINTS};
use crate::rng::Rng;

/// Crafted heads with a name.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub name: &'static str,
    pub heatmaps: ArrayD<f32>,
    pub offsets: ArrayD<f32>,
}

/// The heatmaps of one batch item, `[17, h, w]`, filled by a case.
type Fill = fn(&mut Array4<f32>, usize, &mut Rng);

/// The crafted cases for heads of these shapes (in `layout`). Each batch item gets its own seed,
/// and ties sit at positions that move with the item, so mixing items up shows.
///
/// Huge values and infinities are crafted only for logit heatmaps ([`ScoreMode::Sigmoid`]).
/// Raw-score heatmaps come out of a Sigmoid, so they are finite and in [0, 1] (the
/// `probabilities` case); and the decoder documents that a non-finite raw score turns its
/// whole output NaN (the Conv that places the scores multiplies it by 0).
pub(crate) fn crafted_cases(
    heatmaps_shape: &[usize],
    offsets_shape: &[usize],
    layout: Layout,
    scores: ScoreMode,
) -> Vec<Case> {
    let (hy, wx) = layout.spatial_axes();
    let (n, h, w) = (heatmaps_shape[0], heatmaps_shape[hy], heatmaps_shape[wx]);
    debug_assert_eq!(offsets_shape[0], n);
    let mut cases: Vec<(&str, Fill)> = vec![
        ("ties-in-rows", ties_in_rows),
        ("all-equal", all_equal),
        ("first-and-last-cell", first_and_last),
        ("probabilities", probabilities),
    ];
    if scores == ScoreMode::Sigmoid {
        cases.extend([("huge-values", huge_values as Fill), ("infinities", infinities), ("all-neg-inf", all_neg_inf)]);
    }
    cases
        .iter()
        .enumerate()
        .map(|(i, (name, fill))| {
            let mut rng = Rng::new(0xD1EC_7000 + i as u64);
            let mut heatmaps = Array4::<f32>::zeros((n, NUM_KEYPOINTS, h, w));
            for b in 0..n {
                let mut item = heatmaps.index_axis(Axis(0), b).to_owned().insert_axis(Axis(0));
                fill(&mut item, b, &mut rng);
                heatmaps.index_axis_mut(Axis(0), b).assign(&item.index_axis(Axis(0), 0));
            }
            // Offsets: distinct per keypoint, axis and cell, within a cell or two (quarter pixels
            // keep every sum exact, so only a real error shows as a delta).
            let offsets =
                Array4::from_shape_fn((n, 2 * NUM_KEYPOINTS, h, w), |_| (rng.uniform(-96.0, 96.0)).round() / 4.0);
            Case { name, heatmaps: to_layout(heatmaps, layout), offsets: to_layout(offsets, layout) }
        })
        .collect()
}

/// Crafted heads for the multi-pose decoder: heatmaps, offsets, forward and backward
/// displacements.
#[derive(Clone, Debug)]
pub(crate) struct MultiPoseCase {
    pub name: &'static str,
    pub heads: [ArrayD<f32>; 4],
}

/// What a multi-pose case is built against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MultiPoseGrid {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub stride: u32,
    pub scores: ScoreMode,
    pub params: MultiPoseParams,
}

impl MultiPoseGrid {
    /// The heatmap value whose score is `s` (in (0, 1)) in this score mode.
    fn value(&self, s: f32) -> f32 {
        match self.scores {
            ScoreMode::Sigmoid => (s / (1.0 - s)).ln(),
            ScoreMode::Raw => s,
        }
    }

    /// A score `t` of the way from the threshold to 1 (t in (0, 1)): a candidate.
    fn above(&self, t: f32) -> f32 {
        let floor = self.params.score_threshold.clamp(0.0, 1.0);
        self.value(floor + (1.0 - floor) * t)
    }

    /// A score well below the threshold (0.4 of it): never a candidate unless T is 0.
    fn below(&self) -> f32 {
        self.value((0.4 * self.params.score_threshold).max(1e-6))
    }
}

/// Four NCHW heads of one batch item being crafted.
struct Crafted {
    heatmaps: Array4<f32>,
    offsets: Array4<f32>,
    fwd: Array4<f32>,
    bwd: Array4<f32>,
}

type MultiFill = fn(&mut Crafted, &MultiPoseGrid, usize, &mut Rng);

/// Quarter pixels keep every sum of positions exact, so only a real error shows as a delta.
fn quarter(rng: &mut Rng, span: f32) -> f32 {
    (rng.uniform(-span, span) * 4.0).round() / 4.0
}

/// The multi-pose situations a photo rarely shows: tied candidates, candidates on the border,
/// a candidate exactly at R from an accepted pose's keypoint, displacements pointing off the
/// grid, positions at exactly half a cell, fewer candidates than N, none, all-equal maps.
pub(crate) fn crafted_multi_pose_cases(g: &MultiPoseGrid, layout: Layout) -> Vec<MultiPoseCase> {
    let cases: [(&'static str, MultiFill); 9] = [
        ("poses-random", mp_random),
        ("poses-at-the-threshold", mp_at_threshold),
        ("poses-tied-candidates", mp_tied),
        ("poses-on-the-border", mp_border),
        ("poses-root-at-nms-radius", mp_at_radius),
        ("poses-half-cells", mp_half_cells),
        ("poses-fewer-candidates-than-slots", mp_few),
        ("poses-no-candidate", mp_none),
        ("poses-all-equal", mp_all_equal),
    ];
    let (n, h, w) = (g.batch, g.height, g.width);
    let stride = g.stride as f32;
    cases
        .iter()
        .enumerate()
        .map(|(i, (name, fill))| {
            let mut rng = Rng::new(0x9053_5000 + i as u64);
            let mut all = Crafted {
                heatmaps: Array4::zeros((n, NUM_KEYPOINTS, h, w)),
                offsets: Array4::zeros((n, 2 * NUM_KEYPOINTS, h, w)),
                fwd: Array4::zeros((n, 32, h, w)),
                bwd: Array4::zeros((n, 32, h, w)),
            };
            for b in 0..n {
                let mut item = Crafted {
                    heatmaps: Array4::from_elem((1, NUM_KEYPOINTS, h, w), g.below()),
                    offsets: Array4::from_shape_fn((1, 2 * NUM_KEYPOINTS, h, w), |_| quarter(&mut rng, stride)),
                    fwd: Array4::from_shape_fn((1, 32, h, w), |_| quarter(&mut rng, 2.0 * stride)),
                    bwd: Array4::from_shape_fn((1, 32, h, w), |_| quarter(&mut rng, 2.0 * stride)),
                };
                fill(&mut item, g, b, &mut rng);
                for (to, from) in [
                    (&mut all.heatmaps, &item.heatmaps),
                    (&mut all.offsets, &item.offsets),
                    (&mut all.fwd, &item.fwd),
                    (&mut all.bwd, &item.bwd),
                ] {
                    to.index_axis_mut(Axis(0), b).assign(&from.index_axis(Axis(0), 0));
                }
            }
            let Crafted { heatmaps, offsets, fwd, bwd } = all;
            MultiPoseCase { name, heads: [heatmaps, offsets, fwd, bwd].map(|a| to_layout(a, layout)) }
        })
        .collect()
}

/// Scores anywhere in (0, 1), near the threshold too; some displacements ten cells long.
fn mp_random(c: &mut Crafted, g: &MultiPoseGrid, _b: usize, rng: &mut Rng) {
    c.heatmaps.iter_mut().for_each(|v| *v = g.value(rng.uniform(0.02, 0.98)));
    let far = 10.0 * g.stride as f32;
    for d in c.fwd.iter_mut().chain(c.bwd.iter_mut()) {
        if rng.next_f32() < 0.1 {
            *d = quarter(rng, far);
        }
    }
}

/// One local maximum exactly at the threshold (a candidate: `>=`), the others one f32 step
/// below it (the smallest normal float below 0 for a threshold of 0) or a little below in score
/// (not candidates): one pose, whatever N.
fn mp_at_threshold(c: &mut Crafted, g: &MultiPoseGrid, b: usize, _rng: &mut Rng) {
    let threshold = crate::reference::multi_pose::decision_threshold(g.params.score_threshold, g.scores);
    if !threshold.is_finite() {
        return;
    }
    let apart: Vec<(usize, usize)> =
        (0..g.height).step_by(2).flat_map(|y| (0..g.width).step_by(2).map(move |x| (y, x))).collect();
    let t = g.params.score_threshold;
    // One float step below, but not into the subnormals (T = 0.5 puts the threshold at 0): Convs
    // may flush those to zero (tract's, which moves NHWC heads to NCHW), making them pass.
    let step_below = Some(threshold.next_down()).filter(|v| v.is_normal()).unwrap_or(-f32::MIN_POSITIVE);
    let below = [step_below, g.value(0.9 * t), g.value(0.97 * t)];
    for k in 0..NUM_KEYPOINTS {
        let (y, x) = apart[(k + b) % apart.len()];
        c.heatmaps[[0, k, y, x]] = if k == b % NUM_KEYPOINTS { threshold } else { below[k % below.len()] };
    }
}

/// Candidates on four score levels only: equal scores across cells and keypoints.
fn mp_tied(c: &mut Crafted, g: &MultiPoseGrid, _b: usize, rng: &mut Rng) {
    let levels = [0.2, 0.4, 0.6, 0.8].map(|t| g.above(t));
    c.heatmaps
        .iter_mut()
        .for_each(|v| *v = if rng.next_f32() < 0.3 { g.below() } else { levels[(rng.next_f32() * 4.0) as usize % 4] });
}

/// Candidates only on the border cells, displacements pointing away from the grid.
fn mp_border(c: &mut Crafted, g: &MultiPoseGrid, b: usize, rng: &mut Rng) {
    let (h, w) = (g.height, g.width);
    for k in 0..NUM_KEYPOINTS {
        for (y, x) in [(0, (k + b) % w), (h - 1, (2 * k + b) % w), ((k + b) % h, 0), ((3 * k + b) % h, w - 1)] {
            c.heatmaps[[0, k, y, x]] = g.above(rng.next_f32());
        }
    }
    let out = 3.0 * (h.max(w) as f32) * g.stride as f32;
    for (e, d) in c.fwd.iter_mut().chain(c.bwd.iter_mut()).enumerate() {
        *d = if e % 2 == 0 { out } else { -out };
    }
}

/// A first candidate A of keypoint k, then B of the same keypoint exactly R from A's position
/// (suppressed: `d^2 <= R^2`), then C a quarter pixel further (kept), for a few keypoints.
fn mp_at_radius(c: &mut Crafted, g: &MultiPoseGrid, b: usize, _rng: &mut Rng) {
    let (h, w, s) = (g.height, g.width, g.stride as f32);
    // Cells two apart on both axes: none is in another's 3x3 window, so each is a local maximum.
    let apart: Vec<(usize, usize)> = (0..h).step_by(2).flat_map(|y| (0..w).step_by(2).map(move |x| (y, x))).collect();
    if apart.len() < 3 {
        return;
    }
    for (i, k) in [0, 5, 9, 16].into_iter().enumerate() {
        // Three such cells; their offsets place B and C relative to A's position.
        let at = |j: usize| apart[(i + j + b) % apart.len()];
        let (a, bb, cc) = (at(0), at(1), at(2));
        let score = |t: f32| g.above(t);
        // A, B, C of one keypoint follow each other in score, before the next keypoint's A.
        let top = 0.95 - 0.2 * i as f32;
        c.heatmaps[[0, k, a.0, a.1]] = score(top);
        c.heatmaps[[0, k, bb.0, bb.1]] = score(top - 0.05);
        c.heatmaps[[0, k, cc.0, cc.1]] = score(top - 0.1);
        let pos = |cell: (usize, usize), c: &Crafted| {
            (
                cell.0 as f32 * s + c.offsets[[0, k, cell.0, cell.1]],
                cell.1 as f32 * s + c.offsets[[0, k + 17, cell.0, cell.1]],
            )
        };
        let (ay, ax) = pos(a, c);
        for (cell, extra) in [(bb, 0.0), (cc, 0.25)] {
            c.offsets[[0, k, cell.0, cell.1]] = ay - cell.0 as f32 * s;
            c.offsets[[0, k + 17, cell.0, cell.1]] = ax + g.params.nms_radius + extra - cell.1 as f32 * s;
        }
    }
}

/// Offsets and displacements of exactly half a cell: every position lies on a rounding boundary.
fn mp_half_cells(c: &mut Crafted, g: &MultiPoseGrid, _b: usize, rng: &mut Rng) {
    let half = g.stride as f32 / 2.0;
    c.heatmaps.iter_mut().for_each(|v| *v = if rng.next_f32() < 0.3 { g.above(rng.next_f32()) } else { g.below() });
    for v in c.offsets.iter_mut() {
        *v = if rng.next_f32() < 0.5 { half } else { -half };
    }
    for v in c.fwd.iter_mut().chain(c.bwd.iter_mut()) {
        *v = half * (rng.uniform(-4.0, 4.0).round() * 2.0 + 1.0);
    }
}

/// N - 1 candidates (none for N = 1), of distinct keypoints, in distinct cells.
fn mp_few(c: &mut Crafted, g: &MultiPoseGrid, b: usize, _rng: &mut Rng) {
    let cells = g.height * g.width;
    for i in 0..(g.params.max_poses - 1).min(NUM_KEYPOINTS) {
        let cell = (7 * i + b) % cells;
        c.heatmaps[[0, i, cell / g.width, cell % g.width]] = g.above(0.5);
    }
}

/// Everything below the threshold: every slot empty.
fn mp_none(_c: &mut Crafted, _g: &MultiPoseGrid, _b: usize, _rng: &mut Rng) {}

/// Every cell of every map at one score above the threshold: every cell a candidate, all tied.
fn mp_all_equal(c: &mut Crafted, g: &MultiPoseGrid, _b: usize, _rng: &mut Rng) {
    c.heatmaps.fill(g.above(0.5));
}

fn to_layout(a: Array4<f32>, layout: Layout) -> ArrayD<f32> {
    match layout {
        Layout::Nchw => a.into_dyn(),
        Layout::Nhwc => a.permuted_axes([0, 2, 3, 1]).as_standard_layout().into_owned().into_dyn(),
    }
}

fn dims(hm: &Array4<f32>) -> (usize, usize) {
    (hm.shape()[2], hm.shape()[3])
}

fn fill_uniform(hm: &mut Array4<f32>, rng: &mut Rng, lo: f32, hi: f32) {
    hm.iter_mut().for_each(|v| *v = rng.uniform(lo, hi));
}

/// Two or three equal maxima per keypoint: in different rows with the later row's column to the
/// left (so a column-major scan would pick the other), and for odd keypoints a third in the
/// same row as the later one. A 1-row map gets its ties within the row.
fn ties_in_rows(hm: &mut Array4<f32>, b: usize, rng: &mut Rng) {
    let (h, w) = dims(hm);
    fill_uniform(hm, rng, -4.0, 2.0);
    for k in 0..NUM_KEYPOINTS {
        let top = 2.5 + k as f32 * 0.125;
        let (c1, c2) = (w - 1 - (k + b) % w, (k + b) % w);
        if h >= 2 {
            let r1 = (k + b) % (h - 1);
            hm[[0, k, r1, c1]] = top;
            hm[[0, k, h - 1, c2]] = top;
            if k % 2 == 1 {
                hm[[0, k, h - 1, w - 1]] = top;
            }
        } else {
            hm[[0, k, 0, c1]] = top;
            hm[[0, k, 0, c2]] = top;
        }
    }
}

/// Every cell of a map equal (a different value per keypoint): the first cell must win.
fn all_equal(hm: &mut Array4<f32>, _b: usize, rng: &mut Rng) {
    for k in 0..NUM_KEYPOINTS {
        let v = rng.uniform(-3.0, 3.0);
        hm.index_axis_mut(Axis(1), k).fill(v);
    }
}

/// The maximum at the first cell, at the last cell, or tied between the two.
fn first_and_last(hm: &mut Array4<f32>, b: usize, rng: &mut Rng) {
    let (h, w) = dims(hm);
    fill_uniform(hm, rng, -4.0, 0.0);
    for k in 0..NUM_KEYPOINTS {
        let (first, last) = match (k + b) % 3 {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        if first {
            hm[[0, k, 0, 0]] = 1.0;
        }
        if last {
            hm[[0, k, h - 1, w - 1]] = 1.0;
        }
    }
}

/// Values of magnitude 1e30 and beyond, ties among them, and maps entirely at -1e30 scale.
fn huge_values(hm: &mut Array4<f32>, b: usize, rng: &mut Rng) {
    let (h, w) = dims(hm);
    hm.iter_mut().for_each(|v| *v = rng.uniform(-1.0, 1.0) * 1e30);
    for k in 0..NUM_KEYPOINTS {
        let (y, x) = ((k + b) % h, (3 * k + b) % w);
        match k % 3 {
            0 => {
                hm[[0, k, y, x]] = f32::MAX;
                hm[[0, k, h - 1 - y, w - 1 - x]] = f32::MAX;
            }
            1 => hm.index_axis_mut(Axis(1), k).iter_mut().for_each(|v| *v = -v.abs() - 1e30),
            _ => hm[[0, k, y, x]] = 3e38,
        }
    }
}

/// `-inf` cells, with a finite or `+inf` maximum in every map: `-inf` but one finite cell,
/// `-inf` around tied finite maxima, and `+inf` maxima (tied for some keypoints).
fn infinities(hm: &mut Array4<f32>, b: usize, rng: &mut Rng) {
    let (h, w) = dims(hm);
    fill_uniform(hm, rng, -2.0, 2.0);
    for k in 0..NUM_KEYPOINTS {
        let (y, x) = ((2 * k + b) % h, (k + 2 * b) % w);
        let mut map = hm.index_axis_mut(Axis(1), k);
        let mut map = map.index_axis_mut(Axis(0), 0);
        match k % 4 {
            0 => {
                map.fill(f32::NEG_INFINITY);
                map[[y, x]] = -3.0;
            }
            1 => {
                map.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0).for_each(|(_, v)| *v = f32::NEG_INFINITY);
                map[[y, x]] = 5.0;
                map[[h - 1 - y, w - 1 - x]] = 5.0;
            }
            2 => map[[y, x]] = f32::INFINITY,
            _ => {
                map[[y, x]] = f32::INFINITY;
                map[[h - 1 - y, w - 1 - x]] = f32::INFINITY;
            }
        }
    }
}

/// Every third map entirely `-inf` (the first cell must win, with score 0), the others `-inf`
/// but for a finite cell.
fn all_neg_inf(hm: &mut Array4<f32>, b: usize, rng: &mut Rng) {
    let (h, w) = dims(hm);
    hm.fill(f32::NEG_INFINITY);
    for k in (0..NUM_KEYPOINTS).filter(|k| !(k + b).is_multiple_of(3)) {
        hm[[0, k, (k + b) % h, (2 * k + b) % w]] = rng.uniform(-8.0, 8.0);
    }
}

/// Sigmoid-style maps in [0, 1] on a coarse 1/16 grid (ties are frequent), some all 0, some
/// with 1.0 more than once: what heatmaps ending in a Sigmoid look like to a raw-score decoder.
fn probabilities(hm: &mut Array4<f32>, b: usize, rng: &mut Rng) {
    let (h, w) = dims(hm);
    hm.iter_mut().for_each(|v| *v = (rng.uniform(0.0, 1.0) * 16.0).floor() / 16.0);
    for k in 0..NUM_KEYPOINTS {
        match (k + b) % 4 {
            0 => hm.index_axis_mut(Axis(1), k).fill(0.0),
            1 => {
                hm[[0, k, h / 2, w - 1]] = 1.0;
                hm[[0, k, h - 1, 0]] = 1.0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    #[test]
    fn cases_have_the_shapes_and_the_ties_they_promise() {
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let (hm, off) = match layout {
                Layout::Nchw => ([2, 17, 5, 7], [2, 34, 5, 7]),
                Layout::Nhwc => ([2, 5, 7, 17], [2, 5, 7, 34]),
            };
            assert_eq!(crafted_cases(&hm, &off, layout, ScoreMode::Raw).len(), 4);
            let cases = crafted_cases(&hm, &off, layout, ScoreMode::Sigmoid);
            assert_eq!(cases.len(), 7);
            for case in &cases {
                assert_eq!(case.heatmaps.shape(), hm);
                assert_eq!(case.offsets.shape(), off);
                let poses =
                    reference::decode(case.heatmaps.view(), case.offsets.view(), layout, 16, ScoreMode::Sigmoid)
                        .unwrap();
                assert_eq!(poses.len(), 2);
                match case.name {
                    "all-equal" => assert!(poses.iter().flatten().all(|kp| kp.cell == (0, 0))),
                    // Keypoint 0 of item 0: maxima at (0, 6) and (4, 0): the first row wins.
                    "ties-in-rows" => assert_eq!(poses[0][0].cell, (0, 6)),
                    // Keypoint 2 of item 0 ties first and last cell.
                    "first-and-last-cell" => assert_eq!(poses[0][2].cell, (0, 0)),
                    "all-neg-inf" => assert_eq!((poses[0][0].cell, poses[0][0].score), ((0, 0), 0.0)),
                    _ => {}
                }
            }
        }
    }
}
