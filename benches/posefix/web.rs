//! The browser: onnxruntime-web 1.30.0 in Debian's headless Chromium (WebGL 2 and WebGPU on
//! SwiftShader, a software GPU; wasm on one thread). Needs chromium and the npm packages of
//! conformance/legs/ort_web (its setup.sh installs both), and for the multi-pose JS decode
//! conformance/tfjs's `npm ci` (@tensorflow-models/posenet 2.2.2). Three parts (issue 21):
//!
//! 1. The cost of one tiny node per backend: a chain of 300 `Add`s on `[1,17,1,1]` against a
//!    chain of one, medians of the frames (web/bench.mjs); beside it the decoders' node counts
//!    and critical paths (`nodes`), and what that cost makes of them.
//! 2. The frame, side by side: the decoder alone (the rewritten model cut at its heads with the
//!    library's own cut, `onnx_posefix::testing::cut_at_heads`; the heads of the real model on a
//!    photo fed as inputs, so that the software GPU's slow convolutions do not hide the decoder)
//!    against the same heads read back (each through one `Mul` by 1, so that it lives on the
//!    backend) plus the JavaScript decode (tfjs posenet's decodeSinglePose, ported; its
//!    decodeMultiplePoses, the published code); single pose and `--poses 5`, at 257 and 513,
//!    per backend; medians, interleaved in one run, and the bytes read back.
//! 3. The page's own saving (issue 12): `web/test/run.mjs --measure-only` has the page measure
//!    the original model with its four heads read back and a plain-JS single-pose decode against
//!    the rewritten model (`--prune`) reading back `keypoints` only, whole models, on WebGL and
//!    wasm at the model's 257 and at 513 (`POSEFIX_WEB_SAVING=0` leaves this part out).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use onnx_posefix::contract::{FloatType, Provenance, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use onnx_posefix::model::proto::{self, Dim};
use onnx_posefix::onnx_protobuf::tensor_proto::DataType;
use onnx_posefix::onnx_protobuf::{GraphProto, Message, ModelProto, OperatorSetIdProto};
use onnx_posefix::tract_bridge::Runner;
use onnx_posefix::tract_onnx::prelude::tract_ndarray::Array4;
use onnx_posefix::tract_onnx::prelude::*;
use serde::Deserialize;
use serde_json::json;

use crate::models::Workspace;
use crate::nodes::{self, Built};

/// Backends in the order the tables list them.
pub const BACKENDS: [&str; 3] = ["wasm", "webgl", "webgpu"];
const LABELS: [(&str, &str); 3] =
    [("wasm", "wasm (1 thread)"), ("webgl", "WebGL (SwiftShader)"), ("webgpu", "WebGPU (SwiftShader)")];
/// The chain of the per-node cost, and the short chain whose time is taken off.
const CHAIN: usize = 300;
const SHORT_CHAIN: usize = 1;
/// The photo whose heads the decoders get: several people, so that the multi-pose decode has
/// work (`../shared/images`; samples/astronaut.png when it is missing).
const PHOTO: &str = "multi_skiing.jpg";
const POSES: usize = 5;

fn label(backend: &str) -> &str {
    LABELS.iter().find(|(b, _)| *b == backend).map(|(_, l)| *l).unwrap_or(backend)
}

#[derive(Deserialize)]
struct Saving {
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

#[derive(Deserialize)]
struct ChainRow {
    backend: String,
    frames: usize,
    long_ms: f64,
    short_ms: f64,
    per_node_us: f64,
    long_min_ms: f64,
    long_max_ms: f64,
}

#[derive(Deserialize)]
struct DecoderRow {
    backend: String,
    size: usize,
    kind: String,
    decoder_nodes: usize,
    frames: usize,
    decoder_ms: f64,
    read_back_js_ms: f64,
    decoder_bytes: u64,
    read_back_bytes: u64,
    max_dpos: f64,
    poses: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BenchOut {
    info: serde_json::Value,
    chain: Vec<ChainRow>,
    decoders: Vec<DecoderRow>,
}

/// `frames`: per comparison of the page's saving; the per-node chain and the decoders alone run
/// `bench_frames` (20 in a full run, as issue 21 measured).
pub fn section(ws: &Workspace, frames: usize, bench_frames: usize) -> String {
    let run = |what: &str, cmd: &mut Command| {
        let status = cmd.current_dir(&ws.repo).status().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(status.success(), "{what} failed ({status})");
    };
    run("web/build.sh", Command::new("bash").arg("web/build.sh"));
    let out = ws.dir.join("web");
    fs::create_dir_all(&out).expect("create the web scratch directory");

    // 1 and 2: the plan, the browser, the tables.
    let built = nodes::build(ws);
    let plan = plan(ws, &built, &out, bench_frames);
    let plan_path = out.join("bench-plan.json");
    fs::write(&plan_path, serde_json::to_vec_pretty(&plan).expect("json")).expect("write the plan");
    let bench_path = out.join("bench.json");
    run("web/test/bench.mjs", Command::new("node").arg("web/test/bench.mjs").arg(&plan_path).arg(&bench_path));
    let bench: BenchOut =
        serde_json::from_slice(&fs::read(&bench_path).expect("bench.json")).expect("web/test/bench.mjs's results");
    let mut md = per_node(&bench, &built);
    md += "\n";
    md += &side_by_side(&bench);

    // 3: the page's saving, whole models: WebGL and wasm (WebGPU on SwiftShader takes seconds a
    // frame at 513; part 2 has its decoder side by side). POSEFIX_WEB_SAVING=0 leaves it out.
    if std::env::var("POSEFIX_WEB_SAVING").is_ok_and(|v| v == "0") {
        return md;
    }
    run(
        "web/test/run.mjs --measure-only",
        Command::new("node")
            .args(["web/test/run.mjs", "--measure-only", "--warmup", "2", "--backends", "webgl,wasm", "--frames"])
            .arg(frames.to_string())
            .arg("--out")
            .arg(&out),
    );
    let text = fs::read_to_string(out.join("saving.json")).expect("saving.json");
    let rows: Vec<Saving> = serde_json::from_str(&text).expect("the page's measurement");
    md += "\n";
    md += &saving(&rows, &out.join("page.png"));
    md
}

// ---- the plan: models and heads for web/bench.mjs ----

fn opset(version: i64) -> OperatorSetIdProto {
    let mut o = OperatorSetIdProto::new();
    o.domain = String::new();
    o.version = version;
    o
}

fn model_of(graph: GraphProto) -> ModelProto {
    let mut m = ModelProto::new();
    m.ir_version = 7;
    m.opset_import = vec![opset(13)];
    m.producer_name = "onnx-posefix bench".to_string();
    m.graph = Some(graph).into();
    m
}

fn fixed(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Fixed(d as i64)).collect()
}

/// `x` [1,17,1,1] through `n` chained `Add`s of a constant (1: an `Add` of 0 is a no-op
/// onnxruntime removes), to `y`.
fn chain(n: usize) -> ModelProto {
    let shape = [1, NUM_KEYPOINTS, 1, 1];
    let mut g = GraphProto::new();
    g.name = format!("chain_of_{n}_adds");
    g.input.push(proto::value_info("x", DataType::FLOAT, &fixed(&shape)));
    g.initializer.push(proto::tensor_f32("c", &[1, NUM_KEYPOINTS as i64, 1, 1], &[1.0; NUM_KEYPOINTS]));
    let mut prev = "x".to_string();
    for i in 0..n {
        let next = if i + 1 == n { "y".to_string() } else { format!("t{i}") };
        g.node.push(proto::node("Add", &format!("add{i}"), &[&prev, "c"], &[&next], vec![]));
        prev = next;
    }
    g.output.push(proto::value_info("y", DataType::FLOAT, &fixed(&shape)));
    model_of(g)
}

/// The heads (name, dims) in, each out again through one `Mul` by the input `one` (so that it
/// is a tensor of the backend's, and no optimizer can take the node away), as `read/NAME`.
fn read_back(heads: &[(String, Vec<usize>)]) -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "heads_read_back".to_string();
    for (name, dims) in heads {
        g.input.push(proto::value_info(name, DataType::FLOAT, &fixed(dims)));
    }
    g.input.push(proto::value_info("one", DataType::FLOAT, &fixed(&[1])));
    for (name, dims) in heads {
        let out = format!("read/{name}");
        g.node.push(proto::node("Mul", &format!("read_{name}"), &[name, "one"], &[&out], vec![]));
        g.output.push(proto::value_info(&out, DataType::FLOAT, &fixed(dims)));
    }
    model_of(g)
}

fn save(model: &ModelProto, path: &Path) -> PathBuf {
    fs::write(path, model.write_to_bytes().expect("encodes")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path.to_path_buf()
}

/// The photo, stretched to `size` x `size`, as MobileNet PoseNet takes it: NCHW, v / 127.5 - 1.
fn photo_input(path: &Path, size: usize) -> Tensor {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    let img = image::imageops::resize(&img, size as u32, size as u32, image::imageops::FilterType::Triangle);
    Array4::from_shape_fn((1, 3, size, size), |(_, c, y, x)| img.get_pixel(x as u32, y as u32)[c] as f32 / 127.5 - 1.0)
        .into_tensor()
}

/// The four heads of the real model at `size` on the photo (tract), by name.
fn real_heads(original: &Path, photo: &Path, size: usize) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = fs::read(original).expect("read the model");
    let runner = Runner::new(&bytes, &[vec![1, 3, size, size]]).unwrap_or_else(|e| panic!("{e}"));
    let outs = runner.run(vec![photo_input(photo, size)]).expect("the real model runs");
    runner
        .output_names()
        .iter()
        .zip(outs)
        .map(|(name, t)| {
            (
                name.clone(),
                t.shape().to_vec(),
                t.to_plain_array_view::<f32>().expect("float heads").iter().copied().collect(),
            )
        })
        .collect()
}

fn plan(ws: &Workspace, built: &[Built], out: &Path, frames: usize) -> serde_json::Value {
    let photo = [ws.repo.join("../shared/images").join(PHOTO), ws.repo.join("samples/astronaut.png")]
        .into_iter()
        .find(|p| p.is_file())
        .expect("a photo");
    let long = save(&chain(CHAIN), &out.join(format!("chain_{CHAIN}.onnx")));
    let short = save(&chain(SHORT_CHAIN), &out.join(format!("chain_{SHORT_CHAIN}.onnx")));
    let mut decoders = vec![];
    for size in nodes::SIZES {
        let find = |label: &str| built.iter().find(|b| b.size == size && b.label == label).expect("built");
        let single = find(nodes::DECODERS[0].0);
        let multi = find(nodes::DECODERS[2].0);
        assert_eq!(multi.args, ["--poses", &POSES.to_string()[..]]);
        let heads = real_heads(&single.original, &photo, size);
        let head_files: Vec<(String, Vec<usize>, PathBuf)> = heads
            .iter()
            .map(|(name, dims, data)| {
                let path = out.join(format!("heads_{size}_{name}.bin"));
                let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                fs::write(&path, bytes).expect("write heads");
                (name.clone(), dims.clone(), path)
            })
            .collect();
        for (kind, b) in [("single", single), ("multi", multi)] {
            let prov =
                Provenance::from_metadata(b.model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
                    .expect("provenance");
            let s = &prov.settings;
            let mut names = vec![s.heatmaps.clone(), s.offsets.clone()];
            let mut outputs = vec![(s.output.clone(), fixed(&[1, NUM_KEYPOINTS, VALUES_PER_KEYPOINT]))];
            let mp = prov.multi_pose.as_ref();
            if kind == "multi" {
                let m = mp.expect("multi-pose settings");
                names.extend([m.displacement_fwd.clone(), m.displacement_bwd.clone()]);
                outputs = vec![
                    (m.poses.clone(), fixed(&[1, m.params.max_poses, NUM_KEYPOINTS, VALUES_PER_KEYPOINT])),
                    (m.pose_scores.clone(), fixed(&[1, m.params.max_poses])),
                ];
            }
            let fed: Vec<&(String, Vec<usize>, PathBuf)> =
                names.iter().map(|n| head_files.iter().find(|h| &h.0 == n).expect("a head")).collect();
            let cut_heads: Vec<(&str, &[usize], FloatType)> =
                fed.iter().map(|(n, d, _)| (n.as_str(), d.as_slice(), FloatType::Float32)).collect();
            let cut_outputs: Vec<(&str, Vec<Dim>)> = outputs.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
            let bytes = onnx_posefix::testing::cut_at_heads(&b.model, &cut_heads, &cut_outputs, FloatType::Float32)
                .unwrap_or_else(|e| panic!("cannot cut the {kind} decoder at {size}: {e}"));
            let cut = ModelProto::parse_from_bytes(&bytes).expect("the cut parses");
            let decoder_nodes = cut.graph.as_ref().map_or(0, |g| g.node.len());
            let decoder = out.join(format!("decoder_{size}_{kind}.onnx"));
            fs::write(&decoder, &bytes).expect("write the cut");
            let rb = save(
                &read_back(&fed.iter().map(|(n, d, _)| (n.clone(), d.clone())).collect::<Vec<_>>()),
                &out.join(format!("read_back_{size}_{kind}.onnx")),
            );
            decoders.push(json!({
                "size": size,
                "kind": kind,
                "max_poses": mp.filter(|_| kind == "multi").map(|m| m.params.max_poses),
                "score_threshold": mp.map(|m| m.params.score_threshold),
                "nms_radius": mp.map(|m| m.params.nms_radius),
                "stride": s.stride,
                "decoder": decoder,
                "read_back": rb,
                "outputs": outputs.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "read_back_outputs": names.iter().map(|n| format!("read/{n}")).collect::<Vec<_>>(),
                "decoder_nodes": decoder_nodes,
                "heads": fed.iter().map(|(n, d, p)| json!({"name": n, "dims": d, "path": p})).collect::<Vec<_>>(),
            }));
        }
    }
    json!({
        "backends": BACKENDS,
        "frames": frames,
        "warmup": 3,
        "photo": photo,
        "chain": {"long": long, "short": short, "long_nodes": CHAIN, "short_nodes": SHORT_CHAIN},
        "decoders": decoders,
    })
}

// ---- tables ----

fn per_node(bench: &BenchOut, built: &[Built]) -> String {
    let info = &bench.info;
    let mut md = format!(
        "onnxruntime-web {} in headless {} (WebGL 2 and WebGPU on SwiftShader, a software GPU: \
         slow in absolute terms; WebGPU adapter {}). Per-node cost: a chain of {CHAIN} `Add`s on \
         `[1,17,1,1]` against a chain of {SHORT_CHAIN} (which carries the run's fixed cost: input, \
         output, the call), medians of {} frames each, interleaved; the cost of a node is their \
         difference over {}.\n\n\
         | backend | {CHAIN} `Add`s | {SHORT_CHAIN} `Add` | per node | {CHAIN} `Add`s, fastest and slowest frame |\n\
         |---|---:|---:|---:|---:|\n",
        info["ort"].as_str().unwrap_or("?"),
        info["chromium"].as_str().unwrap_or("Chromium"),
        info["webgpu"],
        bench.chain.first().map_or(0, |r| r.frames),
        CHAIN - SHORT_CHAIN,
    );
    for r in &bench.chain {
        md += &format!(
            "| {} | {:.2} ms | {:.2} ms | {:.1} us | {:.2} / {:.2} ms |\n",
            label(&r.backend),
            r.long_ms,
            r.short_ms,
            r.per_node_us,
            r.long_min_ms,
            r.long_max_ms
        );
    }
    md += &format!(
        "\nThe decoders as the tool builds them for the real model, with what their nodes cost at \
         that rate (an estimate: nodes of a decoder are not all tiny, and a GPU may overlap \
         independent ones; the critical path is what it cannot overlap):\n\n{}\n",
        nodes::table(built)
    );
    md += "| decoder (257) | nodes added | critical path |";
    for r in &bench.chain {
        md += &format!(" nodes x {} |", label(&r.backend));
    }
    md += "\n|---|---:|---:|";
    md += &"---:|".repeat(bench.chain.len());
    md += "\n";
    for b in built.iter().filter(|b| b.size == 257) {
        md += &format!("| {} | {} | {} |", b.label, b.count.nodes, b.count.critical_path);
        for r in &bench.chain {
            md += &format!(" {:.1} ms |", b.count.nodes as f64 * r.per_node_us / 1000.0);
        }
        md += "\n";
    }
    md
}

fn side_by_side(bench: &BenchOut) -> String {
    let mut md = format!(
        "The decoder alone against read-back + JavaScript, on the heads of the real model on one \
         photo (`{PHOTO}`): the rewritten model cut at its heads (`onnx_posefix::testing::cut_at_heads`, \
         as `verify` cuts it), the heads fed as inputs and `keypoints` (single pose) or `poses` and \
         `pose_scores` (`--poses {POSES}`) read back; against a model that hands the same heads \
         back (each through one `Mul` by 1, so that it is the backend's tensor) and the \
         JavaScript decode of them: single pose as tfjs posenet's `decodeSinglePose` (`web/decode.mjs`, \
         a plain-JS port: argmax per map, the offset there, sigmoid of the max), multi-pose the \
         sigmoid of every heatmap cell and @tensorflow-models/posenet 2.2.2's own \
         `decodeMultiplePoses` (its published files). Both sides upload the same heads every frame. \
         Medians of {} frames, interleaved; the bytes read back per frame; the largest position \
         difference between the two decodes (a check, not a figure).\n\n\
         | backend | input | decoder | nodes run | decoder alone | read-back + JS decode | decoder / read-back | bytes read back | max \\|d pos\\| |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|\n",
        bench.decoders.first().map_or(0, |r| r.frames)
    );
    for r in &bench.decoders {
        let what = if r.kind == "multi" { format!("`--poses {POSES}`") } else { "single pose".to_string() };
        let poses = r.poses.as_ref().map_or(String::new(), |p| format!(" ({} / {} poses)", p["graph"], p["js"]));
        md += &format!(
            "| {} | {} | {what} | {} | {:.2} ms | {:.2} ms | {:.2}x | {} vs {} | {:.1e}{poses} |\n",
            label(&r.backend),
            r.size,
            r.decoder_nodes,
            r.decoder_ms,
            r.read_back_js_ms,
            r.decoder_ms / r.read_back_js_ms,
            r.decoder_bytes,
            r.read_back_bytes,
            r.max_dpos,
        );
    }
    md
}

fn saving(rows: &[Saving], screenshot: &Path) -> String {
    let mut md = String::from(
        "The page's saving, whole models: per frame, the original model + its four heads read \
         back + a plain-JS single-pose decode (as tfjs posenet), against the rewritten model \
         (`--prune`) reading back `keypoints` only; medians, interleaved in one run.\n\n\
         | backend | input | frames | original + heads + JS decode | rewritten, keypoints only | time ratio | bytes read back | bytes ratio |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md += &format!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.2}x | {} vs {} | {:.0}x |\n",
            label(&r.backend),
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
