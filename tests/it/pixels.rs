//! `--pixels`: the rewritten model takes pixels and normalizes them itself. Its heads must be
//! ORIGINAL's on the normalized photo bit for bit (so the normalization is exactly
//! `--preprocess`'s), on every shared photo, for byte and unit pixels; the command line refuses
//! what it cannot mean, records the choice, and `verify` feeds each model what it takes.

use std::fs;

use onnx_posefix::contract::{Layout, Pixels, Preprocess};
use onnx_posefix::model::io::parse_model;
use onnx_posefix::onnx_protobuf::Message;
use onnx_posefix::rewrite::{rewrite, PixelOptions, RewriteOptions};
use onnx_posefix::testing::rng::Rng;
use onnx_posefix::testing::synthetic::{self, SyntheticSpec};
use onnx_posefix::tract_bridge::Runner;
use onnx_posefix::tract_onnx::prelude::tract_ndarray::{Array4, ArrayD, IxDyn};
use onnx_posefix::tract_onnx::prelude::*;
use tempfile::TempDir;

use crate::common::{real_model_path, run_cli, shared_photos, stderr, stdout};

/// `model` rewritten to take `pixels`, normalizing by `preprocess`.
fn with_pixels(model: &[u8], pixels: Pixels, preprocess: Preprocess) -> Vec<u8> {
    let original =
        onnx_posefix::LoadedModel::from_parts(model.to_vec(), onnx_posefix::model::io::parse_structure(model).unwrap());
    let options = RewriteOptions { pixels: Some(PixelOptions { pixels, preprocess }), ..RewriteOptions::default() };
    rewrite(&original, &options).unwrap().to_bytes(&original).unwrap()
}

/// Every output of ORIGINAL (its heads) on `normalized` equals REWRITTEN's on `pixels`, bit for bit.
fn assert_same_heads(original: &Runner, rewritten: &Runner, normalized: ArrayD<f32>, pixels: ArrayD<f32>, what: &str) {
    let want = original.run(vec![normalized.into_tensor()]).unwrap();
    let got = rewritten.run(vec![pixels.into_tensor()]).unwrap();
    for (i, w) in want.iter().enumerate() {
        let (w, g) = (w.to_plain_array_view::<f32>().unwrap(), got[i].to_plain_array_view::<f32>().unwrap());
        let differ = w.iter().zip(g.iter()).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{what}: output {i} differs in {differ} of {} values", w.len());
    }
}

/// A 257x257 photo as 0..255 pixels `[1, 3, 257, 257]`, resized as verify resizes it.
fn photo_pixels(path: &std::path::Path) -> Array4<u8> {
    let image = image::open(path).unwrap().to_rgb8();
    let image = image::DynamicImage::ImageRgb8(image).resize_exact(257, 257, image::imageops::FilterType::Triangle);
    let image = image.to_rgb8();
    Array4::from_shape_fn((1, 3, 257, 257), |(_, c, y, x)| image.get_pixel(x as u32, y as u32)[c])
}

#[test]
fn pixel_models_compute_the_normalization_bit_for_bit() {
    let bytes = fs::read(real_model_path()).unwrap();
    let shape = [vec![1, 3, 257, 257]];
    let original = Runner::new(&bytes, &shape).unwrap();
    let photos = shared_photos().unwrap_or_else(|| vec![crate::common::repo_path("samples/astronaut.png")]);
    for pixels in [Pixels::Byte, Pixels::Unit] {
        let rewritten = Runner::new(&with_pixels(&bytes, pixels, Preprocess::Mobilenet), &shape).unwrap();
        for photo in &photos {
            let p = photo_pixels(photo);
            let normalized = p.mapv(|v| Preprocess::Mobilenet.apply(0, 3, v)).into_dyn();
            let fed = p.mapv(|v| pixels.value(v)).into_dyn();
            assert_same_heads(&original, &rewritten, normalized, fed, &format!("{pixels} {}", photo.display()));
        }
    }
    // Every byte value, through both presets, NHWC and NCHW: ResNet's mean per channel.
    for (layout, dims) in [(Layout::Nhwc, [1usize, 33, 33, 3]), (Layout::Nchw, [1, 3, 33, 33])] {
        let spec = SyntheticSpec {
            input_layout: layout,
            heads_layout: layout,
            input_hw: (33, 33),
            ..SyntheticSpec::posenet(13)
        };
        let model = synthetic::generate(&spec).write_to_bytes().unwrap();
        let original = Runner::new(&model, &[dims.to_vec()]).unwrap();
        let mut rng = Rng::new(7);
        let values: Vec<u8> =
            (0..dims.iter().product::<usize>()).map(|i| (i % 256) as u8 ^ (rng.next_u64() as u8 & 1)).collect();
        let channel = |i: usize| match layout {
            Layout::Nchw => i / (33 * 33),
            Layout::Nhwc => i % 3,
        };
        for preprocess in [Preprocess::Mobilenet, Preprocess::Resnet] {
            for pixels in [Pixels::Byte, Pixels::Unit] {
                let rewritten = Runner::new(&with_pixels(&model, pixels, preprocess), &[dims.to_vec()]).unwrap();
                let tensor = |f: &dyn Fn(usize, u8) -> f32| {
                    ArrayD::from_shape_vec(IxDyn(&dims), values.iter().enumerate().map(|(i, v)| f(i, *v)).collect())
                        .unwrap()
                };
                let normalized = tensor(&|i, v| preprocess.apply(channel(i), 3, v));
                let fed = tensor(&|_, v| pixels.value(v));
                assert_same_heads(&original, &rewritten, normalized, fed, &format!("{layout} {preprocess} {pixels}"));
            }
        }
    }
}

#[test]
fn pixels_on_the_command_line() {
    let dir = TempDir::new().unwrap();
    let input = real_model_path();
    let out = dir.path().join("pixels.onnx");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for (args, says) in [
        (vec!["--pixels", "byte"], "--pixels needs --preprocess mobilenet or resnet"),
        (vec!["--pixels", "unit", "--preprocess", "raw"], "not raw"),
        (vec!["--preprocess", "resnet"], "--preprocess only applies with --verify"),
    ] {
        let mut all = vec![i, o];
        all.extend(&args);
        let run = run_cli(&all);
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        assert!(stderr(&run).contains(says), "{args:?}: {}", stderr(&run));
        assert!(!out.exists());
    }
    let help = stdout(&run_cli(&["--help"]));
    assert!(help.contains("CHANGES WHAT THE MODEL'S INPUT MEANS"), "{help}");

    let run = run_cli(&[i, o, "--pixels", "unit", "--preprocess", "mobilenet", "--verify"]);
    let text = stdout(&run);
    assert_eq!(run.status.code(), Some(0), "{text}{}", stderr(&run));
    assert!(
        text.contains("input image now takes unit pixels (0..1) and computes mobilenet (x/127.5 - 1) itself"),
        "{text}"
    );
    assert!(text.contains("in REWRITTEN's graph: it is fed unit pixels"), "{text}");
    let model = parse_model(&fs::read(&out).unwrap()).unwrap();
    let meta = |k: &str| model.metadata_props.iter().find(|e| e.key == k).map(|e| e.value.clone());
    assert_eq!(meta("posefix.input.name").as_deref(), Some("image"));
    assert_eq!(meta("posefix.input.pixels").as_deref(), Some("unit"));
    assert_eq!(meta("posefix.input.preprocess").as_deref(), Some("mobilenet"));
    // The input keeps its name and shape; the first nodes are the normalization's.
    let graph = model.graph.as_ref().unwrap();
    let original = parse_model(&fs::read(&input).unwrap()).unwrap();
    assert_eq!(graph.input[0], original.graph.as_ref().unwrap().input[0]);
    assert!(graph.node[0].name.starts_with("posefix/"), "{:?}", graph.node[0].name);
    assert!(graph.node.iter().filter(|n| n.input.iter().any(|x| x == "image")).all(|n| n.name.starts_with("posefix/")));
    // verify reads the choice back, and refuses a contradicting one.
    let run = run_cli(&["verify", i, o, "--preprocess", "resnet"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("REWRITTEN normalizes its input itself (mobilenet"), "{}", stderr(&run));
    let inspect = stdout(&run_cli(&["inspect", o]));
    assert!(inspect.contains("input normalization: image takes unit pixels, mobilenet (x/127.5 - 1)"), "{inspect}");
}
