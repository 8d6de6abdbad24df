//! Step 3, multi-pose: the reference's poses against REWRITTEN's `poses` `[B, N, 17, 3]` and
//! `pose_scores` `[B, N]`, slot by slot.
//!
//! A slot matches when both sides agree on whether it holds a pose, its pose score is within
//! the score tolerance (the graph sums the 17 keypoint scores in the runtime's order, so pose
//! scores agree within float error, not bit for bit), and each keypoint's `x`, `y` are within
//! the pixel tolerance and its score within the score tolerance, nothing NaN. Multi-pose
//! keypoints have no argmax cell to infer: a keypoint a cell off is a position off by about a
//! stride, which the pixel tolerance catches.

use serde::Serialize;
use tract_onnx::prelude::tract_ndarray::{ArrayViewD, Axis};

use crate::contract::{Layout, MultiPoseSettings, KEYPOINT_NAMES, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use crate::reference::multi_pose::{decode_multiple_poses, to_fixed, HeadMaps, Pose};

use super::compare::{delta, number, Tolerances};

/// The multi-pose verdict on one input.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PosesResult {
    /// Poses found, over the batch: by the reference, and by REWRITTEN (slots whose pose score
    /// is not -1).
    pub reference: usize,
    pub rewritten: usize,
    /// Slots compared (N per batch item) and keypoints compared in them.
    pub slots: usize,
    pub keypoints: usize,
    pub max_position_error: f32,
    pub max_score_error: f32,
    pub max_pose_score_error: f32,
    /// Slots that differ, and the first of them.
    pub differing_slots: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<PoseDifference>,
    /// Why the outputs could not be compared at all (a shape, or the reference refusing the heads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The first place where a slot differs.
#[derive(Clone, Debug, Serialize)]
pub struct PoseDifference {
    pub batch: usize,
    /// The slot (0..N), which is the pose's rank.
    pub slot: usize,
    pub reference_pose_score: f32,
    pub rewritten_pose_score: f32,
    /// The first differing keypoint of the slot (name), with both sides' `(x, y, score)`; absent
    /// when only the pose score differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keypoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<[f32; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<[f32; 3]>,
}

impl PosesResult {
    pub fn matches(&self) -> bool {
        self.differing_slots == 0 && self.error.is_none()
    }

    /// `3 poses` or `poses 3 vs 2, 2 slots differ, first pose 1 leftElbow (x, y, score) ...`.
    pub fn describe(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        let found = if self.reference == self.rewritten {
            format!("{} pose{}", self.reference, if self.reference == 1 { "" } else { "s" })
        } else {
            format!("poses {} vs {}", self.reference, self.rewritten)
        };
        let Some(d) = &self.first_difference else { return found };
        let triple = |v: &[f32; 3]| format!("({}, {}, {})", number(v[0]), number(v[1]), number(v[2]));
        let at = match (&d.keypoint, &d.reference, &d.rewritten) {
            (Some(k), Some(r), Some(w)) => format!(" {k} {} vs {}", triple(r), triple(w)),
            _ => String::new(),
        };
        format!(
            "{found}, {} slots differ, first {}pose {}{at} (pose score {} vs {})",
            self.differing_slots,
            if d.batch > 0 { format!("item {} ", d.batch) } else { String::new() },
            d.slot,
            number(d.reference_pose_score),
            number(d.rewritten_pose_score),
        )
    }
}

/// One batch item's head, `[C, H, W]` row-major, from a `[B, C, H, W]` or `[B, H, W, C]` view.
fn chw(head: &ArrayViewD<f32>, b: usize, layout: Layout) -> Vec<f32> {
    let item = head.index_axis(Axis(0), b);
    match layout {
        Layout::Nchw => item.iter().copied().collect(),
        Layout::Nhwc => item.permuted_axes(vec![2, 0, 1]).iter().copied().collect(),
    }
}

/// The reference's poses per batch item of the four heads (in `layout`).
pub(crate) fn reference_poses(
    heads: [&ArrayViewD<f32>; 4],
    layout: Layout,
    stride: u32,
    scores: crate::contract::ScoreMode,
    settings: &MultiPoseSettings,
) -> Result<Vec<Vec<Pose>>, String> {
    let (hy, wx) = layout.spatial_axes();
    let shape = heads[0].shape();
    let (batch, h, w) = (shape[0], shape[hy], shape[wx]);
    let params = settings.params;
    (0..batch)
        .map(|b| {
            let [hm, off, fwd, bwd] = heads.map(|head| chw(head, b, layout));
            let heads =
                HeadMaps::new(&hm, &off, &fwd, &bwd, (h, w), stride, scores).map_err(|e| format!("ORIGINAL's heads: {e}"))?;
            Ok(decode_multiple_poses(&heads, &params))
        })
        .collect()
}

/// Compares the reference's poses with REWRITTEN's outputs.
pub(crate) fn compare(
    reference: &[Vec<Pose>],
    max_poses: usize,
    poses: ArrayViewD<f32>,
    pose_scores: ArrayViewD<f32>,
    tol: Tolerances,
) -> PosesResult {
    let batch = reference.len();
    let mut result = PosesResult { reference: reference.iter().map(Vec::len).sum(), ..PosesResult::default() };
    let (want_poses, want_scores) = ([batch, max_poses, NUM_KEYPOINTS, VALUES_PER_KEYPOINT], [batch, max_poses]);
    if poses.shape() != want_poses || pose_scores.shape() != want_scores {
        result.error = Some(format!(
            "REWRITTEN's poses have shape {:?} and pose scores {:?}, expected {want_poses:?} and {want_scores:?}",
            poses.shape(),
            pose_scores.shape()
        ));
        return result;
    }
    let fixed = to_fixed(reference, max_poses);
    let (poses, pose_scores) =
        (poses.iter().copied().collect::<Vec<_>>(), pose_scores.iter().copied().collect::<Vec<_>>());
    result.rewritten = pose_scores.iter().filter(|s| **s != -1.0).count();
    let per_pose = NUM_KEYPOINTS * VALUES_PER_KEYPOINT;
    for (slot, (&want_score, &got_score)) in fixed.pose_scores.iter().zip(&pose_scores).enumerate() {
        let d = delta(want_score, got_score);
        // NaN is never within.
        let mut differs = d.is_nan() || d > tol.score;
        result.max_pose_score_error = result.max_pose_score_error.max(d);
        result.slots += 1;
        let mut first_keypoint = None;
        for k in 0..NUM_KEYPOINTS {
            let at = slot * per_pose + k * VALUES_PER_KEYPOINT;
            let want: [f32; 3] = fixed.poses[at..at + 3].try_into().expect("three values");
            let got: [f32; 3] = poses[at..at + 3].try_into().expect("three values");
            let (dx, dy, ds) = (delta(want[0], got[0]), delta(want[1], got[1]), delta(want[2], got[2]));
            result.keypoints += 1;
            // f32::max ignores a NaN operand: the maxima are over the non-NaN values.
            result.max_position_error = result.max_position_error.max(dx).max(dy);
            result.max_score_error = result.max_score_error.max(ds);
            let within = dx <= tol.px && dy <= tol.px && ds <= tol.score;
            if !within && first_keypoint.is_none() {
                first_keypoint = Some((k, want, got));
            }
            differs |= !within;
        }
        if differs {
            result.differing_slots += 1;
            if result.first_difference.is_none() {
                result.first_difference = Some(PoseDifference {
                    batch: slot / max_poses,
                    slot: slot % max_poses,
                    reference_pose_score: want_score,
                    rewritten_pose_score: got_score,
                    keypoint: first_keypoint.map(|(k, _, _)| KEYPOINT_NAMES[k].to_string()),
                    reference: first_keypoint.map(|(_, w, _)| w),
                    rewritten: first_keypoint.map(|(_, _, g)| g),
                });
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::multi_pose::Candidate;
    use crate::reference::Keypoint;
    use tract_onnx::prelude::tract_ndarray::ArrayD;

    fn pose(x0: f32, score: f32) -> Pose {
        let keypoints =
            std::array::from_fn(|k| Keypoint { x: x0 + k as f32, y: 2.0 * k as f32, score: 0.75, cell: (0, 0) });
        Pose { keypoints, score, root: Candidate { keypoint: 0, y: 0, x: 0, value: 1.0 } }
    }

    fn outputs(reference: &[Vec<Pose>], n: usize) -> (ArrayD<f32>, ArrayD<f32>) {
        let fixed = to_fixed(reference, n);
        (
            ArrayD::from_shape_vec(vec![reference.len(), n, 17, 3], fixed.poses).unwrap(),
            ArrayD::from_shape_vec(vec![reference.len(), n], fixed.pose_scores).unwrap(),
        )
    }

    #[test]
    fn equal_outputs_match_and_each_kind_of_difference_is_found() {
        let reference = vec![vec![pose(10.0, 0.5), pose(50.0, 0.25)]];
        let tol = Tolerances::default();
        let (p, s) = outputs(&reference, 3);
        let r = compare(&reference, 3, p.view(), s.view(), tol);
        assert!(r.matches(), "{r:?}");
        assert_eq!((r.reference, r.rewritten, r.slots, r.keypoints), (2, 2, 3, 51));
        assert_eq!(r.describe(), "2 poses");

        // A keypoint a stride off in pose 1.
        let (mut p, s) = outputs(&reference, 3);
        p[[0, 1, 7, 0]] += 16.0;
        let r = compare(&reference, 3, p.view(), s.view(), tol);
        assert_eq!(r.differing_slots, 1);
        let d = r.first_difference.as_ref().unwrap();
        assert_eq!((d.slot, d.keypoint.as_deref()), (1, Some("leftElbow")));
        assert!(r.describe().starts_with("2 poses, 1 slots differ, first pose 1 leftElbow (57, 14, 0.75) vs (73, 14"));

        // A pose the rewritten model did not find; and a pose score off.
        let (p, mut s) = outputs(&reference, 3);
        s[[0, 1]] = -1.0;
        let r = compare(&reference, 3, p.view(), s.view(), tol);
        assert_eq!((r.rewritten, r.differing_slots), (1, 1));
        assert!(r.describe().starts_with("poses 2 vs 1"), "{}", r.describe());
        let (p, mut s) = outputs(&reference, 3);
        s[[0, 0]] += 1e-4;
        assert!(!compare(&reference, 3, p.view(), s.view(), tol).matches());

        // NaN never matches; a shape error says both shapes.
        let (mut p, s) = outputs(&reference, 3);
        p[[0, 0, 0, 2]] = f32::NAN;
        assert!(!compare(&reference, 3, p.view(), s.view(), tol).matches());
        let r = compare(&reference, 2, p.view(), s.view(), tol);
        assert!(r.error.as_deref().unwrap().contains("expected [1, 2, 17, 3]"), "{r:?}");
    }
}
