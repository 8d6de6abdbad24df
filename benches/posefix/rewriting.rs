//! Rewrite benchmarks: the tool against the copy floor and the Python peer on whole files, and
//! how the rewrite scales with model size and heatmap area.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use onnx_posefix::testing::synthetic::{ResnetSpec, SyntheticSpec};

use crate::measure::{interleaved, paired_ratio, run_child, ChildRun, ChildStats};
use crate::models::{self, Workspace};
use crate::peer::Peer;
use crate::plot::{self, Chart, Series};
use crate::report::{mb, ratio, secs};

/// Who runs in a contest, by index into [`Contest::runs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The bytes through memory: read whole, written to a temporary file, renamed.
    Floor = 0,
    /// `cp`: the kernel copies page to page (copy_file_range), never through user memory.
    Kernel = 1,
    Tool = 2,
    Peer = 3,
    /// The floor with `fsync` before the rename.
    FloorSynced = 4,
    /// The tool with `--fsync`.
    ToolSynced = 5,
}

/// The contestants on one model: every run, for medians and paired ratios.
pub struct Contest {
    pub file_bytes: u64,
    runs: Vec<Vec<ChildRun>>,
}

impl Contest {
    pub fn stats(&self, who: Who) -> ChildStats {
        ChildStats::of(&self.runs[who as usize])
    }

    /// Paired ratios (see [`paired_ratio`]) of wall and CPU time, `a` over `b`.
    fn ratios(&self, a: Who, b: Who) -> (f64, f64) {
        let wall = |w: Who| self.runs[w as usize].iter().map(|r| r.wall.as_secs_f64()).collect::<Vec<_>>();
        let cpu = |w: Who| self.runs[w as usize].iter().map(|r| r.cpu.as_secs_f64()).collect::<Vec<_>>();
        (paired_ratio(&wall(a), &wall(b)), paired_ratio(&cpu(a), &cpu(b)))
    }
}

/// `DECODER` for the peer: the decoder the tool appends to `model`, cut out alone.
fn decoder_for(ws: &Workspace, model: &Path) -> PathBuf {
    let stem = model.file_stem().expect("a file name").to_string_lossy().to_string();
    let rewritten = ws.path(&format!("{stem}.posefix.onnx"));
    ws.rewrite(model, &rewritten, false);
    let decoder = ws.path(&format!("{stem}.decoder.onnx"));
    models::save(&models::decoder_only(&models::load(&rewritten)), &decoder);
    fs::remove_file(&rewritten).expect("remove the scratch rewrite");
    decoder
}

/// Both rewrites append the same nodes, initializers, output and metadata to the same model.
fn check_same_result(tool_out: &Path, peer_out: &Path) {
    let (a, b) = (models::load(tool_out), models::load(peer_out));
    let (ga, gb) = (a.graph.as_ref().unwrap(), b.graph.as_ref().unwrap());
    let names = |g: &onnx_posefix::onnx_protobuf::GraphProto| {
        (
            g.node.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            g.initializer.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            g.output.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(names(ga), names(gb), "the tool and the peer appended different graphs");
    assert_eq!(a.metadata_props, b.metadata_props, "the tool and the peer wrote different metadata");
}

/// Times the copy floors, the tool and the peer on `model`, `rounds` interleaved rounds; with
/// `synced`, the floor and the tool also with `fsync`.
pub fn contest(ws: &Workspace, peer: &Peer, model: &Path, rounds: usize, synced: bool) -> Contest {
    let decoder = decoder_for(ws, model);
    let out = |who: Who| ws.path(&format!("out_{who:?}.onnx"));
    let _ = fs::read(model); // warm the page cache: every contestant reads from memory
    let exe = std::env::current_exe().expect("the bench binary");

    // Each run writes a new file, as a first rewrite does (no old output to truncate or replace).
    let child = |cmd: &mut Command, out: &Path| -> ChildRun {
        let _ = fs::remove_file(out);
        let r = run_child(cmd);
        assert!(out.exists(), "{cmd:?} wrote nothing");
        r
    };
    let command = |who: Who| -> Command {
        let o = out(who);
        let mut cmd = match who {
            Who::Floor | Who::FloorSynced => {
                let mut c = Command::new(&exe);
                c.arg("--copy").arg(model).arg(&o);
                c
            }
            Who::Kernel => {
                let mut c = Command::new("cp");
                c.arg(model).arg(&o);
                c
            }
            Who::Tool | Who::ToolSynced => {
                let mut c = Command::new(&ws.tool);
                c.arg(model).arg(&o);
                c
            }
            Who::Peer => peer.command(model, &decoder, &o),
        };
        if matches!(who, Who::FloorSynced | Who::ToolSynced) {
            cmd.arg("--fsync");
        }
        cmd
    };
    child(&mut command(Who::Tool), &out(Who::Tool));
    child(&mut command(Who::Peer), &out(Who::Peer));
    check_same_result(&out(Who::Tool), &out(Who::Peer));

    let mut who = vec![Who::Floor, Who::Kernel, Who::Tool, Who::Peer];
    if synced {
        who.extend([Who::FloorSynced, Who::ToolSynced]);
    }
    let mut runners: Vec<Box<dyn FnMut() -> ChildRun>> = who
        .iter()
        .map(|&w| Box::new(move || child(&mut command(w), &out(w))) as Box<dyn FnMut() -> ChildRun>)
        .collect();
    let mut refs: Vec<&mut dyn FnMut() -> ChildRun> = runners.iter_mut().map(|r| r.as_mut() as _).collect();
    let runs = interleaved(rounds, &mut refs);
    for &w in &who {
        let _ = fs::remove_file(out(w));
    }
    Contest { file_bytes: models::file_size(model), runs }
}

fn cell(s: &ChildStats) -> String {
    format!("{} s / {} s / {} MB", secs(s.wall), secs(s.cpu), mb(s.max_rss))
}

/// The head-to-head tables on the real model and the ResNet50-sized ones.
pub fn section(ws: &Workspace, peer: &Peer, rounds: usize) -> String {
    let mut cases: Vec<(String, PathBuf)> = vec![("real MobileNetV1 0.75 (`models/`)".into(), ws.real_model())];
    for stride in [16, 32] {
        let spec = ResnetSpec::resnet50(stride);
        cases.push((format!("ResNet50-sized, stride {stride}"), models::resnet(ws, &spec)));
    }
    let mut figures = String::from(
        "Wall time / CPU time / peak RSS:\n\n\
         | model | file | copy floor | kernel copy (`cp`) | onnx-posefix | Python peer (`onnx`) |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let mut ratios = String::from(
        "| model | tool / floor, wall (target <= 1.5x) | tool / floor, CPU | tool / `cp`, wall \
         | peer / tool, wall (target >= 8x) | peer / tool, CPU | tool peak RSS / file (target <= 1.5x) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut synced = String::from(
        "With `fsync` (`--fsync`: OUT flushed to the disk before the rename), wall time / CPU time:\n\n\
         | model | copy floor + `fsync` | onnx-posefix `--fsync` | tool / floor, wall | peer (no `fsync`) / tool, wall |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let wall_cpu = |s: &ChildStats| format!("{} s / {} s", secs(s.wall), secs(s.cpu));
    for (label, path) in cases {
        eprintln!("rewrite: {label}");
        let c = contest(ws, peer, &path, rounds, true);
        figures += &format!(
            "| {label} | {} MB | {} | {} | {} | {} |\n",
            mb(c.file_bytes as f64),
            cell(&c.stats(Who::Floor)),
            cell(&c.stats(Who::Kernel)),
            cell(&c.stats(Who::Tool)),
            cell(&c.stats(Who::Peer))
        );
        let (tf_wall, tf_cpu) = c.ratios(Who::Tool, Who::Floor);
        let (pt_wall, pt_cpu) = c.ratios(Who::Peer, Who::Tool);
        ratios += &format!(
            "| {label} | {} | {} | {} | {} | {} | {} |\n",
            ratio(tf_wall),
            ratio(tf_cpu),
            ratio(c.ratios(Who::Tool, Who::Kernel).0),
            ratio(pt_wall),
            ratio(pt_cpu),
            ratio(c.stats(Who::Tool).max_rss / c.file_bytes as f64),
        );
        synced += &format!(
            "| {label} | {} | {} | {} | {} |\n",
            wall_cpu(&c.stats(Who::FloorSynced)),
            wall_cpu(&c.stats(Who::ToolSynced)),
            ratio(c.ratios(Who::ToolSynced, Who::FloorSynced).0),
            ratio(c.ratios(Who::Peer, Who::ToolSynced).0),
        );
    }
    format!(
        "{figures}\n{ratios}\n{synced}\n\
         {rounds} interleaved rounds (every contestant once per round, rotating who goes first); figures are medians, \
         ratios the median of the per-round ratios. Each run is a fresh process whose wall time, CPU time (user + \
         system, all threads) and peak RSS (`ru_maxrss` from `wait4`) are its own; the input is in the page cache and \
         the output a new file. Copy floor: the bench binary reads the file into memory and writes it to a temporary \
         file renamed over OUT, as the tool does. Kernel copy: `cp`, which has the kernel copy page-aligned pages \
         (`copy_file_range`) without passing them through user memory; the tool cannot do that, since its output \
         shifts the weights by the appended bytes. Peer: `benchmarks/peer_rewrite.py` ({}) appends the decoder the \
         tool appends (checked: same nodes, initializers, outputs and metadata) and saves with `onnx.save`, which does \
         not `fsync`; neither does the tool by default.\n",
        peer.describe()
    )
}

/// Least-squares slope of log(y) against log(x): 1 for y proportional to x.
fn log_slope(points: &[(f64, f64)]) -> f64 {
    let logs: Vec<(f64, f64)> = points.iter().map(|(x, y)| (x.ln(), y.ln())).collect();
    let n = logs.len() as f64;
    let (mx, my) = (logs.iter().map(|p| p.0).sum::<f64>() / n, logs.iter().map(|p| p.1).sum::<f64>() / n);
    let cov: f64 = logs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = logs.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    cov / var
}

/// The slope over the upper half of a curve (where fixed costs no longer hide the growth).
fn upper_slope(points: &[(f64, f64)]) -> f64 {
    log_slope(&points[points.len() / 2..])
}

/// Rewrite time and peak RSS against model size (ResNet50 widths) and heatmap area (minimal
/// models, stride 8 and 16), with PNG plots in `benchmarks/`.
pub fn scaling_section(ws: &Workspace, peer: &Peer, rounds: usize, plots: &Path) -> String {
    // Rewrites of the minimal models take milliseconds: more rounds for the same confidence.
    let area_rounds = 3 * rounds;
    let mut md = String::from(
        "#### Against model size (ResNet50-shaped, width scaled)\n\n\
         | weights | file | copy floor | onnx-posefix | Python peer | tool / floor (wall, CPU) | tool peak RSS | RSS / file | peer peak RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let (mut floor_t, mut tool_t, mut peer_t) = (vec![], vec![], vec![]);
    let (mut floor_m, mut tool_m, mut peer_m, mut file_m) = (vec![], vec![], vec![], vec![]);
    for target in [5.0, 10.0, 25.0, 50.0, 95.0, 190.0] {
        let spec = ResnetSpec { width_percent: models::width_for(target, 16), ..ResnetSpec::resnet50(16) };
        eprintln!("scaling: {} ({target} MB)", spec.label());
        let path = models::resnet(ws, &spec);
        let c = contest(ws, peer, &path, rounds, false);
        let (floor, tool, p) = (c.stats(Who::Floor), c.stats(Who::Tool), c.stats(Who::Peer));
        let size = c.file_bytes as f64 / 1e6;
        let (tf_wall, tf_cpu) = c.ratios(Who::Tool, Who::Floor);
        md += &format!(
            "| {} MB (width {}%) | {} MB | {} s | {} s | {} s | {}, {} | {} MB | {} | {} MB |\n",
            mb(spec.weight_count() as f64 * 4.0),
            spec.width_percent,
            mb(c.file_bytes as f64),
            secs(floor.wall),
            secs(tool.wall),
            secs(p.wall),
            ratio(tf_wall),
            ratio(tf_cpu),
            mb(tool.max_rss),
            ratio(tool.max_rss / c.file_bytes as f64),
            mb(p.max_rss),
        );
        floor_t.push((size, floor.wall));
        tool_t.push((size, tool.wall));
        peer_t.push((size, p.wall));
        floor_m.push((size, floor.max_rss / 1e6));
        tool_m.push((size, tool.max_rss / 1e6));
        peer_m.push((size, p.max_rss / 1e6));
        file_m.push((size, size * 1.5));
    }
    md += &format!(
        "\nGrowth exponent over the upper half (slope of log time against log size; 1 is linear): \
         tool {:.2}, floor {:.2}, peer {:.2}; peak RSS: tool {:.2}.\n\n",
        upper_slope(&tool_t),
        upper_slope(&floor_t),
        upper_slope(&peer_t),
        upper_slope(&tool_m)
    );
    let series = |name: &str, color, points: &Vec<(f64, f64)>| Series {
        name: name.into(),
        color,
        points: points.clone(),
        reference: false,
    };
    let time_chart = Chart {
        title: "Rewrite wall time vs model size".into(),
        x_label: "model file (MB)".into(),
        y_label: "seconds".into(),
        series: vec![
            series("onnx-posefix", plot::BLUE, &tool_t),
            series("copy floor", plot::GREEN, &floor_t),
            series("Python peer (onnx)", plot::ORANGE, &peer_t),
        ],
    };
    let rss_chart = Chart {
        title: "Rewrite peak RSS vs model size".into(),
        x_label: "model file (MB)".into(),
        y_label: "peak RSS (MB)".into(),
        series: vec![
            series("onnx-posefix", plot::BLUE, &tool_m),
            series("copy floor", plot::GREEN, &floor_m),
            series("Python peer (onnx)", plot::ORANGE, &peer_m),
            Series { name: "1.5 x file (target)".into(), color: plot::GREY, points: file_m, reference: true },
        ],
    };

    md += "#### Against heatmap area (minimal synthetic PoseNet: no backbone, so only the decoder grows)\n\n\
           | stride | input | heatmap | cells | onnx-posefix | tool peak RSS | output file |\n\
           |---:|---:|---:|---:|---:|---:|---:|\n";
    let mut area_series = vec![];
    for (stride, color) in [(16, plot::BLUE), (8, plot::RED)] {
        let mut points = vec![];
        for size in [257, 513, 1025, 2049, 4097] {
            let spec = SyntheticSpec { stride, input_hw: (size, size), ..SyntheticSpec::posenet(11) };
            let (gh, gw) = spec.output_hw();
            let path = models::minimal(ws, &spec);
            let out = ws.path("out_area.onnx");
            let runs: Vec<ChildRun> =
                (0..area_rounds).map(|_| run_child(Command::new(&ws.tool).arg(&path).arg(&out))).collect();
            let s = ChildStats::of(&runs);
            let out_size = models::file_size(&out);
            let _ = fs::remove_file(&out);
            let cells = gh * gw;
            md += &format!(
                "| {stride} | {size}x{size} | {gh}x{gw} | {cells} | {:.1} ms | {} MB | {} kB |\n",
                s.wall * 1e3,
                mb(s.max_rss),
                out_size / 1000
            );
            points.push((cells as f64 / 1000.0, s.wall * 1e3));
        }
        area_series.push((stride, color, points));
    }
    let area_chart = Chart {
        title: "Rewrite wall time vs heatmap area".into(),
        x_label: "heatmap cells (thousands)".into(),
        y_label: "milliseconds".into(),
        series: area_series
            .iter()
            .map(|(stride, color, points)| Series {
                name: format!("stride {stride}"),
                color: *color,
                points: points.clone(),
                reference: false,
            })
            .collect(),
    };
    md += "\n";
    for (stride, _, points) in &area_series {
        let (first, last) = (points[0], points[points.len() - 1]);
        md += &format!(
            "Stride {stride}: {:.0}x the cells, {:.2}x the time ({:.1} to {:.1} ms); growth exponent over the upper half {:.2}.\n",
            last.0 / first.0,
            last.1 / first.1,
            first.1,
            last.1,
            upper_slope(points)
        );
    }
    md += "\n";
    for (chart, file) in [
        (&time_chart, "rewrite_time_vs_size.png"),
        (&rss_chart, "rewrite_rss_vs_size.png"),
        (&area_chart, "rewrite_time_vs_heatmap.png"),
    ] {
        plot::render(chart, &plots.join(file)).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
        md += &format!("![{}]({file})\n", chart.title);
    }
    md
}
