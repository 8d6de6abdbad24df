//! The thin binary: parse arguments, call the library, print, map the outcome to an exit code
//! (0 done or all equal, 1 verification mismatch, 2 bad input or usage).

mod args;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use onnx_posefix::{
    inspect, one_line, read_structure, remove_temporaries_on_interrupt, rewrite_file, verify_files, write_atomically,
    DecoderOverrides, Durability, Event, Outcome, Profile, VerifyOptions,
};

use args::{Cli, Command, InspectCommand};

/// How a run ended, short of an error.
enum Exit {
    /// A rewrite, or an inspection (a report: profiles that reject nodes still exit 0).
    Done,
    Verified(Outcome),
}

/// Prints a line on stdout, flushed so that it shows as the input completes. A closed stdout
/// (`| head`) is no reason to panic or to stop: the exit code still tells the outcome.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A progress bar on stderr with rate and time left, for more than a handful of inputs on a
/// terminal; hidden otherwise, so that logs and pipes get the report lines only.
fn progress_bar(total: usize) -> ProgressBar {
    if total <= 8 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template("[{bar:30}] {pos}/{len} inputs, {per_sec}, {eta} left")
        .expect("a valid template")
        .progress_chars("#>.");
    bar.set_style(style);
    bar
}

/// Runs a verification, printing the header, a line per input (with a progress bar) and the
/// summary; writes `--json`.
fn run_verification(
    original: &Path,
    rewritten: &Path,
    options: &VerifyOptions,
    json: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let mut bar = ProgressBar::hidden();
    let mut on_event = |event: Event<'_>| match event {
        Event::Start { report, total } => {
            for line in report.header_lines() {
                say(&line);
            }
            bar = progress_bar(total);
        }
        Event::Input(result) => {
            bar.suspend(|| say(&result.line()));
            bar.inc(1);
        }
    };
    let report = verify_files(original, rewritten, options, &mut on_event)?;
    bar.finish_and_clear();
    for line in report.summary_lines() {
        say(&line);
    }
    if let Some(path) = json {
        write_atomically(path, report.to_json().as_bytes(), Durability::Cached)?;
    }
    Ok(report.outcome())
}

fn run_inspect(cmd: &InspectCommand) -> anyhow::Result<Exit> {
    let model = read_structure(&cmd.model)?;
    let target = cmd.target.as_deref().map(Profile::by_name).transpose()?;
    let inspection = inspect(&model, target.as_ref(), &cmd.input_shape)?;
    if cmd.json {
        say(&serde_json::to_string_pretty(&inspection).context("cannot encode the inspection as JSON")?);
    } else {
        say(inspection.to_string().trim_end());
    }
    Ok(Exit::Done)
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Some(Command::Inspect(cmd)) => return run_inspect(cmd),
        Some(Command::Verify(cmd)) => {
            let options = cmd.verification.options(cmd.decoder.overrides(), cmd.decoder.input_shape.clone());
            let json = cmd.verification.json.as_deref();
            return run_verification(&cmd.original, &cmd.rewritten, &options, json).map(Exit::Verified);
        }
        None => {}
    }
    let (Some(input), Some(output)) = (&cli.input, &cli.output) else {
        bail!("IN and OUT are required");
    };
    if !cli.verify {
        // --pixels prepends --preprocess, so that one applies to the rewrite too.
        let given = cli.verification.first_given().filter(|f| !(*f == "--preprocess" && cli.rewrite.pixels.is_some()));
        if let Some(flag) = given {
            bail!("{flag} only applies with --verify (or the verify subcommand)");
        }
    }
    let options = cli.rewrite.options(cli.verification.preprocess)?;
    let rewritten = rewrite_file(input, output, &options, cli.rewrite.output_options())?;
    say(&rewritten.summary(output));
    for note in rewritten.notes() {
        say(&format!("note: {note}"));
    }
    if !cli.verify {
        return Ok(Exit::Done);
    }
    let options = cli.verification.options(DecoderOverrides::default(), cli.rewrite.input_shape.clone());
    run_verification(input, output, &options, cli.verification.json.as_deref()).map(Exit::Verified)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C or SIGTERM mid-write: the temporary file goes, OUT stays whole or absent.
    if let Err(e) = remove_temporaries_on_interrupt() {
        eprintln!("warning: cannot watch for interrupts ({e}); an interrupted run may leave a .posefix-*.tmp file");
    }
    match run(cli) {
        Ok(Exit::Done | Exit::Verified(Outcome::Equal)) => ExitCode::SUCCESS,
        Ok(Exit::Verified(Outcome::Mismatch)) => ExitCode::from(1),
        Ok(Exit::Verified(Outcome::Unreadable)) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {}", one_line(e.as_ref()));
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
