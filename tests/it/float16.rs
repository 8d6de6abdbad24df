//! float16 models (issue 13, part 3): heads converted to float16, as onnxconverter-common's
//! `convert_float_to_float16` leaves them, are read through an exact Cast; `verify` feeds float16
//! inputs, reads float16 heads and crafted heads rounded to float16; `--output-type float16`
//! rounds the appended outputs once, and `verify` compares them with the reference rounded the
//! same way (and fails when told the outputs are float32).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use onnx_posefix::model::io::parse_model;
use onnx_posefix::onnx_protobuf::tensor_proto::DataType;
use onnx_posefix::onnx_protobuf::{Message, ModelProto};
use onnx_posefix::testing::synthetic::{self, SyntheticSpec};
use tempfile::TempDir;

use crate::common::{real_model_path, repo_path, run_cli, stderr, stdout};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(p: &Path) -> ModelProto {
    parse_model(&fs::read(p).unwrap()).unwrap()
}

/// `model` converted to float16 and written into `dir`, with where its rewrite goes.
fn float16_model(dir: &TempDir, model: &ModelProto, keep_io_types: bool) -> (PathBuf, PathBuf) {
    let input = dir.path().join("in16.onnx");
    fs::write(&input, synthetic::float16(model, keep_io_types).write_to_bytes().unwrap()).unwrap();
    (input, dir.path().join("out16.onnx"))
}

/// The declared element type of graph output `name`.
fn output_type(model: &ModelProto, name: &str) -> i32 {
    let output = model.graph.as_ref().unwrap().output.iter().find(|o| o.name == name).unwrap();
    onnx_posefix::model::proto::declared_tensor(output).unwrap().0
}

fn assert_equal(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(0), "{what}: {}\n{}", stdout(out), stderr(out));
    assert!(stdout(out).contains("all equal"), "{what}: {}", stdout(out));
}

fn verify(input: &Path, output: &Path, images: &Path) -> Output {
    run_cli(&["verify", path(input), path(output), "--images", path(images)])
}

#[test]
fn float16_heads_are_decoded_exactly_single_and_multi_pose() {
    let sample = repo_path("samples/astronaut.png");
    let specs = [
        SyntheticSpec { sigmoid_heatmaps: true, ..SyntheticSpec::posenet(11) },
        SyntheticSpec {
            heads_layout: onnx_posefix::contract::Layout::Nhwc,
            input_hw: (353, 257),
            ..SyntheticSpec::posenet(17)
        },
    ];
    for spec in specs {
        let dir = TempDir::new().unwrap();
        let (input, output) = float16_model(&dir, &synthetic::generate(&spec), false);
        let inspected = stdout(&run_cli(&["inspect", path(&input)]));
        assert!(inspected.contains("offsets offsets, float16, "), "{}: {inspected}", spec.label());

        let out = run_cli(&[path(&input), path(&output), "--poses", "3"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", spec.label(), stderr(&out));
        // wonnx and ncnn hold no float16 tensors: portable is what the others accept.
        assert!(stdout(&out).contains("note: portable here leaves out ort-web-webgl, ncnn, wonnx"), "{}", stdout(&out));
        assert!(!stdout(&out).contains("own tensors hold"), "said once: {}", stdout(&out));
        let rewritten = read(&output);
        for name in ["keypoints", "poses", "pose_scores"] {
            assert_eq!(output_type(&rewritten, name), DataType::FLOAT as i32, "{name}");
        }
        let casts = rewritten.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == "Cast").count();
        // The two decoders share the heads' copies: one Cast per head read (the multi-pose
        // decoder reads the displacements too).
        assert_eq!(casts, 4, "{}: one Cast per head read", spec.label());
        let reshapes_before_casts =
            rewritten.graph.as_ref().unwrap().node.iter().filter(|n| n.name.ends_with("_copy_f16")).count();
        assert_eq!(reshapes_before_casts, 4, "{}: a Reshape before each Cast (onnxruntime fuses Casts)", spec.label());
        let out = verify(&input, &output, &sample);
        assert_equal(&out, &spec.label());
        assert!(stdout(&out).contains("are float16: the reference reads them exactly"), "{}", stdout(&out));

        // A runtime named by --target that has no float16 is not left out: its rule refuses.
        let out = run_cli(&[path(&input), path(&output), "--force", "--target", "wonnx"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("of type float16 breaks \"no tensors of type"), "{}", stderr(&out));
    }

    // keep_io_types: the heads are float32 outputs of Casts, decoded as ever.
    let dir = TempDir::new().unwrap();
    let (input, output) = float16_model(&dir, &synthetic::generate(&SyntheticSpec::posenet(13)), true);
    let out = run_cli(&[path(&input), path(&output)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("leaves out"), "{}", stdout(&out));
    // Its body is float16 all the same: the rewrite says where it cannot load.
    let said = "the model's own tensors hold types that ort-web-webgl (float16), ncnn (float16), wonnx (float16) \
                cannot hold at all";
    assert!(stdout(&out).contains(said), "{}", stdout(&out));
    assert_equal(&verify(&input, &output, &sample), "keep_io_types");
}

#[test]
fn float16_outputs_are_the_reference_rounded_once() {
    let sample = repo_path("samples/astronaut.png");
    let dir = TempDir::new().unwrap();
    let (input, output) = float16_model(&dir, &synthetic::generate(&SyntheticSpec::posenet(13)), false);
    // Barracuda 1.0.4 takes float32 graph outputs only, so portable refuses float16 ones.
    let out = run_cli(&[path(&input), path(&output), "--poses", "2", "--output-type", "float16"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("graph output keypoints of type float16 breaks"), "{}", stderr(&out));
    let tensorrt = ["--target", "tensorrt-8.4"];
    let out =
        run_cli(&[&[path(&input), path(&output), "--poses", "2", "--output-type", "float16"][..], &tensorrt].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rewritten = read(&output);
    for name in ["keypoints", "poses", "pose_scores"] {
        assert_eq!(output_type(&rewritten, name), DataType::FLOAT16 as i32, "{name}");
    }
    let recorded = rewritten.metadata_props.iter().find(|e| e.key == "posefix.output_type").map(|e| e.value.as_str());
    assert_eq!(recorded, Some("float16"));
    let out = verify(&input, &output, &sample);
    assert_equal(&out, "--output-type float16");
    assert!(stdout(&out).contains("compared with the reference rounded once to float16"), "{}", stdout(&out));

    // Told the outputs are float32, verify compares them with the unrounded reference: they
    // differ (the offsets are not multiples of float16's spacing).
    let mut wrong = rewritten;
    wrong.metadata_props.iter_mut().find(|e| e.key == "posefix.output_type").unwrap().value = "float32".into();
    let wrong_path = dir.path().join("wrong.onnx");
    fs::write(&wrong_path, wrong.write_to_bytes().unwrap()).unwrap();
    let out = verify(&input, &wrong_path, &sample);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // --pixels prepends float32 arithmetic: a float16 image input is refused in one line.
    let out = run_cli(&[path(&input), path(&output), "--force", "--pixels", "byte", "--preprocess", "mobilenet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--pixels: the image input image is float16, not float32"), "{}", stderr(&out));

    // A float32 model can have float16 outputs too.
    let plain = dir.path().join("in32.onnx");
    fs::write(&plain, synthetic::generate(&SyntheticSpec::posenet(11)).write_to_bytes().unwrap()).unwrap();
    let out = run_cli(&[&[path(&plain), path(&output), "--force", "--output-type", "float16"][..], &tensorrt].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_equal(&verify(&plain, &output, &sample), "float32 model, float16 outputs");
}

#[test]
fn the_real_model_in_float16_decodes_its_own_heads_exactly() {
    use onnx_posefix::contract::{Layout, ScoreMode};
    use onnx_posefix::tract_bridge::Runner;
    let model = read(&real_model_path());
    let dir = TempDir::new().unwrap();
    let (input, output) = float16_model(&dir, &model, false);
    let out = run_cli(&[path(&input), path(&output)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // tract runs float16 convolutions slowly on x86, so one run rather than a whole `verify`:
    // REWRITTEN still outputs the heads, and its keypoints must be the reference's on them.
    let runner = Runner::new(&fs::read(&output).unwrap(), &[vec![1, 3, 257, 257]]).unwrap();
    let outputs = runner.run(vec![crate::common::real_model_input(&repo_path("samples/astronaut.png"))]).unwrap();
    let view = |name: &str| outputs[runner.output_index(name).unwrap()].to_plain_array_view::<f32>().unwrap();
    let poses =
        onnx_posefix::reference::decode(view("heatmaps"), view("offsets"), Layout::Nchw, 16, ScoreMode::Sigmoid)
            .unwrap();
    let keypoints = view("keypoints");
    for (k, want) in poses[0].iter().enumerate() {
        let got = [keypoints[[0, k, 0]], keypoints[[0, k, 1]]];
        assert_eq!(got.map(f32::to_bits), [want.x, want.y].map(f32::to_bits), "keypoint {k}");
        assert!((keypoints[[0, k, 2]] - want.score).abs() <= 1e-6, "keypoint {k} score");
    }
}
