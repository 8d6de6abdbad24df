//! Decodes raw PoseNet heads with the multi-pose reference (`reference::multi_pose`), in batch,
//! for the conformance suite: `conformance/check.py` runs it once per model and runtime on the
//! heads every run of that runtime returned, and compares the runtime's `poses` and `pose_scores`
//! with what it prints. There is no second port of the reference: this is the one check.py uses.
//!
//! `decode_multi_pose < jobs.json > poses.json`. The request:
//!
//! ```json
//! {"jobs": [{"heads": "run7.bin", "batch": 1, "grid": [17, 17], "stride": 16, "scores": "sigmoid",
//!            "max_poses": 5, "score_threshold": 0.5, "nms_radius": 20.0}]}
//! ```
//!
//! `heads` is a file of raw little-endian float32: heatmaps `[B,17,H,W]`, offsets `[B,34,H,W]`,
//! displacement_fwd `[B,32,H,W]`, displacement_bwd `[B,32,H,W]`, one after the other (NCHW, the
//! whole batch of each head in turn). The answer has one entry per job, in order:
//!
//! ```json
//! {"jobs": [{"poses": [...B*N*17*3 values...], "pose_scores": [...B*N...],
//!            "found": [poses per item], "roots": [[[k, y, x], ...] per item]}]}
//! ```
//!
//! `poses` and `pose_scores` are laid out as the graph's outputs ([`to_fixed`]: empty slots 0 and
//! -1). Floats are printed as the shortest decimal that reads back as the same f32 (serde_json);
//! a NaN or infinite value is printed as `null`.

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};
use onnx_posefix::contract::{ScoreMode, NUM_KEYPOINTS};
use onnx_posefix::reference::multi_pose::{decode_multiple_poses, to_fixed, HeadMaps, MultiPoseParams, NUM_EDGES};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Request {
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    heads: String,
    batch: usize,
    grid: (usize, usize),
    stride: u32,
    scores: String,
    max_poses: usize,
    score_threshold: f32,
    nms_radius: f32,
}

fn main() -> Result<()> {
    let mut text = String::new();
    io::stdin().read_to_string(&mut text).context("reading the request on stdin")?;
    let request: Request = serde_json::from_str(&text).context("parsing the request")?;
    let mut answers = Vec::with_capacity(request.jobs.len());
    for (i, job) in request.jobs.iter().enumerate() {
        answers.push(decode(job).with_context(|| format!("job {i} ({})", job.heads))?);
    }
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, &json!({ "jobs": answers }))?;
    out.write_all(b"\n")?;
    Ok(())
}

fn decode(job: &Job) -> Result<serde_json::Value> {
    let Some(mode) = ScoreMode::parse(&job.scores) else { bail!("unknown score mode {:?}", job.scores) };
    let bytes = std::fs::read(&job.heads).with_context(|| format!("reading {}", job.heads))?;
    let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (b, (h, w)) = (job.batch, job.grid);
    let channels = [NUM_KEYPOINTS, 2 * NUM_KEYPOINTS, 2 * NUM_EDGES, 2 * NUM_EDGES];
    let per_item: Vec<usize> = channels.iter().map(|c| c * h * w).collect();
    let want = b * per_item.iter().sum::<usize>();
    if bytes.len() % 4 != 0 || data.len() != want {
        bail!("{} bytes, expected {} (4 heads of batch {b} on a {h}x{w} grid)", bytes.len(), 4 * want);
    }
    // Each head's whole batch in turn: split into heads, then items.
    let mut heads_data = Vec::with_capacity(4);
    let mut rest = data.as_slice();
    for n in &per_item {
        let (head, tail) = rest.split_at(b * n);
        heads_data.push(head);
        rest = tail;
    }
    let params =
        MultiPoseParams { max_poses: job.max_poses, score_threshold: job.score_threshold, nms_radius: job.nms_radius };
    let mut items = Vec::with_capacity(b);
    for i in 0..b {
        let item = |k: usize| &heads_data[k][i * per_item[k]..(i + 1) * per_item[k]];
        let heads = HeadMaps::new(item(0), item(1), item(2), item(3), (h, w), job.stride, mode)?;
        items.push(decode_multiple_poses(&heads, &params));
    }
    let fixed = to_fixed(&items, job.max_poses);
    let roots: Vec<Vec<[usize; 3]>> =
        items.iter().map(|poses| poses.iter().map(|p| [p.root.keypoint, p.root.y, p.root.x]).collect()).collect();
    Ok(json!({
        "poses": fixed.poses,
        "pose_scores": fixed.pose_scores,
        "found": items.iter().map(Vec::len).collect::<Vec<_>>(),
        "roots": roots,
    }))
}
