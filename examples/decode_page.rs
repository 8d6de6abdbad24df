//! The reference decoders on heads the browser page exported, for its test (web/test/run.mjs):
//! the page runs the rewritten model with onnxruntime-web, exports every output of that one run
//! (the heads as well as `keypoints` and the poses), and this decodes those heads with
//! `reference::single_pose` (and `reference::multi_pose` with `--poses`), so that what the page
//! drew is compared with the reference on exactly the values its decoder read.
//!
//! `decode_page < request.json > answer.json`. The request:
//!
//! ```json
//! {"heatmaps": "h.bin", "heatmaps_dims": [1, 17, 17, 17], "offsets": "o.bin", "offsets_dims": [1, 34, 17, 17],
//!  "layout": "NCHW", "stride": 16, "scores": "sigmoid", "output_type": "float32",
//!  "multi": {"fwd": "f.bin", "bwd": "b.bin", "max_poses": 3, "score_threshold": 0.5, "nms_radius": 20.0}}
//! ```
//!
//! Files hold raw little-endian float32; `multi` is optional (NCHW heads only, as the multi-pose
//! reference takes them), and so is `output_type` (`float16`: the answer is rounded once to
//! float16, as a model rewritten with `--output-type float16` holds it). The answer: `{"keypoints": [17 x [x, y, score]], "poses": [...B*N*17*3],
//! "pose_scores": [...B*N]}`, floats as the shortest decimal that reads back as the same f32.

use std::io::{self, Read};

use anyhow::{bail, Context, Result};
use onnx_posefix::contract::{FloatType, Layout, ScoreMode};
use onnx_posefix::reference::multi_pose::{decode_multiple_poses, to_fixed, HeadMaps, MultiPoseParams};
use onnx_posefix::reference::single_pose;
use onnx_posefix::tract_onnx::prelude::tract_ndarray::ArrayD;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Request {
    heatmaps: String,
    heatmaps_dims: Vec<usize>,
    offsets: String,
    offsets_dims: Vec<usize>,
    layout: String,
    stride: u32,
    scores: String,
    #[serde(default)]
    output_type: Option<String>,
    multi: Option<Multi>,
}

#[derive(Deserialize)]
struct Multi {
    fwd: String,
    bwd: String,
    max_poses: usize,
    score_threshold: f32,
    nms_radius: f32,
}

fn floats(path: &str) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    if bytes.len() % 4 != 0 {
        bail!("{path}: {} bytes, not whole float32s", bytes.len());
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn main() -> Result<()> {
    let mut text = String::new();
    io::stdin().read_to_string(&mut text).context("reading the request on stdin")?;
    let r: Request = serde_json::from_str(&text).context("parsing the request")?;
    let Some(mode) = ScoreMode::parse(&r.scores) else { bail!("unknown score mode {:?}", r.scores) };
    let Some(layout) = Layout::parse(&r.layout) else { bail!("unknown layout {:?}", r.layout) };
    let ty = r.output_type.as_deref().unwrap_or("float32");
    let Some(ty) = FloatType::parse(ty) else { bail!("unknown output type {ty:?}") };
    let (hm, off) = (floats(&r.heatmaps)?, floats(&r.offsets)?);
    let hm = ArrayD::from_shape_vec(r.heatmaps_dims.clone(), hm).context("heatmaps")?;
    let off = ArrayD::from_shape_vec(r.offsets_dims.clone(), off).context("offsets")?;
    let poses = single_pose::decode(hm.view(), off.view(), layout, r.stride, mode)?;
    let keypoints: Vec<[f32; 3]> = poses[0].iter().map(|k| k.rounded(ty)).map(|k| [k.x, k.y, k.score]).collect();
    let mut answer = json!({ "keypoints": keypoints });
    if let Some(m) = &r.multi {
        if layout != Layout::Nchw || r.heatmaps_dims[0] != 1 {
            bail!("the multi-pose check takes NCHW heads of batch 1");
        }
        let (h, w) = (r.heatmaps_dims[2], r.heatmaps_dims[3]);
        let (fwd, bwd) = (floats(&m.fwd)?, floats(&m.bwd)?);
        let heads = HeadMaps::new(
            hm.as_slice().expect("standard"),
            off.as_slice().expect("standard"),
            &fwd,
            &bwd,
            (h, w),
            r.stride,
            mode,
        )?;
        let params =
            MultiPoseParams { max_poses: m.max_poses, score_threshold: m.score_threshold, nms_radius: m.nms_radius };
        let fixed = to_fixed(&[decode_multiple_poses(&heads, &params)], m.max_poses);
        answer["poses"] = json!(fixed.poses.iter().map(|v| ty.round(*v)).collect::<Vec<_>>());
        answer["pose_scores"] = json!(fixed.pose_scores.iter().map(|v| ty.round(*v)).collect::<Vec<_>>());
    }
    println!("{answer}");
    Ok(())
}
