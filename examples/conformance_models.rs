//! Writes the models of the cross-runtime conformance suite (`conformance/run.sh`).
//!
//! `cargo run --example conformance_models -- OUT_DIR` writes, for each model of the matrix below
//! and for the bundled real PoseNet, `NAME.orig.onnx` (the input of the rewrite) and
//! `NAME.posefix.onnx` (the rewrite with default options, read and encoded the way the CLI does
//! it; `--poses N` for the multi-pose models), plus `manifest.json`, which tells `conformance/check.py` everything it needs to feed the
//! models and decode their heads without reading the ONNX metadata itself.
//!
//! A few models also get the multi-pose decoder (`poses`, `pose_scores`) besides `keypoints`, as
//! `RewriteOptions::multi_pose` (the CLI's `--poses N`) writes it: the real model and two
//! synthetic ones ([`multi_pose_models`]). Their manifest entries carry a `multi_pose` object (N,
//! T, R, the output and the four head names, from the provenance) that check.py decodes the heads
//! with, through the `decode_multi_pose` example (the Rust reference).
//!
//! Three models take pixels (`--pixels`, [`pixel_models`]): their entries carry `pixels` (`unit`
//! or `byte`) and `preprocess`, and check.py feeds them pixels and their originals the pixels
//! normalized as `--preprocess` normalizes them.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
// The rewrite through the facade, as a library user calls it; the generators and two model
// readers from the crate's testing feature.
use onnx_posefix::model::proto::{self, Dim};
use onnx_posefix::onnx_protobuf::{Message, ModelProto};
use onnx_posefix::testing::synthetic::{self, Batch, SyntheticSpec};
use onnx_posefix::{
    read_structure, rewrite, Layout, LoadedModel, MultiPoseOptions, PixelOptions, Pixels, Preprocess, RewriteOptions,
};
use serde_json::{json, Value};

/// The real model, relative to the crate root.
const REAL_MODEL: &str = "models/posenet-mobilenet075-257.onnx";

/// A symbolic batch is run at 1 and at this size.
const SYMBOLIC_BATCH: i64 = 2;

/// The test matrix of the crate plus what it lacks for conformance: every opset 9..=21, a
/// symbolic batch in both head layouts and on both sides of opset 11 (where Clip moves its bounds
/// from attributes to inputs), a non-square stride-8 model, and a batch-1 NCHW model with
/// sigmoid heads below opset 13 (onnxruntime-web's WebGL backend runs no symbolic batch, and
/// fuses a head's Sigmoid into its Conv: this one shows both the opset-12 form and that fusion).
fn conformance_matrix() -> Vec<SyntheticSpec> {
    let base = SyntheticSpec::posenet;
    let symbolic = || Batch::Symbolic("N".into());
    let extra = vec![
        base(10),
        SyntheticSpec { batch: symbolic(), ..base(9) },
        SyntheticSpec { heads_layout: Layout::Nhwc, batch: symbolic(), ..base(10) },
        SyntheticSpec { heads_layout: Layout::Nhwc, sigmoid_heatmaps: true, batch: symbolic(), ..base(12) },
        SyntheticSpec { batch: Batch::Fixed(2), input_hw: (257, 353), ..base(14) },
        SyntheticSpec { input_layout: Layout::Nhwc, heads_layout: Layout::Nhwc, ..base(15) },
        SyntheticSpec { sigmoid_heatmaps: true, batch: symbolic(), ..base(16) },
        SyntheticSpec { stride: 8, input_hw: (161, 225), heads_layout: Layout::Nhwc, ..base(17) },
        SyntheticSpec { batch: Batch::Fixed(2), ..base(19) },
        SyntheticSpec { heads_layout: Layout::Nhwc, sigmoid_heatmaps: true, input_hw: (353, 257), ..base(20) },
        SyntheticSpec { heads_layout: Layout::Nhwc, batch: symbolic(), ..base(21) },
        SyntheticSpec { sigmoid_heatmaps: true, ..base(12) },
    ];
    // Seeds apart from the crate matrix's (`0x5EED + i`), so the extra weights are new draws.
    let extra = extra.into_iter().enumerate().map(|(i, s)| SyntheticSpec { seed: s.seed + 1000 + i as u64, ..s });
    synthetic::matrix().into_iter().chain(extra).collect()
}

/// Multi-pose settings of a model: N (`--poses N`); T and R are the command line's defaults,
/// tfjs posenet's 0.5 and 20 px.
#[derive(Clone, Copy, Debug)]
struct MultiPose {
    max_poses: usize,
}

impl MultiPose {
    fn new(max_poses: usize) -> Self {
        MultiPose { max_poses }
    }
}

/// The real model's multi-pose settings: N = 5, posenet's `MULTI_PERSON_INFERENCE_CONFIG`.
const REAL_MULTI_POSE_N: usize = 5;

/// Synthetic models with the multi-pose decoder besides the single-pose one: NCHW logits heads,
/// batch 1 but for one with a symbolic batch (which WebGL refuses), opsets apart from the real
/// model's 11, non-square grids and a stride other than 16. Their random 1x1-Conv heads give many
/// candidates and long displacements that leave the grid; zeros make every heatmap
/// constant (each cell ties with its neighbours: all are candidates, taken in scan order).
fn multi_pose_models() -> Vec<(SyntheticSpec, MultiPose)> {
    let base = SyntheticSpec::posenet;
    vec![
        (SyntheticSpec { input_hw: (257, 353), seed: 0x5EED + 2000, ..base(13) }, MultiPose::new(4)),
        (SyntheticSpec { stride: 8, input_hw: (161, 225), seed: 0x5EED + 2001, ..base(17) }, MultiPose::new(3)),
        // A symbolic batch, run at the manifest's batch of 2: several images a run.
        (SyntheticSpec { batch: Batch::Symbolic("N".into()), seed: 0x5EED + 2002, ..base(15) }, MultiPose::new(2)),
    ]
}

/// Models that take pixels (`--pixels`): the real model fed bytes (its MobileNet normalization in
/// the graph), and synthetic ones fed a texture's 0..1 through both presets, in NCHW and NHWC,
/// the ResNet one with its per-channel mean on the channel axis of NHWC.
fn pixel_models() -> Vec<(SyntheticSpec, PixelOptions)> {
    let base = SyntheticSpec::posenet;
    let unit = |preprocess| PixelOptions { pixels: Pixels::Unit, preprocess };
    vec![
        (SyntheticSpec { seed: 0x5EED + 3000, ..base(13) }, unit(Preprocess::Mobilenet)),
        (
            SyntheticSpec { input_layout: Layout::Nhwc, heads_layout: Layout::Nhwc, seed: 0x5EED + 3001, ..base(11) },
            unit(Preprocess::Resnet),
        ),
    ]
}

/// What a pair is rewritten with besides the defaults.
#[derive(Clone, Copy, Debug, Default)]
struct Extras {
    multi: Option<MultiPose>,
    pixels: Option<PixelOptions>,
    /// `--target`: a profile with richer forms; check.py runs the model on that runtime only.
    target: Option<&'static str>,
}

/// The profile whose richer decoder forms the suite proves, and the check.py runtimes it covers.
const RICHER_TARGET: (&str, &[&str]) = ("onnxruntime", &["onnxruntime"]);

fn main() -> Result<()> {
    let out_dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => bail!("usage: cargo run --example conformance_models -- OUT_DIR"),
    };
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut models = Vec::new();
    let specs = conformance_matrix();
    let mut labels = BTreeSet::new();
    if let Some(spec) = specs.iter().find(|s| !labels.insert(s.label())) {
        bail!("two models of the conformance matrix are labelled {}", spec.label());
    }
    for spec in &specs {
        models.push(write_synthetic(&out_dir, spec, Extras::default())?);
    }
    let real_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REAL_MODEL);
    let real = read_structure(&real_path).with_context(|| format!("reading {}", real_path.display()))?;
    let real_name = real_path.file_stem().and_then(|s| s.to_str()).unwrap_or("real").to_string();
    models.push(
        write_pair(&out_dir, &real_name, &real, "real", Extras::default())
            .with_context(|| format!("real model {REAL_MODEL}"))?,
    );

    let multi = MultiPose::new(REAL_MULTI_POSE_N);
    let name = format!("{real_name}_multi-pose-n{}", multi.max_poses);
    let extras = Extras { multi: Some(multi), ..Extras::default() };
    models.push(write_pair(&out_dir, &name, &real, "real", extras).with_context(|| format!("model {name}"))?);
    for (spec, multi) in &multi_pose_models() {
        models.push(write_synthetic(&out_dir, spec, Extras { multi: Some(*multi), ..Extras::default() })?);
    }
    let bytes = PixelOptions { pixels: Pixels::Byte, preprocess: Preprocess::Mobilenet };
    let name = format!("{real_name}_pixels-byte-mobilenet");
    let extras = Extras { pixels: Some(bytes), ..Extras::default() };
    models.push(write_pair(&out_dir, &name, &real, "real", extras).with_context(|| format!("model {name}"))?);
    for (spec, pixels) in &pixel_models() {
        models.push(write_synthetic(&out_dir, spec, Extras { pixels: Some(*pixels), ..Extras::default() })?);
    }
    // The decoders built for a profile with richer forms, on its runtime: every layout, score
    // mode, batch and opset of the matrix (below opset 11 the rewrite keeps the thin forms).
    let richer = Extras { target: Some(RICHER_TARGET.0), ..Extras::default() };
    let name = format!("{real_name}_target-{}", RICHER_TARGET.0);
    models.push(write_pair(&out_dir, &name, &real, "real", richer).with_context(|| format!("model {name}"))?);
    for spec in specs.iter().filter(|s| s.opset >= 11) {
        models.push(write_synthetic(&out_dir, spec, richer)?);
    }
    // The multi-pose decoder's Gather form: the real model and the synthetic multi-pose ones.
    let extras = Extras { multi: Some(multi), ..richer };
    let name = format!("{real_name}_multi-pose-n{}_target-{}", multi.max_poses, RICHER_TARGET.0);
    models.push(write_pair(&out_dir, &name, &real, "real", extras).with_context(|| format!("model {name}"))?);
    for (spec, multi) in &multi_pose_models() {
        models.push(write_synthetic(&out_dir, spec, Extras { multi: Some(*multi), ..richer })?);
    }

    let opsets: BTreeSet<i64> = specs.iter().map(|s| s.opset).collect();
    let missing: Vec<i64> = (9..=21).filter(|o| !opsets.contains(o)).collect();
    if !missing.is_empty() {
        bail!("the conformance matrix misses opsets {missing:?}");
    }

    let manifest = json!({ "version": 1, "symbolic_batch_as": SYMBOLIC_BATCH, "models": models });
    let manifest_path = out_dir.join("manifest.json");
    fs::write(&manifest_path, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    println!("wrote {} model pairs and {}", models.len(), manifest_path.display());
    Ok(())
}

/// Generates the synthetic model of `spec` and writes its pair.
fn write_synthetic(out_dir: &Path, spec: &SyntheticSpec, extras: Extras) -> Result<Value> {
    let mut label = spec.label();
    if let Some(m) = extras.multi {
        label += &format!("_multi-pose-n{}", m.max_poses);
    }
    if let Some(p) = extras.pixels {
        label += &format!("_pixels-{}-{}", p.pixels, p.preprocess);
    }
    if let Some(target) = extras.target {
        label += &format!("_target-{target}");
    }
    let bytes = synthetic::generate(spec).write_to_bytes().with_context(|| format!("encoding {label}"))?;
    // Parsed and checked the way the CLI reads a model, so the rewrite takes the CLI's path.
    let model = LoadedModel::from_bytes(bytes, Path::new(&label)).map_err(|e| anyhow!("parsing {label}: {e}"))?;
    write_pair(out_dir, &label, &model, "synthetic", extras).with_context(|| format!("synthetic model {label}"))
}

/// Rewrites `model` (with the multi-pose decoder, or taking pixels, as `extras` say), writes
/// both files and returns its manifest entry.
fn write_pair(out_dir: &Path, name: &str, model: &LoadedModel, kind: &str, extras: Extras) -> Result<Value> {
    // The options the command line gives for `--poses N` (T and R its defaults) and `--pixels`.
    let options = RewriteOptions {
        multi_pose: extras.multi.map(|m| MultiPoseOptions::new(m.max_poses)),
        pixels: extras.pixels,
        target: extras.target.unwrap_or(onnx_posefix::PORTABLE).to_string(),
        ..Default::default()
    };
    let rewritten = rewrite(model, &options)?;
    // What the provenance records is what check.py decodes with.
    let multi_pose = match &rewritten.provenance().multi_pose {
        Some(m) => json!({
            "max_poses": m.params.max_poses,
            "score_threshold": m.params.score_threshold,
            "nms_radius": m.params.nms_radius,
            "poses": m.poses,
            "pose_scores": m.pose_scores,
            "heatmaps": rewritten.provenance().settings.heatmaps,
            "offsets": rewritten.provenance().settings.offsets,
            "displacement_fwd": m.displacement_fwd,
            "displacement_bwd": m.displacement_bwd,
        }),
        None => Value::Null,
    };
    let orig_file = format!("{name}.orig.onnx");
    let posefix_file = format!("{name}.posefix.onnx");
    fs::write(out_dir.join(&orig_file), model.file_bytes()).with_context(|| format!("writing {orig_file}"))?;
    fs::write(out_dir.join(&posefix_file), rewritten.to_bytes(model)?)
        .with_context(|| format!("writing {posefix_file}"))?;
    let (input_name, input_shapes) = image_input_shapes(model.proto())?;
    let p = rewritten.provenance();
    Ok(json!({
        "name": name,
        "kind": kind,
        "orig": orig_file,
        "posefix": posefix_file,
        "opset": onnx_posefix::model::query::default_opset(model.proto()),
        "heatmaps": p.settings.heatmaps,
        "offsets": p.settings.offsets,
        "output": p.settings.output,
        "layout": p.settings.layout.as_str(),
        "stride": p.settings.stride,
        "scores": p.settings.scores.as_str(),
        "grid": [rewritten.heads().grid.0, rewritten.heads().grid.1],
        "batch": rewritten.heads().batch.to_string(),
        "input": input_name,
        "input_layout": rewritten.image().as_ref().map(|i| i.layout.as_str()),
        "input_shapes": input_shapes,
        "multi_pose": multi_pose,
        "pixels": p.pixels.as_ref().map(|x| x.pixels.as_str()),
        "preprocess": p.pixels.as_ref().map(|x| x.preprocess.as_str()),
        "target": extras.target,
        "runs_on": extras.target.map(|_| RICHER_TARGET.1),
        "nodes_added": rewritten.nodes_added(),
    }))
}

/// The single graph input that is not an initializer, and the concrete shapes to run it at: the
/// declared one, or for a symbolic batch the batch taken as 1 and as [`SYMBOLIC_BATCH`].
fn image_input_shapes(model: &ModelProto) -> Result<(String, Vec<Vec<i64>>)> {
    let graph = model.graph.as_ref().context("no graph")?;
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> = graph.input.iter().filter(|i| !inits.contains(i.name.as_str())).collect();
    let [input] = inputs.as_slice() else { bail!("expected one graph input, found {}", inputs.len()) };
    let Some((_, Some(dims))) = proto::declared_tensor(input) else { bail!("input {} declares no shape", input.name) };
    let shape = |symbol_as: i64| -> Result<Vec<i64>> {
        dims.iter()
            .enumerate()
            .map(|(axis, d)| match d {
                Dim::Fixed(v) => Ok(*v),
                Dim::Symbol(_) if axis == 0 => Ok(symbol_as),
                other => bail!("input {} has a free dim {other} on axis {axis}, not the batch", input.name),
            })
            .collect()
    };
    let mut shapes = vec![shape(1)?];
    if matches!(dims.first(), Some(Dim::Symbol(_))) {
        shapes.push(shape(SYMBOLIC_BATCH)?);
    }
    Ok((input.name.clone(), shapes))
}
