//! The rewrite over the generated model matrix: snapshots of the appended subgraph, additivity,
//! portability of the emitted ops, and tract runs against the reference decoder.

use std::collections::HashSet;

use onnx_posefix::contract::{Layout, ScoreMode, NUM_KEYPOINTS};
use onnx_posefix::heads::HeadChoice;
use onnx_posefix::model::io::{LoadedModel, ModelSource};
use onnx_posefix::model::proto::{declared_tensor, Dim};
use onnx_posefix::onnx_protobuf::{Message, ModelProto};
use onnx_posefix::reference;
use onnx_posefix::rewrite::{rewrite, InputShape, MultiPoseOptions, RewriteOptions, Rewritten};
use onnx_posefix::testing::rng::Rng;
use onnx_posefix::testing::synthetic::{self, Head, SyntheticSpec};
use onnx_posefix::tract_bridge::Runner;
use tract_onnx::prelude::tract_ndarray::{ArrayD, ArrayViewD, IxDyn};
use tract_onnx::prelude::*;

use crate::common::{assert_no_constant_maps_in_elementwise_ops, loaded, snapshot_settings};

/// Ops the decoder may use: all in Unity Barracuda 1.0.4's list and in every runtime we target.
/// What the decoder may emit: no comparison, bool, reduction, MatMul or Concat (issue 9).
const PORTABLE_OPS: [&str; 10] =
    ["Reshape", "Clip", "MaxPool", "Sub", "Mul", "Add", "Sigmoid", "Conv", "Ceil", "Transpose"];
/// The single-pose decoder's nodes (issue 21's dispatch budget): 23 with a sigmoid, 22 for raw
/// scores, two Transposes more for NHWC heads.
const SINGLE_POSE_NODES: usize = 23;

fn rewrite_spec(spec: &SyntheticSpec, options: &RewriteOptions) -> (LoadedModel, Rewritten) {
    let original = loaded(&synthetic::generate(spec));
    let rewritten = rewrite(&original, options).unwrap_or_else(|e| panic!("{}: {e}", spec.label()));
    (original, rewritten)
}

fn encode(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().expect("encode")
}

/// Inputs for a spec, in its layout: seeded noise, zeros (all-equal heatmaps: ties everywhere),
/// a checkerboard (equal maxima in different rows) and a gradient.
fn inputs(spec: &SyntheticSpec, batch: usize) -> Vec<(&'static str, ArrayD<f32>)> {
    let mut shape = spec.input_shape(batch);
    shape[0] = batch;
    let mut rng = Rng::new(7);
    let noise = ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.uniform(-1.0, 1.0));
    let (cy, cx) = match spec.input_layout {
        Layout::Nchw => (2, 3),
        Layout::Nhwc => (1, 2),
    };
    let checker =
        ArrayD::from_shape_fn(IxDyn(&shape), |ix| if ((ix[cy] / 16) + (ix[cx] / 16)) % 2 == 0 { 1.0 } else { -1.0 });
    let gradient = ArrayD::from_shape_fn(IxDyn(&shape), |ix| (ix[cy] + ix[cx]) as f32 / 256.0 - 1.0);
    vec![("noise", noise), ("zeros", ArrayD::zeros(IxDyn(&shape))), ("checkerboard", checker), ("gradient", gradient)]
}

fn output<'a>(runner: &Runner, outputs: &'a [Tensor], name: &str) -> ArrayViewD<'a, f32> {
    let ix = runner.output_index(name).unwrap_or_else(|| panic!("no output {name}"));
    outputs[ix].to_plain_array_view::<f32>().expect("f32")
}

/// Runs original and rewritten models on the same inputs and checks `keypoints` against the
/// reference decoder on the original heads. Returns the number of keypoints compared.
fn assert_matches_reference(
    spec: &SyntheticSpec,
    original: &LoadedModel,
    rewritten: &Rewritten,
    batch: usize,
) -> usize {
    let mut shape = spec.input_shape(batch);
    shape[0] = batch;
    let label = spec.label();
    let before = Runner::new(original.file_bytes(), &[shape.clone()]).unwrap();
    let after = Runner::new(&rewritten.to_bytes(original).unwrap(), &[shape]).unwrap();
    let p = rewritten.provenance();
    let mut compared = 0;
    for (name, input) in inputs(spec, batch) {
        let raw = before.run(vec![input.clone().into_tensor()]).unwrap();
        let heatmaps = output(&before, &raw, spec.names.get(Head::Heatmaps));
        let offsets = output(&before, &raw, spec.names.get(Head::Offsets));
        let expected =
            reference::decode(heatmaps.view(), offsets.view(), p.settings.layout, p.settings.stride, p.settings.scores)
                .unwrap();
        let decoded = after.run(vec![input.into_tensor()]).unwrap();
        // The original outputs are still there and still the same values.
        for head in spec.output_order.iter().filter(|_| rewritten.nodes_pruned() == 0) {
            let head = spec.names.get(*head);
            assert_eq!(output(&before, &raw, head), output(&after, &decoded, head), "{label} {name}: {head} changed");
        }
        let keypoints = output(&after, &decoded, &p.settings.output);
        assert_eq!(keypoints.shape(), &[batch, NUM_KEYPOINTS, 3], "{label} {name}");
        for (n, pose) in expected.iter().enumerate() {
            for (k, kp) in pose.iter().enumerate() {
                let got = [keypoints[[n, k, 0]], keypoints[[n, k, 1]], keypoints[[n, k, 2]]];
                // Positions are one f32 addition in both: they must be bit-identical.
                assert_eq!((got[0], got[1]), (kp.x, kp.y), "{label} {name} n={n} k={k} cell {:?}", kp.cell);
                assert!(
                    (got[2] - kp.score).abs() <= 1e-6,
                    "{label} {name} n={n} k={k}: score {} vs {}",
                    got[2],
                    kp.score
                );
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn matrix_rewrites_match_snapshots_and_the_reference() {
    let mut total = 0;
    for spec in synthetic::matrix() {
        let (original, rewritten) = rewrite_spec(&spec, &RewriteOptions::default());
        snapshot_settings().bind(|| {
            insta::assert_snapshot!(
                format!("decoder_{}", spec.label()),
                onnx_posefix::testing::render::appended_subgraph(rewritten.model())
            );
        });
        assert_eq!(rewritten.provenance().settings.stride as usize, spec.stride, "{}", spec.label());
        let expected_scores = if spec.sigmoid_heatmaps { ScoreMode::Raw } else { ScoreMode::Sigmoid };
        assert_eq!(rewritten.provenance().settings.scores, expected_scores, "{}", spec.label());
        assert_eq!(rewritten.provenance().settings.layout, spec.heads_layout, "{}", spec.label());
        let batch = spec.batch.concrete(2);
        total += assert_matches_reference(&spec, &original, &rewritten, batch);
    }
    assert!(total > 0);
}

/// The multi-pose decoder (`--poses 2`: the frame, a first round and one that reads an earlier
/// pose) over the matrix, as text. Its values are checked in `multi_pose_graph` and
/// `multi_pose_cli`.
#[test]
fn matrix_multi_pose_rewrites_match_snapshots() {
    for spec in synthetic::matrix() {
        let options = RewriteOptions { multi_pose: Some(MultiPoseOptions::new(2)), ..RewriteOptions::default() };
        let (_, rewritten) = rewrite_spec(&spec, &options);
        let text = onnx_posefix::testing::render::appended_subgraph_under(rewritten.model(), "posefix/mp_");
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("multi_pose_decoder_{}", spec.label()), text));
    }
}

/// The multi-pose decoder's Gather form (`--target onnxruntime`), on two matrix models: NCHW
/// logits at opset 11 (its first), NHWC sigmoid heads on a non-square grid at opset 18 (ReduceMin's
/// axes as an input).
#[test]
fn gather_form_multi_pose_rewrites_match_snapshots() {
    let picked = ["nchw_logits_op11_b1_257x257", "nhwc_sigmoid_op18_b1_257x353"];
    let specs: Vec<_> = synthetic::matrix().into_iter().filter(|s| picked.contains(&s.label().as_str())).collect();
    assert_eq!(specs.len(), picked.len(), "the matrix still has both models");
    for spec in specs {
        let options = RewriteOptions {
            multi_pose: Some(MultiPoseOptions::new(2)),
            target: "onnxruntime".to_string(),
            ..RewriteOptions::default()
        };
        let (_, rewritten) = rewrite_spec(&spec, &options);
        let text = onnx_posefix::testing::render::appended_subgraph_under(rewritten.model(), "posefix/mp_");
        assert!(text.contains("TopK"), "{}: not the Gather form", spec.label());
        snapshot_settings().bind(|| insta::assert_snapshot!(format!("multi_pose_gather_{}", spec.label()), text));
    }
}

#[test]
fn rewrite_is_additive() {
    for spec in synthetic::matrix() {
        let (original, rewritten) = rewrite_spec(&spec, &RewriteOptions::default());
        let spliced = rewritten.to_bytes(&original).unwrap();
        let a = ModelProto::parse_from_bytes(original.file_bytes()).unwrap();
        let b = ModelProto::parse_from_bytes(&spliced).unwrap();
        // The splice of a canonically encoded model is canonical: the same bytes as encoding the
        // whole parsed result.
        assert!(spliced == encode(&b), "{}: spliced output is not canonical", spec.label());
        let (ga, gb) = (a.graph.as_ref().unwrap(), b.graph.as_ref().unwrap());
        // Everything of the original is still there, in the same order, byte for byte.
        assert_prefix(&ga.node, &gb.node, "node");
        assert_prefix(&ga.initializer, &gb.initializer, "initializer");
        assert_prefix(&ga.input, &gb.input, "input");
        assert_prefix(&ga.output, &gb.output, "output");
        assert_prefix(&ga.value_info, &gb.value_info, "value_info");
        assert_prefix(&a.metadata_props, &b.metadata_props, "metadata");
        assert_eq!(a.opset_import, b.opset_import, "opset imports are not bumped");
        assert_eq!(a.ir_version, b.ir_version);
        assert_eq!(gb.output.len(), ga.output.len() + 1, "keypoints comes last");
        assert_eq!(gb.output.last().unwrap().name, "keypoints");
        let (_, dims) = declared_tensor(gb.output.last().unwrap()).unwrap();
        assert_eq!(dims.unwrap()[1..], [Dim::Fixed(17), Dim::Fixed(3)]);
    }
}

#[test]
fn unknown_fields_survive() {
    let mut model = synthetic::generate(&SyntheticSpec::posenet(11));
    // Fields from a newer onnx.proto than ours, at model and node level.
    model.special_fields.mut_unknown_fields().add_varint(99, 7);
    let node = &mut model.graph.as_mut().unwrap().node[0];
    node.special_fields.mut_unknown_fields().add_length_delimited(98, b"future".to_vec());
    let bytes = encode(&model);
    let original = LoadedModel::from_parts(bytes.clone(), ModelProto::parse_from_bytes(&bytes).unwrap());
    let rewritten = rewrite(&original, &RewriteOptions::default()).unwrap();
    let reread = ModelProto::parse_from_bytes(&rewritten.to_bytes(&original).unwrap()).unwrap();
    assert_eq!(reread.special_fields.unknown_fields().get(99).map(|f| format!("{f:?}")), Some("Varint(7)".to_string()));
    let node = &reread.graph.as_ref().unwrap().node[0];
    assert!(node.special_fields.unknown_fields().get(98).is_some(), "node-level unknown field lost");
}

fn encode_any<M: Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("encode")
}

fn assert_prefix<M: Message + std::fmt::Debug>(before: &[M], after: &[M], what: &str) {
    assert!(after.len() >= before.len(), "{what}: entries were removed");
    for (i, (x, y)) in before.iter().zip(after).enumerate() {
        assert!(encode_any(x) == encode_any(y), "{what} #{i} changed");
    }
}

#[test]
fn decoder_uses_only_portable_ops_ranks_and_constant_weights() {
    for spec in synthetic::matrix() {
        let (_, rewritten) = rewrite_spec(&spec, &RewriteOptions::default());
        let graph = rewritten.model().graph.as_ref().unwrap();
        let ours: Vec<_> = graph.node.iter().filter(|n| n.name.starts_with("posefix/")).collect();
        assert_eq!(ours.len(), rewritten.nodes_added());
        let transposes = if spec.heads_layout == Layout::Nhwc { 2 } else { 0 };
        let recomputed = ours.iter().filter(|n| n.name.contains("_copy")).count();
        assert!(
            ours.len() - recomputed <= SINGLE_POSE_NODES + transposes,
            "{}: {} nodes added",
            spec.label(),
            ours.len()
        );
        let ints = |n: &onnx_posefix::onnx_protobuf::NodeProto, name: &str| {
            n.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone()).unwrap_or_default()
        };
        let constants: std::collections::HashMap<&str, &Vec<i64>> =
            graph.initializer.iter().map(|t| (t.name.as_str(), &t.dims)).collect();
        for n in &ours {
            assert!(PORTABLE_OPS.contains(&n.op_type.as_str()), "{}: {} emitted", spec.label(), n.op_type);
            assert!(n.domain.is_empty());
            if n.op_type == "Conv" {
                // 1x1 channel picks, and the per-cell maps' square kernels over one channel.
                let weights = constants.get(n.input[1].as_str()).expect("Conv against constant weights");
                let side = weights[2];
                assert_eq!(weights[3], side, "{}: {} has a non-square kernel", spec.label(), n.name);
                if side > 1 {
                    assert_eq!(weights[1], 1, "{}: {} reads more than the origin map", spec.label(), n.name);
                    // Padded to keep the map's size, no pad wider than the map (Barracuda 1.0.4).
                    let pads = ints(n, "pads");
                    let (h, w) = (spec.output_hw().0 as i64, spec.output_hw().1 as i64);
                    assert_eq!(pads[0] + pads[2], side - 1, "{}: {}", spec.label(), n.name);
                    assert_eq!(pads[1] + pads[3], side - 1, "{}: {}", spec.label(), n.name);
                    assert!(
                        pads[1] < w.max(2) && pads[3] <= w && pads[0] < h.max(2),
                        "{}: {} {pads:?}",
                        spec.label(),
                        n.name
                    );
                }
                assert!(ints(n, "strides").iter().all(|&s| s == 1), "{}: {} strides", spec.label(), n.name);
            }
            if n.op_type == "MaxPool" {
                // Barracuda 1.0.4 transposes non-square kernels and strides.
                let kernel = ints(n, "kernel_shape");
                assert_eq!(kernel[0], kernel[1], "{}: {} has a non-square kernel", spec.label(), n.name);
                assert!(ints(n, "strides").iter().all(|&s| s == 1), "{}: {} strides", spec.label(), n.name);
            }
            if n.op_type == "Transpose" {
                assert_eq!(ints(n, "perm"), [0, 3, 1, 2], "NHWC to NCHW only");
            }
            if n.op_type == "Clip" {
                assert_eq!(n.input.len() > 1, spec.opset >= 11, "Clip bounds follow the opset's form");
            }
            if n.op_type == "Reshape" {
                let shape = constants.get(n.input[1].as_str()).expect("constant shape");
                assert!(shape[0] <= 4, "{}: reshape to rank {}", spec.label(), shape[0]);
            }
        }
        assert_no_constant_maps_in_elementwise_ops(graph, &spec.label());
        for (name, dims) in &constants {
            if name.starts_with("posefix/") {
                assert!(dims.len() <= 4, "{name} has rank {}", dims.len());
            }
        }
    }
}

#[test]
fn prune_keeps_only_keypoints_and_gives_the_same_result() {
    let spec = synthetic::matrix().into_iter().find(|s| s.heads_layout == Layout::Nhwc).unwrap();
    let options = RewriteOptions { prune: true, ..RewriteOptions::default() };
    let (original, pruned) = rewrite_spec(&spec, &options);
    let (_, full) = rewrite_spec(&spec, &RewriteOptions::default());
    let graph = pruned.model().graph.as_ref().unwrap();
    assert_eq!(graph.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["keypoints"]);
    assert!(pruned.nodes_pruned() >= 2, "the displacement heads feed nothing: {}", pruned.nodes_pruned());
    let names: HashSet<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains("displacement")), "{names:?}");
    let remaining: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert!(!remaining.iter().any(|n| n.contains("displacement")), "unused weights are dropped");
    assert!(pruned.to_bytes(&original).unwrap().len() < full.to_bytes(&original).unwrap().len());
    let batch = spec.batch.concrete(2);
    assert!(assert_matches_reference(&spec, &original, &pruned, batch) > 0);
}

/// A model whose input is fully symbolic, `[N, 3, H, W]`.
fn symbolic_spatial(spec: &SyntheticSpec) -> ModelProto {
    let mut model = synthetic::generate(spec);
    let graph = model.graph.as_mut().unwrap();
    let dims = [Dim::Symbol("N".into()), Dim::Fixed(3), Dim::Symbol("H".into()), Dim::Symbol("W".into())];
    onnx_posefix::model::proto::set_declared_shape(&mut graph.input[0], &dims);
    for o in graph.output.iter_mut() {
        let (_, d) = declared_tensor(o).unwrap();
        let rank = d.map(|d| d.len()).unwrap_or(4);
        let syms: Vec<Dim> = (0..rank).map(|i| Dim::Symbol(format!("o{i}"))).collect();
        onnx_posefix::model::proto::set_declared_shape(o, &syms);
    }
    model
}

#[test]
fn symbolic_dims_need_pinning_and_pins_are_written_into_the_model() {
    let spec = SyntheticSpec::posenet(13);
    let model = symbolic_spatial(&spec);
    let err = rewrite(&loaded(&model), &RewriteOptions::default()).unwrap_err().to_string();
    assert!(err.contains("--input-shape"), "{err}");

    let options = RewriteOptions {
        input_shapes: vec!["1,3,257,257".parse::<InputShape>().unwrap()],
        ..RewriteOptions::default()
    };
    let rewritten = rewrite(&loaded(&model), &options).unwrap();
    let graph = rewritten.model().graph.as_ref().unwrap();
    let (_, input) = declared_tensor(&graph.input[0]).unwrap();
    assert_eq!(input.unwrap(), [1, 3, 257, 257].map(Dim::Fixed));
    let heatmaps = graph.output.iter().find(|o| o.name == "heatmaps").unwrap();
    assert_eq!(declared_tensor(heatmaps).unwrap().1.unwrap(), [1, 17, 17, 17].map(Dim::Fixed));
    assert_matches_reference(&spec, &loaded(&model), &rewritten, 1);

    // The named form pins the same input; a fixed dim cannot be changed.
    let named =
        RewriteOptions { input_shapes: vec!["image:1,3,257,257".parse().unwrap()], ..RewriteOptions::default() };
    assert!(rewrite(&loaded(&model), &named).is_ok());
    let fixed = loaded(&synthetic::generate(&spec));
    let contradict = RewriteOptions { input_shapes: vec!["1,3,513,513".parse().unwrap()], ..RewriteOptions::default() };
    let err = rewrite(&fixed, &contradict).unwrap_err().to_string();
    assert!(err.contains("fixes it at 257"), "{err}");
}

#[test]
fn heads_can_be_named_and_scores_forced() {
    let spec = SyntheticSpec { sigmoid_heatmaps: true, ..SyntheticSpec::posenet(11) };
    let options = RewriteOptions {
        heads: HeadChoice {
            heatmaps: Some("heatmaps".into()),
            offsets: Some("offsets".into()),
            ..HeadChoice::default()
        },
        scores: Some(ScoreMode::Sigmoid),
        output_name: "pose".into(),
        ..RewriteOptions::default()
    };
    let (original, rewritten) = rewrite_spec(&spec, &options);
    assert_eq!(rewritten.provenance().settings.scores, ScoreMode::Sigmoid);
    assert!(!rewritten.scores_detected());
    assert_eq!(rewritten.model().graph.as_ref().unwrap().output.last().unwrap().name, "pose");
    assert_matches_reference(&spec, &original, &rewritten, 1);
}

#[test]
fn a_decorated_model_is_refused() {
    let spec = SyntheticSpec::posenet(11);
    let (_, rewritten) = rewrite_spec(&spec, &RewriteOptions::default());
    let again =
        rewrite(&loaded(rewritten.model()), &RewriteOptions { output_name: "other".into(), ..Default::default() });
    assert!(again.unwrap_err().to_string().contains("already has an onnx-posefix decoder"));
    assert_eq!(onnx_posefix::model::query::provenance(rewritten.model()), Some(rewritten.provenance().clone()));
}

#[test]
fn names_that_collide_with_ours_get_suffixes() {
    let spec = SyntheticSpec::posenet(11);
    let mut model = synthetic::generate(&spec);
    // A user tensor already called like one of ours (without the node prefix check firing).
    let graph = model.graph.as_mut().unwrap();
    let mut extra = graph.node[0].clone();
    extra.name = "user_node".into();
    extra.output = vec!["posefix/heatmap_max".into()];
    graph.node.push(extra);
    let rewritten = rewrite(&loaded(&model), &RewriteOptions::default()).unwrap();
    let graph = rewritten.model().graph.as_ref().unwrap();
    let outputs: Vec<&String> = graph.node.iter().flat_map(|n| &n.output).collect();
    let unique: HashSet<&String> = outputs.iter().copied().collect();
    assert_eq!(outputs.len(), unique.len(), "every tensor is written once");
    assert!(outputs.iter().any(|o| o.as_str() == "posefix/heatmap_max_2"));
}

#[test]
fn real_model_rewrites_and_matches_the_reference_on_noise() {
    // As the binary reads it: structure only, 45 weight tensors left in the file, never read.
    let original = onnx_posefix::model::io::open_structure(&crate::common::real_model_path()).unwrap();
    assert!(original.weights_stripped());
    // The record layout kept from opening is the one a fresh walk of the file finds.
    let walked = onnx_posefix::model::wire::ModelRecords::read(original.source()).unwrap();
    assert!(*original.records().unwrap() == walked && walked.graph.as_ref().is_some_and(|(_, g)| g.len() > 100));
    let rewritten = rewrite(&original, &RewriteOptions::default()).unwrap();
    let spliced = rewritten.to_bytes(&original).unwrap();
    let full = ModelProto::parse_from_bytes(&spliced).unwrap();
    // The same rewrite on the fully decoded model, re-encoded whole, reads the same.
    let decoded = onnx_posefix::model::io::read_model(&crate::common::real_model_path()).unwrap();
    let classic = rewrite(&decoded, &RewriteOptions::default()).unwrap();
    assert!(&full == classic.model(), "splicing and re-encoding disagree");
    // The file was written by Python's protobuf, so its bytes are kept as they were, not
    // re-encoded: every original weight record appears verbatim.
    let before = ModelProto::parse_from_bytes(decoded.file_bytes()).unwrap();
    assert!(spliced.len() > decoded.file_bytes().len() && spliced.len() < decoded.file_bytes().len() + 96 * 1024);
    assert_prefix(&before.graph.initializer, &full.graph.initializer, "initializer");
    assert_prefix(&before.graph.node, &full.graph.node, "node");
    snapshot_settings().bind(|| {
        insta::assert_snapshot!(
            "decoder_real_posenet_mobilenet075_257",
            onnx_posefix::testing::render::appended_subgraph(rewritten.model())
        );
    });
    let p = rewritten.provenance();
    assert_eq!(
        (p.settings.heatmaps.as_str(), p.settings.offsets.as_str(), p.settings.stride, p.settings.scores),
        ("heatmaps", "offsets", 16, ScoreMode::Sigmoid)
    );
    let shape = vec![1, 3, 257, 257];
    let before = Runner::new(decoded.file_bytes(), std::slice::from_ref(&shape)).unwrap();
    let after = Runner::new(&rewritten.to_bytes(&original).unwrap(), std::slice::from_ref(&shape)).unwrap();
    let mut rng = Rng::new(3);
    for _ in 0..3 {
        let input = ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.uniform(-1.0, 1.0));
        let raw = before.run(vec![input.clone().into_tensor()]).unwrap();
        let expected = reference::decode(
            output(&before, &raw, "heatmaps"),
            output(&before, &raw, "offsets"),
            Layout::Nchw,
            16,
            ScoreMode::Sigmoid,
        )
        .unwrap();
        let got = after.run(vec![input.into_tensor()]).unwrap();
        let got = output(&after, &got, "keypoints");
        for (k, kp) in expected[0].iter().enumerate() {
            assert_eq!((got[[0, k, 0]], got[[0, k, 1]]), (kp.x, kp.y), "keypoint {k}");
            assert!((got[[0, k, 2]] - kp.score).abs() <= 1e-6);
        }
    }
}

/// Weight-free shape inference must work on a model whose large biases are named the way tract
/// names its own nodes (`conv.bias`): no fallback to reading the whole model.
#[test]
fn structure_only_shape_inference_survives_tract_style_names() {
    let spec = synthetic::ResnetSpec { opset: 11, input_hw: (129, 129), stride: 32, width_percent: 51, seed: 5 };
    let model = synthetic::resnet_sized(&spec);
    let big_bias =
        model.graph.as_ref().unwrap().initializer.iter().any(|t| t.name.ends_with(".bias") && t.raw_data.len() > 4096);
    assert!(big_bias, "the test needs a bias record over the 4 KiB structure threshold");
    let original = loaded(&model);
    assert!(original.weights_stripped());
    let rewritten = rewrite(&original, &RewriteOptions::default()).unwrap();
    assert!(rewritten.notes().is_empty(), "{:?}", rewritten.notes());
    assert_eq!(rewritten.provenance().settings.stride, 32);
}

/// Callers tell errors apart by variant, not by message.
#[test]
fn errors_say_which_kind_they_are() {
    use onnx_posefix::{Error, Invalid};
    let mut old = synthetic::generate(&SyntheticSpec::posenet(9));
    old.opset_import[0].version = 8;
    let err = rewrite(&loaded(&old), &RewriteOptions::default()).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::Opset { found: Some(8), supported: (9, 21) }), "{err:?}");

    let done = rewrite(&loaded(&synthetic::generate(&SyntheticSpec::posenet(11))), &RewriteOptions::default()).unwrap();
    let err = rewrite(&loaded(done.model()), &RewriteOptions::default()).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::AlreadyDecoded), "{err:?}");

    // wonnx reads Clip's bounds as inputs only, so an opset-9 decoder breaks its profile.
    let wonnx = RewriteOptions { target: "wonnx".into(), ..RewriteOptions::default() };
    match rewrite(&loaded(&synthetic::generate(&SyntheticSpec::posenet(9))), &wonnx).map(|_| ()) {
        Err(Error::Target { profile, violations }) => {
            assert_eq!(profile, "wonnx");
            assert!(violations.iter().all(|v| v.node.as_deref().is_some_and(|n| n.starts_with("posefix/"))));
        }
        other => panic!("{other:?}"),
    }

    let mut twin = synthetic::generate(&SyntheticSpec::posenet(11));
    let graph = twin.graph.as_mut().unwrap();
    let mut copy = graph.output.iter().find(|o| o.name == "heatmaps").unwrap().clone();
    copy.name = "twin".into();
    graph.node.push(onnx_posefix::model::proto::node("Identity", "twin_node", &["heatmaps"], &["twin"], vec![]));
    graph.output.push(copy);
    // Neither name says "heatmap", so the names cannot settle it.
    for name in graph
        .output
        .iter_mut()
        .map(|o| &mut o.name)
        .chain(graph.node.iter_mut().flat_map(|n| n.output.iter_mut().chain(n.input.iter_mut())))
    {
        if name == "heatmaps" {
            *name = "maps".into();
        }
    }
    match rewrite(&loaded(&twin), &RewriteOptions::default()).map(|_| ()) {
        Err(Error::HeadsAmbiguous { candidates, .. }) => {
            let heatmaps: Vec<&str> = candidates.iter().map(|c| c.heatmaps.as_str()).collect();
            assert_eq!(heatmaps, ["maps", "twin"]);
        }
        other => panic!("{other:?}"),
    }

    let err = onnx_posefix::model::io::parse_model(b"").unwrap_err();
    assert!(matches!(err, Error::InvalidModel { path: None, reason: Invalid::Empty }), "{err:?}");
}
