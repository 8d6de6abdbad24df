//! Verification throughput: `onnx_posefix::verify` on the real model and the photos.

use std::path::Path;
use std::time::Instant;

use onnx_posefix::verify::{self, Event, InputKind, VerifyOptions};

use crate::models::Workspace;
use crate::report::{ms, secs};

/// Inputs per second of a full verification, by kind of input, over `rounds` runs.
pub fn section(ws: &Workspace, images: &Path, rounds: usize) -> String {
    let rewritten = ws.path("verify.posefix.onnx");
    ws.rewrite(&ws.real_model(), &rewritten, false);
    let options = VerifyOptions { images: vec![images.to_path_buf()], ..VerifyOptions::default() };
    // The fastest run is the one least disturbed by the rest of the machine: its total seconds,
    // the seconds of each input, and its report.
    type Run = (f64, Vec<(InputKind, f64)>, verify::Report);
    let mut best: Option<Run> = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut last = start;
        let mut per_input = vec![];
        let report = verify::verify_files(&ws.real_model(), &rewritten, &options, &mut |event| {
            let now = Instant::now();
            match event {
                Event::Start { .. } => {}
                Event::Input(result) => per_input.push((result.kind, (now - last).as_secs_f64())),
            }
            last = now;
        })
        .expect("verification runs");
        assert_eq!(report.summary.mismatched, 0, "the rewritten real model must verify");
        let total = start.elapsed().as_secs_f64();
        eprintln!("verify: {} inputs in {total:.2} s", per_input.len());
        if best.as_ref().is_none_or(|b| total < b.0) {
            best = Some((total, per_input, report));
        }
    }
    let (total, per_input, report) = best.expect("at least one round");
    let s = &report.summary;
    let mut md = String::from("| inputs | count | time | per input | inputs per second |\n|---|---:|---:|---:|---:|\n");
    for (kind, label) in [
        (InputKind::Photo, "photos (decode, resize, both models, reference, compare)"),
        (InputKind::Adversarial, "built-in adversarial images (both models)"),
        (InputKind::Direct, "crafted heads (decoder alone)"),
    ] {
        let times: Vec<f64> = per_input.iter().filter(|(k, _)| *k == kind).map(|(_, t)| *t).collect();
        if times.is_empty() {
            continue;
        }
        let sum: f64 = times.iter().sum();
        md += &format!(
            "| {label} | {} | {} s | {} ms | {:.1} |\n",
            times.len(),
            secs(sum),
            ms(sum / times.len() as f64),
            times.len() as f64 / sum
        );
    }
    md += &format!(
        "| whole run (setup: both models read and optimized, {} s) | {} | {} s | | {:.1} |\n",
        secs(s.setup_seconds),
        per_input.len(),
        secs(total),
        per_input.len() as f64 / total
    );
    md += &format!(
        "\n`onnx_posefix::verify::verify_files` on `models/` and its rewrite, the {} photos of `../shared/images`; \
         fastest of {rounds} runs, per-input times from its progress events. verify's own summary: {:.1} inputs/s \
         over {} s of checks.\n",
        s.photos,
        s.inputs_per_second,
        secs(s.seconds)
    );
    md
}
