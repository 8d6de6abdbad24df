//! The reference decoder: tfjs posenet's single-pose decoding in plain Rust, written apart from
//! any graph-building code so that it can judge the decoder the rewrite appends.
//!
//! For each batch item and keypoint k: `idx` is the first-occurrence argmax of heatmap k flattened
//! row-major (`y*W + x`), `gy = idx / W`, `gx = idx % W`, `y = gy*stride + offsets[k][gy][gx]`,
//! `x = gx*stride + offsets[k+17][gy][gx]`, and the score is `sigmoid(max)` or the max itself (see
//! [`crate::contract`]). All arithmetic is f32, with exactly one addition per coordinate, so an
//! exact decoder graph agrees bit for bit on the positions.
//!
//! Non-finite values: the maps are first clamped to +-`f32::MAX`, as the decoder does to keep its
//! arithmetic selection finite, so `+inf` ties with `f32::MAX` (the first of them wins) and a raw
//! score of `+inf` reads `f32::MAX`; sigmoid scores are unchanged by the clamp (both ends
//! saturate to 1 and 0). An all `-inf` map decodes to cell (0, 0). A NaN cell never wins over a
//! non-NaN one; a map that is all NaN decodes to cell (0, 0) with a NaN score, its position still
//! read from the offsets at that cell.

use tract_onnx::prelude::tract_ndarray::{ArrayView2, ArrayViewD, Axis, Ix4};

use crate::contract::{Layout, ScoreMode, NUM_KEYPOINTS};

pub use super::Keypoint;

/// Heads whose shapes the decoder cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {layout} heads, heatmaps {heatmaps:?} and offsets {offsets:?}: {problem}")]
pub struct ShapeError {
    pub heatmaps: Vec<usize>,
    pub offsets: Vec<usize>,
    pub layout: Layout,
    pub problem: ShapeProblem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeProblem {
    #[error("both must be rank 4")]
    Rank,
    #[error("the channel axis must hold 17 heatmaps and 34 offsets")]
    Channels,
    #[error("batch or spatial dims differ")]
    Mismatch,
    #[error("the maps have no cells")]
    Empty,
}

/// One pose per batch item.
pub fn decode(
    heatmaps: ArrayViewD<f32>,
    offsets: ArrayViewD<f32>,
    layout: Layout,
    stride: u32,
    scores: ScoreMode,
) -> Result<Vec<[Keypoint; NUM_KEYPOINTS]>, ShapeError> {
    let error = |problem| ShapeError {
        heatmaps: heatmaps.shape().to_vec(),
        offsets: offsets.shape().to_vec(),
        layout,
        problem,
    };
    let (Ok(hm), Ok(off)) = (heatmaps.view().into_dimensionality::<Ix4>(), offsets.view().into_dimensionality::<Ix4>())
    else {
        return Err(error(ShapeProblem::Rank));
    };
    // Decode through NCHW views; permuting a view moves no data.
    let (hm, off) = match layout {
        Layout::Nchw => (hm, off),
        Layout::Nhwc => (hm.permuted_axes([0, 3, 1, 2]), off.permuted_axes([0, 3, 1, 2])),
    };
    let (n, c, h, w) = hm.dim();
    let (on, oc, oh, ow) = off.dim();
    if c != NUM_KEYPOINTS || oc != 2 * NUM_KEYPOINTS {
        return Err(error(ShapeProblem::Channels));
    }
    if (on, oh, ow) != (n, h, w) {
        return Err(error(ShapeProblem::Mismatch));
    }
    if h == 0 || w == 0 {
        return Err(error(ShapeProblem::Empty));
    }

    let stride = stride as usize;
    let poses = (0..n)
        .map(|b| {
            let hm = hm.index_axis(Axis(0), b);
            let off = off.index_axis(Axis(0), b);
            std::array::from_fn(|k| {
                let ((gy, gx), max) = argmax_first(hm.index_axis(Axis(0), k));
                Keypoint {
                    y: (gy * stride) as f32 + off[[k, gy, gx]],
                    x: (gx * stride) as f32 + off[[k + NUM_KEYPOINTS, gy, gx]],
                    score: match scores {
                        ScoreMode::Sigmoid => 1.0 / (1.0 + (-max).exp()),
                        ScoreMode::Raw => max,
                    },
                    cell: (gy, gx),
                }
            })
        })
        .collect();
    Ok(poses)
}

/// The first cell, in row-major order, holding the largest non-NaN value once clamped to
/// +-`f32::MAX`, and that value; `((0, 0), NaN)` when every cell is NaN.
fn argmax_first(map: ArrayView2<f32>) -> ((usize, usize), f32) {
    let mut best: Option<((usize, usize), f32)> = None;
    for ((gy, gx), &v) in map.indexed_iter() {
        // `clamp` keeps NaN.
        let v = v.clamp(f32::MIN, f32::MAX);
        match best {
            None if !v.is_nan() => best = Some(((gy, gx), v)),
            // Strict `>`: equal values keep the earlier cell, and NaN never compares greater.
            Some((_, b)) if v > b => best = Some(((gy, gx), v)),
            _ => {}
        }
    }
    best.unwrap_or(((0, 0), f32::NAN))
}

/// The poses as `[N, 17, 3]` with `(x, y, score)` last, the layout of the model's `keypoints`.
#[cfg(feature = "testing")]
pub fn to_array(poses: &[[Keypoint; NUM_KEYPOINTS]]) -> tract_onnx::prelude::tract_ndarray::Array3<f32> {
    tract_onnx::prelude::tract_ndarray::Array3::from_shape_fn((poses.len(), NUM_KEYPOINTS, crate::contract::VALUES_PER_KEYPOINT), |(n, k, v)| {
        let kp = &poses[n][k];
        match v {
            0 => kp.x,
            1 => kp.y,
            _ => kp.score,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::tract_ndarray::{s, Array4, ArrayD, IxDyn};

    /// Zeroed NCHW heads `[n, 17, h, w]` and `[n, 34, h, w]`.
    fn heads(n: usize, h: usize, w: usize) -> (Array4<f32>, Array4<f32>) {
        (Array4::zeros((n, 17, h, w)), Array4::zeros((n, 34, h, w)))
    }

    fn run(hm: &Array4<f32>, off: &Array4<f32>, layout: Layout, stride: u32, scores: ScoreMode) -> Vec<[Keypoint; 17]> {
        decode(hm.view().into_dyn(), off.view().into_dyn(), layout, stride, scores).expect("valid shapes")
    }

    /// A standard-layout (not merely permuted view) NHWC copy of NCHW data.
    fn to_nhwc(a: &Array4<f32>) -> Array4<f32> {
        let (n, c, h, w) = a.dim();
        let mut out = Array4::zeros((n, h, w, c));
        for ((b, ch, y, x), &v) in a.indexed_iter() {
            out[[b, y, x, ch]] = v;
        }
        assert!(out.is_standard_layout());
        out
    }

    #[test]
    fn ties_resolve_to_the_first_cell_in_row_major_order() {
        let (mut hm, off) = heads(1, 3, 4);
        // Equal maxima in different rows: row 1 comes before row 2.
        hm[[0, 0, 2, 0]] = 5.0;
        hm[[0, 0, 1, 2]] = 5.0;
        // Equal maxima in one row.
        hm[[0, 1, 2, 3]] = 1.0;
        hm[[0, 1, 2, 1]] = 1.0;
        // Equal maxima in one column.
        hm[[0, 2, 2, 3]] = 1.0;
        hm[[0, 2, 0, 3]] = 1.0;
        let pose = &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Raw)[0];
        assert_eq!(pose[0].cell, (1, 2));
        assert_eq!((pose[0].x, pose[0].y, pose[0].score), (32.0, 16.0, 5.0));
        assert_eq!(pose[1].cell, (2, 1));
        assert_eq!(pose[2].cell, (0, 3));
        // Every other map is all zeros: an all-equal map picks cell (0, 0).
        for kp in &pose[3..] {
            assert_eq!(kp.cell, (0, 0));
            assert_eq!((kp.x, kp.y, kp.score), (0.0, 0.0, 0.0));
        }
    }

    #[test]
    fn all_equal_map_picks_the_origin() {
        let (mut hm, off) = heads(1, 5, 5);
        hm.fill(0.25);
        for kp in &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Raw)[0] {
            assert_eq!(kp.cell, (0, 0));
            assert_eq!(kp.score, 0.25);
        }
    }

    #[test]
    fn stride_and_offsets_apply_on_the_right_axes() {
        // Non-square (2 x 3) so that swapping H and W cannot go unnoticed.
        let (mut hm, mut off) = heads(1, 2, 3);
        hm[[0, 3, 1, 2]] = 9.0;
        off[[0, 3, 1, 2]] = 0.5; // y of keypoint 3
        off[[0, 20, 1, 2]] = -1.25; // x of keypoint 3
                                    // Decoys: the transposed cell, the neighbouring channels.
        off[[0, 3, 0, 1]] = 100.0;
        off[[0, 4, 1, 2]] = 200.0;
        off[[0, 21, 1, 2]] = 300.0;
        off[[0, 19, 1, 2]] = 400.0;
        let pose = &run(&hm, &off, Layout::Nchw, 8, ScoreMode::Raw)[0];
        assert_eq!(pose[3].cell, (1, 2));
        assert_eq!(pose[3].y, 8.5); // 1*8 + 0.5
        assert_eq!(pose[3].x, 14.75); // 2*8 - 1.25
                                      // Keypoint 4 sits at (0, 0) and picks up its own offsets channel there only.
        assert_eq!((pose[4].x, pose[4].y), (0.0, 0.0));
    }

    #[test]
    fn nhwc_decodes_like_nchw() {
        let (mut hm, mut off) = heads(2, 3, 5);
        for k in 0..17 {
            // A distinct peak per keypoint and batch item.
            hm[[0, k, k % 3, k % 5]] = 1.0 + k as f32;
            // Item 1: all -2 but for one lower cell.
            hm.slice_mut(s![1, k, .., ..]).fill(-2.0);
            hm[[1, k, 2 - k % 3, 4 - k % 5]] = -3.0;
        }
        for (i, v) in off.iter_mut().enumerate() {
            *v = i as f32 * 0.125;
        }
        let nchw = run(&hm, &off, Layout::Nchw, 16, ScoreMode::Sigmoid);
        let nhwc = run(&to_nhwc(&hm), &to_nhwc(&off), Layout::Nhwc, 16, ScoreMode::Sigmoid);
        assert_eq!(nchw, nhwc);
        // Keypoint 7 of item 0: peak at (1, 2); y = 16 + off[0,7,1,2], x = 32 + off[0,24,1,2].
        // Flat index of [0, c, y, x] in [2, 34, 3, 5] is c*15 + y*5 + x.
        assert_eq!(nhwc[0][7].cell, (1, 2));
        assert_eq!(nhwc[0][7].y, 16.0 + (7 * 15 + 5 + 2) as f32 * 0.125);
        assert_eq!(nhwc[0][7].x, 32.0 + (24 * 15 + 5 + 2) as f32 * 0.125);
        // Keypoint 11 of item 0: peak at (2, 1), below the diagonal.
        assert_eq!(nhwc[0][11].cell, (2, 1));
        assert_eq!(nhwc[0][11].y, 32.0 + (11 * 15 + 10 + 1) as f32 * 0.125);
        assert_eq!(nhwc[0][11].x, 16.0 + (28 * 15 + 10 + 1) as f32 * 0.125);
        // Item 1 ties at -2: the origin, unless the lower cell is the origin (k = 14).
        assert_eq!(nhwc[1][7].cell, (0, 0));
        assert_eq!(nhwc[1][14].cell, (0, 1));
    }

    #[test]
    fn sigmoid_and_raw_scores() {
        let (mut hm, off) = heads(1, 2, 2);
        hm[[0, 0, 1, 1]] = 2.0;
        hm.slice_mut(s![0, 1, .., ..]).fill(-3.0);
        let raw = &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Raw)[0];
        let sig = &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Sigmoid)[0];
        assert_eq!(raw[0].score, 2.0);
        assert!((sig[0].score - 0.880_797_1).abs() < 1e-6, "{}", sig[0].score);
        assert_eq!(raw[1].score, -3.0);
        assert!((sig[1].score - 0.047_425_87).abs() < 1e-6, "{}", sig[1].score);
        assert_eq!(sig[2].score, 0.5);
        // Scores never move the position.
        assert_eq!(raw[0].cell, sig[0].cell);
        assert_eq!((sig[0].x, sig[0].y), (16.0, 16.0));
    }

    #[test]
    fn infinities_count_as_the_largest_finite_values() {
        let (mut hm, off) = heads(1, 2, 3);
        hm.slice_mut(s![0, 0, .., ..]).fill(f32::NEG_INFINITY);
        hm.slice_mut(s![0, 1, .., ..]).fill(f32::NEG_INFINITY);
        hm[[0, 1, 1, 1]] = -1e30;
        hm[[0, 2, 0, 2]] = f32::INFINITY;
        hm[[0, 2, 1, 0]] = f32::INFINITY;
        // The one tie the clamp makes: FLT_MAX before +inf wins.
        hm[[0, 3, 0, 1]] = f32::MAX;
        hm[[0, 3, 1, 2]] = f32::INFINITY;
        let raw = &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Raw)[0];
        let sig = &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Sigmoid)[0];
        assert_eq!(raw[0].cell, (0, 0));
        assert_eq!(raw[0].score, f32::MIN);
        assert_eq!(sig[0].score, 0.0);
        assert_eq!(raw[1].cell, (1, 1));
        assert_eq!(raw[2].cell, (0, 2));
        assert_eq!(raw[2].score, f32::MAX);
        assert_eq!(sig[2].score, 1.0);
        assert_eq!(raw[3].cell, (0, 1));
    }

    #[test]
    fn nan_cells_never_win() {
        let (mut hm, mut off) = heads(1, 2, 3);
        // NaN first, then a lower value, then NaN again, then the max.
        hm[[0, 0, 0, 0]] = f32::NAN;
        hm[[0, 0, 0, 1]] = -7.0;
        hm[[0, 0, 0, 2]] = f32::NAN;
        hm[[0, 0, 1, 0]] = -9.0;
        hm[[0, 0, 1, 1]] = -2.0;
        hm[[0, 0, 1, 2]] = -5.0;
        // A lone NaN in the middle of zeros.
        hm[[0, 1, 0, 1]] = f32::NAN;
        // All NaN: the origin, a NaN score, the position from the offsets there.
        hm.slice_mut(s![0, 2, .., ..]).fill(f32::NAN);
        off[[0, 2, 0, 0]] = 3.0;
        off[[0, 19, 0, 0]] = 4.0;
        let pose = &run(&hm, &off, Layout::Nchw, 16, ScoreMode::Sigmoid)[0];
        assert_eq!(pose[0].cell, (1, 1));
        assert!((pose[0].score - 0.119_202_92).abs() < 1e-6);
        assert_eq!(pose[1].cell, (0, 0));
        assert_eq!(pose[1].score, 0.5);
        assert_eq!(pose[2].cell, (0, 0));
        assert!(pose[2].score.is_nan());
        assert_eq!((pose[2].x, pose[2].y), (4.0, 3.0));
    }

    #[test]
    fn one_pose_per_batch_item() {
        let (mut hm, off) = heads(3, 2, 2);
        hm[[0, 5, 0, 1]] = 1.0;
        hm[[1, 5, 1, 0]] = 1.0;
        hm[[2, 5, 1, 1]] = 1.0;
        let poses = run(&hm, &off, Layout::Nchw, 32, ScoreMode::Raw);
        assert_eq!(poses.len(), 3);
        assert_eq!([poses[0][5].cell, poses[1][5].cell, poses[2][5].cell], [(0, 1), (1, 0), (1, 1)]);
        assert_eq!((poses[2][5].x, poses[2][5].y), (32.0, 32.0));
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let check = |hm: &[usize], off: &[usize], layout: Layout, problem: ShapeProblem| {
            let hm = ArrayD::<f32>::zeros(IxDyn(hm));
            let off = ArrayD::<f32>::zeros(IxDyn(off));
            let err = decode(hm.view(), off.view(), layout, 16, ScoreMode::Sigmoid).unwrap_err();
            assert_eq!(err.problem, problem, "{err}");
            err.to_string()
        };
        let msg = check(&[17, 9, 9], &[34, 9, 9], Layout::Nchw, ShapeProblem::Rank);
        assert_eq!(msg, "cannot decode NCHW heads, heatmaps [17, 9, 9] and offsets [34, 9, 9]: both must be rank 4");
        check(&[1, 17, 9, 9], &[1, 34, 9, 9, 1], Layout::Nchw, ShapeProblem::Rank);
        check(&[1, 16, 9, 9], &[1, 34, 9, 9], Layout::Nchw, ShapeProblem::Channels);
        check(&[1, 17, 9, 9], &[1, 17, 9, 9], Layout::Nchw, ShapeProblem::Channels);
        // NCHW heads declared as NHWC.
        let msg = check(&[1, 17, 9, 9], &[1, 34, 9, 9], Layout::Nhwc, ShapeProblem::Channels);
        assert!(msg.starts_with("cannot decode NHWC heads, heatmaps [1, 17, 9, 9]"), "{msg}");
        check(&[1, 17, 9, 9], &[2, 34, 9, 9], Layout::Nchw, ShapeProblem::Mismatch);
        check(&[1, 17, 9, 8], &[1, 34, 9, 9], Layout::Nchw, ShapeProblem::Mismatch);
        check(&[1, 9, 8, 17], &[1, 8, 9, 34], Layout::Nhwc, ShapeProblem::Mismatch);
        check(&[1, 17, 0, 9], &[1, 34, 0, 9], Layout::Nchw, ShapeProblem::Empty);
        // An empty batch is not an error: no poses.
        let (hm, off) = heads(0, 3, 3);
        assert!(run(&hm, &off, Layout::Nchw, 16, ScoreMode::Raw).is_empty());
    }

    #[test]
    fn to_array_is_n_17_xyz() {
        let kp = |x, y, score| Keypoint { x, y, score, cell: (0, 0) };
        let mut a = [kp(0.0, 0.0, 0.0); 17];
        let mut b = [kp(0.0, 0.0, 0.0); 17];
        a[0] = kp(1.0, 2.0, 0.5);
        b[16] = kp(3.0, 4.0, 0.25);
        let arr = to_array(&[a, b]);
        assert_eq!(arr.shape(), &[2, 17, 3]);
        assert_eq!(arr.as_slice().unwrap()[..3], [1.0, 2.0, 0.5]);
        assert_eq!(arr.as_slice().unwrap()[2 * 17 * 3 - 3..], [3.0, 4.0, 0.25]);
        assert_eq!(arr.sum(), 1.0 + 2.0 + 0.5 + 3.0 + 4.0 + 0.25);
    }
}
