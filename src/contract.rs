//! The output contract shared by the rewrite, the reference decoder and verification.
//!
//! `keypoints` is float32 `[N, 17, 3]`, last dim `(x, y, score)` in model-input pixels. For
//! keypoint k, `idx` is the first-occurrence argmax of heatmap k flattened row-major (`y*W + x`),
//! `gy = idx / W`, `gx = idx % W`, `y = gy*stride + offsets[k][gy][gx]`,
//! `x = gx*stride + offsets[k+17][gy][gx]`, and `score = sigmoid(max)` (or the max itself when the
//! heatmaps already end in a Sigmoid). These are tfjs posenet's single-pose semantics.

use std::collections::HashMap;
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

/// The text form of a contract enum, from one table: `as_str`, `parse` (ASCII case ignored),
/// `Display` and `Serialize`, so that provenance, reports and messages cannot spell it apart.
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$ty> {
                [$($ty::$variant),+].into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Layout { Nchw => "NCHW", Nhwc => "NHWC" });
text_enum!(ScoreMode { Sigmoid => "sigmoid", Raw => "raw" });
text_enum!(Preprocess { Mobilenet => "mobilenet", Resnet => "resnet", Unit => "unit", Raw => "raw" });
text_enum!(Pixels { Unit => "unit", Byte => "byte" });
text_enum!(FloatType { Float32 => "float32", Float16 => "float16" });

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
}

/// How the score of a keypoint is derived from the heatmap maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ScoreMode {
    /// Heatmaps are logits: score = sigmoid(max).
    Sigmoid,
    /// Heatmaps are already probabilities: score = max.
    Raw,
}

/// The float types the decoders read (heads) and write (`--output-type`). float16 heads are read
/// through a Cast to float32, which is exact; a float16 output is the float32 result rounded
/// once, to nearest even.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum FloatType {
    #[default]
    Float32,
    Float16,
}

impl FloatType {
    /// The ONNX element type.
    pub fn onnx(self) -> onnx_protobuf::tensor_proto::DataType {
        use onnx_protobuf::tensor_proto::DataType;
        match self {
            FloatType::Float32 => DataType::FLOAT,
            FloatType::Float16 => DataType::FLOAT16,
        }
    }

    /// The float type the decoders read a head of tract type `dt` as: float32, and float16
    /// (through an exact Cast); `None` for any other.
    pub fn of_datum(dt: tract_onnx::prelude::DatumType) -> Option<FloatType> {
        use tract_onnx::prelude::DatumType;
        match dt {
            DatumType::F32 => Some(FloatType::Float32),
            DatumType::F16 => Some(FloatType::Float16),
            _ => None,
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

/// How 0..255 RGB pixels become model input values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Pixels {
    /// 0..1 floats (a texture as Barracuda, Sentis or WebGL hand it over).
    Unit,
    /// 0..255 floats (a raw 8-bit image buffer).
    Byte,
}

impl Pixels {
    /// The value fed for pixel value `v` (0..255).
    pub fn value(self, v: u8) -> f32 {
        match self {
            Pixels::Unit => v as f32 / 255.0,
            Pixels::Byte => v as f32,
        }
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

/// tfjs posenet's `decodeMultiplePoses` parameters: the one home of N, T and R, which the
/// options, the provenance, the decoder, the reference and verification all carry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MultiPoseParams {
    /// N: at most this many poses per batch item (slots in the outputs).
    pub max_poses: usize,
    /// T: a root candidate's score must be at least this (in sigmoid mode, its logit at least
    /// `ln(T/(1-T))`).
    pub score_threshold: f32,
    /// R: part-based NMS radius in model-input pixels (`d^2 <= R*R` suppresses).
    pub nms_radius: f32,
}

impl MultiPoseParams {
    /// tfjs posenet's defaults (`MULTI_PERSON_INFERENCE_CONFIG`) for `max_poses` poses.
    pub fn new(max_poses: usize) -> MultiPoseParams {
        MultiPoseParams { max_poses, score_threshold: DEFAULT_SCORE_THRESHOLD, nms_radius: DEFAULT_NMS_RADIUS }
    }

    /// Why these are outside the contract (`N >= 1`, `T` in [0, 1], `R > 0` and finite), in the
    /// command line's words; `None` when they are fine.
    pub fn out_of_range(&self) -> Option<String> {
        let MultiPoseParams { max_poses, score_threshold, nms_radius } = *self;
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

impl Default for MultiPoseParams {
    /// Five poses, tfjs's defaults otherwise.
    fn default() -> Self {
        MultiPoseParams::new(5)
    }
}

/// The settings of a multi-pose decoder (tfjs posenet's `decodeMultiplePoses`), beside the
/// single-pose one whose heatmaps, offsets, layout, stride and score mode it shares.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MultiPoseSettings {
    /// The forward displacements head (32 channels: edge e's y at e, x at e + 16).
    pub displacement_fwd: String,
    /// The backward displacements head (32 channels).
    pub displacement_bwd: String,
    #[serde(flatten)]
    pub params: MultiPoseParams,
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
            self.params.max_poses,
            self.params.score_threshold,
            self.params.nms_radius
        )
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
    /// The keys of the optional groups of entries, under [`METADATA_PREFIX`]: a group is all
    /// there or all absent.
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
        let mut entries: Vec<(&str, String)> = vec![
            ("version", self.tool_version.clone()),
            ("heatmaps", d.heatmaps.clone()),
            ("offsets", d.offsets.clone()),
            ("layout", d.layout.to_string()),
            ("stride", d.stride.to_string()),
            ("scores", d.scores.to_string()),
            ("output", d.output.clone()),
        ];
        if let Some(m) = &self.multi_pose {
            // f32's Display is the shortest text that reads back to the same value.
            entries.extend([
                ("poses.max", m.params.max_poses.to_string()),
                ("poses.score_threshold", m.params.score_threshold.to_string()),
                ("poses.nms_radius", m.params.nms_radius.to_string()),
                ("poses.displacement_fwd", m.displacement_fwd.clone()),
                ("poses.displacement_bwd", m.displacement_bwd.clone()),
                ("poses.output", m.poses.clone()),
                ("poses.scores_output", m.pose_scores.clone()),
            ]);
        }
        if let Some(p) = &self.pixels {
            entries.extend([
                ("input.name", p.input.clone()),
                ("input.pixels", p.pixels.to_string()),
                ("input.preprocess", p.preprocess.to_string()),
            ]);
        }
        if self.output_type != FloatType::Float32 {
            entries.push((Self::OUTPUT_TYPE_KEY, self.output_type.to_string()));
        }
        entries.into_iter().map(|(k, v)| (format!("{METADATA_PREFIX}{k}"), v)).collect()
    }

    /// Reads the entries written by [`Provenance::to_metadata`]; `None` when any is missing or
    /// malformed (for the multi-pose and pixel ones: when some but not all are there, or one is
    /// malformed).
    pub fn from_metadata<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Provenance> {
        let found: HashMap<&str, &str> =
            entries.into_iter().filter_map(|(k, v)| Some((k.strip_prefix(METADATA_PREFIX)?, v))).collect();
        let get = |key: &str| found.get(key).copied();
        let any_of = |keys: &[&str]| keys.iter().any(|k| found.contains_key(k));
        let multi_pose = match any_of(&Self::MULTI_POSE_KEYS) {
            false => None,
            true => Some(MultiPoseSettings {
                displacement_fwd: get("poses.displacement_fwd")?.to_string(),
                displacement_bwd: get("poses.displacement_bwd")?.to_string(),
                params: MultiPoseParams {
                    max_poses: get("poses.max")?.parse().ok()?,
                    score_threshold: get("poses.score_threshold")?.parse().ok()?,
                    nms_radius: get("poses.nms_radius")?.parse().ok()?,
                },
                poses: get("poses.output")?.to_string(),
                pose_scores: get("poses.scores_output")?.to_string(),
            }),
        };
        let pixels = match any_of(&Self::PIXEL_KEYS) {
            false => None,
            true => Some(PixelInput {
                input: get("input.name")?.to_string(),
                pixels: Pixels::parse(get("input.pixels")?)?,
                preprocess: Preprocess::parse(get("input.preprocess")?)?,
            }),
        };
        let output_type = match get(Self::OUTPUT_TYPE_KEY) {
            None => FloatType::Float32,
            Some(v) => FloatType::parse(v)?,
        };
        Some(Provenance {
            pixels,
            output_type,
            tool_version: get("version")?.to_string(),
            settings: DecoderSettings {
                heatmaps: get("heatmaps")?.to_string(),
                offsets: get("offsets")?.to_string(),
                output: get("output")?.to_string(),
                layout: Layout::parse(get("layout")?)?,
                stride: get("stride")?.parse().ok()?,
                scores: ScoreMode::parse(get("scores")?)?,
            },
            multi_pose,
        })
    }
}

/// The version recorded in provenance.
pub const TOOL_VERSION: &str = concat!("onnx-posefix ", env!("CARGO_PKG_VERSION"));
