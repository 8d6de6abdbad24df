//! The command line: argument structs (clap derive) and their translation into the library's
//! options. Nothing here runs anything. The rewrite's own flags are the library's
//! [`onnx_posefix::cli::RewriteArgs`], which the browser page parses too.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
pub(crate) use onnx_posefix::cli::RewriteArgs;
use onnx_posefix::{DecoderOverrides, InputShape, Preprocess, ScoreMode, Tolerances, VerifyOptions, PROFILE_NAMES};

#[derive(Parser, Debug)]
#[command(
    name = "onnx-posefix",
    version,
    about = "Rewrite a PoseNet ONNX model so it outputs decoded keypoints using only portable ops",
    rename_all = "kebab-case",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit codes:\n  \
                  0         rewritten (and, with --verify, verified equal)\n  \
                  1         verification found a mismatch\n  \
                  2         bad usage or bad input: one line on stderr saying why; IN untouched\n  \
                  130, 143  interrupted by SIGINT or SIGTERM: no temporary file left\n\n\
                  A model file named like a subcommand (verify, inspect) is given as ./verify, or after --:\n  \
                  onnx-posefix -- verify out.onnx\n\n\
                  The output contract, the runtime profiles and verification: docs/ in the repository."
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
    /// After writing OUT, verify it against IN with tract (see the verify subcommand); a mismatch
    /// exits 1.
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
    /// heads; its keypoints (and, for a multi-pose model, its poses) are compared with a reference
    /// decoder on ORIGINAL's heads. Exit 0 all equal, 1 mismatch, 2 bad usage, a model that cannot
    /// be read or run, or an unreadable photo (2 wins over 1: the run is incomplete).
    Verify(Box<VerifyCommand>),
    /// Describe a model: inputs and outputs, op histogram, pose heads, decoder, and for each
    /// runtime profile the nodes it would reject
    ///
    /// Exit 0 whatever the profiles say, 2 on an unreadable model.
    Inspect(InspectCommand),
}

#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
pub(crate) struct InspectCommand {
    /// The model to describe.
    pub(crate) model: PathBuf,
    /// Check only this runtime profile [default: every profile].
    #[arg(long, value_name = "PROFILE", value_parser = PossibleValuesParser::new(PROFILE_NAMES))]
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
    #[arg(long, value_name = "N", help_heading = "Decoder (default: REWRITTEN's provenance)", value_parser = clap::value_parser!(u32).range(1..))]
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
    /// Photos to check: JPEG or PNG files, or folders of them (scanned, not recursively, for .jpg,
    /// .jpeg and .png) [default: the sample photo bundled into the binary].
    #[arg(long, value_name = "PATH", num_args = 1.., help_heading = "Verification")]
    pub(crate) images: Vec<PathBuf>,
    /// Pixel normalization: mobilenet x/127.5-1, resnet x+[-123.15,-115.90,-103.06], unit x/255,
    /// raw x [default: mobilenet, or what REWRITTEN's --pixels recorded]. With --pixels, the
    /// normalization the rewrite prepends (mobilenet or resnet).
    #[arg(long, value_enum, help_heading = "Verification")]
    pub(crate) preprocess: Option<Preprocess>,
    /// Largest |dx| or |dy| accepted, in model-input pixels; NaN never matches [default: 0.001].
    #[arg(long, value_name = "PX", help_heading = "Verification")]
    pub(crate) tol_px: Option<f32>,
    /// Largest |dscore| accepted, for keypoint and pose scores [default: 0.00001].
    #[arg(long, value_name = "D", help_heading = "Verification")]
    pub(crate) tol_score: Option<f32>,
    /// Also write the report as JSON (schema version 1, described in docs/verification.md).
    #[arg(long, value_name = "FILE", help_heading = "Verification")]
    pub(crate) json: Option<PathBuf>,
    /// Write each photo with the rewritten model's pose drawn over it (for a multi-pose model,
    /// every pose found, each in its own colour with its score), as DIR/<name>.png.
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
