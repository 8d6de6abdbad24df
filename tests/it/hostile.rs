//! Malformed and hostile models through the binary: each ends in exit 2 with one clear line and
//! no OUT, or in exit 0 with an OUT that tract runs and whose keypoints match the reference
//! decoder on the original heads. Never a panic, never a corrupt OUT. The library takes the same
//! inputs through the fuzz harness (`fuzz/src/harness.rs`, its cheap validation included), and
//! every case the fuzzer kept in `fuzz/regressions/` is replayed.

use std::fs;
use std::path::Path;

use onnx_posefix::model::proto::{self, Dim};
use onnx_posefix::model::query::provenance as existing_provenance;
use onnx_posefix::onnx_protobuf::attribute_proto::AttributeType;
use onnx_posefix::onnx_protobuf::tensor_proto::DataType;
use onnx_posefix::onnx_protobuf::{AttributeProto, GraphProto, Message, ModelProto, TensorProto};
use onnx_posefix::reference;
use onnx_posefix::rewrite::RewriteOptions;
use onnx_posefix::testing::rng::Rng;
use onnx_posefix::testing::synthetic::{self, SyntheticSpec};
use onnx_posefix::tract_bridge::Runner;
use tempfile::TempDir;
use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::prelude::*;

use crate::common::{repo_path, run_cli, stderr, stdout};

// The fuzz targets' harness, so that both hold OUT to the same contract.
#[allow(dead_code)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

/// What the binary did with a model.
#[derive(Debug)]
enum Verdict {
    /// Exit 2; the error line without its `error: ` prefix.
    Refused(String),
    /// Exit 0; the bytes of OUT.
    Rewritten(Vec<u8>),
}

impl Verdict {
    #[track_caller]
    fn refused(self) -> String {
        match self {
            Verdict::Refused(e) => e,
            Verdict::Rewritten(_) => panic!("expected a refusal, the model was rewritten"),
        }
    }

    #[track_caller]
    fn rewritten(self) -> Vec<u8> {
        match self {
            Verdict::Rewritten(out) => out,
            Verdict::Refused(e) => panic!("expected a rewrite, got: {e}"),
        }
    }
}

/// Runs `onnx-posefix IN OUT extra...` on `model` and checks the contract: exit 2 with one line,
/// no panic and no OUT (nor a temporary file), or exit 0 with OUT written. The library, through
/// the fuzz harness, must agree and its validation must pass.
fn run(model: &ModelProto, extra: &[&str]) -> Verdict {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in.onnx");
    let output = dir.path().join("out.onnx");
    let bytes = model.write_to_bytes().unwrap();
    fs::write(&input, &bytes).unwrap();
    let mut args = vec![input.as_os_str().to_owned(), output.as_os_str().to_owned()];
    args.extend(extra.iter().map(|a| a.into()));
    let out = run_cli(&args);
    let err = stderr(&out);
    assert!(!err.contains("panicked") && !err.contains("backtrace") && !err.contains("RUST_BACKTRACE"), "{err}");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".posefix-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_eq!(fs::read(&input).unwrap(), bytes, "IN was modified");

    let options = harness::options_from_args(&extra.join("\n")).expect("flags the harness knows");
    let library =
        harness::exercise(&bytes, &options).unwrap_or_else(|violation| panic!("contract violated: {violation}"));
    match out.status.code() {
        Some(2) => {
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            let line = err.trim_end().strip_prefix("error: ").unwrap_or_else(|| panic!("no 'error: ' prefix: {err}"));
            assert!(!output.exists(), "OUT written despite the error: {line}");
            assert!(
                !matches!(library, harness::Outcome::Rewritten(_)),
                "the library rewrote what the binary refused: {line}"
            );
            eprintln!("refused: {line}");
            Verdict::Refused(line.to_string())
        }
        Some(0) => {
            eprintln!("rewritten: {}", stdout(&out).trim_end());
            assert!(
                matches!(library, harness::Outcome::Rewritten(_)),
                "the library refused what the binary rewrote: {library:?}"
            );
            Verdict::Rewritten(fs::read(&output).expect("OUT written"))
        }
        code => panic!("exit code {code:?}: {err}"),
    }
}

/// Runs IN and OUT in tract on seeded noise and checks OUT's keypoints against the reference
/// decoder on IN's heads, bit for bit on positions. `input_shape` is the image's.
fn assert_keypoints_right(model: &ModelProto, out: &[u8], input_shape: &[usize]) {
    let rewritten = ModelProto::parse_from_bytes(out).expect("OUT decodes");
    let p = existing_provenance(&rewritten).expect("OUT carries its provenance");
    let before = Runner::new(&model.write_to_bytes().unwrap(), &[input_shape.to_vec()]).expect("tract runs IN");
    let after = Runner::new(out, &[input_shape.to_vec()]).expect("tract runs OUT");
    let mut rng = Rng::new(17);
    for round in 0..2 {
        let image =
            ArrayD::from_shape_fn(IxDyn(input_shape), |_| if round == 0 { rng.uniform(-1.0, 1.0) } else { 0.0 });
        let heads = before.run(vec![image.clone().into_tensor()]).unwrap();
        let view = |name: &str| {
            heads[before.output_index(name).expect("head is an output of IN")].to_plain_array_view::<f32>().unwrap()
        };
        let expected = reference::decode(
            view(&p.settings.heatmaps),
            view(&p.settings.offsets),
            p.settings.layout,
            p.settings.stride,
            p.settings.scores,
        )
        .unwrap();
        let outputs = after.run(vec![image.into_tensor()]).unwrap();
        let keypoints = outputs[after.output_index(&p.settings.output).expect("keypoints output")]
            .to_plain_array_view::<f32>()
            .unwrap();
        assert_eq!(keypoints.shape(), &[expected.len(), 17, 3]);
        for (n, pose) in expected.iter().enumerate() {
            for (k, kp) in pose.iter().enumerate() {
                let got = (keypoints[[n, k, 0]], keypoints[[n, k, 1]], keypoints[[n, k, 2]]);
                assert_eq!((got.0, got.1), (kp.x, kp.y), "round {round} n={n} k={k}");
                assert!((got.2 - kp.score).abs() <= 1e-6, "round {round} n={n} k={k}: {} vs {}", got.2, kp.score);
            }
        }
    }
}

fn base() -> ModelProto {
    synthetic::generate(&SyntheticSpec::posenet(11))
}

const INPUT: [usize; 4] = [1, 3, 257, 257];

/// The base model with `image` declared as `dims` and the outputs' declared shapes cleared, so
/// that only the input says how big everything is.
fn with_image_dims(dims: &[Dim]) -> ModelProto {
    let mut model = base();
    let g = graph(&mut model);
    proto::set_declared_shape(&mut g.input[0], dims);
    for o in g.output.iter_mut() {
        o.type_.as_mut().unwrap().mut_tensor_type().shape.clear();
    }
    model
}

fn graph(model: &mut ModelProto) -> &mut GraphProto {
    model.graph.as_mut().unwrap()
}

/// The producer of `tensor` writes `renamed` instead; returns the producer's index.
fn reroute(g: &mut GraphProto, tensor: &str, renamed: &str) -> usize {
    let ix = g.node.iter().position(|n| n.output.iter().any(|o| o == tensor)).expect("a producer");
    for o in g.node[ix].output.iter_mut().filter(|o| *o == tensor) {
        *o = renamed.to_string();
    }
    ix
}

/// Redeclares graph output `name` with another type and shape.
fn declare_output(g: &mut GraphProto, name: &str, elem: DataType, dims: &[i64]) {
    let o = g.output.iter_mut().find(|o| o.name == name).expect("an output");
    let dims: Vec<Dim> = dims.iter().map(|d| Dim::Fixed(*d)).collect();
    *o = proto::value_info(name, elem, &dims);
}

/// Heads converted by a Cast to `elem` at the end of the graph, declared so.
fn cast_heads(elem: DataType) -> ModelProto {
    let mut model = base();
    let g = graph(&mut model);
    for (head, channels) in [("heatmaps", 17), ("offsets", 34)] {
        let raw = format!("{head}_raw");
        reroute(g, head, &raw);
        g.node.push(proto::node(
            "Cast",
            &format!("{head}_cast"),
            &[&raw],
            &[head],
            vec![proto::attr_int("to", elem as i64)],
        ));
        declare_output(g, head, elem, &[1, channels, 17, 17]);
    }
    model
}

#[test]
fn int_heads_are_refused_naming_the_type() {
    let err = run(&cast_heads(DataType::INT32), &[]).refused();
    assert!(err.contains("heatmaps has 17 channels but type int32"), "{err}");
    assert!(err.contains("only float32 and float16 heads are supported"), "{err}");
}

#[test]
fn double_heads_are_refused_naming_the_type() {
    let err = run(&cast_heads(DataType::DOUBLE), &[]).refused();
    assert!(err.contains("type double") && err.contains("double is not narrowed to float32"), "{err}");
}

#[test]
fn one_head_of_another_type_is_named() {
    let mut model = base();
    let g = graph(&mut model);
    reroute(g, "offsets", "offsets_raw");
    g.node.push(proto::node(
        "Cast",
        "offsets_cast",
        &["offsets_raw"],
        &["offsets"],
        vec![proto::attr_int("to", DataType::DOUBLE as i64)],
    ));
    declare_output(g, "offsets", DataType::DOUBLE, &[1, 34, 17, 17]);
    let err = run(&model, &[]).refused();
    assert!(err.contains("offsets has 34 channels but type double"), "{err}");
}

/// The heatmaps reshaped to `dims` before they leave the graph.
fn reshaped_heatmaps(dims: &[i64]) -> ModelProto {
    let mut model = base();
    let g = graph(&mut model);
    reroute(g, "heatmaps", "heatmaps_4d");
    g.initializer.push(proto::tensor_i64("heatmaps_shape", &[dims.len() as i64], dims));
    g.node.push(proto::node("Reshape", "heatmaps_reshape", &["heatmaps_4d", "heatmaps_shape"], &["heatmaps"], vec![]));
    declare_output(g, "heatmaps", DataType::FLOAT, dims);
    model
}

#[test]
fn rank_3_heads_are_refused_naming_the_rank() {
    let err = run(&reshaped_heatmaps(&[1, 17, 289]), &[]).refused();
    assert!(err.contains("heatmaps has rank 3") && err.contains("rank 4"), "{err}");
}

#[test]
fn rank_5_heads_are_refused_naming_the_rank() {
    let err = run(&reshaped_heatmaps(&[1, 17, 17, 17, 1]), &[]).refused();
    assert!(err.contains("heatmaps has rank 5") && err.contains("rank 4"), "{err}");
}

#[test]
fn zero_sized_dims_are_refused() {
    // On the image: every head is empty.
    let model = with_image_dims(&[1, 3, 0, 257].map(Dim::Fixed));
    let err = run(&model, &[]).refused();
    assert!(err.contains("0"), "{err}");
    // On the heads only, contradicting what the graph computes: tract goes by the graph (it
    // ignores declared output shapes), and so does the decoder.
    let mut model = base();
    declare_output(graph(&mut model), "heatmaps", DataType::FLOAT, &[1, 17, 0, 17]);
    let out = run(&model, &[]).rewritten();
    assert_keypoints_right(&model, &out, &INPUT);
}

#[test]
fn a_tensor_written_twice_is_refused() {
    let mut model = base();
    let g = graph(&mut model);
    let conv = g.node.iter().find(|n| n.output == ["heatmaps"]).unwrap().clone();
    let mut twin = conv;
    twin.name = "heatmap_conv_twin".into();
    g.node.push(twin);
    let err = run(&model, &[]).refused();
    assert!(err.contains("heatmaps") && err.contains("heatmap_conv_twin"), "{err}");
}

#[test]
fn an_output_that_is_also_an_initializer_is_refused() {
    let mut model = base();
    let g = graph(&mut model);
    let mut t = g.initializer[0].clone();
    t.name = "offsets".into();
    g.initializer.push(t);
    let err = run(&model, &[]).refused();
    assert!(err.contains("offsets"), "{err}");
}

#[test]
fn a_cycle_is_refused() {
    let mut model = base();
    let g = graph(&mut model);
    reroute(g, "heatmaps", "heatmaps_conv");
    g.node.push(proto::node("Add", "heatmaps_add", &["heatmaps_conv", "heatmaps_loop"], &["heatmaps"], vec![]));
    g.node.push(proto::node("Identity", "heatmaps_back", &["heatmaps"], &["heatmaps_loop"], vec![]));
    let err = run(&model, &[]).refused();
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn nodes_out_of_topological_order_rewrite_correctly() {
    let mut model = synthetic::generate(&SyntheticSpec {
        sigmoid_heatmaps: true,
        heads_layout: onnx_posefix::contract::Layout::Nhwc,
        ..SyntheticSpec::posenet(13)
    });
    graph(&mut model).node.reverse();
    let out = run(&model, &[]).rewritten();
    assert_keypoints_right(&model, &out, &INPUT);
}

#[test]
fn dangling_inputs_and_outputs_are_refused() {
    let mut model = base();
    let g = graph(&mut model);
    let conv = g.node.iter_mut().find(|n| n.output == ["heatmaps"]).unwrap();
    conv.input[2] = "ghost_bias".into();
    let err = run(&model, &[]).refused();
    assert!(err.contains("ghost_bias"), "{err}");

    let mut model = base();
    let g = graph(&mut model);
    g.output.push(proto::value_info("ghost", DataType::FLOAT, &[Dim::Fixed(1)]));
    let err = run(&model, &[]).refused();
    assert!(err.contains("ghost"), "{err}");
}

#[test]
fn huge_declared_dims_are_refused() {
    let model = with_image_dims(&[1, 3, 1_000_000_000_000, 1_000_000_000_000].map(Dim::Fixed));
    let err = run(&model, &[]).refused();
    assert!(err.contains("1000000000000"), "{err}");

    // Pinned through the command line.
    let model = with_image_dims(&[Dim::Fixed(1), Dim::Fixed(3), Dim::Symbol("H".into()), Dim::Fixed(257)]);
    let err = run(&model, &["--input-shape", "1,3,4000000000000,257"]).refused();
    assert!(err.contains("4000000000000"), "{err}");

    // On a tensor inside the graph.
    let mut model = base();
    let g = graph(&mut model);
    g.value_info.push(proto::value_info(
        "heatmap_conv_output",
        DataType::FLOAT,
        &[1 << 40, 17, 17, 17].map(Dim::Fixed),
    ));
    run(&model, &[]).refused();
}

/// A graph attribute `name` holding `Identity(outer) -> inner`.
fn branch(name: &str, outer: &str, inner: &str) -> AttributeProto {
    let mut g = GraphProto::new();
    g.name = name.into();
    g.node.push(proto::node("Identity", &format!("{name}_identity"), &[outer], &[inner], vec![]));
    g.output.push(proto::value_info(inner, DataType::FLOAT, &[1, 17, 17, 17].map(Dim::Fixed)));
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::GRAPH.into();
    a.g = Some(g).into();
    a
}

fn bool_scalar(name: &str) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = DataType::BOOL as i32;
    t.raw_data = vec![1];
    t
}

/// The heatmaps computed through an `If` whose branches read them from the outer graph; the
/// branch tensors are named `then_name` and `else_name`.
fn heatmaps_through_if(then_name: &str, else_name: &str) -> ModelProto {
    let mut model = base();
    let g = graph(&mut model);
    reroute(g, "heatmaps", "heatmaps_outer");
    g.initializer.push(bool_scalar("use_then"));
    let branches =
        vec![branch("then_branch", "heatmaps_outer", then_name), branch("else_branch", "heatmaps_outer", else_name)];
    g.node.push(proto::node("If", "heatmaps_if", &["use_then"], &["heatmaps"], branches));
    model
}

#[test]
fn nested_subgraphs_rewrite_correctly() {
    let model = heatmaps_through_if("heatmaps_then", "heatmaps_else");
    let out = run(&model, &[]).rewritten();
    assert_keypoints_right(&model, &out, &INPUT);
}

#[test]
fn names_inside_subgraphs_that_collide_with_ours() {
    let model = heatmaps_through_if("posefix/heatmaps_flat", "posefix/first_cell_rank");
    let out = run(&model, &[]).rewritten();
    assert_keypoints_right(&model, &out, &INPUT);
}

#[test]
fn tensors_named_like_ours_get_other_names() {
    let mut model = base();
    let g = graph(&mut model);
    // A side branch whose tensors and constants carry the decoder's names.
    g.initializer.push(proto::tensor_f32("posefix/first_cell_rank", &[1], &[2.0]));
    g.node.push(proto::node(
        "Mul",
        "side_mul",
        &["heatmaps", "posefix/first_cell_rank"],
        &["posefix/heatmaps_flat"],
        vec![],
    ));
    g.node.push(proto::node("Relu", "side_relu", &["posefix/heatmaps_flat"], &["posefix/keypoints"], vec![]));
    g.output.push(proto::value_info("posefix/keypoints", DataType::FLOAT, &[1, 17, 17, 17].map(Dim::Fixed)));
    let out = run(&model, &[]).rewritten();
    assert_keypoints_right(&model, &out, &INPUT);
}

#[test]
fn an_output_already_called_keypoints() {
    let mut model = base();
    let g = graph(&mut model);
    g.node.push(proto::node("Relu", "user_keypoints", &["heatmaps"], &["keypoints"], vec![]));
    g.output.push(proto::value_info("keypoints", DataType::FLOAT, &[1, 17, 17, 17].map(Dim::Fixed)));
    let err = run(&model, &[]).refused();
    assert!(err.contains("keypoints") && err.contains("--output-name"), "{err}");
    let out = run(&model, &["--output-name", "pose"]).rewritten();
    assert_keypoints_right(&model, &out, &INPUT);
}

#[test]
fn a_node_named_like_ours_reads_as_a_decorated_model() {
    let mut model = base();
    graph(&mut model).node[0].name = "posefix/conv".into();
    let err = run(&model, &[]).refused();
    assert!(err.contains("already has an onnx-posefix decoder"), "{err}");
}

#[test]
fn a_panic_inside_tract_is_one_clear_line() {
    // tract-core 0.23.9 indexes a Conv's `pads` by spatial axis unchecked.
    let mut model = base();
    let conv = graph(&mut model).node.iter_mut().find(|n| n.output == ["heatmaps"]).unwrap();
    conv.attribute.retain(|a| a.name != "pads");
    conv.attribute.push(proto::attr_ints("pads", &[]));
    let err = run(&model, &[]).refused();
    assert!(err.starts_with("tract failed on this model (internal error: index out of bounds"), "{err}");
}

/// Every input the fuzzers kept (`fuzz/regressions/*.onnx`, options in a `.args` file beside
/// it: the smallest input of each distinct outcome, crashes included) goes through parse,
/// rewrite and the cheap validation without a panic or a violation.
#[test]
fn fuzz_regressions_replay() {
    let replayed = replay_folder(&repo_path("fuzz/regressions"));
    assert!(replayed > 100, "only {replayed} regression inputs");
}

/// Replays every `.onnx` of `dir`; returns how many.
fn replay_folder(dir: &Path) -> usize {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    let total: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    assert!(total < 1 << 20, "{} holds {total} bytes of models; keep it under 1 MiB", dir.display());
    let failures: Vec<String> = files.iter().filter_map(|path| replay(path).err()).collect();
    assert!(failures.is_empty(), "{} of {} inputs fail:\n{}", failures.len(), files.len(), failures.join("\n"));
    files.len()
}

fn replay(path: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let args = fs::read_to_string(path.with_extension("args")).unwrap_or_default();
    let options = harness::options_from_args(&args).map_err(|e| format!("{name}: {e}"))?;
    let mut variants = vec![options.clone()];
    if !options.prune {
        variants.push(RewriteOptions { prune: true, ..options });
    }
    for options in variants {
        let run = std::panic::catch_unwind(|| harness::exercise(&bytes, &options));
        match run {
            Ok(Ok(_)) => {}
            Ok(Err(violation)) => return Err(format!("{name}: {violation}")),
            Err(_) => return Err(format!("{name}: panicked")),
        }
    }
    Ok(())
}
