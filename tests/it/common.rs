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

/// `../shared/images` when it exists (CI has it; a fresh clone elsewhere does not).
pub fn shared_images() -> Option<PathBuf> {
    let dir = repo_path("../shared/images");
    dir.is_dir().then_some(dir)
}

/// A model as the rewrite reads it from disk: its structure, weights left in the bytes.
pub fn loaded(model: &ModelProto) -> LoadedModel {
    let bytes = model.write_to_bytes().expect("encode");
    LoadedModel { proto: onnx_posefix::model::io::parse_structure(&bytes).expect("parse"), bytes }
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

/// The shared photos (`.jpg`, `.png`), sorted; `None` without `../shared/images`.
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
