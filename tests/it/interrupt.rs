//! An interrupted rewrite leaves OUT whole or absent and no temporary file behind
//! (`src/model/temporary.rs`). The binary is paused while its temporary file exists
//! (`POSEFIX_TEST_PAUSE_MS`) and signalled then, in both forms of the file: unnamed (`O_TMPFILE`,
//! Linux) and named (`POSEFIX_TEST_NAMED_TEMPORARY`, the fallback elsewhere). The binary knows
//! both variables only with the `testing` feature, which `cargo test` turns on (the crate's
//! dev-dependency on itself) for the binary it builds for these tests too.
#![cfg(unix)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::real_model_path;

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "in.onnx")
        .collect();
    names.sort();
    names
}

/// The binary rewriting `dir/in.onnx` to `dir/out.onnx`, paused for 20 s once its temporary
/// file exists.
fn paused_rewrite(dir: &Path, named: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onnx-posefix"));
    cmd.arg(dir.join("in.onnx")).arg(dir.join("out.onnx")).env("POSEFIX_TEST_PAUSE_MS", "20000");
    if named {
        cmd.env("POSEFIX_TEST_NAMED_TEMPORARY", "1");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// Waits until the paused binary has made its temporary file: a named one shows in `dir`; an
/// unnamed one shows as a `/proc` fd link to `dir/#N (deleted)`.
fn wait_for_temporary(child: &Child, dir: &Path, named: bool) {
    let started = Instant::now();
    let made = || {
        if named {
            return leftovers(dir).iter().any(|n| n.starts_with(".posefix-"));
        }
        let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id())).into_iter().flatten();
        fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|target| target.starts_with(dir) && target.to_string_lossy().ends_with("(deleted)"))
    };
    while !made() {
        // The pause is the `testing` feature's (src/model/temporary.rs), which test builds have.
        assert!(started.elapsed() < Duration::from_secs(30), "no temporary file appeared, or the binary did not pause");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signalled(named: bool, signal: i32) -> (Option<i32>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(real_model_path(), dir.path().join("in.onnx")).unwrap();
    let mut child = paused_rewrite(dir.path(), named);
    wait_for_temporary(&child, dir.path(), named);
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = child.wait().unwrap();
    (status.code(), leftovers(dir.path()))
}

#[test]
fn sigint_and_sigterm_remove_the_temporary_file_and_exit_130_or_143() {
    for named in [false, true] {
        for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
            let (status, left) = signalled(named, signal);
            assert_eq!(status, Some(code), "named {named}, signal {signal}");
            assert!(left.is_empty(), "named {named}, signal {signal}: left {left:?}");
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn sigkill_leaves_nothing_when_the_temporary_file_is_unnamed() {
    let (status, left) = signalled(false, libc::SIGKILL);
    assert_eq!(status, None, "killed");
    assert!(left.is_empty(), "left {left:?}");
    // What the unnamed form avoids: the named one cannot be cleaned up after SIGKILL.
    let (_, left) = signalled(true, libc::SIGKILL);
    assert!(left.len() == 1 && left[0].starts_with(".posefix-"), "{left:?}");
}
