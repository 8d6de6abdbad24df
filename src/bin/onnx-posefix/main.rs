//! The thin binary: parse arguments, call the library, print, map the outcome to an exit code
//! (0 done or all equal, 1 verification mismatch, 2 bad input or usage).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};
use onnx_posefix::contract::ScoreMode;
use onnx_posefix::heads::HeadChoice;
use onnx_posefix::inspect;
use onnx_posefix::model::io::{self as model_io, Durability};
use onnx_posefix::profiles::{self, Profile};
use onnx_posefix::rewrite::{self, InputShape, OutputOptions, RewriteOptions, Rewritten};
use onnx_posefix::verify::{self, DecoderOverrides, Event, Outcome, Preprocess, Report, Tolerances, VerifyOptions};

#[derive(Parser, Debug)]
#[command(
    name = "onnx-posefix",
    version,
    about = "Rewrite a PoseNet ONNX model so it outputs decoded keypoints using only portable ops",
    rename_all = "kebab-case",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The PoseNet model to read (never modified, unless it is OUT and --force is given).
    #[arg(required = true)]
    input: Option<PathBuf>,
    /// Where to write the rewritten model (written whole or not at all).
    #[arg(required = true)]
    output: Option<PathBuf>,
    #[command(flatten)]
    rewrite: RewriteArgs,
    /// After writing OUT, verify it against IN with tract (see the verify subcommand).
    #[arg(long, help_heading = "Verification")]
    verify: bool,
    #[command(flatten)]
    verification: VerificationArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct InspectCommand {
    /// The model to describe.
    model: PathBuf,
    /// Check only this runtime profile [default: every profile].
    #[arg(long, value_name = "PROFILE", value_parser = PossibleValuesParser::new(profiles::PROFILE_NAMES))]
    target: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Pin symbolic input dims, e.g. 1,3,257,257 or image:1,3,257,257.
    #[arg(long, value_name = "[NAME:]DIMS")]
    input_shape: Vec<InputShape>,
}

#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
struct VerifyCommand {
    /// The model as it was before the rewrite (its heads feed the reference decoder).
    original: PathBuf,
    /// The rewritten model (its keypoints output is checked).
    rewritten: PathBuf,
    #[command(flatten)]
    decoder: DecoderArgs,
    #[command(flatten)]
    verification: VerificationArgs,
}

/// What to compare when REWRITTEN carries no onnx-posefix provenance (or to override it).
#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
struct DecoderArgs {
    /// ORIGINAL's heatmaps output.
    #[arg(long, value_name = "NAME", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    heatmaps: Option<String>,
    /// ORIGINAL's offsets output.
    #[arg(long, value_name = "NAME", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    offsets: Option<String>,
    /// Output stride in input pixels per heatmap cell.
    #[arg(long, value_name = "N", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    stride: Option<u32>,
    /// Score = sigmoid(heatmap max) or the max itself.
    #[arg(long, value_parser = ["sigmoid", "raw"], help_heading = "Decoder (default: REWRITTEN's provenance)")]
    scores: Option<String>,
    /// REWRITTEN's [N, 17, 3] keypoints output.
    #[arg(long, value_name = "NAME", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    output_name: Option<String>,
    /// Pin symbolic input dims other than the batch, e.g. image:1,3,257,257.
    #[arg(long, value_name = "[NAME:]DIMS", help_heading = "Decoder (default: REWRITTEN's provenance)")]
    input_shape: Vec<InputShape>,
}

/// How to verify; shared by `--verify` and the verify subcommand.
#[derive(Args, Debug)]
#[command(rename_all = "kebab-case")]
struct VerificationArgs {
    /// Photos to check: JPEG or PNG files, or folders of them [default: the bundled sample].
    #[arg(long, value_name = "PATH", num_args = 1.., help_heading = "Verification")]
    images: Vec<PathBuf>,
    /// Pixel normalization: mobilenet x/127.5-1, resnet x+[-123.15,-115.90,-103.06], unit x/255,
    /// raw x [default: mobilenet].
    #[arg(long, value_parser = Preprocess::NAMES, help_heading = "Verification")]
    preprocess: Option<String>,
    /// Largest |dx| or |dy| accepted, in model-input pixels [default: 0.001].
    #[arg(long, value_name = "PX", help_heading = "Verification")]
    tol_px: Option<f32>,
    /// Largest |dscore| accepted [default: 0.00001].
    #[arg(long, value_name = "D", help_heading = "Verification")]
    tol_score: Option<f32>,
    /// Also write the report as JSON (schema in the README).
    #[arg(long, value_name = "FILE", help_heading = "Verification")]
    json: Option<PathBuf>,
    /// Write each photo with the rewritten model's pose drawn over it, as DIR/<name>.png.
    #[arg(long, value_name = "DIR", help_heading = "Verification")]
    draw: Option<PathBuf>,
}

impl VerificationArgs {
    /// The first verification flag given, if any.
    fn first_given(&self) -> Option<&'static str> {
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

    fn options(&self, decoder: DecoderOverrides, input_shapes: Vec<InputShape>) -> VerifyOptions {
        let defaults = Tolerances::default();
        VerifyOptions {
            images: self.images.clone(),
            preprocess: self.preprocess.as_deref().and_then(|p| p.parse().ok()).unwrap_or(Preprocess::Mobilenet),
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
struct RewriteArgs {
    /// Graph output holding the heatmaps (17 channels), when detection cannot tell.
    #[arg(long, value_name = "NAME", help_heading = "Heads")]
    heatmaps: Option<String>,
    /// Graph output holding the offsets (34 channels), when detection cannot tell.
    #[arg(long, value_name = "NAME", help_heading = "Heads")]
    offsets: Option<String>,
    /// Pin symbolic input dims, e.g. 1,3,257,257 or image:1,3,257,257 (repeat for several inputs).
    #[arg(long, value_name = "[NAME:]DIMS", help_heading = "Heads")]
    input_shape: Vec<InputShape>,
    /// Output stride in input pixels per heatmap cell, when it cannot be derived.
    #[arg(long, value_name = "N", help_heading = "Heads")]
    stride: Option<u32>,
    /// Score = sigmoid(heatmap max) or the max itself; detected from a final Sigmoid by default.
    #[arg(long, value_parser = ["sigmoid", "raw"], help_heading = "Output")]
    scores: Option<String>,
    /// Name of the appended output.
    #[arg(long, default_value = onnx_posefix::contract::DEFAULT_OUTPUT_NAME, help_heading = "Output")]
    output_name: String,
    /// Keep only the keypoints output and drop what no longer feeds it.
    #[arg(long, help_heading = "Output")]
    prune: bool,
    /// Allow OUT to be IN (it is then replaced atomically).
    #[arg(long, help_heading = "Output")]
    force: bool,
    /// Flush OUT to the disk before it replaces anything, so that it survives a power loss
    /// (slower: the whole file is written through).
    #[arg(long, help_heading = "Output")]
    fsync: bool,
    /// Runtime profile the appended decoder must satisfy (see `inspect`).
    #[arg(
        long,
        value_name = "PROFILE",
        default_value = profiles::PORTABLE,
        value_parser = PossibleValuesParser::new(profiles::PROFILE_NAMES),
        help_heading = "Output"
    )]
    target: String,
}

impl RewriteArgs {
    fn options(&self) -> RewriteOptions {
        RewriteOptions {
            heads: HeadChoice { heatmaps: self.heatmaps.clone(), offsets: self.offsets.clone() },
            input_shapes: self.input_shape.clone(),
            stride: self.stride,
            scores: self.scores.as_deref().and_then(ScoreMode::parse),
            output_name: self.output_name.clone(),
            prune: self.prune,
            target: self.target.clone(),
        }
    }

    fn output_options(&self) -> OutputOptions {
        OutputOptions {
            force: self.force,
            durability: if self.fsync { Durability::Synced } else { Durability::Cached },
        }
    }
}

fn describe(out: &Path, r: &Rewritten) -> String {
    let p = &r.provenance;
    format!(
        "wrote {}: {} [{}, 17, 3] (x, y, score) from heatmaps '{}' and offsets '{}' ({}, {}x{} grid, stride {}, scores {}{}), {} nodes added{}",
        out.display(),
        p.output,
        r.heads.batch,
        p.heatmaps,
        p.offsets,
        p.layout,
        r.heads.grid.0,
        r.heads.grid.1,
        p.stride,
        p.scores,
        if r.scores_detected { " detected" } else { " forced" },
        r.nodes_added,
        if r.nodes_pruned > 0 { format!(", {} pruned", r.nodes_pruned) } else { String::new() },
    )
}

/// Prints a line on stdout, flushed so that it shows as the input completes. A closed stdout
/// (`| head`) is no reason to panic or to stop: the exit code still tells the outcome.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A one-line progress bar on stderr, drawn between the report lines on stdout. Hand-made
/// rather than `indicatif`: one redraw per input is all it does, which is a dozen lines, not a
/// dependency tree.
struct Progress {
    total: usize,
    done: usize,
}

impl Progress {
    const WIDTH: usize = 30;

    fn clear(&self) {
        eprint!("\r\x1b[2K");
    }

    fn draw(&self) {
        let filled = Self::WIDTH * self.done / self.total.max(1);
        eprint!("\r[{}{}] {}/{}", "#".repeat(filled), ".".repeat(Self::WIDTH - filled), self.done, self.total);
        let _ = std::io::stderr().flush();
    }
}

/// Runs a verification, printing the header, a line per input (with a progress bar on a
/// terminal for more than a handful of inputs) and the summary; writes `--json`.
fn run_verification(
    original: &Path,
    rewritten: &Path,
    options: &VerifyOptions,
    json: Option<&Path>,
) -> Result<Outcome, String> {
    let mut progress: Option<Progress> = None;
    let mut on_event = |event: Event<'_>| match event {
        Event::Start { report, total } => {
            for line in report.header_lines() {
                say(&line);
            }
            if total > 8 && std::io::stderr().is_terminal() {
                let bar = Progress { total, done: 0 };
                bar.draw();
                progress = Some(bar);
            }
        }
        Event::Input(result) => {
            if let Some(p) = &progress {
                p.clear();
            }
            say(&result.line());
            if let Some(p) = &mut progress {
                p.done += 1;
                p.draw();
            }
        }
    };
    let report: Report =
        verify::verify_files(original, rewritten, options, &mut on_event).map_err(|e| e.to_string())?;
    if let Some(p) = &progress {
        p.clear();
    }
    for line in report.summary_lines() {
        say(&line);
    }
    if let Some(path) = json {
        model_io::write_atomically(path, report.to_json().as_bytes(), Durability::Cached).map_err(|e| e.to_string())?;
    }
    Ok(report.outcome())
}

fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Equal => ExitCode::SUCCESS,
        Outcome::Mismatch => ExitCode::from(1),
        Outcome::Unreadable => ExitCode::from(2),
    }
}

/// Prints what `inspect` found; a report, so profiles rejecting nodes still exit 0.
fn run_inspect(cmd: &InspectCommand) -> Result<Outcome, String> {
    let model = model_io::read_structure(&cmd.model).map_err(|e| e.to_string())?;
    let target = cmd.target.as_deref().map(Profile::by_name).transpose().map_err(|e| e.to_string())?;
    let inspection = inspect::inspect(&model, target.as_ref(), &cmd.input_shape).map_err(|e| e.to_string())?;
    if cmd.json {
        say(&serde_json::to_string_pretty(&inspection).map_err(|e| e.to_string())?);
    } else {
        say(inspection.to_string().trim_end());
    }
    Ok(Outcome::Equal)
}

fn run(cli: Cli) -> Result<Outcome, String> {
    if let Some(Command::Inspect(cmd)) = &cli.command {
        return run_inspect(cmd);
    }
    if let Some(Command::Verify(cmd)) = cli.command {
        let d = &cmd.decoder;
        let decoder = DecoderOverrides {
            heatmaps: d.heatmaps.clone(),
            offsets: d.offsets.clone(),
            stride: d.stride,
            scores: d.scores.as_deref().and_then(ScoreMode::parse),
            output: d.output_name.clone(),
        };
        let options = cmd.verification.options(decoder, d.input_shape.clone());
        return run_verification(&cmd.original, &cmd.rewritten, &options, cmd.verification.json.as_deref());
    }
    let (Some(input), Some(output)) = (cli.input, cli.output) else {
        return Err("IN and OUT are required".into());
    };
    if !cli.verify {
        if let Some(flag) = cli.verification.first_given() {
            return Err(format!("{flag} only applies with --verify (or the verify subcommand)"));
        }
    }
    let rewritten = rewrite::rewrite_file(&input, &output, &cli.rewrite.options(), cli.rewrite.output_options())
        .map_err(|e| e.to_string())?;
    say(&describe(&output, &rewritten));
    for note in &rewritten.notes {
        say(&format!("note: {note}"));
    }
    if !cli.verify {
        return Ok(Outcome::Equal);
    }
    let options = cli.verification.options(DecoderOverrides::default(), cli.rewrite.input_shape.clone());
    run_verification(&input, &output, &options, cli.verification.json.as_deref())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(outcome) => exit_code(outcome),
        Err(e) => {
            // One line, whatever a hostile model's names hold.
            eprintln!("error: {}", e.replace(['\n', '\r'], " "));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
