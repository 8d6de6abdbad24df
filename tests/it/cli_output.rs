//! What the binary prints, whole: stdout, stderr and the exit code of real invocations, as
//! snapshots (`snapshots/cli_*.snap`), so that a changed word, a line too many or a wrong exit code
//! shows in review (`cargo insta review`, or `INSTA_UPDATE=always` and `git diff snapshots/`).
//!
//! What varies from run to run, from machine to machine or with the decoder's build is masked
//! before the snapshot: the temporary folder (`[TMP]`), the repository (`[REPO]`), timings, the
//! count of nodes a rewrite appends (the decoders' internals, snapshotted as graphs in
//! `rewrite.rs`), score errors (float noise) and what a MISMATCH line says of each keypoint (which
//! `verify.rs` checks on exact heads). `inspect`'s profile reports are left to `profiles.rs`, and
//! `--help` is left out: its text is its own.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use onnx_posefix::onnx_protobuf::Message;
use onnx_posefix::testing::synthetic::{self, SyntheticSpec};
use tempfile::TempDir;

use crate::common::{real_model_path, repo_path, run_cli, snapshot_settings, stderr, stdout};

/// Replaces the number (digits and dots) that ends `text` just before each `suffix` with `[N]`.
fn mask_number_before(text: &str, suffix: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(suffix) {
        let head = &rest[..at];
        let number = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.').len();
        if number > 0 {
            out.push_str(&head[..head.len() - number]);
            out.push_str("[N]");
        } else {
            out.push_str(head);
        }
        out.push_str(suffix);
        rest = &rest[at + suffix.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces what follows each `prefix`, up to the next `;`, `,`, `)` or end of line, with `[N]`.
fn mask_after(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        let end = rest.find([';', ',', ')', '\n']).unwrap_or(rest.len());
        out.push_str("[N]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The run as one text: the exit code, stdout, stderr; paths, timings, appended node counts and
/// score errors masked, and the details of MISMATCH lines left out.
fn transcript(run: &std::process::Output, tmp: &Path) -> String {
    let mut text = format!("exit: {:?}\n--- stdout\n{}--- stderr\n{}", run.status.code(), stdout(run), stderr(run));
    // The longer path first: the temporary folder may lie inside the repository.
    let mut paths = [(tmp.display().to_string(), "[TMP]"), (repo_path("").display().to_string(), "[REPO]")];
    paths.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    for (path, mask) in paths {
        text = text.replace(path.trim_end_matches('/'), mask);
    }
    for suffix in [" nodes added", " inputs/s", " s, setup", " s)"] {
        text = mask_number_before(&text, suffix);
    }
    // Score errors are float noise of the machine's kernels; which keypoints a mismatch names,
    // and how far off, is checked by verify.rs (on heads whose numbers are exact).
    text = mask_after(&text, "max score error ");
    text.lines()
        .map(|line| match line.split_once(": ") {
            Some((input, _)) if line.starts_with("MISMATCH") => format!("{input}: [keypoints]\n"),
            _ => format!("{line}\n"),
        })
        .collect()
}

/// Runs the binary with `args` and snapshots its transcript as `cli_NAME`.
fn snapshot(name: &str, args: &[&OsStr], tmp: &TempDir) {
    snapshot_edited(name, args, tmp, str::to_string);
}

/// [`snapshot`] of the transcript as `edit` leaves it.
fn snapshot_edited(name: &str, args: &[&OsStr], tmp: &TempDir, edit: impl Fn(&str) -> String) {
    let text = edit(&transcript(&run_cli(args), tmp.path()));
    snapshot_settings().bind(|| insta::assert_snapshot!(format!("cli_{name}"), text));
}

/// `inspect`'s text without its profile reports, which `profiles.rs` snapshots with the profiles
/// (`inspect_real_posenet_mobilenet075_257`): their wording moves with the profiles' data.
fn without_profile_reports(text: &str) -> String {
    let mut in_profiles = false;
    let mut out = String::new();
    for line in text.lines() {
        if line == "profiles:" {
            in_profiles = true;
            out.push_str("profiles: [reports left out]\n");
            continue;
        }
        in_profiles &= line.starts_with(' ');
        if !in_profiles {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn masking_keeps_everything_else() {
    assert_eq!(
        mask_number_before("a 12 nodes added, 3 nodes added; 1.5 inputs/s (0.25 s, setup 2 s)", " nodes added"),
        "a [N] nodes added, [N] nodes added; 1.5 inputs/s (0.25 s, setup 2 s)"
    );
    assert_eq!(mask_number_before("x nodes added", " nodes added"), "x nodes added");
    assert_eq!(
        without_profile_reports("decoder: none\nprofiles:\n  a: b\n    proof: c\n--- stderr\n"),
        "decoder: none\nprofiles: [reports left out]\n--- stderr\n"
    );
    assert_eq!(
        mask_after("max score error 4.8e-7; 3 max score error 0\nx", "max score error "),
        "max score error [N]; 3 max score error [N]\nx"
    );
}

#[test]
fn rewrite_inspect_and_verify() {
    let tmp = TempDir::new().unwrap();
    let real = real_model_path();
    let out = tmp.path().join("out.onnx");
    snapshot("rewrite_real_model", &[real.as_os_str(), out.as_os_str()], &tmp);
    let pixels = tmp.path().join("pixels.onnx");
    snapshot(
        "rewrite_real_model_pixels",
        &[
            real.as_os_str(),
            pixels.as_os_str(),
            "--pixels".as_ref(),
            "byte".as_ref(),
            "--preprocess".as_ref(),
            "mobilenet".as_ref(),
            "--prune".as_ref(),
        ],
        &tmp,
    );
    snapshot_edited("inspect_real_model", &["inspect".as_ref(), real.as_os_str()], &tmp, without_profile_reports);
    snapshot("verify_real_model", &["verify".as_ref(), real.as_os_str(), out.as_os_str()], &tmp);
    // The same rewrite judged with the wrong stride: keypoints off, exit 1.
    snapshot(
        "verify_mismatch",
        &["verify".as_ref(), real.as_os_str(), out.as_os_str(), "--stride".as_ref(), "8".as_ref()],
        &tmp,
    );
    // A photo that is not one: UNREADABLE, exit 2, the rest still checked.
    let photo = tmp.path().join("not-a-photo.jpg");
    fs::write(&photo, b"not a JPEG").unwrap();
    snapshot(
        "verify_unreadable_photo",
        &["verify".as_ref(), real.as_os_str(), out.as_os_str(), "--images".as_ref(), photo.as_os_str()],
        &tmp,
    );
}

#[test]
fn errors() {
    let tmp = TempDir::new().unwrap();
    let real = real_model_path();
    let out = tmp.path().join("out.onnx");
    snapshot("error_usage", &[real.as_os_str(), out.as_os_str(), "--scores".as_ref(), "maybe".as_ref()], &tmp);
    snapshot(
        "error_images_without_verify",
        &[real.as_os_str(), out.as_os_str(), "--images".as_ref(), "samples".as_ref()],
        &tmp,
    );
    let missing = tmp.path().join("missing.onnx");
    snapshot("error_missing_file", &[missing.as_os_str(), out.as_os_str()], &tmp);
    let garbage = tmp.path().join("garbage.onnx");
    fs::write(&garbage, b"\x08\x07garbage").unwrap();
    snapshot("error_not_a_model", &[garbage.as_os_str(), out.as_os_str()], &tmp);
    let mut model = synthetic::generate(&SyntheticSpec::posenet(11));
    model.graph.as_mut().unwrap().output.retain(|o| o.name.starts_with("displacement"));
    let headless = tmp.path().join("headless.onnx");
    fs::write(&headless, model.write_to_bytes().unwrap()).unwrap();
    snapshot("error_no_heads", &[headless.as_os_str(), out.as_os_str()], &tmp);
    let rewritten = tmp.path().join("rewritten.onnx");
    assert_eq!(run_cli(&[real.as_os_str(), rewritten.as_os_str()]).status.code(), Some(0));
    snapshot("error_already_rewritten", &[rewritten.as_os_str(), out.as_os_str()], &tmp);
    snapshot("error_same_file", &[real.as_os_str(), real.as_os_str()], &tmp);
    let op18 = tmp.path().join("op18.onnx");
    fs::write(&op18, synthetic::generate(&SyntheticSpec::posenet(18)).write_to_bytes().unwrap()).unwrap();
    snapshot(
        "error_target_refuses",
        &[op18.as_os_str(), out.as_os_str(), "--target".as_ref(), "tensorrt-8.4".as_ref()],
        &tmp,
    );
    let no_dir = tmp.path().join("no/such/dir/out.onnx");
    snapshot("error_cannot_write", &[real.as_os_str(), no_dir.as_os_str()], &tmp);
    assert!(!out.exists(), "a refused run wrote OUT");
}
