//! The models the benchmarks run: the real PoseNet at other input sizes and strides, the
//! ResNet50-sized synthetic ones, rewritten by the tool binary, and the decoder cut out alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use onnx_posefix::contract::{Provenance, METADATA_PREFIX, NAME_PREFIX};
use onnx_posefix::model::proto::{declared_tensor, set_declared_shape, Dim};
use onnx_posefix::onnx_protobuf::{GraphProto, Message, ModelProto};
use onnx_posefix::testing::synthetic::{self, ResnetSpec, SyntheticSpec};

/// Where the benchmarks read and write.
pub struct Workspace {
    /// The repository.
    pub repo: PathBuf,
    /// Scratch space for generated models (under the target dir, never in the repository).
    pub dir: PathBuf,
    /// The `onnx-posefix` binary under test.
    pub tool: PathBuf,
}

impl Workspace {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn real_model(&self) -> PathBuf {
        self.repo.join("models/posenet-mobilenet075-257.onnx")
    }

    /// Writes `model` as `name` unless a file of that name exists (generated models are
    /// deterministic, so a file from an earlier run is the same model).
    pub fn cached(&self, name: &str, model: impl FnOnce() -> ModelProto) -> PathBuf {
        let path = self.path(name);
        if !path.exists() {
            save(&model(), &path);
        }
        path
    }

    /// Runs the tool: `IN OUT [--prune]`.
    pub fn rewrite(&self, input: &Path, output: &Path, prune: bool) {
        self.rewrite_with(input, output, if prune { &["--prune"] } else { &[] });
    }

    /// Runs the tool: `IN OUT ARGS...`.
    pub fn rewrite_with(&self, input: &Path, output: &Path, args: &[&str]) {
        let mut cmd = Command::new(&self.tool);
        cmd.arg(input).arg(output).args(args);
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.tool.display()));
        assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

pub fn load(path: &Path) -> ModelProto {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    ModelProto::parse_from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn save(model: &ModelProto, path: &Path) {
    let bytes = model.write_to_bytes().expect("encodes");
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn graph(model: &ModelProto) -> &GraphProto {
    model.graph.as_ref().expect("a graph")
}

/// The real PoseNet (MobileNetV1, stride 16, 257x257) declared for a `size`x`size` input, at output
/// stride 16 or 8. Its convs work at any size; stride 8 turns the last stride-2 conv into a
/// stride-1 one, which is how tfjs PoseNet runs the same weights at a finer output stride (the
/// 3x3 depthwise conv keeps its SAME pads of 1). `size` should be `16k+1` so the TF-SAME pads of
/// the export stay symmetric.
pub fn real_variant(base: &ModelProto, size: usize, stride: usize) -> ModelProto {
    assert!(stride == 16 || stride == 8, "the real model runs at stride 16 or 8");
    let mut model = base.clone();
    let graph = model.graph.as_mut().expect("a graph");
    if stride == 8 {
        let last_strided = graph
            .node
            .iter_mut()
            .filter(|n| n.op_type == "Conv")
            .filter(|n| n.attribute.iter().any(|a| a.name == "strides" && a.ints == [2, 2]))
            .last()
            .expect("a stride-2 conv");
        for a in &mut last_strided.attribute {
            if a.name == "strides" {
                a.ints = vec![1, 1];
            }
        }
    }
    let dims = |d: &[usize]| d.iter().map(|&v| Dim::Fixed(v as i64)).collect::<Vec<_>>();
    set_declared_shape(&mut graph.input[0], &dims(&[1, 3, size, size]));
    let grid = (size - 1) / stride + 1;
    for out in &mut graph.output {
        let Some((_, Some(declared))) = declared_tensor(out) else { panic!("{} has no shape", out.name) };
        let Dim::Fixed(channels) = declared[1] else { panic!("{} has no fixed channels", out.name) };
        set_declared_shape(out, &dims(&[1, channels as usize, grid, grid]));
    }
    model
}

/// The ResNet50-sized model of `spec`, cached under its label.
pub fn resnet(ws: &Workspace, spec: &ResnetSpec) -> PathBuf {
    ws.cached(&format!("{}.onnx", spec.label()), || synthetic::resnet_sized(spec))
}

/// The minimal synthetic PoseNet of `spec` (no backbone: its cost is all rewrite overhead and
/// decoder).
pub fn minimal(ws: &Workspace, spec: &SyntheticSpec) -> PathBuf {
    ws.cached(&format!("minimal_{}.onnx", spec.label()), || synthetic::generate(spec))
}

/// The width in percent of ResNet50's that gives a model closest to `megabytes` of weights.
pub fn width_for(megabytes: f64, stride: usize) -> usize {
    (5..=400)
        .min_by_key(|&w| {
            let bytes = ResnetSpec { width_percent: w, ..ResnetSpec::resnet50(stride) }.weight_count() * 4;
            (bytes as f64 - megabytes * 1e6).abs() as u64
        })
        .expect("a width")
}

/// The decoder a rewrite appended, alone: its nodes, initializers and provenance, reading the
/// heatmaps and offsets as graph inputs and writing the keypoints. Runs by itself (to time the
/// decoder without the backbone), and is what the Python peer appends.
pub fn decoder_only(rewritten: &ModelProto) -> ModelProto {
    let prov = Provenance::from_metadata(rewritten.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
        .expect("a rewritten model carries its provenance");
    let g = graph(rewritten);
    let output =
        |name: &str| g.output.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no output {name}")).clone();
    let mut out = GraphProto::new();
    out.name = "posefix_decoder".to_string();
    out.node = g.node.iter().filter(|n| n.name.starts_with(NAME_PREFIX)).cloned().collect();
    out.initializer = g.initializer.iter().filter(|t| t.name.starts_with(NAME_PREFIX)).cloned().collect();
    out.input = vec![output(&prov.settings.heatmaps), output(&prov.settings.offsets)];
    out.output = vec![output(&prov.settings.output)];
    let mut model = ModelProto::new();
    model.ir_version = rewritten.ir_version;
    model.opset_import = rewritten.opset_import.clone();
    model.producer_name = "onnx-posefix bench".to_string();
    model.metadata_props =
        rewritten.metadata_props.iter().filter(|e| e.key.starts_with(METADATA_PREFIX)).cloned().collect();
    model.graph = Some(out).into();
    model
}

/// The shape a graph input or output declares, all dims fixed.
pub fn fixed_shape(model: &ModelProto, name: &str) -> Vec<usize> {
    let g = graph(model);
    let vi = g.input.iter().chain(&g.output).find(|v| v.name == name).unwrap_or_else(|| panic!("no tensor {name}"));
    let Some((_, Some(dims))) = declared_tensor(vi) else { panic!("{name} declares no shape") };
    dims.iter()
        .map(|d| match d {
            Dim::Fixed(v) => *v as usize,
            other => panic!("{name} has a non-fixed dim {other}"),
        })
        .collect()
}

/// A file's size in bytes.
pub fn file_size(path: &Path) -> u64 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}
