//! Benchmarks of onnx-posefix: rewrite speed and memory against a copy floor and a Python peer,
//! how the rewrite scales with model size and heatmap area, the in-graph decoders' share of
//! inference in tract (and the multi-pose one's in onnxruntime), and verification throughput. Each figure is set against its comparison
//! in the same run, interleaved, because machines are noisy.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench posefix -- [--quick] [--full] [SECTION...]
//! ```
//!
//! SECTION is `rewrite`, `scaling`, `inference`, `multipose`, `verify`, `nodes` (the decoders'
//! node counts and critical paths) or `web` (in headless Chromium, only when named: the per-node
//! cost per backend, the decoder alone against read-back + JS, the page's saving) (default: all
//! but `web`). `--quick` runs fewer
//! rounds (a smoke test); `--full` adds the ResNet50-sized models at 1025x1025 to `inference`.
//! Markdown goes to stdout; a full run also writes `benchmarks/results.md` and the plots
//! `benchmarks/*.png`. Environment: `POSEFIX_BIN` (the binary under test; default the one cargo
//! built with this bench), `POSEFIX_BENCH_DIR` (scratch models and the peer's venv; default
//! `<target dir>/posefix-bench`), `PYTHON` (base interpreter of the venv).

mod inference;
mod measure;
mod models;
mod multi_pose;
mod nodes;
mod peer;
mod plot;
mod report;
mod rewriting;
mod throughput;
mod web;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use models::Workspace;

const SECTIONS: [&str; 7] = ["rewrite", "scaling", "inference", "multipose", "verify", "nodes", "web"];
/// What runs when no section is named: all but `web`, which needs Chromium and the npm packages
/// of conformance/legs/ort_web and conformance/tfjs (their setup installs them) and takes about
/// 15 minutes on 2 cores (6 without the page's whole-model saving: `POSEFIX_WEB_SAVING=0`).
const DEFAULT_SECTIONS: usize = 6;

/// `--copy IN OUT [--fsync]`, the floor: the bytes through memory, written the way the tool
/// writes.
fn copy(from: &str, to: &str, fsync: bool) {
    use onnx_posefix::model::io::{write_atomically, Durability};
    let bytes = fs::read(from).unwrap_or_else(|e| panic!("cannot read {from}: {e}"));
    let durability = if fsync { Durability::Synced } else { Durability::Cached };
    write_atomically(Path::new(to), &bytes, durability).unwrap_or_else(|e| panic!("{e}"));
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores; source `{commit}`")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--copy") => return copy(&args[1], &args[2], args.get(3).is_some_and(|a| a == "--fsync")),
        Some(measure::MEASURE_FLAG) => return measure::measure_main(&args[1..]),
        _ => {}
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it and
    // should not spend ten minutes here.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("posefix benchmarks: run them with `cargo bench --bench posefix`; skipping");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    let mut sections: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    if let Some(bad) = sections.iter().find(|s| !SECTIONS.contains(s)) {
        panic!("unknown section {bad}; choose from {SECTIONS:?}");
    }
    if sections.is_empty() {
        sections = SECTIONS[..DEFAULT_SECTIONS].to_vec();
    }

    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let built = PathBuf::from(env!("CARGO_BIN_EXE_onnx-posefix"));
    let tool = std::env::var_os("POSEFIX_BIN").map(PathBuf::from).unwrap_or_else(|| built.clone());
    let dir = std::env::var_os("POSEFIX_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| {
        built.parent().and_then(Path::parent).expect("<target>/<profile>/onnx-posefix").join("posefix-bench")
    });
    fs::create_dir_all(&dir).expect("create the scratch directory");
    let ws = Workspace { repo: repo.clone(), dir: dir.clone(), tool };
    let rounds = if quick { 2 } else { 9 };
    let budget = if quick { 0.5 } else { 4.0 };
    // A quick run is a smoke test: its plots stay out of the repository.
    let plots = if quick { dir.clone() } else { repo.join("benchmarks") };
    let peer = sections
        .iter()
        .any(|s| *s == "rewrite" || *s == "scaling" || *s == "multipose")
        .then(|| peer::Peer::setup(&repo, &dir.join("peer-venv")));

    let mut md = format!(
        "<!-- written by `cargo bench --bench posefix`; do not edit -->\n\nMachine: {}. Tool under test: `{}`.\n\n",
        machine(),
        ws.tool.file_name().unwrap_or_default().to_string_lossy()
    );
    for section in &sections {
        eprintln!("== {section}");
        let (title, body) = match *section {
            "rewrite" => {
                ("Rewrite: tool vs copy floor vs Python peer", rewriting::section(&ws, peer.as_ref().unwrap(), rounds))
            }
            "scaling" => {
                ("Rewrite scaling", rewriting::scaling_section(&ws, peer.as_ref().unwrap(), rounds.min(5), &plots))
            }
            "inference" => ("Inference in tract: the in-graph decoder's cost", inference::section(&ws, budget, full)),
            "multipose" => (
                "Multi-pose: the decoder's cost in tract and onnxruntime",
                multi_pose::section(&ws, peer.as_ref().unwrap(), if quick { 3 } else { 25 }),
            ),
            "verify" => (
                "Verification throughput",
                throughput::section(&ws, &repo.join("../shared/images"), if quick { 1 } else { 3 }),
            ),
            "nodes" => ("The decoders' nodes and critical path", nodes::section(&ws)),
            "web" => (
                "The browser: per-node cost, the decoder alone against read-back + JS, the page's saving",
                web::section(&ws, if quick { 3 } else { 10 }, if quick { 5 } else { 20 }),
            ),
            _ => unreachable!(),
        };
        let text = format!("### {title}\n\n{body}\n");
        println!("{text}");
        md += &text;
    }
    let complete = SECTIONS[..DEFAULT_SECTIONS].iter().all(|s| sections.contains(s)) && !quick;
    let out = if complete { repo.join("benchmarks/results.md") } else { dir.join("results-partial.md") };
    fs::write(&out, md).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    eprintln!("wrote {}", out.display());
}
