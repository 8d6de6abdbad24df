//! Multi-pose on the command line: `--poses N` rewrites, verifies equal on real multi-person
//! photos, refuses bad parameters and models without displacement heads with one line, and
//! `verify` exits 1 on seeded faults (a wrong NMS radius, threshold or head order in the
//! provenance, ONNX Round's half to even for the cell rounding).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use onnx_posefix::model::io::parse_model;
use onnx_posefix::model::proto;
use onnx_posefix::onnx_protobuf::{Message, ModelProto};
use onnx_posefix::testing::synthetic::{self, HeadNames, SyntheticSpec};
use onnx_posefix::DRAW_STYLE;
use tempfile::TempDir;

use crate::common::{real_model_path, run_cli, shared_images, stderr, stdout};

/// Photos with several people, from the shared set, and whether they are those; the bundled
/// sample without it (with a note, or a failure in CI).
fn multi_person_photos() -> (Vec<PathBuf>, bool) {
    match shared_images() {
        Some(dir) => (
            ["multi_skiing.jpg", "tennis_in_crowd.jpg", "two_on_bench.jpg", "riding_elephant.jpg"]
                .iter()
                .map(|p| dir.join(p))
                .collect(),
            true,
        ),
        None => (vec![crate::common::repo_path("samples/astronaut.png")], false),
    }
}

fn run(args: &[&str]) -> Output {
    run_cli(args)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(p: &Path) -> ModelProto {
    parse_model(&fs::read(p).unwrap()).unwrap()
}

fn metadata(model: &ModelProto, key: &str) -> Option<String> {
    model.metadata_props.iter().find(|e| e.key == key).map(|e| e.value.clone())
}

fn set_metadata(model: &mut ModelProto, key: &str, value: &str) {
    let entry = model.metadata_props.iter_mut().find(|e| e.key == key).unwrap_or_else(|| panic!("no {key}"));
    entry.value = value.to_string();
}

/// A synthetic PoseNet (all four heads) written into `dir`, and where its rewrite goes.
fn synthetic_model(dir: &TempDir, spec: &SyntheticSpec) -> (PathBuf, PathBuf) {
    let input = dir.path().join("in.onnx");
    fs::write(&input, synthetic::generate(spec).write_to_bytes().unwrap()).unwrap();
    (input, dir.path().join("out.onnx"))
}

/// `OK` / `MISMATCH` line of `input`.
fn line<'a>(out: &'a str, input: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(&format!(" {input}:")) || l.ends_with(&format!(" {input}")))
        .unwrap_or_else(|| panic!("no line for {input} in\n{out}"))
}

#[test]
fn real_model_with_poses_verifies_equal_on_multi_person_photos() {
    let dir = TempDir::new().unwrap();
    let out_path = dir.path().join("poses.onnx");
    let (photos, shared) = multi_person_photos();
    let mut args = vec![path(&real_model_path()).to_string(), path(&out_path).to_string()];
    let drawn = dir.path().join("drawn");
    args.extend(["--poses", "5", "--verify", "--draw", path(&drawn), "--images"].map(String::from));
    args.extend(photos.iter().map(|p| path(p).to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(
            "poses [1, 5, 17, 3] and pose_scores [1, 5] (up to 5 poses, score threshold 0.5, NMS radius 20 px)"
        ),
        "{text}"
    );
    assert!(text.contains("multi-pose decoder: poses and pose_scores from displacements 'displacement_fwd'"), "{text}");
    assert!(text.contains("pose slots"), "{text}");
    if shared {
        let skiing = line(&text, &photos[0].display().to_string());
        let found: usize = skiing.rsplit(": ").next().unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(found >= 2, "{skiing}");
        // --draw: each pose in its own colour, its score labelled in that colour (opaque).
        let picture = image::open(drawn.join("multi_skiing.png")).unwrap().to_rgb8();
        for (i, colour) in DRAW_STYLE.poses.iter().take(2).enumerate() {
            let painted = picture.pixels().filter(|p| p.0 == *colour).count();
            assert!(painted >= 10, "pose {i}'s colour {colour:?}: {painted} pixels");
        }
    }
    for crafted in ["poses-root-at-nms-radius", "poses-no-candidate", "poses-half-cells"] {
        assert!(line(&text, &format!("direct:{crafted}")).starts_with("OK "), "{text}");
    }
    assert!(line(&text, "direct:poses-no-candidate").ends_with(": 0 poses"), "{text}");

    let model = read(&out_path);
    let graph = model.graph.as_ref().unwrap();
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs[outputs.len() - 3..], ["keypoints", "poses", "pose_scores"]);
    for (key, want) in [
        ("posefix.poses.max", "5"),
        ("posefix.poses.score_threshold", "0.5"),
        ("posefix.poses.nms_radius", "20"),
        ("posefix.poses.displacement_fwd", "displacement_fwd"),
        ("posefix.poses.displacement_bwd", "displacement_bwd"),
        ("posefix.poses.output", "poses"),
        ("posefix.poses.scores_output", "pose_scores"),
    ] {
        assert_eq!(metadata(&model, key).as_deref(), Some(want), "{key}");
    }
}

#[test]
fn bad_multi_pose_parameters_are_usage_errors() {
    let dir = TempDir::new().unwrap();
    let (input, output) = synthetic_model(&dir, &SyntheticSpec::posenet(13));
    let (i, o) = (path(&input), path(&output));
    for (args, says) in [
        (vec!["--poses", "0"], "--poses must be at least 1"),
        (vec!["--poses", "2", "--score-threshold", "1.5"], "--score-threshold must be in [0, 1], not 1.5"),
        (vec!["--poses", "2", "--score-threshold", "NaN"], "--score-threshold must be in [0, 1], not NaN"),
        (vec!["--poses", "2", "--nms-radius", "0"], "--nms-radius must be a positive number of pixels, not 0"),
        (vec!["--poses", "2", "--nms-radius", "inf"], "--nms-radius must be a positive number of pixels, not inf"),
        (vec!["--nms-radius", "5"], "--poses <N>"),
        (vec!["--displacement-fwd", "displacement_fwd"], "--poses <N>"),
        (vec!["--poses", "2", "--poses-name", "keypoints"], "--poses-name and --output-name both name keypoints"),
        (vec!["--poses", "2", "--pose-scores-name", "heatmaps"], "already has a tensor called heatmaps"),
        (vec!["--poses", "2", "--displacement-fwd", "offsets"], "--displacement-fwd offsets: output of shape"),
        (vec!["--poses", "2", "--displacement-bwd", "nope"], "--displacement-bwd nope: no graph output"),
    ] {
        let mut all = vec![i, o];
        all.extend(&args);
        let out = run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!output.exists(), "{args:?} wrote OUT");
        if !says.starts_with("--poses <") {
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        }
    }
}

#[test]
fn displacements_are_found_by_name_or_named_by_flags() {
    let dir = TempDir::new().unwrap();
    // No displacement heads at all: one line naming what is missing.
    let bytes = synthetic::edited_posenet_bytes(11, |g| g.output.retain(|o| !o.name.starts_with("displacement")));
    let input = dir.path().join("two_heads.onnx");
    fs::write(&input, bytes).unwrap();
    let output = dir.path().join("out.onnx");
    let out = run(&[path(&input), path(&output), "--poses", "3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("multi-pose decoding needs the forward and backward displacements"), "{err}");
    assert!(err.contains("none among"), "{err}");
    // Without --poses the same model rewrites.
    assert_eq!(run(&[path(&input), path(&output)]).status.code(), Some(0));
    fs::remove_file(&output).unwrap();

    // Names that do not tell: the flags settle it, and the result verifies.
    let names =
        HeadNames { displacement_fwd: "d_one".into(), displacement_bwd: "d_two".into(), ..HeadNames::default() };
    let spec = SyntheticSpec { names, ..SyntheticSpec::posenet(17) };
    let (input, output) = synthetic_model(&dir, &spec);
    let out = run(&[path(&input), path(&output), "--poses", "3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot tell the forward from the backward displacements among d_one, d_two"), "{err}");
    // One flag is enough: the other head is the one left.
    let out = run(&[path(&input), path(&output), "--poses", "3", "--displacement-bwd", "d_two", "--verify"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(metadata(&read(&output), "posefix.poses.displacement_fwd").as_deref(), Some("d_one"));
}

#[test]
fn prune_keeps_what_both_decoders_read() {
    let dir = TempDir::new().unwrap();
    let (input, output) = synthetic_model(&dir, &SyntheticSpec::posenet(13));
    let out = run(&[path(&input), path(&output), "--poses", "2", "--prune", "--verify"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let model = read(&output);
    let outputs: Vec<&str> = model.graph.as_ref().unwrap().output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["keypoints", "poses", "pose_scores"]);
}

#[test]
fn nhwc_heads_and_a_symbolic_batch_verify_equal() {
    use onnx_posefix::contract::Layout;
    use onnx_posefix::testing::synthetic::Batch;
    let dir = TempDir::new().unwrap();
    let spec = SyntheticSpec {
        heads_layout: Layout::Nhwc,
        batch: Batch::Symbolic("N".into()),
        input_hw: (257, 353),
        ..SyntheticSpec::posenet(15)
    };
    let (input, output) = synthetic_model(&dir, &spec);
    let out = run(&[path(&input), path(&output), "--poses", "4", "--verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("poses [N, 4, 17, 3] and pose_scores [N, 4]"), "{text}");
    assert!(line(&text, "direct:poses-half-cells").starts_with("OK "), "{text}");
}

/// Rewrites the synthetic model with `--poses 3`, applies `fault` to the result, and returns
/// what `verify` says.
fn verify_with_fault(fault: impl FnOnce(&mut ModelProto)) -> Output {
    let dir = TempDir::new().unwrap();
    let (input, output) = synthetic_model(&dir, &SyntheticSpec::posenet(13));
    let out = run(&[path(&input), path(&output), "--poses", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut model = read(&output);
    fault(&mut model);
    fs::write(&output, model.write_to_bytes().unwrap()).unwrap();
    run(&["verify", path(&input), path(&output)])
}

#[test]
fn seeded_faults_are_mismatches() {
    let unfaulted = verify_with_fault(|_| {});
    assert_eq!(unfaulted.status.code(), Some(0), "{}", stdout(&unfaulted));

    // The graph suppresses at R = 20; a reference told 19.75 keeps the candidate set exactly at 20.
    let out = verify_with_fault(|m| set_metadata(m, "posefix.poses.nms_radius", "19.75"));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "direct:poses-root-at-nms-radius").starts_with("MISMATCH"), "{text}");

    let out = verify_with_fault(|m| set_metadata(m, "posefix.poses.score_threshold", "0.6"));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    let out = verify_with_fault(|m| {
        set_metadata(m, "posefix.poses.displacement_fwd", "displacement_bwd");
        set_metadata(m, "posefix.poses.displacement_bwd", "displacement_fwd");
    });
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "direct:poses-random").starts_with("MISMATCH"), "{text}");

    // The cell rounding made ONNX Round's half to even (`Round(clip(q + 0.5) - 0.5)` in place of
    // `Floor(clip(q + 0.5))`): positions at exactly half a cell change cell.
    let out = verify_with_fault(|m| {
        let graph = m.graph.as_mut().unwrap();
        let mut nodes = vec![];
        for node in std::mem::take(&mut graph.node) {
            if node.op_type == "Floor" && node.name.starts_with("posefix/") {
                let back = format!("{}_back_by_half", node.output[0]);
                nodes.push(proto::node("Sub", &back, &[&node.input[0], "posefix/half"], &[&back], vec![]));
                nodes.push(proto::node("Round", &format!("{}_even", node.name), &[&back], &[&node.output[0]], vec![]));
            } else {
                nodes.push(node);
            }
        }
        graph.node = nodes;
    });
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let half = line(&text, "direct:poses-half-cells");
    assert!(half.starts_with("MISMATCH") && half.contains("slots differ, first pose"), "{text}");
}
