//! The browser page's saving (issue 12), headless: `web/test/run.mjs --measure-only` opens the
//! page (web/, built by web/build.sh) in Debian's headless Chromium and has it measure, in one
//! run per backend and input size, the original model with its four heads read back and a
//! plain-JS single-pose decode against the rewritten model (`--prune`) read back `keypoints`
//! only: median frame time and bytes per frame, onnxruntime-web on WebGL (SwiftShader: a
//! software GPU, slow in absolute terms) and wasm, at the model's 257 and at 513. Needs
//! chromium and the npm packages of conformance/legs/ort_web (its setup.sh installs both).

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::models::Workspace;

#[derive(Deserialize)]
struct Row {
    backend: String,
    size: usize,
    frames: usize,
    original_ms: f64,
    rewritten_ms: f64,
    time_ratio: f64,
    original_bytes: u64,
    rewritten_bytes: u64,
    bytes_ratio: f64,
}

pub fn section(ws: &Workspace, frames: usize) -> String {
    let run = |what: &str, cmd: &mut Command| {
        let status = cmd.current_dir(&ws.repo).status().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(status.success(), "{what} failed ({status})");
    };
    run("web/build.sh", Command::new("bash").arg("web/build.sh"));
    let out = ws.dir.join("web");
    run(
        "web/test/run.mjs --measure-only",
        Command::new("node")
            .args(["web/test/run.mjs", "--measure-only", "--warmup", "2", "--frames"])
            .arg(frames.to_string())
            .arg("--out")
            .arg(&out),
    );
    let text = std::fs::read_to_string(out.join("saving.json")).expect("saving.json");
    let rows: Vec<Row> = serde_json::from_str(&text).expect("the page's measurement");
    table(&rows, &out.join("page.png"))
}

fn table(rows: &[Row], screenshot: &Path) -> String {
    let mut md = String::from(
        "onnxruntime-web in headless Chromium, per frame: the original model + its four heads read \
         back + a plain-JS single-pose decode (as tfjs posenet), against the rewritten model \
         (`--prune`) reading back `keypoints` only; medians, interleaved in one run. WebGL is \
         SwiftShader, a software GPU: slow in absolute terms.\n\n\
         | backend | input | frames | original + heads + JS decode | rewritten, keypoints only | time ratio | bytes read back | bytes ratio |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md += &format!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.2}x | {} vs {} | {:.0}x |\n",
            r.backend,
            r.size,
            r.frames,
            r.original_ms,
            r.rewritten_ms,
            r.time_ratio,
            r.original_bytes,
            r.rewritten_bytes,
            r.bytes_ratio
        );
    }
    md + &format!("\nScreenshot: `{}`.\n", screenshot.display())
}
