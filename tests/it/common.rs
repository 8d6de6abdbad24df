//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use onnx_posefix::model::io::LoadedModel;
use onnx_posefix::onnx_protobuf::{Message, ModelProto};

/// insta settings writing every snapshot to the top-level `snapshots/` folder.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The real PoseNet bundled in `models/`.
pub fn real_model_path() -> PathBuf {
    repo_path("models/posenet-mobilenet075-257.onnx")
}

/// Whether this is a CI run (`CI` set, as CI services set it, and not `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `../shared/RELATIVE`, the data kept beside the repository (photos, models) that some tests
/// need. Without it: `None` and a note on stderr naming the test that does less, for a fresh clone
/// elsewhere; a panic when `CI` is set, since CI has the shared data and a test that silently
/// skipped there would prove nothing.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = repo_path("../shared").join(relative);
    if path.exists() {
        return Some(path);
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let shown = Path::new("../shared").join(relative);
    if in_ci() {
        panic!("{test}: {} is missing, and CI must have it (CI is set)", shown.display());
    }
    eprintln!("note: {test}: {} is missing; skipped what needs it (CI fails on this)", shown.display());
    None
}

/// `../shared/images`, through [`shared_data`]: `None` (with a note) without it, a panic in CI.
pub fn shared_images() -> Option<PathBuf> {
    shared_data("images")
}

/// A model as the rewrite reads it from disk: its structure, weights left in the bytes.
pub fn loaded(model: &ModelProto) -> LoadedModel {
    let bytes = model.write_to_bytes().expect("encode");
    LoadedModel::from_parts(bytes.clone(), onnx_posefix::model::io::parse_structure(&bytes).expect("parse"))
}

/// Runs the binary with `args`.
pub fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onnx-posefix")).args(args).output().expect("run onnx-posefix")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shared photos (`.jpg`, `.png`), sorted; `None` (or a panic in CI) without
/// `../shared/images`, as [`shared_data`] says.
pub fn shared_photos() -> Option<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(shared_images()?)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    photos.sort();
    Some(photos)
}

/// A photo as the real model's input: resized to 257x257 (bilinear), `x / 127.5 - 1`, NCHW.
pub fn real_model_input(path: &Path) -> onnx_posefix::tract_onnx::prelude::Tensor {
    use onnx_posefix::tract_onnx::prelude::{tract_ndarray, IntoTensor};
    let image = image::open(path).unwrap().to_rgb8();
    let image = image::imageops::resize(&image, 257, 257, image::imageops::FilterType::Triangle);
    tract_ndarray::Array4::from_shape_fn((1, 3, 257, 257), |(_, c, y, x)| {
        image.get_pixel(x as u32, y as u32)[c] as f32 / 127.5 - 1.0
    })
    .into_tensor()
}

/// The real model's four heads, in this order (NCHW, a 17x17 grid), and their channels.
pub const REAL_HEADS: [&str; 4] = ["heatmaps", "offsets", "displacement_fwd", "displacement_bwd"];
pub const REAL_HEAD_CHANNELS: [usize; 4] = [17, 34, 32, 32];

/// The real model's heads on each photo (in [`REAL_HEADS`] order, flattened CHW), as tract computes
/// them.
pub fn real_model_heads(photos: &[PathBuf]) -> Vec<Vec<Vec<f32>>> {
    use onnx_posefix::tract_bridge::Runner;
    let runner = Runner::new(&std::fs::read(real_model_path()).unwrap(), &[vec![1, 3, 257, 257]]).unwrap();
    let index: Vec<usize> = REAL_HEADS.iter().map(|h| runner.output_index(h).unwrap()).collect();
    photos
        .iter()
        .map(|photo| {
            let outputs = runner.run(vec![real_model_input(photo)]).unwrap();
            let heads: Vec<Vec<f32>> = index
                .iter()
                .map(|&i| outputs[i].to_plain_array_view::<f32>().unwrap().iter().copied().collect())
                .collect();
            for (head, channels) in heads.iter().zip(REAL_HEAD_CHANNELS) {
                assert_eq!(head.len(), channels * 17 * 17, "{}", photo.display());
            }
            heads
        })
        .collect()
}

/// No element-wise op (Add, Sub, Mul, Div) of `graph` reads a constant of more than one value:
/// onnx2tf transposes such an operand against its own guess of the layout, and with a symbolic
/// batch no constant can have the other operand's shape (see `decoders::graph`).
pub fn assert_no_constant_maps_in_elementwise_ops(graph: &onnx_posefix::onnx_protobuf::GraphProto, label: &str) {
    let constants: std::collections::HashMap<&str, &Vec<i64>> =
        graph.initializer.iter().map(|t| (t.name.as_str(), &t.dims)).collect();
    for n in graph.node.iter().filter(|n| ["Add", "Sub", "Mul", "Div"].contains(&n.op_type.as_str())) {
        for input in &n.input {
            if let Some(dims) = constants.get(input.as_str()) {
                let values: i64 = dims.iter().product();
                assert!(values <= 1, "{label}: {} reads a constant of shape {dims:?}", n.name);
            }
        }
    }
}
