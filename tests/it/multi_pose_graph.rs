//! The multi-pose decoder (`src/decoders/multi_pose/`, both forms) against the multi-pose reference, in
//! tract: on random heads (with ties and candidates on the borders) fed to the decoder alone, NCHW
//! and NHWC (the same heads transposed), and on the real model's heads for the shared photos (as
//! they come, NCHW, and transposed to NHWC by the test's own Transpose nodes).

use onnx_posefix::contract::{Layout, ScoreMode};
use onnx_posefix::decoders::graph::{GraphBuilder, NameAllocator};
use onnx_posefix::decoders::multi_pose::{self, MultiPoseSpec};
use onnx_posefix::decoders::Forms;
use onnx_posefix::model::proto::{self, Dim};
use onnx_posefix::model::query;
use onnx_posefix::onnx_protobuf::tensor_proto::DataType;
use onnx_posefix::onnx_protobuf::{GraphProto, ModelProto};
use onnx_posefix::reference::multi_pose::{decode_multiple_poses, to_fixed, HeadMaps, MultiPoseParams};
use onnx_posefix::testing::rng::Rng;
use onnx_posefix::tract_bridge::Runner;
use onnx_posefix::tract_onnx::prelude::*;

const CHANNELS: [usize; 4] = [17, 34, 32, 32];
const HEADS: [&str; 4] = ["heatmaps", "offsets", "displacement_fwd", "displacement_bwd"];

fn spec(grid: (usize, usize), n: usize) -> MultiPoseSpec {
    spec_in(grid, n, Layout::Nchw)
}

fn spec_in(grid: (usize, usize), n: usize, layout: Layout) -> MultiPoseSpec {
    spec_with(grid, n, layout, Forms::Thin)
}

fn spec_with(grid: (usize, usize), n: usize, layout: Layout, forms: Forms) -> MultiPoseSpec {
    MultiPoseSpec {
        heatmaps: HEADS[0].into(),
        offsets: HEADS[1].into(),
        displacement_fwd: HEADS[2].into(),
        displacement_bwd: HEADS[3].into(),
        layout,
        grid,
        stride: 16,
        scores: ScoreMode::Sigmoid,
        params: onnx_posefix::MultiPoseParams::new(n),
        poses: "poses".into(),
        pose_scores: "pose_scores".into(),
        forms,
    }
}

/// Appends the decoder to `graph` and declares its outputs.
fn append(graph: &mut GraphProto, opset: i64, spec: &MultiPoseSpec) {
    let mut b = GraphBuilder::new(opset, NameAllocator::new(query::taken_names(graph)));
    multi_pose::build(&mut b, spec).unwrap();
    let (nodes, initializers) = b.finish();
    graph.node.extend(nodes);
    graph.initializer.extend(initializers);
    let n = spec.params.max_poses as i64;
    graph.output.push(proto::value_info(&spec.poses, DataType::FLOAT, &[1, n, 17, 3].map(Dim::Fixed)));
    graph.output.push(proto::value_info(&spec.pose_scores, DataType::FLOAT, &[1, n].map(Dim::Fixed)));
}

/// The decoder alone: the four heads are its inputs.
fn decoder_model(spec: &MultiPoseSpec, opset: i64) -> Vec<u8> {
    let mut graph = GraphProto::new();
    graph.name = "multi_pose_decoder".into();
    for (name, shape) in HEADS.iter().zip(head_shapes(spec)) {
        let shape: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        graph.input.push(proto::value_info(name, DataType::FLOAT, &shape));
    }
    append(&mut graph, opset, spec);
    let mut model = ModelProto::new();
    model.ir_version = 8;
    let mut op = onnx_posefix::onnx_protobuf::OperatorSetIdProto::new();
    op.version = opset;
    model.opset_import.push(op);
    model.graph = Some(graph).into();
    onnx_posefix::model::io::to_bytes(&model).unwrap()
}

/// Compares the decoder's outputs with the reference on the same heads.
fn judge(label: &str, heads: &[Vec<f32>], grid: (usize, usize), n: usize, outputs: &[Tensor]) -> usize {
    let (h, w) = grid;
    let heads = HeadMaps::new(&heads[0], &heads[1], &heads[2], &heads[3], (h, w), 16, ScoreMode::Sigmoid).unwrap();
    let params = MultiPoseParams { max_poses: n, ..MultiPoseParams::default() };
    let found = decode_multiple_poses(&heads, &params);
    let want = to_fixed(std::slice::from_ref(&found), n);
    let poses = outputs[0].to_plain_array_view::<f32>().unwrap();
    let scores = outputs[1].to_plain_array_view::<f32>().unwrap();
    assert_eq!(poses.shape(), [1, n, 17, 3], "{label}");
    for (i, (got, want)) in scores.iter().zip(&want.pose_scores).enumerate() {
        assert!((got - want).abs() <= 1e-6, "{label}: pose {i} score {got} vs {want} ({} found)", found.len());
    }
    for (i, (got, want)) in poses.iter().zip(&want.poses).enumerate() {
        let (pose, kp, v) = (i / 51, i % 51 / 3, i % 3);
        let ok = if v < 2 { got == want } else { (got - want).abs() <= 1e-6 };
        assert!(ok, "{label}: pose {pose} keypoint {kp} value {v}: {got} vs {want}");
    }
    found.len()
}

#[test]
fn decoder_alone_matches_the_reference_on_random_heads() {
    decoder_alone_matches_on_random_heads(Forms::Thin);
}

#[test]
fn gather_form_matches_the_reference_on_random_heads() {
    decoder_alone_matches_on_random_heads(Forms::ArgMaxGather);
}

/// The decoder in `forms` on seeded random heads, NCHW and NHWC, at several grids, N and opsets
/// (the Gather form from opset 11, its first).
fn decoder_alone_matches_on_random_heads(forms: Forms) {
    let mut total = 0;
    let (nchw, nhwc) = (Layout::Nchw, Layout::Nhwc);
    for (case, (grid, n, opset, layout)) in [
        ((17, 17), 5, 11, nchw),
        ((9, 13), 6, 13, nchw),
        ((17, 17), 4, 9, nchw),
        ((5, 7), 3, 18, nchw),
        ((1, 1), 2, 11, nchw),
        ((17, 17), 5, 11, nhwc),
        ((9, 13), 6, 9, nhwc),
        ((5, 7), 3, 18, nhwc),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = spec_with(grid, n, layout, forms);
        let opset = if forms == Forms::ArgMaxGather { opset.max(11) } else { opset };
        let runner = Runner::new(&decoder_model(&spec, opset), &head_shapes(&spec)).unwrap();
        for seed in 0..6u64 {
            // NHWC cases reuse NCHW cases' seeds: the same heads, transposed.
            let case = [0, 1, 2, 3, 4, 0, 1, 3][case];
            let mut rng = Rng::new(0x3017 + 100 * case as u64 + seed);
            let cells = grid.0 * grid.1;
            // Logits on a coarse grid of values (ties), offsets and displacements in quarter
            // pixels that reach off the grid.
            let heads: Vec<Vec<f32>> = CHANNELS
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (0..c * cells)
                        .map(|_| match i {
                            0 => (rng.uniform(-3.0, 3.0) * 2.0).round() / 2.0,
                            1 => (rng.uniform(-24.0, 24.0) * 4.0).round() / 4.0,
                            _ => (rng.uniform(-60.0, 60.0) * 4.0).round() / 4.0,
                        })
                        .collect()
                })
                .collect();
            let outputs = run_decoder(&runner, &heads, &spec);
            let label = format!("{forms:?} {layout} grid {grid:?} N {n} opset {opset} seed {seed}");
            total += judge(&label, &heads, grid, n, &outputs);
        }
    }
    assert!(total > 60, "{total} poses: the random heads should yield many");
}

/// The heads' shapes for `spec`'s layout, one batch item.
fn head_shapes(spec: &MultiPoseSpec) -> [Vec<usize>; 4] {
    let (h, w) = spec.grid;
    CHANNELS.map(|c| match spec.layout {
        Layout::Nchw => vec![1, c, h, w],
        Layout::Nhwc => vec![1, h, w, c],
    })
}

/// Runs the decoder alone on `heads` (CHW, one batch item), transposed to HWC for NHWC.
fn run_decoder(runner: &Runner, heads: &[Vec<f32>], spec: &MultiPoseSpec) -> Vec<Tensor> {
    let (h, w) = spec.grid;
    let inputs: Vec<Tensor> = heads
        .iter()
        .zip(CHANNELS)
        .map(|(v, c)| {
            let chw = tract_ndarray::Array4::from_shape_vec((1, c, h, w), v.clone()).unwrap();
            match spec.layout {
                Layout::Nchw => chw.into_tensor(),
                Layout::Nhwc => chw.permuted_axes([0, 2, 3, 1]).as_standard_layout().to_owned().into_tensor(),
            }
        })
        .collect();
    runner.run(inputs).unwrap()
}

/// Crafted heads on a 9x9 grid where distances equal R exactly: a candidate at R from the first
/// pose's nose (suppressed: `d2 <= R^2` is inclusive) and a second pose whose nose lies at R
/// from the first pose's (not counted in its pose score).
fn heads_at_the_nms_radius() -> Vec<Vec<f32>> {
    let (h, w) = (9, 9);
    let at = |c: usize, y: usize, x: usize| (c * h + y) * w + x;
    let mut heads: Vec<Vec<f32>> = CHANNELS.iter().map(|c| vec![0.0; c * h * w]).collect();
    heads[0].fill(-5.0);
    // Pose 1: the nose at cell (4, 4), position (64, 64); zero offsets and displacements keep
    // every keypoint there.
    heads[0][at(0, 4, 4)] = 3.0;
    // Pose 2: leftShoulder (5) at cell (1, 1), position (16, 16); edge 4 (nose, leftShoulder)
    // displaces backward by (36, 32) to (52, 48), cell (3, 3), where the nose's y offset 4
    // keeps it at (52, 48): 12 and 16 from (64, 64), d2 = 400.
    heads[0][at(5, 1, 1)] = 2.0;
    heads[3][at(4, 1, 1)] = 36.0;
    heads[3][at(4 + 16, 1, 1)] = 32.0;
    heads[1][at(0, 3, 3)] = 4.0;
    // A nose candidate at cell (4, 6), x offset -12: position (64, 84), 20 from (64, 64).
    heads[0][at(0, 4, 6)] = 1.0;
    heads[1][at(17, 4, 6)] = -12.0;
    heads
}

#[test]
fn decoder_alone_matches_the_reference_at_the_nms_radius() {
    let grid = (9, 9);
    let heads = heads_at_the_nms_radius();
    let (h, w) = grid;
    let reference = HeadMaps::new(&heads[0], &heads[1], &heads[2], &heads[3], (h, w), 16, ScoreMode::Sigmoid).unwrap();
    let params = MultiPoseParams { max_poses: 4, ..MultiPoseParams::default() };
    let inside = decode_multiple_poses(&reference, &params);
    let nearer = decode_multiple_poses(&reference, &MultiPoseParams { nms_radius: 19.999, ..params });
    // The situation is on the boundary: a hair's breadth less R keeps the candidate, and counts
    // the second pose's nose.
    assert_eq!((inside.len(), nearer.len()), (2, 3));
    assert!(inside[1].score < nearer[1].score);
    for (opset, forms) in [(9, Forms::Thin), (13, Forms::Thin), (11, Forms::ArgMaxGather), (18, Forms::ArgMaxGather)] {
        let spec = spec_with(grid, 4, Layout::Nchw, forms);
        let runner = Runner::new(&decoder_model(&spec, opset), &head_shapes(&spec)).unwrap();
        let outputs = run_decoder(&runner, &heads, &spec);
        assert_eq!(judge(&format!("at the radius, {forms:?} opset {opset}"), &heads, grid, 4, &outputs), 2);
    }
}

/// Node counts, and with POSEFIX_MULTI_POSE_OUT=DIR the real model with the decoder appended
/// (N = 1, 5 and 10), for timing in other runtimes; POSEFIX_MULTI_POSE_BASE=MODEL:HxW appends it
/// to another NCHW PoseNet with that heatmap grid (the 513 variant, say);
/// POSEFIX_MULTI_POSE_LAYOUT=nhwc first transposes the heads to NHWC (Transpose nodes of the
/// test's own, not the decoder's) and appends the decoder for NHWC heads.
#[test]
#[ignore = "a measurement, not a check"]
fn node_counts() {
    for n in [1, 5, 10] {
        let bytes = decoder_model(&spec((17, 17), n), 11);
        let model = onnx_posefix::model::io::parse_model(&bytes).unwrap();
        eprintln!("N = {n}: {} nodes", model.graph.unwrap().node.len());
        if let Some(dir) = std::env::var_os("POSEFIX_MULTI_POSE_OUT") {
            let base = std::env::var("POSEFIX_MULTI_POSE_BASE").ok();
            let (path, grid) = match base.as_deref().and_then(|b| b.rsplit_once(':')) {
                Some((path, grid)) => {
                    let (h, w) = grid.split_once('x').unwrap();
                    (std::path::PathBuf::from(path), (h.parse().unwrap(), w.parse().unwrap()))
                }
                None => (crate::common::real_model_path(), (17, 17)),
            };
            let mut model = onnx_posefix::model::io::read_model(&path).unwrap().into_proto();
            let opset = query::default_opset(&model).unwrap();
            let layout = match std::env::var("POSEFIX_MULTI_POSE_LAYOUT").as_deref() {
                Ok("nhwc") => Layout::Nhwc,
                _ => Layout::Nchw,
            };
            let spec = with_heads_in(model.graph.as_mut().unwrap(), spec_in(grid, n, layout));
            append(model.graph.as_mut().unwrap(), opset, &spec);
            let out = std::path::Path::new(&dir).join(format!("posenet-multi-pose-n{n}.onnx"));
            std::fs::write(out, onnx_posefix::model::io::to_bytes(&model).unwrap()).unwrap();
        }
    }
}

#[test]
fn real_model_poses_match_the_reference_on_the_shared_photos() {
    real_model_poses_match(Layout::Nchw, Forms::Thin);
}

#[test]
fn real_model_poses_match_the_reference_from_nhwc_heads() {
    real_model_poses_match(Layout::Nhwc, Forms::Thin);
}

#[test]
fn real_model_gather_form_poses_match_the_reference_on_the_shared_photos() {
    real_model_poses_match(Layout::Nchw, Forms::ArgMaxGather);
}

/// `spec` reading the heads of `graph` (a model with NCHW heads) in its layout: for NHWC, the
/// heads transposed by Transpose nodes added to `graph` (the test's, not the decoder's).
fn with_heads_in(graph: &mut GraphProto, mut spec: MultiPoseSpec) -> MultiPoseSpec {
    if spec.layout == Layout::Nhwc {
        for head in HEADS {
            let nhwc = format!("{head}_nhwc");
            graph.node.push(proto::node(
                "Transpose",
                &nhwc,
                &[head],
                &[&nhwc],
                vec![proto::attr_ints("perm", &[0, 2, 3, 1])],
            ));
        }
        spec.heatmaps = "heatmaps_nhwc".into();
        spec.offsets = "offsets_nhwc".into();
        spec.displacement_fwd = "displacement_fwd_nhwc".into();
        spec.displacement_bwd = "displacement_bwd_nhwc".into();
    }
    spec
}

/// The real model with the decoder appended (for NHWC, to Transpose nodes of the test's own that
/// give it NHWC heads), judged against the reference on the model's NCHW heads.
fn real_model_poses_match(layout: Layout, forms: Forms) {
    // Without the photos: a note, or a failure in CI.
    let Some(photos) = crate::common::shared_photos() else { return };
    let mut model = onnx_posefix::model::io::read_model(&crate::common::real_model_path()).unwrap().into_proto();
    let n = 5;
    let spec = with_heads_in(model.graph.as_mut().unwrap(), spec_with((17, 17), n, layout, forms));
    let opset = query::default_opset(&model).unwrap();
    append(model.graph.as_mut().unwrap(), opset, &spec);
    let runner = Runner::new(&onnx_posefix::model::io::to_bytes(&model).unwrap(), &[vec![1, 3, 257, 257]]).unwrap();
    let index = |name: &str| runner.output_index(name).unwrap();
    let (mut total, mut crowded) = (0, 0);
    for photo in &photos {
        let outputs = runner.run(vec![crate::common::real_model_input(photo)]).unwrap();
        let heads: Vec<Vec<f32>> = HEADS
            .iter()
            .map(|h| outputs[index(h)].to_plain_array_view::<f32>().unwrap().iter().copied().collect())
            .collect();
        let decoded = [outputs[index("poses")].clone(), outputs[index("pose_scores")].clone()];
        let found = judge(&format!("{forms:?} {layout} {}", photo.display()), &heads, (17, 17), n, &decoded);
        total += found;
        crowded += usize::from(found >= 2);
    }
    eprintln!("{layout}: {total} poses on {} photos, {crowded} with two or more", photos.len());
    assert!(total >= 50 && crowded >= 10, "{total} poses, {crowded} photos with several");
}

/// The decoder as another runtime ran it: POSEFIX_MULTI_POSE_DUMPS=DIR:HxW:N, DIR holding one file
/// per photo of raw little-endian f32, the model's four heads (CHW, in [`HEADS`] order) then
/// `poses` and `pose_scores` as that runtime computed them (`/work/scratch/cost/ort_dump.py`
/// writes them from onnxruntime), judged against the reference on those heads.
#[test]
#[ignore = "reads another runtime's outputs"]
fn dumped_outputs_match_the_reference() {
    let var = std::env::var("POSEFIX_MULTI_POSE_DUMPS").expect("POSEFIX_MULTI_POSE_DUMPS=DIR:HxW:N");
    let mut parts = var.rsplitn(3, ':');
    let n: usize = parts.next().unwrap().parse().unwrap();
    let (h, w) = parts.next().unwrap().split_once('x').unwrap();
    let grid: (usize, usize) = (h.parse().unwrap(), w.parse().unwrap());
    let dir = parts.next().unwrap();
    let cells = grid.0 * grid.1;
    let (mut photos, mut total) = (0, 0);
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let mut at = 0;
        let mut take = |len: usize| {
            at += len;
            values[at - len..at].to_vec()
        };
        let heads: Vec<Vec<f32>> = CHANNELS.iter().map(|c| take(c * cells)).collect();
        let poses = take(n * 51);
        let scores = take(n);
        assert_eq!(at, values.len(), "{}", path.display());
        let outputs =
            [Tensor::from_shape(&[1, n, 17, 3], &poses).unwrap(), Tensor::from_shape(&[1, n], &scores).unwrap()];
        total += judge(&path.display().to_string(), &heads, grid, n, &outputs);
        photos += 1;
    }
    eprintln!("{dir}: {total} poses on {photos} photos, all matching");
    assert!(photos > 0);
}
