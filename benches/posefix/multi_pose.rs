//! The multi-pose decoder's cost, in tract and in onnxruntime CPU (1 thread): the model with
//! `--poses N` against the same model with the single-pose decoder only (the difference is the
//! multi-pose decoder), against the original model, and against the original model plus the
//! Rust reference decoding the heads it hands out; and the bytes that leave the runtime per
//! frame either way.

use std::path::Path;
use std::process::Command;

use onnx_posefix::contract::{Provenance, NAME_PREFIX, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use onnx_posefix::reference::multi_pose::{decode_multiple_poses, to_fixed, HeadMaps, MultiPoseParams};
use onnx_posefix::testing::rng::Rng;
use onnx_posefix::tract_bridge::Runner;
use onnx_posefix::tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use onnx_posefix::tract_onnx::prelude::*;

use crate::measure::{interleaved, median, process_cpu};
use crate::models::{self, Workspace};
use crate::peer::Peer;
use crate::report::{ms, percent, ratio};

fn input(size: usize) -> Tensor {
    let mut rng = Rng::new(0x1A6E);
    ArrayD::from_shape_simple_fn(IxDyn(&[1, 3, size, size]), || rng.uniform(-1.0, 1.0)).into_tensor()
}

fn runner(path: &Path, size: usize) -> Runner {
    let bytes = std::fs::read(path).expect("read model");
    Runner::new(&bytes, &[vec![1, 3, size, size]]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn timed(runner: &Runner, x: &Tensor) -> (f64, TVec<Tensor>) {
    let inputs = vec![x.clone()];
    let start = process_cpu();
    let out = runner.run(inputs).expect("the model runs");
    (process_cpu() - start, out.into())
}

fn decoder_nodes(path: &Path) -> usize {
    let model = models::load(path);
    model.graph.as_ref().unwrap().node.iter().filter(|n| n.name.starts_with(NAME_PREFIX)).count()
}

/// onnxruntime's runs of `models`, interleaved: CPU seconds per round, per model.
fn ort_runs(peer: &Peer, rounds: usize, size: usize, models: &[&Path]) -> (String, Vec<Vec<f64>>) {
    let script = peer.script.with_file_name("ort_time.py");
    let out = Command::new(&peer.python)
        .arg(&script)
        .arg(rounds.to_string())
        .arg(size.to_string())
        .args(models)
        .output()
        .expect("run ort_time.py");
    assert!(out.status.success(), "ort_time.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ort_time.py prints JSON");
    let runs = json["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r.as_array().expect("a model's runs").iter().map(|v| v.as_f64().expect("seconds")).collect())
        .collect();
    (json["version"].as_str().unwrap_or("?").to_string(), runs)
}

/// Medians over rounds of the decoder's cost (`with - without`) over the original's time, and
/// of `with / (original + reference)`.
fn shares(original: &[f64], single: &[f64], multi: &[f64], reference: f64) -> (f64, f64, f64) {
    let cost: Vec<f64> = multi.iter().zip(single).map(|(m, s)| m - s).collect();
    let share: Vec<f64> = cost.iter().zip(original).map(|(c, o)| c / o).collect();
    let against: Vec<f64> = multi.iter().zip(original).map(|(m, o)| m / (o + reference)).collect();
    (median(cost), median(share), median(against))
}

pub fn section(ws: &Workspace, peer: &Peer, rounds: usize) -> String {
    let base = models::load(&ws.real_model());
    let mut md = String::from(
        "| input | N | multi-pose nodes / N | runtime | original | + single-pose | + multi-pose | multi-pose decoder | \
         decoder / original | rewritten / (original + Rust decode) |\n\
         |---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut bytes = String::from(
        "| input | heads read back per frame | keypoints + poses read back (N = 5 / 10) |\n|---:|---:|---:|\n",
    );
    let mut ort_version = String::new();
    let mut reference_times = vec![];
    for size in [257, 513] {
        let original = ws.cached(&format!("mobilenet075_s16_{size}.onnx"), || models::real_variant(&base, size, 16));
        let single = ws.path(&format!("mobilenet075_s16_{size}.posefix.onnx"));
        ws.rewrite(&original, &single, false);
        let single_nodes = decoder_nodes(&single);
        let x = input(size);
        let original_runner = runner(&original, size);
        let single_runner = runner(&single, size);
        let (_, heads) = timed(&original_runner, &x);
        let head_bytes: usize = heads.iter().map(|t| t.len() * 4).sum();
        for n in [5, 10] {
            eprintln!("multi-pose: {size} N = {n}");
            let multi = ws.path(&format!("mobilenet075_s16_{size}.poses{n}.onnx"));
            ws.rewrite_with(&original, &multi, &["--poses", &n.to_string()]);
            let nodes_per_round = (decoder_nodes(&multi) - single_nodes) / n;
            let model = models::load(&multi);
            let prov =
                Provenance::from_metadata(model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
                    .expect("provenance");
            let mp = prov.multi_pose.clone().expect("multi-pose provenance");
            let multi_runner = runner(&multi, size);
            let head = |name: &str| heads[original_runner.output_index(name).expect("head")].clone();
            let four = [
                head(&prov.settings.heatmaps),
                head(&prov.settings.offsets),
                head(&mp.displacement_fwd),
                head(&mp.displacement_bwd),
            ];
            let (hh, ww) = (four[0].shape()[2], four[0].shape()[3]);
            let params = MultiPoseParams { max_poses: n, ..mp.params };
            let values: Vec<Vec<f32>> = four
                .iter()
                .map(|t| t.to_plain_array_view::<f32>().expect("f32 heads").iter().copied().collect())
                .collect();
            let slices: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
            let decode = || {
                let heads = HeadMaps::new(
                    slices[0],
                    slices[1],
                    slices[2],
                    slices[3],
                    (hh, ww),
                    prov.settings.stride,
                    prov.settings.scores,
                )
                .expect("heads");
                decode_multiple_poses(&heads, &params)
            };
            // What is timed decodes right: the rewritten model's poses are the reference's.
            let (_, out) = timed(&multi_runner, &x);
            let poses = &out[multi_runner.output_index(&mp.poses).expect("poses")];
            let got: Vec<f32> = poses.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            let want = to_fixed(&[decode()], n).poses;
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-3, "{}: poses differ from the reference by {worst}", multi.display());

            // Warm-up: tract's first runs of a plan allocate, which would weigh on the first rows.
            for _ in 0..3 {
                for r in [&original_runner, &single_runner, &multi_runner] {
                    timed(r, &x);
                }
            }
            let run = |r: &Runner| timed(r, &x).0;
            let mut reference = || {
                let start = process_cpu();
                std::hint::black_box(decode());
                process_cpu() - start
            };
            let runs = interleaved(
                rounds,
                &mut [
                    &mut || run(&original_runner),
                    &mut || run(&single_runner),
                    &mut || run(&multi_runner),
                    &mut reference,
                ],
            );
            let reference = median(runs[3].clone());
            reference_times.push(reference);
            let (cost, share, against) = shares(&runs[0], &runs[1], &runs[2], reference);
            let row = |runtime: &str, o: &[f64], s: &[f64], m: &[f64], cost: f64, share: f64, against: f64| {
                format!(
                    "| {size}x{size} | {n} | {nodes_per_round} | {runtime} | {} ms | {} ms | {} ms | {} ms | {} | {} |\n",
                    ms(median(o.to_vec())),
                    ms(median(s.to_vec())),
                    ms(median(m.to_vec())),
                    ms(cost),
                    percent(share),
                    ratio(against),
                )
            };
            md += &row("tract", &runs[0], &runs[1], &runs[2], cost, share, against);
            let (version, ort) = ort_runs(peer, rounds, size, &[&original, &single, &multi]);
            ort_version = version;
            let (cost, share, against) = shares(&ort[0], &ort[1], &ort[2], reference);
            md += &row("onnxruntime", &ort[0], &ort[1], &ort[2], cost, share, against);
        }
        let out_bytes = |n: usize| (NUM_KEYPOINTS * VALUES_PER_KEYPOINT * (1 + n) + n) * 4;
        bytes += &format!("| {size}x{size} | {head_bytes} | {} / {} |\n", out_bytes(5), out_bytes(10));
    }
    md += &format!(
        "\nCPU time per run, medians of {rounds} interleaved rounds per row, 1 thread: tract (in this process, \
         optimized plans) and onnxruntime {ort_version} CPU (`benchmarks/ort_time.py`, sequential, one intra-op \
         thread, in the bench's pinned venv). The real MobileNetV1 0.75 at stride 16, re-exported at each input \
         size, a fixed random input. The multi-pose decoder's cost is the model with `--poses N` less the model \
         with the single-pose decoder only, per round; \"decoder / original\" is that cost over the original \
         model's time. The last column sets the whole rewritten model against the original plus the Rust \
         reference decoding its four heads on the CPU ({} to {} ms), which is what an app does without the \
         rewrite, before counting the read-back.\n\n{bytes}",
        ms(reference_times.iter().copied().fold(f64::INFINITY, f64::min)),
        ms(reference_times.iter().copied().fold(0.0, f64::max)),
    );
    md
}
