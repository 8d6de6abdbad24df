//! The command line: argument structs (clap derive) and their translation into the library's
//! options. Nothing here runs anything.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use onnx_posefix::contract::{
    FloatType, Pixels, ScoreMode, DEFAULT_NMS_RADIUS, DEFAULT_POSES_NAME, DEFAULT_POSE_SCORES_NAME,
    DEFAULT_SCORE_THRESHOLD,
};
use onnx_posefix::heads::HeadChoice;
use onnx_posefix::model::io::Durability;
use onnx_posefix::profiles;
use onnx_posefix::rewrite::{InputShape, MultiPoseOptions, OutputOptions, PixelOptions, RewriteOptions};
use onnx_posefix::verify::{DecoderOverrides, Preprocess, Tolerances, VerifyOptions};

#[derive(Parser, Debug)]
#[command(
    name = "onnx-posefix",
    version,
    about = "Rewrite a PoseNet ONNX model so it outputs decoded keypoints using only portable ops",
    rename_all = "kebab-case",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "A model file named like a subcommand (verify, inspect) is given as ./verify, or after --: \
                  onnx-posefix -- verify out.onnx"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// The PoseNet model to read (never modified, unless it is OUT and --force is given).
    #[arg(required = true)]
    pub(crate) input: Option<PathBuf>,
    /// Where to write the rewritten model (written whole or not at all).
    #[arg(required = true)]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) rewrite: RewriteArgs,
    /// After writing OUT, verify it against IN with tract (see the verify subcommand).
    #[arg(long, help_heading = "Verification")]
    pub(crate) verify: bool,
    #[command(flatten)]
    pub(crate) verification: VerificationArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Verify a rewritten model against its original, with tract
    ///
    /// Both models run on photos and adversarial inputs, and REWRITTEN's decoder alone on crafted
    /// heads; its keypoints are compared with a reference decoder on ORIGINAL's heads. Exit 0
    /// all equal, 1 mismatch, 2 bad usage or unreadable inputs.
    Verify(Box<VerifyCommand>),
    /// Describe a model: inputs and outputs, op histogram, pose heads, decoder, and for each
    /// runtime profile the nodes it would reject
    Inspect(InspectCommand),
}

#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub(crate) struct InspectCommand {
    /// The model to describe.
    pub(crate) model: PathBuf,
    /// Check only this runtime profile [default: every profile].
    #[arg(long, value_name = "PROFILE", value_parser = PossibleValuesParser::new(profiles::PROFILE_NAMES))]
    pub(crate) target: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Pin symbolic input dims, e.g. 1,3,257,257 or image:1,3,257,257.
    #[arg(long, value_name = "[NAME:]DIMS")]
    pub(crate) input_shape: Vec<InputShape>,
}

#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub(crate) struct VerifyCommand {
    /// The model as it was before the rewrite (its heads feed the reference decoder).
    pub(crate) original: PathBuf,
    /// The rewritten model (its keypoints output is checked).
    pub(crate) rewritten: PathBuf,
    #[command(flatten)]
    pub(crate) decoder: DecoderArgs,
    #[command(flatten)]
    pub(crate) verification: VerificationArgs,
}

/// What to compare when REWRITTEN carries no onnx-posefix provenance (or to override it).
#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub(crate) struct DecoderArgs {
    /// ORIGINAL's heatmaps output.
    #[arg(long, value_name = "NAME", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    pub(crate) heatmaps: Option<String>,
    /// ORIGINAL's offsets output.
    #[arg(long, value_name = "NAME", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    pub(crate) offsets: Option<String>,
    /// Output stride in input pixels per heatmap cell.
    #[arg(long, value_name = "N", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    pub(crate) stride: Option<u32>,
    /// Score = sigmoid(heatmap max) or the max itself.
    #[arg(long, value_enum, help_heading = "Decoder (default: REWRITTEN's provenance)")]
    pub(crate) scores: Option<ScoreMode>,
    /// REWRITTEN's [N, 17, 3] keypoints output.
    #[arg(long, value_name = "NAME", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    pub(crate) output_name: Option<String>,
    /// Pin symbolic input dims other than the batch, e.g. image:1,3,257,257.
    #[arg(long, value_name = "[NAME:]DIMS", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    pub(crate) input_shape: Vec<InputShape>,
}

/// How to verify; shared by `--verify` and the verify subcommand.
#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub(crate) struct VerificationArgs {
    /// Photos to check: JPEG or PNG files, or folders of them [default: the bundled sample].
    #[arg(long, value_name = "PATH", num_args = 1.., help_heading = "Verification")]
    pub(crate) images: Vec<PathBuf>,
    /// Pixel normalization: mobilenet x/127.5-1, resnet x+[-123.15,-115.90,-103.06], unit x/255,
    /// raw x [default: mobilenet, or what REWRITTEN's --pixels recorded]. With --pixels, the
    /// normalization the rewrite prepends (mobilenet or resnet).
    #[arg(long, value_enum, help_heading = "Verification")]
    pub(crate) preprocess: Option<Preprocess>,
    /// Largest |dx| or |dy| accepted, in model-input pixels [default: 0.001].
    #[arg(long, value_name = "PX", help_heading = "Verification")]
    pub(crate) tol_px: Option<f32>,
    /// Largest |dscore| accepted [default: 0.00001].
    #[arg(long, value_name = "D", help_heading = "Verification")]
    pub(crate) tol_score: Option<f32>,
    /// Also write the report as JSON (schema in the README).
    #[arg(long, value_name = "FILE", help_heading = "Verification")]
    pub(crate) json: Option<PathBuf>,
    /// Write each photo with the rewritten model's pose drawn over it, as DIR/<name>.png.
    #[arg(long, value_name = "DIR", help_heading = "Verification")]
    pub(crate) draw: Option<PathBuf>,
}

impl VerificationArgs {
    /// The first verification flag given, if any.
    pub(crate) fn first_given(&self) -> Option<&'static str> {
        [
            (!self.images.is_empty(), "--images"),
            (self.preprocess.is_some(), "--preprocess"),
            (self.tol_px.is_some(), "--tol-px"),
            (self.tol_score.is_some(), "--tol-score"),
            (self.json.is_some(), "--json"),
            (self.draw.is_some(), "--draw"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    pub(crate) fn options(&self, decoder: DecoderOverrides, input_shapes: Vec<InputShape>) -> VerifyOptions {
        let defaults = Tolerances::default();
        VerifyOptions {
            images: self.images.clone(),
            preprocess: self.preprocess,
            tolerances: Tolerances {
                px: self.tol_px.unwrap_or(defaults.px),
                score: self.tol_score.unwrap_or(defaults.score),
            },
            draw: self.draw.clone(),
            decoder,
            input_shapes,
        }
    }
}

#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub(crate) struct RewriteArgs {
    /// Graph output holding the heatmaps (17 channels), when detection cannot tell.
    #[arg(long, value_name = "NAME", help_heading = "Heads")]
    pub(crate) heatmaps: Option<String>,
    /// Graph output holding the offsets (34 channels), when detection cannot tell.
    #[arg(long, value_name = "NAME", help_heading = "Heads")]
    pub(crate) offsets: Option<String>,
    /// Graph output holding the forward displacements (32 channels), when names cannot tell.
    #[arg(long, value_name = "NAME", requires = "poses", help_heading = "Heads")]
    pub(crate) displacement_fwd: Option<String>,
    /// Graph output holding the backward displacements (32 channels), when names cannot tell.
    #[arg(long, value_name = "NAME", requires = "poses", help_heading = "Heads")]
    pub(crate) displacement_bwd: Option<String>,
    /// Pin symbolic input dims, e.g. 1,3,257,257 or image:1,3,257,257 (repeat for several inputs).
    #[arg(long, value_name = "[NAME:]DIMS", help_heading = "Heads")]
    pub(crate) input_shape: Vec<InputShape>,
    /// Output stride in input pixels per heatmap cell, when it cannot be derived.
    #[arg(long, value_name = "N", help_heading = "Heads")]
    pub(crate) stride: Option<u32>,
    /// Score = sigmoid(heatmap max) or the max itself; detected from a final Sigmoid by default.
    #[arg(long, value_enum, help_heading = "Output")]
    pub(crate) scores: Option<ScoreMode>,
    /// Name of the appended output.
    #[arg(long, default_value = onnx_posefix::contract::DEFAULT_OUTPUT_NAME, help_heading = "Output")]
    pub(crate) output_name: String,
    /// Also decode up to N people (tfjs posenet's decodeMultiplePoses): appends poses
    /// [B, N, 17, 3] and pose_scores [B, N]; needs the displacement heads.
    #[arg(long, value_name = "N", help_heading = "Multi-pose")]
    pub(crate) poses: Option<usize>,
    /// A pose's root keypoint needs at least this score, in [0, 1].
    #[arg(long, value_name = "T", requires = "poses", default_value_t = DEFAULT_SCORE_THRESHOLD, help_heading = "Multi-pose")]
    pub(crate) score_threshold: f32,
    /// Keypoints of two poses within R model-input pixels (inclusive) are one (part-based NMS).
    #[arg(long, value_name = "R", requires = "poses", default_value_t = DEFAULT_NMS_RADIUS, help_heading = "Multi-pose")]
    pub(crate) nms_radius: f32,
    /// Name of the appended [B, N, 17, 3] output.
    #[arg(long, value_name = "NAME", requires = "poses", default_value = DEFAULT_POSES_NAME, help_heading = "Multi-pose")]
    pub(crate) poses_name: String,
    /// Name of the appended [B, N] output.
    #[arg(long, value_name = "NAME", requires = "poses", default_value = DEFAULT_POSE_SCORES_NAME, help_heading = "Multi-pose")]
    pub(crate) pose_scores_name: String,
    /// Type of every appended output: float16 rounds the float32 result once (to nearest even),
    /// e.g. for a float16 model on a GPU runtime.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = FloatType::Float32, help_heading = "Output")]
    pub(crate) output_type: FloatType,
    /// Keep only the appended outputs and drop what no longer feeds them.
    #[arg(long, help_heading = "Output")]
    pub(crate) prune: bool,
    /// CHANGES WHAT THE MODEL'S INPUT MEANS: the image input takes pixels, 0..1 (unit, as a
    /// texture) or 0..255 (byte), and the model applies --preprocess (mobilenet or resnet) itself,
    /// as its first nodes. Feed it the texture as it is.
    #[arg(long, value_enum, value_name = "RANGE", help_heading = "Input")]
    pub(crate) pixels: Option<Pixels>,
    /// Allow OUT to be IN (it is then replaced atomically).
    #[arg(long, help_heading = "Output")]
    pub(crate) force: bool,
    /// Flush OUT to the disk before it replaces anything, so that it survives a power loss
    /// (slower: the whole file is written through).
    #[arg(long, help_heading = "Output")]
    pub(crate) fsync: bool,
    /// Runtime profile the appended decoder must satisfy (see `inspect`).
    #[arg(
        long,
        value_name = "PROFILE",
        default_value = profiles::PORTABLE,
        value_parser = PossibleValuesParser::new(profiles::PROFILE_NAMES),
        help_heading = "Output"
    )]
    pub(crate) target: String,
}

impl RewriteArgs {
    /// The rewrite's options; `preprocess` is the `--preprocess` flag, which `--pixels` prepends.
    pub(crate) fn options(&self, preprocess: Option<Preprocess>) -> anyhow::Result<RewriteOptions> {
        let pixels = match (self.pixels, preprocess) {
            (Some(pixels), Some(preprocess)) => Some(PixelOptions { pixels, preprocess }),
            (Some(_), None) => {
                anyhow::bail!("--pixels needs --preprocess mobilenet or resnet (the normalization to prepend)")
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
                max_poses,
                score_threshold: self.score_threshold,
                nms_radius: self.nms_radius,
                poses_name: self.poses_name.clone(),
                pose_scores_name: self.pose_scores_name.clone(),
            }),
            pixels,
            output_type: self.output_type,
        })
    }

    pub(crate) fn output_options(&self) -> OutputOptions {
        OutputOptions {
            force: self.force,
            durability: if self.fsync { Durability::Synced } else { Durability::Cached },
        }
    }
}

impl DecoderArgs {
    pub(crate) fn overrides(&self) -> DecoderOverrides {
        DecoderOverrides {
            heatmaps: self.heatmaps.clone(),
            offsets: self.offsets.clone(),
            stride: self.stride,
            scores: self.scores,
            output: self.output_name.clone(),
        }
    }
}
