//! The output contract shared by the rewrite, the reference decoder and verification.
//!
//! `keypoints` is float32 `[N, 17, 3]`, last dim `(x, y, score)` in model-input pixels. For
//! keypoint k, `idx` is the first-occurrence argmax of heatmap k flattened row-major (`y*W + x`),
//! `gy = idx / W`, `gx = idx % W`, `y = gy*stride + offsets[k][gy][gx]`,
//! `x = gx*stride + offsets[k+17][gy][gx]`, and `score = sigmoid(max)` (or the max itself when the
//! heatmaps already end in a Sigmoid). These are tfjs posenet's single-pose semantics.

use std::fmt;

use serde::{Serialize, Serializer};

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

/// tfjs posenet's `poseChain`, the tree multi-pose decoding walks, as `(parent, child)` keypoint
/// ids; edge e's displacements are channels e (y) and e + 16 (x) of the displacement heads.
pub const POSE_CHAIN: [(usize, usize); 16] = [
    (0, 1),   // nose -> leftEye
    (1, 3),   // leftEye -> leftEar
    (0, 2),   // nose -> rightEye
    (2, 4),   // rightEye -> rightEar
    (0, 5),   // nose -> leftShoulder
    (5, 7),   // leftShoulder -> leftElbow
    (7, 9),   // leftElbow -> leftWrist
    (5, 11),  // leftShoulder -> leftHip
    (11, 13), // leftHip -> leftKnee
    (13, 15), // leftKnee -> leftAnkle
    (0, 6),   // nose -> rightShoulder
    (6, 8),   // rightShoulder -> rightElbow
    (8, 10),  // rightElbow -> rightWrist
    (6, 12),  // rightShoulder -> rightHip
    (12, 14), // rightHip -> rightKnee
    (14, 16), // rightKnee -> rightAnkle
];

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

impl Serialize for Layout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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

impl Serialize for ScoreMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ScoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The float types the decoders read (heads) and write (`--output-type`). float16 heads are read
/// through a Cast to float32, which is exact; a float16 output is the float32 result rounded
/// once, to nearest even.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum FloatType {
    #[default]
    Float32,
    Float16,
}

impl FloatType {
    pub fn as_str(self) -> &'static str {
        match self {
            FloatType::Float32 => "float32",
            FloatType::Float16 => "float16",
        }
    }

    pub fn parse(s: &str) -> Option<FloatType> {
        match s {
            "float32" => Some(FloatType::Float32),
            "float16" => Some(FloatType::Float16),
            _ => None,
        }
    }

    /// The ONNX element type.
    pub fn onnx(self) -> onnx_protobuf::tensor_proto::DataType {
        use onnx_protobuf::tensor_proto::DataType;
        match self {
            FloatType::Float32 => DataType::FLOAT,
            FloatType::Float16 => DataType::FLOAT16,
        }
    }

    /// `value` as this type holds it (float16: rounded to nearest even), widened back to f32.
    pub fn round(self, value: f32) -> f32 {
        match self {
            FloatType::Float32 => value,
            FloatType::Float16 => tract_onnx::prelude::f16::from_f32(value).to_f32(),
        }
    }
}

impl Serialize for FloatType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for FloatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How 0..255 RGB pixels become model input values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preprocess {
    /// `x / 127.5 - 1`: tfjs posenet MobileNetV1.
    Mobilenet,
    /// `x + [-123.15, -115.90, -103.06]` per RGB channel: tfjs posenet ResNet50.
    Resnet,
    /// `x / 255`.
    Unit,
    /// `x`.
    Raw,
}

/// tfjs posenet's ResNet50 mean, added per RGB channel.
pub const RESNET_MEAN: [f32; 3] = [-123.15, -115.90, -103.06];
/// MobileNet's divisor: `x / 127.5 - 1` maps 0..255 to -1..1.
pub const MOBILENET_SCALE: f32 = 127.5;

impl Preprocess {
    pub fn parse(s: &str) -> Option<Preprocess> {
        [Preprocess::Mobilenet, Preprocess::Resnet, Preprocess::Unit, Preprocess::Raw]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Preprocess::Mobilenet => "mobilenet",
            Preprocess::Resnet => "resnet",
            Preprocess::Unit => "unit",
            Preprocess::Raw => "raw",
        }
    }

    /// The ResNet mean added per channel of an input with `channels` channels (1 or 3).
    pub fn resnet_mean(self, channels: usize) -> Vec<f32> {
        if channels == 3 {
            RESNET_MEAN.to_vec()
        } else {
            vec![RESNET_MEAN.iter().sum::<f32>() / 3.0; channels]
        }
    }

    /// The preset as a formula, for reports.
    pub fn formula(self) -> &'static str {
        match self {
            Preprocess::Mobilenet => "x/127.5 - 1",
            Preprocess::Resnet => "x + [-123.15, -115.90, -103.06]",
            Preprocess::Unit => "x/255",
            Preprocess::Raw => "x",
        }
    }

    /// The input value of pixel value `v` in channel `c` (of 3; a 1-channel input gets luma
    /// and the mean of the ResNet means). The in-graph normalization (`--pixels`) computes the
    /// same f32 operations, so that its values equal these bit for bit.
    pub fn apply(self, c: usize, channels: usize, v: u8) -> f32 {
        let v = v as f32;
        match self {
            Preprocess::Mobilenet => v / MOBILENET_SCALE - 1.0,
            Preprocess::Resnet => v + self.resnet_mean(channels)[c.min(channels - 1)],
            Preprocess::Unit => v / 255.0,
            Preprocess::Raw => v,
        }
    }
}

/// What the image input takes once the rewrite prepends the normalization (`--pixels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Pixels {
    /// 0..1 floats (a texture as Barracuda, Sentis or WebGL hand it over).
    Unit,
    /// 0..255 floats (a raw 8-bit image buffer).
    Byte,
}

impl Pixels {
    pub fn as_str(self) -> &'static str {
        match self {
            Pixels::Unit => "unit",
            Pixels::Byte => "byte",
        }
    }

    pub fn parse(s: &str) -> Option<Pixels> {
        match s {
            "unit" => Some(Pixels::Unit),
            "byte" => Some(Pixels::Byte),
            _ => None,
        }
    }

    /// The value fed for pixel value `v` (0..255).
    pub fn value(self, v: u8) -> f32 {
        match self {
            Pixels::Unit => v as f32 / 255.0,
            Pixels::Byte => v as f32,
        }
    }
}

impl Serialize for Pixels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Preprocess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The normalization a rewrite prepended to the image input: the model then takes `pixels` in
/// `input` and computes `preprocess` itself, as its first nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PixelInput {
    pub input: String,
    pub pixels: Pixels,
    pub preprocess: Preprocess,
}

/// The settings of a single-pose decoder: which heads it reads and how it decodes them, and the
/// output it writes. The one type wherever they appear: the rewrite's provenance, verification's
/// report, `inspect`. A new setting is added here, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecoderSettings {
    /// The heatmaps head (17 channels).
    pub heatmaps: String,
    /// The offsets head (34 channels).
    pub offsets: String,
    /// The appended `[N, 17, 3]` output.
    pub output: String,
    /// `NCHW` or `NHWC`, of the heads.
    pub layout: Layout,
    /// Model-input pixels per heatmap cell.
    pub stride: u32,
    /// `sigmoid` (score = sigmoid(max)) or `raw` (score = max).
    pub scores: ScoreMode,
}

/// Default names of the multi-pose outputs (`--poses`).
pub const DEFAULT_POSES_NAME: &str = "poses";
pub const DEFAULT_POSE_SCORES_NAME: &str = "pose_scores";

/// tfjs posenet's `MULTI_PERSON_INFERENCE_CONFIG`: score threshold and NMS radius (pixels).
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.5;
pub const DEFAULT_NMS_RADIUS: f32 = 20.0;

/// The settings of a multi-pose decoder (tfjs posenet's `decodeMultiplePoses`), beside the
/// single-pose one whose heatmaps, offsets, layout, stride and score mode it shares.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MultiPoseSettings {
    /// The forward displacements head (32 channels: edge e's y at e, x at e + 16).
    pub displacement_fwd: String,
    /// The backward displacements head (32 channels).
    pub displacement_bwd: String,
    /// N: slots in the outputs.
    pub max_poses: usize,
    /// T: a root candidate's score must be at least this.
    pub score_threshold: f32,
    /// R: part-based NMS radius in model-input pixels.
    pub nms_radius: f32,
    /// The appended `[B, N, 17, 3]` output.
    pub poses: String,
    /// The appended `[B, N]` output.
    pub pose_scores: String,
}

impl MultiPoseSettings {
    /// `poses and pose_scores from displacements 'f' and 'b' (up to N poses, score threshold T,
    /// NMS radius R px)`: how reports and `inspect` name the decoder.
    pub fn describe(&self) -> String {
        format!(
            "{} and {} from displacements '{}' and '{}' (up to {} poses, score threshold {}, NMS radius {} px)",
            self.poses,
            self.pose_scores,
            self.displacement_fwd,
            self.displacement_bwd,
            self.max_poses,
            self.score_threshold,
            self.nms_radius
        )
    }

    /// Why these parameters are outside the contract (`N >= 1`, `T` in [0, 1], `R > 0` and
    /// finite), in the command line's words; `None` when they are fine.
    pub fn out_of_range(max_poses: usize, score_threshold: f32, nms_radius: f32) -> Option<String> {
        if max_poses == 0 {
            Some("--poses must be at least 1".into())
        } else if !(0.0..=1.0).contains(&score_threshold) {
            Some(format!("--score-threshold must be in [0, 1], not {score_threshold}"))
        } else if !(nms_radius > 0.0 && nms_radius.is_finite()) {
            Some(format!("--nms-radius must be a positive number of pixels, not {nms_radius}"))
        } else {
            None
        }
    }
}

/// What the decoders of a model were built from and by which version: enough to re-run the
/// reference decoders on the original model's heads. Recorded in the rewritten model's
/// `metadata_props`, one entry per field under [`METADATA_PREFIX`] (the multi-pose ones under
/// `posefix.poses.`, absent when the model has no multi-pose decoder).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Provenance {
    pub tool_version: String,
    #[serde(flatten)]
    pub settings: DecoderSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_pose: Option<MultiPoseSettings>,
    /// The normalization prepended to the image input (`--pixels`), under `posefix.input.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels: Option<PixelInput>,
    /// The type of every appended output (`--output-type`), under `posefix.output_type`; the
    /// entry is written for float16 only, so a model without it has float32 outputs.
    pub output_type: FloatType,
}

impl Provenance {
    const KEYS: [&'static str; 7] = ["version", "heatmaps", "offsets", "layout", "stride", "scores", "output"];
    const MULTI_POSE_KEYS: [&'static str; 7] = [
        "poses.max",
        "poses.score_threshold",
        "poses.nms_radius",
        "poses.displacement_fwd",
        "poses.displacement_bwd",
        "poses.output",
        "poses.scores_output",
    ];
    const PIXEL_KEYS: [&'static str; 3] = ["input.name", "input.pixels", "input.preprocess"];
    const OUTPUT_TYPE_KEY: &'static str = "output_type";

    /// The `metadata_props` entries, keys under [`METADATA_PREFIX`].
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let d = &self.settings;
        let values = [
            self.tool_version.clone(),
            d.heatmaps.clone(),
            d.offsets.clone(),
            d.layout.to_string(),
            d.stride.to_string(),
            d.scores.to_string(),
            d.output.clone(),
        ];
        let mut entries: Vec<(String, String)> =
            Self::KEYS.iter().zip(values).map(|(k, v)| (format!("{METADATA_PREFIX}{k}"), v)).collect();
        if let Some(m) = &self.multi_pose {
            // f32's Display is the shortest text that reads back to the same value.
            let values = [
                m.max_poses.to_string(),
                m.score_threshold.to_string(),
                m.nms_radius.to_string(),
                m.displacement_fwd.clone(),
                m.displacement_bwd.clone(),
                m.poses.clone(),
                m.pose_scores.clone(),
            ];
            entries.extend(Self::MULTI_POSE_KEYS.iter().zip(values).map(|(k, v)| (format!("{METADATA_PREFIX}{k}"), v)));
        }
        if let Some(p) = &self.pixels {
            let values = [p.input.clone(), p.pixels.to_string(), p.preprocess.to_string()];
            entries.extend(Self::PIXEL_KEYS.iter().zip(values).map(|(k, v)| (format!("{METADATA_PREFIX}{k}"), v)));
        }
        if self.output_type != FloatType::Float32 {
            entries.push((format!("{METADATA_PREFIX}{}", Self::OUTPUT_TYPE_KEY), self.output_type.to_string()));
        }
        entries
    }

    /// Reads the entries written by [`Provenance::to_metadata`]; `None` when any is missing or
    /// malformed (for the multi-pose ones: when some but not all are there, or one is malformed).
    pub fn from_metadata<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Provenance> {
        let mut found: [Option<&str>; 7] = [None; 7];
        let mut multi: [Option<&str>; 7] = [None; 7];
        let mut pixel: [Option<&str>; 3] = [None; 3];
        let mut output_type = Some(FloatType::Float32);
        for (k, v) in entries {
            if let Some(short) = k.strip_prefix(METADATA_PREFIX) {
                if let Some(i) = Self::KEYS.iter().position(|key| *key == short) {
                    found[i] = Some(v);
                } else if let Some(i) = Self::MULTI_POSE_KEYS.iter().position(|key| *key == short) {
                    multi[i] = Some(v);
                } else if let Some(i) = Self::PIXEL_KEYS.iter().position(|key| *key == short) {
                    pixel[i] = Some(v);
                } else if short == Self::OUTPUT_TYPE_KEY {
                    output_type = FloatType::parse(v);
                }
            }
        }
        let [version, heatmaps, offsets, layout, stride, scores, output] = found;
        let multi_pose = if multi.iter().all(Option::is_none) {
            None
        } else {
            let [max, threshold, radius, fwd, bwd, poses, pose_scores] = multi;
            Some(MultiPoseSettings {
                displacement_fwd: fwd?.to_string(),
                displacement_bwd: bwd?.to_string(),
                max_poses: max?.parse().ok()?,
                score_threshold: threshold?.parse().ok()?,
                nms_radius: radius?.parse().ok()?,
                poses: poses?.to_string(),
                pose_scores: pose_scores?.to_string(),
            })
        };
        let pixels = if pixel.iter().all(Option::is_none) {
            None
        } else {
            let [input, pixels, preprocess] = pixel;
            Some(PixelInput {
                input: input?.to_string(),
                pixels: Pixels::parse(pixels?)?,
                preprocess: Preprocess::parse(preprocess?)?,
            })
        };
        Some(Provenance {
            pixels,
            output_type: output_type?,
            tool_version: version?.to_string(),
            settings: DecoderSettings {
                heatmaps: heatmaps?.to_string(),
                offsets: offsets?.to_string(),
                output: output?.to_string(),
                layout: Layout::parse(layout?)?,
                stride: stride?.parse().ok()?,
                scores: ScoreMode::parse(scores?)?,
            },
            multi_pose,
        })
    }
}

/// The version recorded in provenance.
pub const TOOL_VERSION: &str = concat!("onnx-posefix ", env!("CARGO_PKG_VERSION"));
