//! Step 5: the results, as text lines for people and as a JSON document for machines.
//!
//! The JSON document is the [`Report`] serialized with serde; every struct here documents its
//! fields, which are the schema (version [`REPORT_SCHEMA_VERSION`]). Floats are JSON numbers,
//! except NaN and infinities, which JSON cannot hold and which appear as `null`.

use serde::Serialize;

use crate::contract::{DecoderSettings, FloatType, MultiPoseSettings};

use super::compare::{number, Comparison, KeypointMismatch, Position, Tolerances};
use super::poses::PosesResult;

/// Bumped whenever a field of the JSON report changes meaning or disappears.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Everything one verification found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `onnx-posefix X.Y.Z`.
    pub tool_version: String,
    /// ORIGINAL and REWRITTEN as given on the command line.
    pub original: String,
    pub rewritten: String,
    pub decoder: DecoderInfo,
    pub input: InputInfo,
    pub tolerances: Tolerances,
    /// What the reader should know about how the run was set up (skipped checks, assumed batch).
    pub notes: Vec<String>,
    /// One entry per input, in the order they ran: photos, adversarial images, direct heads.
    pub inputs: Vec<InputResult>,
    pub summary: Summary,
}

/// Where the decoder settings came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderSource {
    /// REWRITTEN's `posefix.*` metadata.
    Provenance,
    /// Flags, over the provenance or over detection.
    Flags,
    /// REWRITTEN had no provenance: detected from ORIGINAL as the rewrite would.
    Detected,
}

/// What was compared: REWRITTEN's `output` against the reference decoding of ORIGINAL's
/// `heatmaps` and `offsets`.
#[derive(Clone, Debug, Serialize)]
pub struct DecoderInfo {
    /// `heatmaps`, `offsets`, `output`, `layout`, `stride`, `scores` (see
    /// [`DecoderSettings`]).
    #[serde(flatten)]
    pub settings: DecoderSettings,
    pub source: DecoderSource,
    /// REWRITTEN's multi-pose decoder (always from its provenance), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_pose: Option<MultiPoseSettings>,
    /// The type of REWRITTEN's appended outputs (`--output-type`): float16 ones are compared
    /// with the reference rounded once to float16.
    pub output_type: FloatType,
}

/// The image input both models were fed.
#[derive(Clone, Debug, Serialize)]
pub struct InputInfo {
    pub name: String,
    /// The concrete shape fed (a symbolic batch is fed as 1).
    pub shape: Vec<usize>,
    /// `NCHW` or `NHWC`.
    pub layout: String,
    /// `mobilenet`, `resnet`, `unit` or `raw`.
    pub preprocess: String,
    /// The preset as a formula of the 0..255 pixel value.
    pub normalization: String,
    /// `unit` or `byte` when REWRITTEN takes pixels and normalizes them itself (`--pixels`): it
    /// is fed those, ORIGINAL the normalized values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels: Option<String>,
    /// How photos are resized to the input size.
    pub resize: String,
}

/// The kind of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A JPEG or PNG, through both whole models.
    Photo,
    /// A built-in image tensor (zeros, constant, gradient, checkerboard, noise), through both
    /// whole models.
    Adversarial,
    /// Crafted heatmaps and offsets fed to REWRITTEN's decoder alone (cut at the heads) and to
    /// the reference.
    Direct,
}

/// The verdict on one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Mismatch,
    Unreadable,
}

/// One input: a photo, an adversarial image or a set of crafted heads.
#[derive(Clone, Debug, Serialize)]
pub struct InputResult {
    /// The photo's path as given (or found in a given folder), `adversarial:NAME`, or
    /// `direct:NAME`.
    pub name: String,
    pub kind: InputKind,
    pub status: Status,
    /// Keypoints compared (17 per batch item); 0 when unreadable.
    pub keypoints: usize,
    /// Largest `|dx|` or `|dy|` in pixels, and largest `|dscore|`, over the non-NaN values.
    pub max_position_error: f32,
    pub max_score_error: f32,
    /// The keypoints that differ (empty when `status` is `ok`).
    pub mismatches: Vec<KeypointMismatch>,
    /// Why a photo is unreadable, or why REWRITTEN's output could not be compared at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The multi-pose comparison, when REWRITTEN has a multi-pose decoder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poses: Option<PosesResult>,
    /// The picture written by `--draw`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drawn: Option<String>,
    /// ORIGINAL's heatmaps held a NaN.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub original_nan: bool,
}

/// Totals over all inputs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Inputs run through the models (all but the unreadable ones), and by kind.
    pub inputs_checked: usize,
    pub photos: usize,
    pub adversarial: usize,
    pub direct: usize,
    /// Inputs by status.
    pub ok: usize,
    pub mismatched: usize,
    pub unreadable: usize,
    pub keypoints_compared: usize,
    /// Multi-pose: slots compared (N per batch item and input) and the poses found in them by
    /// the reference; 0 without a multi-pose decoder.
    pub pose_slots_compared: usize,
    pub poses_found: usize,
    /// Over single-pose keypoints and multi-pose keypoints alike.
    pub max_position_error: f32,
    pub max_score_error: f32,
    pub max_pose_score_error: f32,
    /// Wall time of the checks (decoding photos, both models, reference, comparison, drawing),
    /// without the setup (loading, optimizing), and checked inputs per second of it.
    pub seconds: f64,
    pub setup_seconds: f64,
    pub inputs_per_second: f64,
}

/// What the exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every input checked, every keypoint equal: exit 0.
    Equal,
    /// Some keypoint differs: exit 1.
    Mismatch,
    /// Some photo could not be read: exit 2, even when mismatches were found too (the run is
    /// incomplete, which is the first thing to fix).
    Unreadable,
}

impl InputResult {
    pub(crate) fn unreadable(name: &str, reason: String) -> InputResult {
        InputResult {
            name: name.to_string(),
            kind: InputKind::Photo,
            status: Status::Unreadable,
            keypoints: 0,
            max_position_error: 0.0,
            max_score_error: 0.0,
            mismatches: vec![],
            error: Some(reason),
            poses: None,
            drawn: None,
            original_nan: false,
        }
    }

    pub(crate) fn judged(name: &str, kind: InputKind, c: Comparison, original_nan: bool) -> InputResult {
        let status = if c.mismatches.is_empty() && c.shape_error.is_none() { Status::Ok } else { Status::Mismatch };
        InputResult {
            name: name.to_string(),
            kind,
            status,
            keypoints: c.keypoints,
            max_position_error: c.max_position_error,
            max_score_error: c.max_score_error,
            mismatches: c.mismatches,
            error: c.shape_error,
            poses: None,
            drawn: None,
            original_nan,
        }
    }

    /// Adds the multi-pose comparison; a difference there makes the input a mismatch.
    pub(crate) fn with_poses(mut self, poses: PosesResult) -> InputResult {
        if !poses.matches() {
            self.status = Status::Mismatch;
        }
        self.max_position_error = self.max_position_error.max(poses.max_position_error);
        self.max_score_error = self.max_score_error.max(poses.max_score_error);
        self.poses = Some(poses);
        self
    }

    /// `OK         photo.jpg`, `MISMATCH   adversarial:zeros: leftEye cell (0,0) vs (16,16) ...`,
    /// `UNREADABLE broken.jpg: ...`.
    pub fn line(&self) -> String {
        const SHOWN: usize = 17;
        let poses = self.poses.as_ref().map(PosesResult::describe);
        match self.status {
            Status::Ok => match poses {
                Some(poses) => format!("{:<10} {}: {poses}", "OK", self.name),
                None => format!("{:<10} {}", "OK", self.name),
            },
            Status::Unreadable => {
                format!("{:<10} {}: {}", "UNREADABLE", self.name, self.error.as_deref().unwrap_or("unreadable"))
            }
            Status::Mismatch => {
                let batched = self.mismatches.iter().any(|m| m.batch > 0);
                let mut parts: Vec<String> = self.error.iter().cloned().collect();
                parts.extend(self.mismatches.iter().take(SHOWN).map(|m| m.describe(batched)));
                if self.mismatches.len() > SHOWN {
                    parts.push(format!("... {} more", self.mismatches.len() - SHOWN));
                }
                parts.extend(poses);
                format!("{:<10} {}: {}", "MISMATCH", self.name, parts.join("; "))
            }
        }
    }
}

impl KeypointMismatch {
    /// `leftEye cell (3,4) vs (3,5) dx=16 dy=0 dscore=0`, with `#b` after the name for batch
    /// items past the first when `batched`.
    fn describe(&self, batched: bool) -> String {
        let cell = |c: Option<[usize; 2]>| c.map_or("none".to_string(), |[y, x]| format!("({y},{x})"));
        format!(
            "{}{} cell {} vs {} dx={} dy={} dscore={}{}",
            self.keypoint,
            if batched { format!("#{}", self.batch) } else { String::new() },
            cell(self.reference.cell),
            cell(self.rewritten.cell),
            number(self.dx),
            number(self.dy),
            number(self.dscore),
            if self.nan { nan_note(self) } else { "" },
        )
    }
}

fn nan_note(m: &KeypointMismatch) -> &'static str {
    let has_nan = |p: &Position| p.x.is_nan() || p.y.is_nan() || p.score.is_nan();
    match (has_nan(&m.reference), has_nan(&m.rewritten)) {
        (true, true) => " (NaN in both)",
        (true, false) => " (NaN in the reference)",
        _ => " (NaN in REWRITTEN)",
    }
}

impl Summary {
    pub(crate) fn of(inputs: &[InputResult], seconds: f64, setup_seconds: f64) -> Summary {
        let count = |f: &dyn Fn(&InputResult) -> bool| inputs.iter().filter(|r| f(r)).count();
        let checked = |kind| count(&|r| r.kind == kind && r.status != Status::Unreadable);
        let inputs_checked = count(&|r| r.status != Status::Unreadable);
        Summary {
            inputs_checked,
            photos: checked(InputKind::Photo),
            adversarial: checked(InputKind::Adversarial),
            direct: checked(InputKind::Direct),
            ok: count(&|r| r.status == Status::Ok),
            mismatched: count(&|r| r.status == Status::Mismatch),
            unreadable: count(&|r| r.status == Status::Unreadable),
            keypoints_compared: inputs.iter().map(|r| r.keypoints).sum(),
            pose_slots_compared: inputs.iter().filter_map(|r| r.poses.as_ref()).map(|p| p.slots).sum(),
            poses_found: inputs.iter().filter_map(|r| r.poses.as_ref()).map(|p| p.reference).sum(),
            max_pose_score_error: inputs
                .iter()
                .filter_map(|r| r.poses.as_ref())
                .map(|p| p.max_pose_score_error)
                .fold(0.0, f32::max),
            max_position_error: inputs.iter().map(|r| r.max_position_error).fold(0.0, f32::max),
            max_score_error: inputs.iter().map(|r| r.max_score_error).fold(0.0, f32::max),
            seconds,
            setup_seconds,
            inputs_per_second: if seconds > 0.0 { inputs_checked as f64 / seconds } else { 0.0 },
        }
    }
}

impl Report {
    pub fn outcome(&self) -> Outcome {
        if self.summary.unreadable > 0 {
            Outcome::Unreadable
        } else if self.summary.mismatched > 0 {
            Outcome::Mismatch
        } else {
            Outcome::Equal
        }
    }

    /// What is compared, how inputs are made, and the notes; printed before the input lines.
    pub fn header_lines(&self) -> Vec<String> {
        let (d, source, i) = (&self.decoder.settings, self.decoder.source, &self.input);
        let mut lines = vec![
            format!("verifying {} against {}", self.rewritten, self.original),
            format!(
                "decoder: {} from heatmaps '{}' and offsets '{}' ({}, stride {}, scores {}; from {})",
                d.output,
                d.heatmaps,
                d.offsets,
                d.layout,
                d.stride,
                d.scores,
                match source {
                    DecoderSource::Provenance => "provenance",
                    DecoderSource::Flags => "flags",
                    DecoderSource::Detected => "detection",
                }
            ),
            format!(
                "input: {} {:?} {}; photos resized {}, preprocess {} ({}){}; tolerances {} px, {} score",
                i.name,
                i.shape,
                i.layout,
                i.resize,
                i.preprocess,
                i.normalization,
                match &i.pixels {
                    Some(p) => format!(", in REWRITTEN's graph: it is fed {p} pixels"),
                    None => String::new(),
                },
                self.tolerances.px,
                self.tolerances.score
            ),
        ];
        if let Some(m) = &self.decoder.multi_pose {
            lines.insert(2, format!("multi-pose decoder: {}; from provenance", m.describe()));
        }
        lines.extend(self.notes.iter().map(|n| format!("note: {n}")));
        lines
    }

    /// The verdict and the numbers; printed after the input lines.
    pub fn summary_lines(&self) -> Vec<String> {
        let s = &self.summary;
        let verdict = if s.mismatched == 0 && s.unreadable == 0 {
            "all equal".to_string()
        } else {
            let mut parts = vec![];
            if s.mismatched > 0 {
                parts.push(format!("{} MISMATCH", s.mismatched));
            }
            if s.unreadable > 0 {
                parts.push(format!("{} UNREADABLE", s.unreadable));
            }
            parts.join(", ")
        };
        let nan_inputs = self.inputs.iter().filter(|r| r.original_nan).count();
        let (poses, pose_score) = if self.decoder.multi_pose.is_some() {
            (
                format!(" and {} pose slots ({} poses)", s.pose_slots_compared, s.poses_found),
                format!(", max pose score error {}", number(s.max_pose_score_error)),
            )
        } else {
            (String::new(), String::new())
        };
        let mut lines = vec![
            format!(
                "summary: {} inputs checked ({} photos, {} adversarial, {} direct), {} keypoints{poses} compared: \
                 {verdict}",
                s.inputs_checked, s.photos, s.adversarial, s.direct, s.keypoints_compared
            ),
            format!(
                "max position error {} px, max score error {}{pose_score}; {:.1} inputs/s ({:.2} s, setup {:.2} s)",
                number(s.max_position_error),
                number(s.max_score_error),
                s.inputs_per_second,
                s.seconds,
                s.setup_seconds
            ),
        ];
        if nan_inputs > 0 {
            lines.push(format!("{nan_inputs} inputs had NaN in ORIGINAL's heatmaps"));
        }
        lines
    }

    /// The JSON document (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}
