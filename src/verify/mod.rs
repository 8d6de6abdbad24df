//! Verification: proof, input by input, that a rewritten model's `keypoints` output is what the
//! reference decoder makes of the original model's heads.
//!
//! The flow, one module per step:
//! 1. `setup`: read both models; learn what to compare from REWRITTEN's provenance (or flags,
//!    or detection when it has none); fix the input shape from tract's facts (a symbolic batch
//!    runs at 1); build both tract plans once.
//! 2. `inputs`: photos (decoded, EXIF-oriented, resized bilinear to the model input, normalized
//!    by a preset, laid out NCHW or NHWC), then built-in adversarial images.
//! 3. For each input, ORIGINAL's heatmaps and offsets go through [`crate::reference::decode`],
//!    REWRITTEN's `keypoints` are read, and `compare` checks cell, position and score of every
//!    keypoint.
//! 4. `direct`: REWRITTEN cut at the heads, so crafted heatmaps (exact ties, huge values, -inf
//!    cells) reach its decoder directly, judged against the reference on the same heads.
//! 5. `report` collects the results (text lines and a JSON document); `draw` draws the
//!    rewritten model's pose over each photo.
//!
//! The library prints nothing: the caller gets an [`Event`] as setup ends and as each input is
//! done, and the [`Report`] at the end.

mod compare;
pub(crate) mod direct;
mod draw;
mod inputs;
mod poses;
mod report;
mod setup;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tract_onnx::prelude::tract_ndarray::{ArrayD, ArrayViewD};
use tract_onnx::prelude::*;

use crate::contract::{FloatType, ScoreMode, NUM_KEYPOINTS, TOOL_VERSION};
use crate::error::{Error, Result};
use crate::model::io::{self as model_io, LoadedModel, ModelSource};
use crate::model::proto;
use crate::model::query::InputShape;
use crate::reference;
use crate::tract_bridge::Runner;

pub use crate::contract::Preprocess;
pub use compare::Tolerances;
pub use inputs::RESIZE_FILTER;
pub use poses::PosesResult;
pub use report::{InputInfo, InputKind, InputResult, Outcome, Report, Summary, REPORT_SCHEMA_VERSION};
// What the project's tests and benches read of a report beyond the facade.
#[cfg(feature = "testing")]
pub use {
    compare::{KeypointMismatch, Position},
    draw::SCORE_THRESHOLD,
    poses::PoseDifference,
    report::{DecoderInfo, DecoderSource, Status},
};

/// What to compare when REWRITTEN carries no provenance, or to override it (`verify` flags).
#[derive(Clone, Debug, Default)]
pub struct DecoderOverrides {
    pub heatmaps: Option<String>,
    pub offsets: Option<String>,
    pub stride: Option<u32>,
    pub scores: Option<ScoreMode>,
    pub output: Option<String>,
}

impl DecoderOverrides {
    fn any(&self) -> bool {
        self.heatmaps.is_some()
            || self.offsets.is_some()
            || self.stride.is_some()
            || self.scores.is_some()
            || self.output.is_some()
    }
}

/// How to verify.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Image files and folders (JPEG, PNG); empty means the bundled sample photos.
    pub images: Vec<PathBuf>,
    /// How photos are normalized; `None`: REWRITTEN's `--pixels` normalization, or mobilenet.
    pub preprocess: Option<Preprocess>,
    pub tolerances: Tolerances,
    /// Where to write one PNG per photo with the rewritten model's pose drawn over it.
    pub draw: Option<PathBuf>,
    pub decoder: DecoderOverrides,
    /// Pins for symbolic input dims other than the batch.
    pub input_shapes: Vec<InputShape>,
}

/// What verification tells its caller while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// Setup is done: `report` has everything but the results; `total` inputs follow.
    Start { report: &'a Report, total: usize },
    /// One input was checked (or found unreadable).
    Input(&'a InputResult),
}

/// Reads both models and verifies REWRITTEN against ORIGINAL.
pub fn verify_files(
    original: &Path,
    rewritten: &Path,
    options: &VerifyOptions,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Report> {
    let original_model = model_io::read_model(original)?;
    let rewritten_model = model_io::read_model(rewritten)?;
    let labels = (original.display().to_string(), rewritten.display().to_string());
    verify(&original_model, &rewritten_model, labels, options, on_event)
}

/// Verifies REWRITTEN against ORIGINAL; `labels` name them in the report. Errors are for bad
/// usage or models that cannot be run at all; mismatches and unreadable photos are in the report.
/// Either model may be a structure-only parse ([`model_io::read_structure`]): tract reads the
/// bytes.
pub fn verify(
    original: &LoadedModel,
    rewritten: &LoadedModel,
    labels: (String, String),
    options: &VerifyOptions,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Report> {
    for (flag, tol) in [("--tol-px", options.tolerances.px), ("--tol-score", options.tolerances.score)] {
        if !(tol >= 0.0 && tol.is_finite()) {
            return Err(Error::Usage(format!("{flag} must be a finite number >= 0, not {tol}")));
        }
    }
    let setup_started = Instant::now();
    let setup = setup::prepare(original, rewritten, options)?;
    let mut notes = setup.notes.clone();
    let photos = inputs::list_photos(&options.images);
    // A model that takes pixels (`--pixels`) gets them as they are; ORIGINAL gets them normalized
    // as REWRITTEN's own first nodes normalize them.
    let preprocess = match (&setup.pixels, options.preprocess) {
        (Some(p), Some(given)) if given != p.preprocess => {
            return Err(Error::Usage(format!(
                "REWRITTEN normalizes its input itself ({}, recorded by --pixels); --preprocess {given} disagrees",
                p.preprocess
            )))
        }
        (Some(p), _) => p.preprocess,
        (None, given) => given.unwrap_or(Preprocess::Mobilenet),
    };
    let pixels = setup.pixels.as_ref().map(|p| p.pixels);
    let normalized = move |c: usize, channels: usize, v: u8| preprocess.apply(c, channels, v);
    let fed = move |c: usize, channels: usize, v: u8| match pixels {
        Some(pixels) => pixels.value(v),
        None => preprocess.apply(c, channels, v),
    };
    let (layout, stride) = (setup.image.layout, setup.spec.settings.stride);
    let adversarial: Vec<(&str, ArrayD<f32>, ArrayD<f32>)> = match pixels {
        None => inputs::adversarial(&setup.input_shape, layout, stride)
            .into_iter()
            .map(|(n, t)| (n, t.clone(), t))
            .collect(),
        Some(_) => inputs::adversarial_pixels(&setup.input_shape, layout, stride, normalized)
            .into_iter()
            .zip(inputs::adversarial_pixels(&setup.input_shape, layout, stride, fed))
            .map(|((n, original), (_, rewritten))| (n, original, rewritten))
            .collect(),
    };
    // The cut needs the decoder's constants; a structure-only parse left large ones in the bytes.
    let full_rewritten = if rewritten.weights_stripped() {
        Some(
            model_io::parse_model(&rewritten.bytes)
                .map_err(|e| Error::About { model: "REWRITTEN", source: e.into() })?,
        )
    } else {
        None
    };
    let cut = direct::cut_single_pose(full_rewritten.as_ref().unwrap_or(&rewritten.proto), &setup).and_then(|bytes| {
        Runner::new(&bytes, &[setup.heatmaps_shape.clone(), setup.offsets_shape.clone()])
            .map_err(|e| direct::Uncut::Tract(Box::new(e)))
    });
    let (cut, cases) = match cut {
        Ok(runner) => (
            Some(runner),
            direct::crafted_cases(
                &setup.heatmaps_shape,
                &setup.offsets_shape,
                setup.spec.settings.layout,
                setup.spec.settings.scores,
            ),
        ),
        Err(reason) => {
            notes.push(format!("direct decoder checks skipped: {reason}"));
            (None, vec![])
        }
    };
    // The multi-pose decoder cut at its four heads, and its crafted cases.
    let (multi_cut, multi_cases) = match &setup.multi_pose {
        Some(m) => match cut_multi_pose(&setup, m, full_rewritten.as_ref().unwrap_or(&rewritten.proto)) {
            Ok((runner, cases)) => (Some(runner), cases),
            Err(reason) => {
                notes.push(format!("direct multi-pose checks skipped: {reason}"));
                (None, vec![])
            }
        },
        None => (None, vec![]),
    };
    let draw_dir = match &options.draw {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
            Some(dir.clone())
        }
        None => None,
    };

    let mut report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        tool_version: TOOL_VERSION.to_string(),
        original: labels.0,
        rewritten: labels.1,
        decoder: setup.decoder_info(),
        input: InputInfo {
            name: setup.image.name.clone(),
            shape: setup.input_shape.clone(),
            layout: setup.image.layout.to_string(),
            preprocess: preprocess.as_str().to_string(),
            normalization: preprocess.formula().to_string(),
            pixels: setup.pixels.as_ref().map(|p| p.pixels.to_string()),
            resize: RESIZE_FILTER.to_string(),
        },
        tolerances: options.tolerances,
        notes,
        inputs: vec![],
        summary: Summary::default(),
    };
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    let total = photos.len() + adversarial.len() + cases.len() + multi_cases.len();
    on_event(Event::Start { report: &report, total });

    let started = Instant::now();
    let mut drawn_names = HashSet::new();
    for photo in &photos {
        let result = match photo.load() {
            Err(reason) => InputResult::unreadable(&photo.name, reason.to_string()),
            Ok(image) => {
                let shape = &setup.input_shape;
                let original = inputs::photo_tensor(&image, shape, layout, normalized);
                let rewritten = match pixels {
                    Some(_) => inputs::photo_tensor(&image, shape, layout, fed),
                    None => original.clone(),
                };
                let (mut result, found) =
                    check_image(&setup, &photo.name, InputKind::Photo, [original, rewritten], options)?;
                if let Some(dir) = &draw_dir {
                    let file = dir.join(draw::file_name(&photo.stem, &mut drawn_names));
                    let picture = match &found.poses {
                        Some(poses) if poses.iter().any(|(_, score)| *score >= 0.0) => {
                            draw::draw_poses(&image, poses, setup.image.size)
                        }
                        _ => draw::draw_pose(&image, &found.keypoints, setup.image.size),
                    };
                    picture
                        .save_with_format(&file, image::ImageFormat::Png)
                        .map_err(|e| Error::io("cannot write", &file, std::io::Error::other(e)))?;
                    result.drawn = Some(file.display().to_string());
                }
                result
            }
        };
        on_event(Event::Input(&result));
        report.inputs.push(result);
    }
    for (name, original, rewritten) in adversarial {
        let name = format!("adversarial:{name}");
        let (result, _) = check_image(&setup, &name, InputKind::Adversarial, [original, rewritten], options)?;
        on_event(Event::Input(&result));
        report.inputs.push(result);
    }
    if let Some(runner) = &cut {
        for case in cases {
            let result = check_direct(&setup, runner, case, options)?;
            on_event(Event::Input(&result));
            report.inputs.push(result);
        }
    }
    if let Some(runner) = &multi_cut {
        for case in multi_cases {
            let result = check_direct_multi_pose(&setup, runner, case, options)?;
            on_event(Event::Input(&result));
            report.inputs.push(result);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    report.summary = Summary::of(&report.inputs, seconds, setup_seconds);
    Ok(report)
}

/// Runs both models on one image (as each takes it: `[ORIGINAL's, REWRITTEN's]`, which differ
/// only for a model that takes pixels) and compares; also returns REWRITTEN's pose of batch
/// item 0 (for drawing).
/// What REWRITTEN found on an input (batch item 0), for `--draw`.
struct Found {
    keypoints: [[f32; 3]; NUM_KEYPOINTS],
    /// With `--poses`: every slot, empty ones included (score -1).
    poses: Option<Vec<draw::DrawnPose>>,
}

/// Batch item 0's rows `[x, y, score]` of a `[.., 17, 3]` tensor, from flat index `first`.
fn rows_at(values: &ArrayViewD<f32>, first: usize) -> [[f32; 3]; NUM_KEYPOINTS] {
    std::array::from_fn(|k| {
        let at = |v: usize| values.as_slice().and_then(|s| s.get(first + k * 3 + v).copied()).unwrap_or(f32::NAN);
        [at(0), at(1), at(2)]
    })
}

fn check_image(
    setup: &setup::Setup,
    name: &str,
    kind: InputKind,
    inputs: [ArrayD<f32>; 2],
    options: &VerifyOptions,
) -> Result<(InputResult, Found)> {
    let [original_input, rewritten_input] = inputs.map(IntoTensor::into_tensor);
    // The two plans are independent: run them side by side (each tract run is single-threaded).
    let (heads, outputs) = std::thread::scope(|scope| {
        let original = scope.spawn(|| setup.original.run(vec![original_input]));
        let rewritten = setup.rewritten.run(vec![rewritten_input]);
        (original.join().expect("the ORIGINAL run does not panic"), rewritten)
    });
    let (heads, outputs) = (heads?, outputs?);
    let heatmaps = f32_view(&heads[setup.heatmaps_ix], "ORIGINAL", &setup.spec.settings.heatmaps)?;
    let offsets = f32_view(&heads[setup.offsets_ix], "ORIGINAL", &setup.spec.settings.offsets)?;
    let keypoints = f32_view(&outputs[setup.keypoints_ix], "REWRITTEN", &setup.spec.settings.output)?;
    let mut result = judge(setup, name, kind, heatmaps.view(), offsets.view(), keypoints.view(), options)?;
    let mut found = Found { keypoints: rows_at(&keypoints, 0), poses: None };
    if let Some(m) = &setup.multi_pose {
        let fwd = f32_view(&heads[m.fwd_ix], "ORIGINAL", &m.settings.displacement_fwd)?;
        let bwd = f32_view(&heads[m.bwd_ix], "ORIGINAL", &m.settings.displacement_bwd)?;
        let poses = f32_view(&outputs[m.poses_ix], "REWRITTEN", &m.settings.poses)?;
        let pose_scores = f32_view(&outputs[m.pose_scores_ix], "REWRITTEN", &m.settings.pose_scores)?;
        let slots = m.settings.params.max_poses;
        let score = |i: usize| pose_scores.as_slice().and_then(|s| s.get(i).copied()).unwrap_or(-1.0);
        found.poses = Some((0..slots).map(|i| (rows_at(&poses, i * NUM_KEYPOINTS * 3), score(i))).collect());
        result =
            result.with_poses(judge_poses(setup, m, [&heatmaps, &offsets, &fwd, &bwd], poses, pose_scores, options));
    }
    Ok((result, found))
}

fn check_direct(
    setup: &setup::Setup,
    runner: &Runner,
    mut case: direct::Case,
    options: &VerifyOptions,
) -> Result<InputResult> {
    // Crafted as float32; a float16 head holds them rounded, and the reference sees that too.
    let d = &setup.spec.settings;
    let (heatmaps_type, offsets_type) = (setup.head_type(&d.heatmaps), setup.head_type(&d.offsets));
    case.heatmaps.mapv_inplace(|v| heatmaps_type.round(v));
    case.offsets.mapv_inplace(|v| offsets_type.round(v));
    let outputs = runner.run(vec![case.heatmaps.clone().into_tensor(), case.offsets.clone().into_tensor()])?;
    let ix = runner.output_index(&setup.spec.settings.output).unwrap_or(0);
    let keypoints = f32_view(&outputs[ix], "the cut decoder", &setup.spec.settings.output)?;
    judge(
        setup,
        &format!("direct:{}", case.name),
        InputKind::Direct,
        case.heatmaps.view(),
        case.offsets.view(),
        keypoints.view(),
        options,
    )
}

/// REWRITTEN's multi-pose decoder cut at its four heads, ready to run, and the crafted heads for
/// it.
fn cut_multi_pose(
    setup: &setup::Setup,
    m: &setup::MultiPoseSetup,
    rewritten: &onnx_protobuf::ModelProto,
) -> std::result::Result<(Runner, Vec<direct::MultiPoseCase>), direct::Uncut> {
    let d = &setup.spec.settings;
    let shapes = [&setup.heatmaps_shape, &setup.offsets_shape, &m.fwd_shape, &m.bwd_shape];
    let names = [&d.heatmaps, &d.offsets, &m.settings.displacement_fwd, &m.settings.displacement_bwd];
    let heads: Vec<(&str, &[usize], FloatType)> =
        names.iter().zip(shapes).map(|(n, s)| (n.as_str(), s.as_slice(), setup.head_type(n))).collect();
    let batch = proto::Dim::Fixed(setup.heatmaps_shape[0] as i64);
    let slots = proto::Dim::Fixed(m.settings.params.max_poses as i64);
    let k = proto::Dim::Fixed(NUM_KEYPOINTS as i64);
    let outputs = [
        (m.settings.poses.as_str(), vec![batch.clone(), slots.clone(), k, proto::Dim::Fixed(3)]),
        (m.settings.pose_scores.as_str(), vec![batch, slots]),
    ];
    let bytes = direct::cut(rewritten, &heads, &outputs, setup.output_type)?;
    let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
    let runner = Runner::new(&bytes, &shapes).map_err(|e| direct::Uncut::Tract(Box::new(e)))?;
    let (hy, wx) = d.layout.spatial_axes();
    let grid = direct::MultiPoseGrid {
        batch: setup.heatmaps_shape[0],
        height: setup.heatmaps_shape[hy],
        width: setup.heatmaps_shape[wx],
        stride: d.stride,
        scores: d.scores,
        params: m.settings.params,
    };
    Ok((runner, direct::crafted_multi_pose_cases(&grid, d.layout)))
}

fn check_direct_multi_pose(
    setup: &setup::Setup,
    runner: &Runner,
    case: direct::MultiPoseCase,
    options: &VerifyOptions,
) -> Result<InputResult> {
    let m = setup.multi_pose.as_ref().expect("multi-pose cases come with a multi-pose setup");
    let d = &setup.spec.settings;
    let names = [&d.heatmaps, &d.offsets, &m.settings.displacement_fwd, &m.settings.displacement_bwd];
    let mut case = case;
    for (head, name) in case.heads.iter_mut().zip(names) {
        let ty = setup.head_type(name);
        head.mapv_inplace(|v| ty.round(v));
    }
    let outputs = runner.run(case.heads.iter().map(|h| h.clone().into_tensor()).collect())?;
    let view = |name: &str| {
        let ix = runner.output_index(name).unwrap_or(0);
        f32_view(&outputs[ix], "the cut decoder", name)
    };
    let (poses, pose_scores) = (view(&m.settings.poses)?, view(&m.settings.pose_scores)?);
    let [hm, off, fwd, bwd] = &case.heads;
    let heads = [&hm.view(), &off.view(), &fwd.view(), &bwd.view()];
    let verdict = judge_poses(setup, m, heads, poses, pose_scores, options);
    let name = format!("direct:{}", case.name);
    Ok(InputResult::judged(&name, InputKind::Direct, compare::Comparison::default(), false).with_poses(verdict))
}

/// The multi-pose reference on the four heads against `poses`/`pose_scores`.
fn judge_poses(
    setup: &setup::Setup,
    m: &setup::MultiPoseSetup,
    heads: [&ArrayViewD<f32>; 4],
    poses: ArrayViewD<f32>,
    pose_scores: ArrayViewD<f32>,
    options: &VerifyOptions,
) -> PosesResult {
    let d = &setup.spec.settings;
    match poses::reference_poses(heads, d.layout, d.stride, d.scores, &m.settings) {
        Ok(mut reference) => {
            // A float16 output holds the float32 result rounded once.
            for pose in reference.iter_mut().flatten() {
                pose.keypoints = pose.keypoints.map(|k| k.rounded(setup.output_type));
                pose.score = setup.output_type.round(pose.score);
            }
            poses::compare(&reference, m.settings.params.max_poses, poses, pose_scores, options.tolerances)
        }
        Err(error) => PosesResult { error: Some(error), ..PosesResult::default() },
    }
}

fn f32_view<'a>(t: &'a Tensor, model: &str, name: &str) -> Result<ArrayViewD<'a, f32>> {
    t.to_plain_array_view::<f32>()
        .map_err(|_| Error::Unsupported(format!("{model}'s output {name} is {:?}, not float32", t.datum_type())))
}

/// The reference on `heatmaps`/`offsets` against `keypoints`.
fn judge(
    setup: &setup::Setup,
    name: &str,
    kind: InputKind,
    heatmaps: ArrayViewD<f32>,
    offsets: ArrayViewD<f32>,
    keypoints: ArrayViewD<f32>,
    options: &VerifyOptions,
) -> Result<InputResult> {
    let spec = &setup.spec;
    let poses = reference::decode(
        heatmaps.view(),
        offsets.view(),
        spec.settings.layout,
        spec.settings.stride,
        spec.settings.scores,
    )
    .map_err(|e| Error::Unsupported(format!("ORIGINAL's heads: {e}")))?;
    // A float16 output holds the float32 result rounded once.
    let poses: Vec<_> = poses.into_iter().map(|pose| pose.map(|k| k.rounded(setup.output_type))).collect();
    let original_nan = heatmaps.iter().any(|v| v.is_nan());
    let outcome =
        compare::compare(&poses, keypoints, offsets, spec.settings.layout, spec.settings.stride, options.tolerances);
    Ok(InputResult::judged(name, kind, outcome, original_nan))
}
