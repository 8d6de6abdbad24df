//! The multi-pose reference (`src/reference/multi_pose.rs`) against the published package
//! itself: `@tensorflow-models/posenet@2.2.2`'s `decodeMultiplePoses`, run in Node
//! (`conformance/tfjs/`), fed the heads tract computes from the real model on the shared photos.
//!
//! The reference computes in f32 and tfjs in f64 on the same f32 heads. Agreement means: the
//! same poses in the same order, every position equal to tfjs's rounded once to f32, and scores
//! within a few f32 ulps (tfjs rounds its sigmoid and its pose-score sum once; the reference
//! rounds each step). Decisions within float error of their boundary would be the exception the
//! README states; on these photos the nearest is 100 times farther than the error.
//!
//! Needs `node` and `npm ci` in `conformance/tfjs`; skipped without them unless
//! `POSEFIX_REQUIRE_TFJS` is set (CI sets it). Needs `../shared/images` too: skipped without it
//! unless `CI` is set (`common::shared_data`).

use std::process::Command;

use onnx_posefix::contract::ScoreMode;
use onnx_posefix::reference::multi_pose::{decode_multiple_poses, HeadMaps, MultiPoseParams, Pose};
use serde_json::Value;

use crate::common::{real_model_heads, repo_path, shared_photos, REAL_HEAD_CHANNELS as CHANNELS};

const MAX_POSES: [usize; 2] = [5, 10];

fn skip_or_fail(why: &str) {
    if std::env::var_os("POSEFIX_REQUIRE_TFJS").is_some() {
        panic!("POSEFIX_REQUIRE_TFJS is set, but {why}");
    }
    eprintln!("multi-pose reference vs tfjs skipped: {why}");
}

/// An f32 difference in units of the last place of `b`.
fn ulps(a: f32, b: f32) -> f32 {
    (a - b).abs() / (b.abs().max(f32::MIN_POSITIVE) * f32::EPSILON)
}

fn compare(name: &str, n: usize, ours: &[Pose], theirs: &[Value]) -> (f32, f32) {
    assert_eq!(ours.len(), theirs.len(), "{name}, N={n}: pose count");
    let (mut score_ulps, mut pose_ulps) = (0f32, 0f32);
    for (i, (pose, t)) in ours.iter().zip(theirs).enumerate() {
        let keypoints = t["keypoints"].as_array().unwrap();
        for (k, (kp, tk)) in pose.keypoints.iter().zip(keypoints).enumerate() {
            let v = |j: usize| tk[j].as_f64().map_or(f32::NAN, |v| v as f32);
            assert_eq!((kp.x, kp.y), (v(0), v(1)), "{name}, N={n}, pose {i}, keypoint {k}: position");
            score_ulps = score_ulps.max(ulps(kp.score, v(2)));
        }
        pose_ulps = pose_ulps.max(ulps(pose.score, t["score"].as_f64().unwrap() as f32));
    }
    (score_ulps, pose_ulps)
}

#[test]
fn multi_pose_reference_agrees_with_tfjs_posenet() {
    let harness = repo_path("conformance/tfjs");
    if !harness.join("node_modules/@tensorflow-models/posenet").is_dir() {
        return skip_or_fail("conformance/tfjs has no node_modules (run npm ci there)");
    }
    // Without the photos: a note, or a failure in CI.
    let Some(photos) = shared_photos() else { return };

    // POSEFIX_TFJS_KEEP=DIR keeps the heads and tfjs's answer there, to look into a difference.
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("POSEFIX_TFJS_KEEP").map_or_else(|| temp.path().to_path_buf(), Into::into);
    std::fs::create_dir_all(&dir).unwrap();
    let params = MultiPoseParams::default();
    let mut heads_of = vec![];
    let mut manifest = vec![];
    for (photo, heads) in photos.iter().zip(real_model_heads(&photos)) {
        let name = photo.file_stem().unwrap().to_string_lossy().into_owned();
        let bytes: Vec<u8> = heads.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.as_path().join(format!("{name}.bin")), bytes).unwrap();
        manifest.push(serde_json::json!({ "name": name, "height": 17, "width": 17 }));
        heads_of.push((name, heads));
    }
    let manifest = serde_json::json!({
        "channels": CHANNELS, "stride": 16, "max_poses": MAX_POSES,
        "score_threshold": params.score_threshold, "nms_radius": params.nms_radius, "photos": manifest,
    });
    std::fs::write(dir.as_path().join("manifest.json"), manifest.to_string()).unwrap();
    let out = dir.as_path().join("tfjs.json");
    let run = Command::new("node").arg(harness.join("decode.js")).arg(dir.as_path()).arg(&out).output();
    let run = match run {
        Ok(run) => run,
        Err(e) => return skip_or_fail(&format!("node cannot be run: {e}")),
    };
    assert!(run.status.success(), "decode.js: {}", String::from_utf8_lossy(&run.stderr));
    let tfjs: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(tfjs["posenet"], "2.2.2");

    let (mut score_ulps, mut pose_ulps, mut poses, mut crowded) = (0f32, 0f32, 0, 0);
    for ((name, heads), theirs) in heads_of.iter().zip(tfjs["photos"].as_array().unwrap()) {
        assert_eq!(theirs["name"], name.as_str());
        let heads =
            HeadMaps::new(&heads[0], &heads[1], &heads[2], &heads[3], (17, 17), 16, ScoreMode::Sigmoid).unwrap();
        for n in MAX_POSES {
            let ours = decode_multiple_poses(&heads, &MultiPoseParams { max_poses: n, ..params });
            let (s, p) = compare(name, n, &ours, theirs["runs"][n.to_string()].as_array().unwrap());
            (score_ulps, pose_ulps) = (score_ulps.max(s), pose_ulps.max(p));
            poses += ours.len();
            if n == 5 && ours.iter().filter(|p| p.score > 0.15).count() >= 2 {
                crowded += 1;
            }
        }
    }
    eprintln!(
        "{} photos, {poses} poses: positions equal, keypoint scores within {score_ulps:.1} ulp, pose scores \
         within {pose_ulps:.1} ulp; {crowded} photos with 2+ poses scoring over 0.15",
        photos.len()
    );
    assert!(score_ulps <= 4.0 && pose_ulps <= 8.0, "{score_ulps} {pose_ulps}");
    assert!(photos.len() >= 20 && crowded >= 5, "{} photos, {crowded} with several people", photos.len());
}
