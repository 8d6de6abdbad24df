//! Inference in tract: the rewritten model against the original model plus the Rust reference
//! decoder, the decoder alone, and the pruned model.

use std::path::{Path, PathBuf};

use onnx_posefix::contract::Provenance;
use onnx_posefix::onnx_protobuf::Message;
use onnx_posefix::reference;
use onnx_posefix::testing::rng::Rng;
use onnx_posefix::testing::synthetic::ResnetSpec;
use onnx_posefix::tract_bridge::Runner;
use onnx_posefix::tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use onnx_posefix::tract_onnx::prelude::*;

use crate::measure::{interleaved, median, median_ci95, paired_ratio, process_cpu};
use crate::models::{self, Workspace};
use crate::report::{ms, percent, ratio};

struct Case {
    model: String,
    original: PathBuf,
    size: usize,
}

fn cases(ws: &Workspace, full: bool) -> Vec<Case> {
    let base = models::load(&ws.real_model());
    let mut cases = vec![];
    for stride in [16, 8] {
        for size in [257, 513, 1025] {
            let name = format!("mobilenet075_s{stride}_{size}.onnx");
            let original = ws.cached(&name, || models::real_variant(&base, size, stride));
            cases.push(Case { model: format!("MobileNetV1 0.75 (real), stride {stride}"), original, size });
        }
    }
    let sizes: &[usize] = if full { &[257, 513, 1025] } else { &[257, 513] };
    for stride in [16, 32] {
        for &size in sizes {
            let spec = ResnetSpec { input_hw: (size, size), ..ResnetSpec::resnet50(stride) };
            cases.push(Case {
                model: format!("ResNet50-sized, stride {stride}"),
                original: models::resnet(ws, &spec),
                size,
            });
        }
    }
    cases
}

fn tensor(a: ArrayD<f32>) -> Tensor {
    a.into_tensor()
}

/// An image-like input in [-1, 1], fixed by the seed.
fn input(size: usize) -> Tensor {
    let mut rng = Rng::new(0x1A6E);
    tensor(ArrayD::from_shape_simple_fn(IxDyn(&[1, 3, size, size]), || rng.uniform(-1.0, 1.0)))
}

fn runner(bytes: &[u8], shapes: &[Vec<usize>], what: &Path) -> Runner {
    Runner::new(bytes, shapes).unwrap_or_else(|e| panic!("{}: {e}", what.display()))
}

/// CPU seconds of one `run` of `runner`, the inputs cloned outside the clock.
fn timed_run(runner: &Runner, inputs: &[Tensor]) -> (f64, Vec<Tensor>) {
    let inputs = inputs.to_vec();
    let start = process_cpu();
    let out = runner.run(inputs).expect("the model runs");
    (process_cpu() - start, out)
}

struct Row {
    grid: usize,
    original: f64,
    reference: f64,
    rewritten: f64,
    decoder: f64,
    pruned: f64,
    /// Median over rounds of (rewritten - original) / rewritten.
    share_by_difference: f64,
    /// Pruned against the original and against the rewritten model (which holds the same
    /// decoder), from their own longer run of paired rounds.
    prune: PruneComparison,
    rounds: usize,
}

/// Median paired ratios with 95% confidence intervals.
struct PruneComparison {
    vs_original: (f64, Option<(f64, f64)>),
    vs_rewritten: (f64, Option<(f64, f64)>),
    rounds: usize,
}

/// Pruning saves a couple of percent at most (two 1x1 convs), less than a single run's noise, so
/// it gets rounds of its own, many more than the other comparisons, and an interval for each
/// ratio: `budget` seconds in all.
fn compare_pruned(
    original: &Runner,
    rewritten: &Runner,
    pruned: &Runner,
    x: &[Tensor],
    budget: f64,
) -> PruneComparison {
    let t = timed_run(original, x).0;
    let rounds = ((budget / 3.0 / t) as usize).clamp(15, 600);
    let run = |r: &Runner| timed_run(r, x).0;
    let runs = interleaved(rounds, &mut [&mut || run(original), &mut || run(rewritten), &mut || run(pruned)]);
    let ratios = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a / b).collect() };
    let with_ci = |r: Vec<f64>| (median(r.clone()), median_ci95(r));
    PruneComparison {
        vs_original: with_ci(ratios(&runs[2], &runs[0])),
        vs_rewritten: with_ci(ratios(&runs[2], &runs[1])),
        rounds,
    }
}

fn ratio_ci((r, ci): (f64, Option<(f64, f64)>)) -> String {
    match ci {
        Some((lo, hi)) => format!("{r:.3}x [{lo:.3}, {hi:.3}]"),
        None => format!("{r:.3}x"),
    }
}

fn measure(ws: &Workspace, case: &Case, budget: f64) -> Row {
    let stem = case.original.file_stem().unwrap().to_string_lossy().to_string();
    let rewritten_path = ws.path(&format!("{stem}.posefix.onnx"));
    let pruned_path = ws.path(&format!("{stem}.pruned.onnx"));
    ws.rewrite(&case.original, &rewritten_path, false);
    ws.rewrite(&case.original, &pruned_path, true);
    let rewritten_model = models::load(&rewritten_path);
    let prov =
        Provenance::from_metadata(rewritten_model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
            .expect("provenance");
    let decoder_model = models::decoder_only(&rewritten_model);
    let shape = [vec![1, 3, case.size, case.size]];
    let read = |p: &Path| std::fs::read(p).expect("read model");
    let original = runner(&read(&case.original), &shape, &case.original);
    let rewritten = runner(&read(&rewritten_path), &shape, &rewritten_path);
    let pruned = runner(&read(&pruned_path), &shape, &pruned_path);
    let heads_shapes = [
        models::fixed_shape(&decoder_model, &prov.settings.heatmaps),
        models::fixed_shape(&decoder_model, &prov.settings.offsets),
    ];
    let decoder = runner(&decoder_model.write_to_bytes().unwrap(), &heads_shapes, Path::new("decoder alone"));

    let x = [input(case.size)];
    let (hm_ix, off_ix) = (
        original.output_index(&prov.settings.heatmaps).expect("heatmaps"),
        original.output_index(&prov.settings.offsets).expect("offsets"),
    );
    let (_, heads) = timed_run(&original, &x);
    let heads = [heads[hm_ix].clone(), heads[off_ix].clone()];
    let decode = |heads: &[Tensor]| {
        let (hm, off) =
            (heads[0].to_plain_array_view::<f32>().unwrap(), heads[1].to_plain_array_view::<f32>().unwrap());
        reference::decode(hm, off, prov.settings.layout, prov.settings.stride, prov.settings.scores)
            .expect("reference decodes")
    };

    // What is timed is what it claims to be: the rewritten model, the pruned one and the decoder
    // alone all give the reference's keypoints.
    let want = reference::to_array(&decode(&heads)).into_dyn();
    let kp_ix = rewritten.output_index(&prov.settings.output).expect("keypoints");
    for (label, got) in [
        ("rewritten", timed_run(&rewritten, &x).1.swap_remove(kp_ix)),
        ("pruned", timed_run(&pruned, &x).1.swap_remove(0)),
        ("decoder alone", timed_run(&decoder, &heads).1.swap_remove(0)),
    ] {
        let got = got.into_plain_array::<f32>().unwrap();
        let worst = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "{}: {label} keypoints differ from the reference by {worst}", case.original.display());
    }

    let (t, _) = timed_run(&rewritten, &x);
    let rounds = ((budget / 4.0 / t) as usize).clamp(5, 60);
    let mut run_original = || timed_run(&original, &x).0;
    let mut run_reference = || {
        let start = process_cpu();
        std::hint::black_box(decode(&heads));
        process_cpu() - start
    };
    let mut run_rewritten = || timed_run(&rewritten, &x).0;
    let mut run_pruned = || timed_run(&pruned, &x).0;
    let mut run_decoder = || timed_run(&decoder, &heads).0;
    let runs = interleaved(
        rounds,
        &mut [&mut run_original, &mut run_reference, &mut run_rewritten, &mut run_pruned, &mut run_decoder],
    );
    let share_by_difference = 1.0 - paired_ratio(&runs[0], &runs[2]);
    let m: Vec<f64> = runs.into_iter().map(median).collect();
    let prune = compare_pruned(&original, &rewritten, &pruned, &x, 4.0 * budget);
    Row {
        grid: heads[0].shape()[2],
        original: m[0],
        reference: m[1],
        rewritten: m[2],
        pruned: m[3],
        decoder: m[4],
        share_by_difference,
        prune,
        rounds,
    }
}

/// The inference tables. `budget` is roughly the seconds spent timing each case (four times
/// that again for the pruned model).
pub fn section(ws: &Workspace, budget: f64, full: bool) -> String {
    let mut md = String::from(
        "| model | input | heatmap | original | original + Rust decoder | rewritten | rewritten / (original + Rust) \
         | decoder alone | decoder share | share by difference |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut pruned = String::from(
        "| model | input | original | pruned | pruned / original [95% CI] | pruned / rewritten [95% CI] | rounds |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let (mut rounds, mut faster, mut cases_run) = (vec![], 0, 0);
    for case in cases(ws, full) {
        eprintln!("inference: {} at {}", case.model, case.size);
        let r = measure(ws, &case, budget);
        rounds.push(r.rounds);
        let with_ref = r.original + r.reference;
        md += &format!(
            "| {} | {s}x{s} | {g}x{g} | {} ms | {} ms | {} ms | {} | {} ms | {} | {} |\n",
            case.model,
            ms(r.original),
            ms(with_ref),
            ms(r.rewritten),
            ratio(r.rewritten / with_ref),
            ms(r.decoder),
            percent(r.decoder / r.rewritten),
            percent(r.share_by_difference),
            s = case.size,
            g = r.grid,
        );
        pruned += &format!(
            "| {} | {s}x{s} | {} ms | {} ms | {} | {} | {} |\n",
            case.model,
            ms(r.original),
            ms(r.pruned),
            ratio_ci(r.prune.vs_original),
            ratio_ci(r.prune.vs_rewritten),
            r.prune.rounds,
            s = case.size,
        );
        cases_run += 1;
        faster += usize::from(r.prune.vs_original.1.is_some_and(|(_, hi)| hi < 1.0));
    }
    md += &format!(
        "\nCPU time of this process per run (so that other processes holding the cores do not count), medians of \
         {} to {} interleaved rounds per row; tract's optimized plan built once per model, the input a fixed random \
         image. *Decoder alone*: the appended nodes cut out with the heads as inputs \
         (the same tract plan steps, without the backbone); *decoder share* = decoder alone / rewritten. \
         *Share by difference* = (rewritten - original) / rewritten, the same quantity measured on whole models: the \
         median over rounds of the runs side by side, so it carries their noise (it can come out negative). \
         Every variant was checked to give the reference's keypoints before timing. The real model at stride 8: \
         its last stride-2 conv set to stride 1, as tfjs PoseNet does for output stride 8.\n\n",
        rounds.iter().min().unwrap(),
        rounds.iter().max().unwrap()
    );
    md += &format!(
        "#### The pruned model\n\n{pruned}\n\
         *Pruned*: `--prune`, which keeps only `keypoints` and drops the displacement heads; it includes the \
         decoder, so against the original it saves the displacement heads and pays the decoder, and against the \
         rewritten model (same decoder) it saves the heads alone. Ratios are medians of per-round ratios over their \
         own interleaved rounds (original, rewritten, pruned), with a distribution-free 95% interval for the median. \
         Pruned faster than the original with the whole interval below 1: {faster} of {cases_run} rows.\n"
    );
    md
}
