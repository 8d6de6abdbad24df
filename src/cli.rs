//! The rewrite's command-line flags (clap) and their translation into [`RewriteOptions`], in the
//! library so that the binary and the browser page's WebAssembly wrapper (`web/wasm`, which parses
//! the page's choices as these same flags) take the same options and say the same usage errors.
//! Nothing here runs anything.

use clap::builder::PossibleValuesParser;
use clap::Args;

use crate::contract::{
    FloatType, MultiPoseParams, Pixels, Preprocess, ScoreMode, DEFAULT_NMS_RADIUS, DEFAULT_POSES_NAME,
    DEFAULT_POSE_SCORES_NAME, DEFAULT_SCORE_THRESHOLD,
};
use crate::error::{Error, Result};
use crate::heads::HeadChoice;
use crate::model::io::Durability;
use crate::profiles;
use crate::rewrite::{InputShape, MultiPoseOptions, OutputOptions, PixelOptions, RewriteOptions};

#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub struct RewriteArgs {
    /// Graph output holding the heatmaps (17 channels), when detection cannot tell (an ambiguous
    /// model's error lists the choices).
    #[arg(long, value_name = "NAME", help_heading = "Heads")]
    pub heatmaps: Option<String>,
    /// Graph output holding the offsets (34 channels), when detection cannot tell (an ambiguous
    /// model's error lists the choices).
    #[arg(long, value_name = "NAME", help_heading = "Heads")]
    pub offsets: Option<String>,
    /// With --poses: the graph output holding the forward displacements (32 channels), when their
    /// names cannot tell (one of the two flags is enough when only two are left).
    #[arg(long, value_name = "NAME", requires = "poses", help_heading = "Heads")]
    pub displacement_fwd: Option<String>,
    /// With --poses: the graph output holding the backward displacements (32 channels), when
    /// their names cannot tell (one of the two flags is enough when only two are left).
    #[arg(long, value_name = "NAME", requires = "poses", help_heading = "Heads")]
    pub displacement_bwd: Option<String>,
    /// Pin symbolic input dims, e.g. 1,3,257,257 or image:1,3,257,257 (repeat for several inputs);
    /// the pinned dims are written into OUT. A symbolic batch may stay symbolic.
    #[arg(long, value_name = "[NAME:]DIMS", help_heading = "Heads")]
    pub input_shape: Vec<InputShape>,
    /// Output stride in input pixels per heatmap cell, when it cannot be derived from the input and
    /// grid sizes.
    #[arg(long, value_name = "N", help_heading = "Heads", value_parser = clap::value_parser!(u32).range(1..))]
    pub stride: Option<u32>,
    /// Score = sigmoid(heatmap max), or the max itself (raw); detected by default (raw when the
    /// heatmaps already end in a Sigmoid).
    #[arg(long, value_enum, help_heading = "Output")]
    pub scores: Option<ScoreMode>,
    /// Name of the appended keypoints output, float [N, 17, 3] of (x, y, score) in model-input
    /// pixels.
    #[arg(long, value_name = "NAME", default_value = crate::contract::DEFAULT_OUTPUT_NAME, help_heading = "Output")]
    pub output_name: String,
    /// Also decode up to N people, N >= 1 (tfjs posenet's decodeMultiplePoses): appends poses
    /// [B, N, 17, 3] and pose_scores [B, N] (-1 for an empty slot); needs the displacement heads.
    #[arg(long, value_name = "N", help_heading = "Multi-pose")]
    pub poses: Option<usize>,
    /// With --poses: a pose's root keypoint needs at least this score, in [0, 1].
    #[arg(long, value_name = "T", requires = "poses", default_value_t = DEFAULT_SCORE_THRESHOLD, help_heading = "Multi-pose")]
    pub score_threshold: f32,
    /// With --poses: keypoints of two poses within R model-input pixels (d^2 <= R^2) are one
    /// (part-based NMS); R > 0.
    #[arg(long, value_name = "R", requires = "poses", default_value_t = DEFAULT_NMS_RADIUS, help_heading = "Multi-pose")]
    pub nms_radius: f32,
    /// With --poses: name of the appended [B, N, 17, 3] output.
    #[arg(long, value_name = "NAME", requires = "poses", default_value = DEFAULT_POSES_NAME, help_heading = "Multi-pose")]
    pub poses_name: String,
    /// With --poses: name of the appended [B, N] output.
    #[arg(long, value_name = "NAME", requires = "poses", default_value = DEFAULT_POSE_SCORES_NAME, help_heading = "Multi-pose")]
    pub pose_scores_name: String,
    /// Type of every appended output: float16 rounds the float32 result once (to nearest even),
    /// e.g. for a float16 model on a GPU runtime (see docs/float16.md).
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = FloatType::Float32, help_heading = "Output")]
    pub output_type: FloatType,
    /// Keep only the appended outputs and drop what no longer feeds them (the displacement heads,
    /// unless --poses reads them).
    #[arg(long, help_heading = "Output")]
    pub prune: bool,
    /// CHANGES WHAT THE MODEL'S INPUT MEANS: the image input takes pixels, 0..1 (unit, a texture
    /// as Barracuda, Sentis or WebGL hand it over) or 0..255 (byte, an 8-bit image buffer), and
    /// the model applies --preprocess (mobilenet or resnet, required) itself, as its first nodes.
    /// Feed it the texture as it is (see docs/pixels.md).
    #[arg(long, value_enum, value_name = "RANGE", help_heading = "Input")]
    pub pixels: Option<Pixels>,
    /// Allow OUT to be IN (it is then replaced atomically).
    #[arg(long, help_heading = "Output")]
    pub force: bool,
    /// Flush OUT to the disk before it replaces anything, so that it survives a power loss
    /// (slower: the whole file is written through, about 2x the time of a 95 MB rewrite).
    #[arg(long, help_heading = "Output")]
    pub fsync: bool,
    /// Runtime profile the appended decoder must satisfy; the rewrite stops with the rules it
    /// would break. portable: the rules of every runtime profile together (see `inspect` and
    /// docs/profiles.md).
    #[arg(
        long,
        value_name = "PROFILE",
        default_value = profiles::PORTABLE,
        value_parser = PossibleValuesParser::new(profiles::PROFILE_NAMES),
        help_heading = "Output"
    )]
    pub target: String,
}

impl RewriteArgs {
    /// The rewrite's options; `preprocess` is the `--preprocess` flag, which `--pixels` prepends.
    pub fn options(&self, preprocess: Option<Preprocess>) -> Result<RewriteOptions> {
        let pixels = match (self.pixels, preprocess) {
            (Some(pixels), Some(preprocess)) => Some(PixelOptions { pixels, preprocess }),
            (Some(_), None) => {
                return Err(Error::Usage(
                    "--pixels needs --preprocess mobilenet or resnet (the normalization to prepend)".into(),
                ))
            }
            (None, _) => None,
        };
        Ok(RewriteOptions {
            heads: HeadChoice {
                heatmaps: self.heatmaps.clone(),
                offsets: self.offsets.clone(),
                displacement_fwd: self.displacement_fwd.clone(),
                displacement_bwd: self.displacement_bwd.clone(),
            },
            input_shapes: self.input_shape.clone(),
            stride: self.stride,
            scores: self.scores,
            output_name: self.output_name.clone(),
            prune: self.prune,
            target: self.target.clone(),
            multi_pose: self.poses.map(|max_poses| MultiPoseOptions {
                params: MultiPoseParams {
                    max_poses,
                    score_threshold: self.score_threshold,
                    nms_radius: self.nms_radius,
                },
                poses_name: self.poses_name.clone(),
                pose_scores_name: self.pose_scores_name.clone(),
            }),
            pixels,
            output_type: self.output_type,
        })
    }

    pub fn output_options(&self) -> OutputOptions {
        OutputOptions {
            force: self.force,
            durability: if self.fsync { Durability::Synced } else { Durability::Cached },
        }
    }
}
