//! The output contract shared by the rewrite, the reference decoder and verification.
//!
//! `keypoints` is float32 `[N, 17, 3]`, last dim `(x, y, score)` in model-input pixels. For
//! keypoint k, `idx` is the first-occurrence argmax of heatmap k flattened row-major (`y*W + x`),
//! `gy = idx / W`, `gx = idx % W`, `y = gy*stride + offsets[k][gy][gx]`,
//! `x = gx*stride + offsets[k+17][gy][gx]`, and `score = sigmoid(max)` (or the max itself when the
//! heatmaps already end in a Sigmoid). These are tfjs posenet's single-pose semantics.

use std::fmt;

/// Keypoints per pose, in PoseNet (COCO) order.
pub const NUM_KEYPOINTS: usize = 17;

pub const KEYPOINT_NAMES: [&str; NUM_KEYPOINTS] = [
    "nose",
    "leftEye",
    "rightEye",
    "leftEar",
    "rightEar",
    "leftShoulder",
    "rightShoulder",
    "leftElbow",
    "rightElbow",
    "leftWrist",
    "rightWrist",
    "leftHip",
    "rightHip",
    "leftKnee",
    "rightKnee",
    "leftAnkle",
    "rightAnkle",
];

/// The skeleton edges tfjs posenet draws (pairs of keypoint indices).
pub const SKELETON: [(usize, usize); 12] =
    [(5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16)];

/// Values per keypoint in the output: x, y, score.
pub const VALUES_PER_KEYPOINT: usize = 3;

/// Default name of the appended graph output.
pub const DEFAULT_OUTPUT_NAME: &str = "keypoints";

/// Prefix of every node and tensor name the rewrite creates.
pub const NAME_PREFIX: &str = "posefix/";

/// Prefix of the `metadata_props` keys the rewrite records.
pub const METADATA_PREFIX: &str = "posefix.";

/// Memory layout of a rank-4 image-like tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[N, C, H, W]`
    Nchw,
    /// `[N, H, W, C]`
    Nhwc,
}

impl Layout {
    /// The axis holding the channels.
    pub fn channel_axis(self) -> usize {
        match self {
            Layout::Nchw => 1,
            Layout::Nhwc => 3,
        }
    }

    /// The axes holding height and width.
    pub fn spatial_axes(self) -> (usize, usize) {
        match self {
            Layout::Nchw => (2, 3),
            Layout::Nhwc => (1, 2),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        }
    }

    pub fn parse(s: &str) -> Option<Layout> {
        match s.to_ascii_uppercase().as_str() {
            "NCHW" => Some(Layout::Nchw),
            "NHWC" => Some(Layout::Nhwc),
            _ => None,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the score of a keypoint is derived from the heatmap maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ScoreMode {
    /// Heatmaps are logits: score = sigmoid(max).
    Sigmoid,
    /// Heatmaps are already probabilities: score = max.
    Raw,
}

impl ScoreMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreMode::Sigmoid => "sigmoid",
            ScoreMode::Raw => "raw",
        }
    }

    pub fn parse(s: &str) -> Option<ScoreMode> {
        match s {
            "sigmoid" => Some(ScoreMode::Sigmoid),
            "raw" => Some(ScoreMode::Raw),
            _ => None,
        }
    }
}

impl fmt::Display for ScoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the decoder of a model was built from: enough to re-run the reference decoder on the
/// original model's heads. Recorded in the rewritten model's `metadata_props`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub tool_version: String,
    pub heatmaps: String,
    pub offsets: String,
    pub layout: Layout,
    pub stride: u32,
    pub scores: ScoreMode,
    pub output: String,
}

impl Provenance {
    const KEYS: [&'static str; 7] = ["version", "heatmaps", "offsets", "layout", "stride", "scores", "output"];

    /// The `metadata_props` entries, keys under [`METADATA_PREFIX`].
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let values = [
            self.tool_version.clone(),
            self.heatmaps.clone(),
            self.offsets.clone(),
            self.layout.to_string(),
            self.stride.to_string(),
            self.scores.to_string(),
            self.output.clone(),
        ];
        Self::KEYS.iter().zip(values).map(|(k, v)| (format!("{METADATA_PREFIX}{k}"), v)).collect()
    }

    /// Reads the entries written by [`Provenance::to_metadata`]; `None` when any is missing or
    /// malformed.
    pub fn from_metadata<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Provenance> {
        let mut found: [Option<&str>; 7] = [None; 7];
        for (k, v) in entries {
            if let Some(short) = k.strip_prefix(METADATA_PREFIX) {
                if let Some(i) = Self::KEYS.iter().position(|key| *key == short) {
                    found[i] = Some(v);
                }
            }
        }
        let [version, heatmaps, offsets, layout, stride, scores, output] = found;
        Some(Provenance {
            tool_version: version?.to_string(),
            heatmaps: heatmaps?.to_string(),
            offsets: offsets?.to_string(),
            layout: Layout::parse(layout?)?,
            stride: stride?.parse().ok()?,
            scores: ScoreMode::parse(scores?)?,
            output: output?.to_string(),
        })
    }
}

/// The version recorded in provenance.
pub const TOOL_VERSION: &str = concat!("onnx-posefix ", env!("CARGO_PKG_VERSION"));
