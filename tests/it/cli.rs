//! The binary on good and bad input: one clear line on stderr and exit code 2 for every bad
//! input, no panic, IN untouched, and no partial OUT.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use onnx_posefix::model::proto;
use onnx_posefix::onnx_protobuf::Message;
use onnx_posefix::testing::synthetic::{self, SyntheticSpec};
use tempfile::TempDir;

use crate::common::{real_model_path, run_cli, stderr, stdout};

/// Runs `onnx-posefix IN OUT extra...` expecting a refusal; checks the error contract and returns
/// the error line.
fn refuse(input: &Path, output: &Path, extra: &[&str]) -> String {
    let before = fs::read(input).ok();
    let existed = output.exists();
    let mut args = vec![input.as_os_str().to_owned(), output.as_os_str().to_owned()];
    args.extend(extra.iter().map(|a| a.into()));
    let out = run_cli(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "exit code for {input:?}: stderr {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    assert_eq!(fs::read(input).ok(), before, "IN was modified");
    if !existed {
        assert!(!output.exists(), "a partial OUT was left behind");
    }
    if let Some(dir) = output.parent().filter(|d| d.is_dir()) {
        let leftovers: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".posefix-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    err
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn synthetic_file(dir: &TempDir, name: &str, spec: &SyntheticSpec) -> PathBuf {
    write(dir, name, &synthetic::generate(spec).write_to_bytes().unwrap())
}

#[test]
fn rewrites_the_real_model() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.onnx");
    let before = fs::read(real_model_path()).unwrap();
    let run = run_cli(&[real_model_path().as_os_str(), out.as_os_str()]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(stdout(&run).contains("stride 16"), "{}", stdout(&run));
    assert_eq!(fs::read(real_model_path()).unwrap(), before);
    let rewritten = onnx_posefix::model::io::read_model(&out).unwrap();
    assert_eq!(rewritten.proto().graph.as_ref().unwrap().output.last().unwrap().name, "keypoints");
}

#[test]
fn unreadable_and_invalid_files() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.onnx");
    let err = refuse(&dir.path().join("missing.onnx"), &out, &[]);
    assert!(err.contains("missing.onnx"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");

    let empty = write(&dir, "empty.onnx", b"");
    assert!(refuse(&empty, &out, &[]).contains("empty"));

    let real = fs::read(real_model_path()).unwrap();
    let truncated = write(&dir, "truncated.onnx", &real[..real.len() / 2]);
    assert!(refuse(&truncated, &out, &[]).contains("not a valid ONNX model"));

    let mut rng = onnx_posefix::testing::rng::Rng::new(11);
    for i in 0..5 {
        let noise: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        let random = write(&dir, &format!("random{i}.onnx"), &noise);
        refuse(&random, &out, &[]);
    }
    let text = write(&dir, "text.onnx", b"this is not a model\n");
    refuse(&text, &out, &[]);
    refuse(dir.path(), &out, &[]);
}

#[test]
fn models_without_usable_heads() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.onnx");

    // Heads removed: only the displacement outputs remain.
    let mut model = synthetic::generate(&SyntheticSpec::posenet(11));
    model.graph.as_mut().unwrap().output.retain(|o| o.name.starts_with("displacement"));
    let headless = write(&dir, "headless.onnx", &model.write_to_bytes().unwrap());
    let err = refuse(&headless, &out, &[]);
    assert!(err.contains("no pose heads"), "{err}");

    // Two 17-channel outputs on the same grid, neither named like heatmaps.
    let mut model = synthetic::generate(&SyntheticSpec::posenet(11));
    let graph = model.graph.as_mut().unwrap();
    let heat = graph.output.iter().position(|o| o.name == "heatmaps").unwrap();
    let mut twin = graph.output[heat].clone();
    twin.name = "twin".into();
    graph.node.push(proto::node("Identity", "twin_node", &["heatmaps"], &["twin"], vec![]));
    graph.output.push(twin);
    graph.output[heat].name = "maps".into();
    for n in graph.node.iter_mut() {
        for o in n.output.iter_mut().chain(n.input.iter_mut()) {
            if o == "heatmaps" {
                *o = "maps".into();
            }
        }
    }
    let ambiguous = write(&dir, "ambiguous.onnx", &model.write_to_bytes().unwrap());
    let err = refuse(&ambiguous, &out, &[]);
    assert!(err.contains("ambiguous") && err.contains("--heatmaps maps --offsets offsets"), "{err}");
    let ok = run_cli(&[ambiguous.as_os_str(), out.as_os_str(), "--heatmaps".as_ref(), "twin".as_ref()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let err = refuse(&ambiguous, &dir.path().join("o2.onnx"), &["--heatmaps", "nope"]);
    assert!(err.contains("--heatmaps nope"), "{err}");
}

#[test]
fn symbolic_dims_opsets_and_external_data() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.onnx");
    let mut model = synthetic::generate(&SyntheticSpec::posenet(11));
    let graph = model.graph.as_mut().unwrap();
    let dims =
        [proto::Dim::Fixed(1), proto::Dim::Fixed(3), proto::Dim::Symbol("H".into()), proto::Dim::Symbol("W".into())];
    proto::set_declared_shape(&mut graph.input[0], &dims);
    for o in graph.output.iter_mut() {
        proto::set_declared_shape(
            o,
            &[proto::Dim::Unknown, proto::Dim::Unknown, proto::Dim::Unknown, proto::Dim::Unknown],
        );
    }
    let symbolic = write(&dir, "symbolic.onnx", &model.write_to_bytes().unwrap());
    let err = refuse(&symbolic, &out, &[]);
    assert!(err.contains("--input-shape"), "{err}");
    // A malformed flag is clap's usage error: first line says what, exit 2.
    let bad = run_cli(&[symbolic.as_os_str(), out.as_os_str(), "--input-shape".as_ref(), "1,3,x,257".as_ref()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).lines().next().unwrap().contains("--input-shape"), "{}", stderr(&bad));
    let pinned = run_cli(&[symbolic.as_os_str(), out.as_os_str(), "--input-shape".as_ref(), "1,3,257,353".as_ref()]);
    assert_eq!(pinned.status.code(), Some(0), "{}", stderr(&pinned));
    assert!(stdout(&pinned).contains("17x23 grid"), "{}", stdout(&pinned));

    let mut old = synthetic::generate(&SyntheticSpec::posenet(9));
    old.opset_import[0].version = 8;
    let old = write(&dir, "opset8.onnx", &old.write_to_bytes().unwrap());
    assert!(refuse(&old, &dir.path().join("o8.onnx"), &[]).contains("opset 8"));

    let mut external = synthetic::generate(&SyntheticSpec::posenet(11));
    let t = &mut external.graph.as_mut().unwrap().initializer[0];
    t.raw_data.clear();
    t.external_data.push(proto::metadata_entry("location", "weights.bin"));
    let external = write(&dir, "external.onnx", &external.write_to_bytes().unwrap());
    assert!(refuse(&external, &dir.path().join("oe.onnx"), &[]).contains("external"));
}

#[test]
fn output_paths() {
    let dir = TempDir::new().unwrap();
    let input = synthetic_file(&dir, "in.onnx", &SyntheticSpec::posenet(13));

    let err = refuse(&input, &dir.path().join("no/such/dir/out.onnx"), &[]);
    assert!(err.contains("cannot write"), "{err}");
    // The cause once, and no temporary file's name: the user named out.onnx.
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(!err.contains(".posefix-"), "{err}");
    let err = refuse(&input, dir.path(), &[]);
    assert!(err.contains("cannot write"), "{err}");

    let err = refuse(&input, &input, &[]);
    assert!(err.contains("--force"), "{err}");
    // `./in.onnx` and a hard link are the same file too.
    let link = dir.path().join("link.onnx");
    fs::hard_link(&input, &link).unwrap();
    assert!(refuse(&input, &link, &[]).contains("same file"));
    fs::remove_file(&link).unwrap();

    let forced = run_cli(&[input.as_os_str(), input.as_os_str(), "--force".as_ref()]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    let replaced = onnx_posefix::model::io::read_model(&input).unwrap();
    assert!(onnx_posefix::model::query::provenance(replaced.proto()).is_some());

    // Rewriting it again is refused, and says why.
    let err = refuse(&input, &dir.path().join("twice.onnx"), &[]);
    assert!(err.contains("already has an onnx-posefix decoder"), "{err}");
}

#[test]
fn existing_output_is_replaced_whole() {
    let dir = TempDir::new().unwrap();
    let input = synthetic_file(&dir, "in.onnx", &SyntheticSpec::posenet(11));
    let out = write(&dir, "out.onnx", b"old contents");
    // A failed rewrite leaves the old OUT alone...
    let bad = write(&dir, "bad.onnx", b"\x08\x07garbage");
    refuse(&bad, &out, &[]);
    assert_eq!(fs::read(&out).unwrap(), b"old contents");
    // ...a successful one replaces it.
    let run = run_cli(&[input.as_os_str(), out.as_os_str(), "--prune".as_ref()]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(stdout(&run).contains("pruned"), "{}", stdout(&run));
    onnx_posefix::model::io::read_model(&out).unwrap();
}

#[test]
fn fsync_writes_the_same_bytes() {
    let dir = TempDir::new().unwrap();
    let (cached, synced) = (dir.path().join("cached.onnx"), dir.path().join("synced.onnx"));
    for (out, extra) in [(&cached, None), (&synced, Some("--fsync"))] {
        let mut args = vec![real_model_path().into_os_string(), out.clone().into_os_string()];
        args.extend(extra.map(Into::into));
        let run = run_cli(&args);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    }
    assert!(fs::read(&cached).unwrap() == fs::read(&synced).unwrap(), "--fsync changed the output");
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "temporary files left: {names:?}");
}

/// `onnx-posefix args... bad...` on the real model (IN present, OUT free) exits 2 with `message`
/// in the first line of stderr and writes no `out`, and the same run without `bad` succeeds: the
/// refusal is `bad`'s, not a missing file's.
fn usage_error(args: &[&OsStr], out: Option<&Path>, bad: &[&str], message: &str) {
    let with_bad: Vec<&OsStr> = args.iter().copied().chain(bad.iter().map(OsStr::new)).collect();
    let run = run_cli(&with_bad);
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(2), "{bad:?}: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains(message), "{bad:?}: wanted {message:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(stdout(&run).is_empty(), "{bad:?}: {}", stdout(&run));
    assert!(out.is_none_or(|out| !out.exists()), "{bad:?}: OUT was written");
    let control = run_cli(args);
    assert_eq!(control.status.code(), Some(0), "without {bad:?}: {}", stderr(&control));
    if let Some(out) = out {
        fs::remove_file(out).expect("the control run wrote OUT");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new().unwrap();
    let real = real_model_path();
    let out = dir.path().join("out.onnx");
    let rewrite: [&OsStr; 2] = [real.as_os_str(), out.as_os_str()];
    let cases: [(&[&str], &str); 4] = [
        (&["--scores", "maybe"], "invalid value 'maybe' for '--scores"),
        (&["--target", "nope"], "invalid value 'nope' for '--target"),
        (&["--no-such-flag"], "unexpected argument '--no-such-flag'"),
        // Parsed by clap, refused by the binary: verification flags without --verify.
        (&["--images", "samples"], "--images only applies with --verify"),
    ];
    for (bad, message) in cases {
        usage_error(&rewrite, Some(&out), bad, message);
    }
    // inspect refuses its own bad flags the same way.
    let inspect: [&OsStr; 2] = ["inspect".as_ref(), real.as_os_str()];
    usage_error(&inspect, None, &["--target", "nope"], "invalid value 'nope' for '--target");
    usage_error(&inspect, None, &["--input-shape", "1,x"], "--input-shape");
    // Missing arguments: nothing to run without the bad part, so no control run.
    for (args, message) in [
        (vec![], "the following required arguments were not provided"),
        (vec![real.as_os_str()], "the following required arguments were not provided"),
        (vec!["verify".as_ref(), real.as_os_str()], "the following required arguments were not provided"),
    ] {
        let run = run_cli(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
        assert!(stderr(&run).lines().next().unwrap_or_default().contains(message), "{args:?}: {}", stderr(&run));
    }
}

#[test]
fn target_profiles_stop_a_decoder_they_cannot_run() {
    let dir = TempDir::new().unwrap();
    let input = synthetic_file(&dir, "op18.onnx", &SyntheticSpec::posenet(18));
    let err = refuse(&input, &dir.path().join("out.onnx"), &["--target", "tensorrt-8.4"]);
    assert!(err.contains("tensorrt-8.4") && err.contains("opset 13 or lower"), "{err}");
    // The default (portable) target takes it.
    let ok = run_cli(&[input.as_os_str(), dir.path().join("out.onnx").as_os_str()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let unknown =
        run_cli(&[input.as_os_str(), dir.path().join("o.onnx").as_os_str(), "--target".as_ref(), "nope".as_ref()]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn inspect_describes_models_and_reports_rejected_nodes() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.onnx");
    let run = run_cli(&[real_model_path().as_os_str(), out.as_os_str()]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let text = run_cli(&["inspect".as_ref(), out.as_os_str()]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("decoder: present") && text.contains("stride 16"), "{text}");
    let json =
        run_cli(&["inspect".as_ref(), out.as_os_str(), "--json".as_ref(), "--target".as_ref(), "opencv-4.x".as_ref()]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["heads"]["layout"], "NCHW", "{value}");
    assert_eq!(value["profiles"].as_array().unwrap().len(), 1);
    let bad = write(&dir, "bad.onnx", b"garbage");
    let run = run_cli(&["inspect".as_ref(), bad.as_os_str()]);
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(stderr(&run).lines().count(), 1, "{}", stderr(&run));
}

/// The binary run with `umask` set for it alone.
#[cfg(unix)]
fn run_with_umask(umask: u32, args: &[&std::ffi::OsStr]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_onnx-posefix"));
    cmd.args(args);
    // Safety: umask is async-signal-safe and touches nothing but the child's mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    cmd.output().expect("run onnx-posefix")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn out_gets_the_mode_a_user_expects() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let input = synthetic_file(&dir, "in.onnx", &SyntheticSpec::posenet(11));
    let rewrite = |umask: u32, out: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![input.as_os_str(), out.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let run = run_with_umask(umask, &args);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    };
    // A new OUT: 0666 less the umask, as `cp` and `onnx.save` give.
    let out = dir.path().join("new.onnx");
    rewrite(0o022, &out, &[]);
    assert_eq!(mode(&out), 0o644);
    let out = dir.path().join("new_027.onnx");
    rewrite(0o027, &out, &[]);
    assert_eq!(mode(&out), 0o640);
    // A replaced OUT keeps its mode, whatever the umask.
    let out = dir.path().join("replaced.onnx");
    fs::write(&out, b"old").unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o604)).unwrap();
    rewrite(0o077, &out, &[]);
    assert_eq!(mode(&out), 0o604);
    assert_ne!(fs::read(&out).unwrap(), b"old");
    // --force onto IN keeps IN's mode.
    fs::set_permissions(&input, fs::Permissions::from_mode(0o640)).unwrap();
    rewrite(0o022, &input.clone(), &["--force"]);
    assert_eq!(mode(&input), 0o640);
    // No temporary file is left behind.
    let debris: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".posefix-"))
        .collect();
    assert!(debris.is_empty(), "{debris:?}");
}
