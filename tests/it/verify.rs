//! Verification: it passes on good rewrites (synthetic matrix, the real model on real photos),
//! fails with exit 1 naming the right keypoints on deliberately wrong ones, reports unreadable
//! photos with exit 2, and writes a JSON report of a documented shape.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use onnx_posefix::contract::Layout;
use onnx_posefix::contract::KEYPOINT_NAMES;
use onnx_posefix::model::io::LoadedModel;
use onnx_posefix::model::proto;
use onnx_posefix::onnx_protobuf::{Message, ModelProto};
use onnx_posefix::rewrite::{rewrite, RewriteOptions};
use onnx_posefix::testing::synthetic::{self, Batch, SyntheticSpec};
use onnx_posefix::verify::{self, Status, VerifyOptions};
use serde_json::Value;
use tempfile::TempDir;

use crate::common::{loaded, real_model_path, repo_path, run_cli, shared_images, snapshot_settings, stderr, stdout};

fn encode(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().expect("encode")
}

/// ORIGINAL and REWRITTEN (rewritten with default options) written into `dir`.
fn pair(dir: &TempDir, spec: &SyntheticSpec) -> (PathBuf, PathBuf, ModelProto) {
    let original = loaded(&synthetic::generate(spec));
    let rewritten = rewrite(&original, &RewriteOptions::default()).expect("rewrite");
    let bytes = rewritten.to_bytes(&original).expect("encode");
    let (o, r) = (dir.path().join("original.onnx"), dir.path().join("rewritten.onnx"));
    fs::write(&o, original.file_bytes()).unwrap();
    fs::write(&r, &bytes).unwrap();
    (o, r, onnx_posefix::model::io::parse_model(&bytes).expect("parse"))
}

/// Rewrites one float initializer of `model` in place.
fn tamper(model: &mut ModelProto, name: &str, edit: impl FnOnce(&mut Vec<f32>)) {
    let graph = model.graph.as_mut().unwrap();
    let t = graph.initializer.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no initializer {name}"));
    let mut values = proto::tensor_f32_values(t).expect("float initializer");
    edit(&mut values);
    *t = proto::tensor_f32(name, &t.dims.clone(), &values);
}

fn verify_cli(original: &Path, rewritten: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec!["verify".as_ref(), original.as_os_str(), rewritten.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    run_cli(&args)
}

/// The input lines of a run (OK / MISMATCH / UNREADABLE).
fn input_lines(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| ["OK ", "MISMATCH ", "UNREADABLE "].iter().any(|p| l.starts_with(p)))
        .map(str::to_string)
        .collect()
}

fn line_for<'a>(lines: &'a [String], input: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(&format!(" {input}:")) || l.ends_with(&format!(" {input}")))
        .unwrap_or_else(|| panic!("no line for {input} in {lines:#?}"))
}

/// Every keypoint named in the MISMATCH lines.
fn named_keypoints(lines: &[String]) -> Vec<&'static str> {
    KEYPOINT_NAMES
        .iter()
        .copied()
        .filter(|k| {
            lines.iter().any(|l| {
                l.starts_with("MISMATCH") && l.contains(&format!(" {k} cell")) || l.contains(&format!("; {k} cell"))
            })
        })
        .collect()
}

/// The run verified everything: every input OK, exit 0.
fn assert_all_equal(out: &Output) {
    let text = stdout(out);
    let lines = input_lines(out);
    assert!(!lines.is_empty(), "{text}");
    for line in lines {
        assert!(line.starts_with("OK "), "{line}\n{text}");
    }
    assert_eq!(out.status.code(), Some(0), "stdout:\n{text}\nstderr:\n{}", stderr(out));
}

#[test]
fn xy_swapped_is_caught_on_every_keypoint() {
    let dir = TempDir::new().unwrap();
    let spec = SyntheticSpec { heads_layout: Layout::Nhwc, sigmoid_heatmaps: true, ..SyntheticSpec::posenet(13) };
    let (original, rewritten, mut model) = pair(&dir, &spec);
    // Output channels of the [51, 34] position reorder are (x, y, score) per keypoint: swap the
    // x and y rows.
    tamper(&mut model, "posefix/positions_xy_weights", |m| {
        for k in 0..17 {
            for col in 0..34 {
                m.swap((k * 3) * 34 + col, (k * 3 + 1) * 34 + col);
            }
        }
    });
    fs::write(&rewritten, encode(&model)).unwrap();
    let json = dir.path().join("report.json");
    let out = verify_cli(&original, &rewritten, &["--json", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let lines = input_lines(&out);
    assert_eq!(named_keypoints(&lines), KEYPOINT_NAMES, "{lines:#?}");
    assert!(line_for(&lines, "direct:ties-in-rows").starts_with("MISMATCH"));
    // One mismatch record of the JSON report, for its schema. Crafted heads, quarter-pixel
    // offsets and raw scores: every number in it is exact on any machine.
    let report: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let ties = report["inputs"].as_array().unwrap().iter().find(|i| i["name"] == "direct:ties-in-rows").unwrap();
    assert_eq!(ties["mismatches"].as_array().unwrap().len(), 17);
    snapshot_settings().bind(|| {
        insta::assert_snapshot!("verify_mismatch_record", serde_json::to_string_pretty(&ties["mismatches"][1]).unwrap())
    });
}

#[test]
fn last_occurrence_ties_are_caught() {
    let dir = TempDir::new().unwrap();
    let (original, rewritten, mut model) = pair(&dir, &SyntheticSpec::posenet(13));
    // Ranks A..1 pick the first maximal cell; 1..A pick the last (the map's kernel holds them
    // mirrored: reversed, it holds them in the other order).
    tamper(&mut model, "posefix/first_cell_rank_values", |r| r.reverse());
    fs::write(&rewritten, encode(&model)).unwrap();
    let out = verify_cli(&original, &rewritten, &[]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let lines = input_lines(&out);
    // A zero image makes every heatmap constant: all 17 keypoints tie, first cell (0,0),
    // last cell (16,16).
    let zeros = line_for(&lines, "adversarial:zeros");
    assert!(zeros.starts_with("MISMATCH"), "{zeros}");
    for k in KEYPOINT_NAMES {
        assert!(zeros.contains(&format!("{k} cell (0,0) vs (16,16)")), "{k}: {zeros}");
    }
    for case in ["direct:ties-in-rows", "direct:all-equal", "direct:first-and-last-cell", "direct:probabilities"] {
        assert!(line_for(&lines, case).starts_with("MISMATCH"), "{case}: {lines:#?}");
    }
    // Noise has no ties: still equal.
    assert!(line_for(&lines, "adversarial:noise").starts_with("OK"), "{lines:#?}");
}

#[test]
fn wrong_stride_is_caught_away_from_the_origin() {
    let dir = TempDir::new().unwrap();
    let (original, rewritten, mut model) = pair(&dir, &SyntheticSpec::posenet(11));
    // As if built with stride 15 instead of 16.
    tamper(&mut model, "posefix/grid_px_values", |g| g.iter_mut().for_each(|v| *v = *v / 16.0 * 15.0));
    fs::write(&rewritten, encode(&model)).unwrap();
    let out = verify_cli(&original, &rewritten, &[]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let lines = input_lines(&out);
    // Cell (0,0) sits at 0 whatever the stride: the all-tied zero image still agrees.
    assert!(line_for(&lines, "adversarial:zeros").starts_with("OK"), "{lines:#?}");
    let ties = line_for(&lines, "direct:ties-in-rows");
    assert!(ties.starts_with("MISMATCH") && ties.contains("nose cell"), "{ties}");
    assert_eq!(named_keypoints(&lines), KEYPOINT_NAMES, "{lines:#?}");
}

#[test]
fn offsets_of_the_wrong_keypoint_are_caught() {
    let dir = TempDir::new().unwrap();
    let spec = SyntheticSpec { sigmoid_heatmaps: true, ..SyntheticSpec::posenet(13) };
    let original = synthetic::generate(&spec);
    // The same model with its offsets routed through a 1x1 Conv swapping keypoints 3 (leftEar)
    // and 9 (leftWrist), y channels 3/9 and x channels 20/26.
    let mut routed = original.clone();
    let graph = routed.graph.as_mut().unwrap();
    let producer = graph.node.iter_mut().find(|n| n.output.iter().any(|o| o == "offsets")).unwrap();
    producer.output[0] = "offsets_unrouted".into();
    let perm = |c: usize| match c {
        3 => 9,
        9 => 3,
        20 => 26,
        26 => 20,
        c => c,
    };
    let weights: Vec<f32> = (0..34 * 34).map(|i| if perm(i / 34) == i % 34 { 1.0 } else { 0.0 }).collect();
    graph.initializer.push(proto::tensor_f32("route.weight", &[34, 34, 1, 1], &weights));
    graph.node.push(proto::node(
        "Conv",
        "route",
        &["offsets_unrouted", "route.weight"],
        &["offsets"],
        vec![proto::attr_ints("kernel_shape", &[1, 1])],
    ));
    let routed = loaded(&routed);
    let rewritten = rewrite(&routed, &RewriteOptions::default()).unwrap().to_bytes(&routed).unwrap();
    let (o, r) = (dir.path().join("original.onnx"), dir.path().join("rewritten.onnx"));
    fs::write(&o, encode(&original)).unwrap();
    fs::write(&r, rewritten).unwrap();

    let out = verify_cli(&o, &r, &["--json", dir.path().join("report.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let lines = input_lines(&out);
    assert_eq!(named_keypoints(&lines), ["leftEar", "leftWrist"], "{lines:#?}");
    for l in lines.iter().filter(|l| l.contains("adversarial:")) {
        assert!(l.starts_with("MISMATCH"), "{l}");
    }
    // The decoder itself is right: fed heads directly, it agrees.
    for l in lines.iter().filter(|l| l.contains("direct:")) {
        assert!(l.starts_with("OK"), "{l}");
    }
    let report: Value = serde_json::from_slice(&fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let zeros = report["inputs"].as_array().unwrap().iter().find(|i| i["name"] == "adversarial:zeros").unwrap();
    assert_eq!(zeros["status"], "mismatch");
    let named: Vec<&str> =
        zeros["mismatches"].as_array().unwrap().iter().map(|m| m["keypoint"].as_str().unwrap()).collect();
    assert_eq!(named, ["leftEar", "leftWrist"]);
}

#[test]
fn real_model_on_every_photo() {
    // Without the photos: a note, or a failure in CI.
    let Some(images) = shared_images() else { return };
    let dir = TempDir::new().unwrap();
    let out_model = dir.path().join("out.onnx");
    let json = dir.path().join("report.json");
    let run = run_cli(&[
        real_model_path().as_os_str(),
        out_model.as_os_str(),
        "--verify".as_ref(),
        "--images".as_ref(),
        images.as_os_str(),
        repo_path("samples").as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert_all_equal(&run);
    let photos = fs::read_dir(&images)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().to_string_lossy().to_ascii_lowercase();
            name.ends_with(".jpg") || name.ends_with(".jpeg") || name.ends_with(".png")
        })
        .count();
    let report: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["summary"]["photos"], photos + 1, "the shared photos and astronaut.png");
    for input in report["inputs"].as_array().unwrap() {
        assert_eq!(input["max_position_error"], 0.0, "{input}");
    }
}

#[test]
fn bundled_sample_without_images_and_drawing() {
    let dir = TempDir::new().unwrap();
    let out_model = dir.path().join("out.onnx");
    let drawn = dir.path().join("drawn");
    let run = run_cli(&[
        real_model_path().as_os_str(),
        out_model.as_os_str(),
        "--verify".as_ref(),
        "--draw".as_ref(),
        drawn.as_os_str(),
    ]);
    assert_all_equal(&run);
    assert!(stdout(&run).contains("OK         astronaut.png (bundled)"), "{}", stdout(&run));
    let picture = image::open(drawn.join("astronaut.png")).unwrap();
    assert_eq!((picture.width(), picture.height()), (512, 512));
}

#[test]
fn unreadable_photos_are_named_and_the_rest_checked() {
    let dir = TempDir::new().unwrap();
    let (original, rewritten, _) = pair(&dir, &SyntheticSpec::posenet(11));
    let photos = dir.path().join("photos");
    fs::create_dir(&photos).unwrap();
    fs::copy(repo_path("samples/astronaut.png"), photos.join("a_good.png")).unwrap();
    fs::write(photos.join("b_broken.jpg"), b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();
    fs::write(photos.join("notes.txt"), b"ignored: not an image extension").unwrap();
    let missing = dir.path().join("missing.png");
    let out = verify_cli(&original, &rewritten, &["--images", photos.to_str().unwrap(), missing.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}{}", stderr(&out));
    let lines = input_lines(&out);
    assert_eq!(lines.iter().filter(|l| l.contains("b_broken.jpg")).count(), 1, "{text}");
    assert!(line_for(&lines, &photos.join("b_broken.jpg").display().to_string()).starts_with("UNREADABLE"));
    assert!(line_for(&lines, &missing.display().to_string()).starts_with("UNREADABLE"));
    assert!(line_for(&lines, &photos.join("a_good.png").display().to_string()).starts_with("OK"));
    assert!(!text.contains("notes.txt"));
    assert!(line_for(&lines, "adversarial:noise").starts_with("OK"), "the run went on: {text}");
    assert!(text.contains("2 UNREADABLE"), "{text}");
}

#[test]
fn nhwc_symbolic_batch_model_verifies() {
    let dir = TempDir::new().unwrap();
    let spec = SyntheticSpec {
        input_layout: Layout::Nhwc,
        heads_layout: Layout::Nhwc,
        batch: Batch::Symbolic("N".into()),
        ..SyntheticSpec::posenet(13)
    };
    let (original, rewritten, _) = pair(&dir, &spec);
    let out = verify_cli(&original, &rewritten, &[]);
    assert_all_equal(&out);
    let text = stdout(&out);
    assert!(text.contains("input: image [1, 257, 257, 3] NHWC"), "{text}");
    assert!(text.contains("verified at batch 1"), "{text}");
}

/// The library over the whole matrix, for the portable decoder and the one built from ArgMax and
/// GatherElements (`--target onnxruntime`): every input equal, and the direct checks ran, so ties
/// were driven into every decoder and resolved to the first cell.
#[test]
fn every_matrix_model_verifies_and_ties_resolve_first() {
    let targets = [onnx_posefix::PORTABLE, "onnxruntime"];
    for (spec, target) in synthetic::matrix().into_iter().flat_map(|s| targets.map(|t| (s.clone(), t))) {
        let label = format!("{} --target {target}", spec.label());
        let original = loaded(&synthetic::generate(&spec));
        // Both structure-only parses, as the rewrite reads models: verify must cope.
        let options = RewriteOptions { target: target.to_string(), ..RewriteOptions::default() };
        let rewritten = rewrite(&original, &options).unwrap();
        let argmax = rewritten.model().graph.node.iter().any(|n| n.op_type == "ArgMax");
        assert_eq!(argmax, target != onnx_posefix::PORTABLE && spec.opset >= 11, "{label}");
        let rewritten =
            LoadedModel::from_bytes(rewritten.to_bytes(&original).unwrap(), std::path::Path::new(&label)).unwrap();
        let report = verify::verify(
            &original,
            &rewritten,
            (label.clone(), label.clone()),
            &VerifyOptions::default(),
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        for r in &report.inputs {
            assert_eq!(r.status, Status::Ok, "{label}: {}", r.line());
        }
        let direct: Vec<&str> =
            report.inputs.iter().filter(|r| r.name.starts_with("direct:")).map(|r| r.name.as_str()).collect();
        for case in ["direct:ties-in-rows", "direct:all-equal", "direct:first-and-last-cell"] {
            assert!(direct.contains(&case), "{label}: {direct:?}");
        }
        let batch = spec.batch.concrete(1);
        assert_eq!(report.summary.keypoints_compared, report.summary.inputs_checked * 17 * batch, "{label}");
        assert!(report.notes.iter().all(|n| !n.contains("skipped")), "{label}: {:?}", report.notes);
    }
}

/// Replaces what changes from run to run or machine to machine, after checking it.
fn redact(report: &mut Value, tolerances: (f64, f64)) {
    for key in ["seconds", "setup_seconds", "inputs_per_second"] {
        assert!(report["summary"][key].as_f64().unwrap() >= 0.0);
        report["summary"][key] = "[timing]".into();
    }
    for key in ["original", "rewritten"] {
        let name = Path::new(report[key].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
        report[key] = format!("[dir]/{name}").into();
    }
    report["tool_version"] = "[version]".into();
    // Scores go through tract's Sigmoid, whose last bits depend on the SIMD kernels of the
    // machine; what matters is that they are within tolerance.
    let Value::Object(fields) = report else { panic!("a report is an object") };
    let mut errors = vec![];
    for (key, value) in fields.iter_mut() {
        match (key.as_str(), value) {
            ("summary", summary) => errors.push(summary),
            ("inputs", Value::Array(inputs)) => errors.extend(inputs.iter_mut()),
            _ => {}
        }
    }
    for e in errors {
        for (key, tol) in [("max_position_error", tolerances.0), ("max_score_error", tolerances.1)] {
            assert!(e[key].as_f64().unwrap() <= tol, "{key} {}", e[key]);
            e[key] = "[within tolerance]".into();
        }
    }
}

#[test]
fn json_report_snapshot() {
    let dir = TempDir::new().unwrap();
    let spec = SyntheticSpec { sigmoid_heatmaps: true, batch: Batch::Fixed(2), ..SyntheticSpec::posenet(13) };
    let (original, rewritten, _) = pair(&dir, &spec);
    let json = dir.path().join("report.json");
    let out = verify_cli(&original, &rewritten, &["--json", json.to_str().unwrap(), "--tol-px", "0.01"]);
    assert_all_equal(&out);
    let mut report: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    redact(&mut report, (0.01, 1e-5));
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("verify_report", serde_json::to_string_pretty(&report).unwrap()));
}

#[test]
fn usage_errors() {
    let dir = TempDir::new().unwrap();
    let (original, rewritten, _) = pair(&dir, &SyntheticSpec::posenet(11));
    let check = |out: Output, needle: &str| {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // Verification flags without --verify.
    check(
        run_cli(&[original.as_os_str(), dir.path().join("x.onnx").as_os_str(), "--images".as_ref(), "a.jpg".as_ref()]),
        "--images only applies with --verify",
    );
    // A model without provenance whose output is not where the flags say.
    check(verify_cli(&original, &original, &["--output-name", "nope"]), "REWRITTEN has no output called nope");
    // Negative tolerance.
    check(verify_cli(&original, &rewritten, &["--tol-px=-1"]), "--tol-px must be");
    // Unreadable model.
    check(verify_cli(&dir.path().join("none.onnx"), &rewritten, &[]), "none.onnx");
}
