//! The thin binary: parse arguments, call the library, print, map the outcome to an exit code
//! (0 done, 1 verification mismatch, 2 bad input or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};
use onnx_posefix::contract::ScoreMode;
use onnx_posefix::heads::HeadChoice;
use onnx_posefix::rewrite::{self, InputShape, RewriteOptions, Rewritten};

#[derive(Parser, Debug)]
#[command(
    name = "onnx-posefix",
    version,
    about = "Rewrite a PoseNet ONNX model so it outputs decoded keypoints using only portable ops",
    rename_all = "kebab-case"
)]
struct Cli {
    /// The PoseNet model to read (never modified, unless it is OUT and --force is given).
    input: PathBuf,
    /// Where to write the rewritten model (written whole or not at all).
    output: PathBuf,
    #[command(flatten)]
    rewrite: RewriteArgs,
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
        }
    }
}

fn describe(out: &std::path::Path, r: &Rewritten) -> String {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match rewrite::rewrite_file(&cli.input, &cli.output, &cli.rewrite.options(), cli.rewrite.force) {
        Ok(r) => {
            println!("{}", describe(&cli.output, &r));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
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
