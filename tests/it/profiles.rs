//! Runtime profiles: the data and its sources, `portable` as the intersection, the decoder of
//! every generated model against the profiles, and `inspect` on hand-built and real models.

use std::collections::BTreeSet;

use onnx_posefix::contract::Layout;
use onnx_posefix::inspect::{self, HeadsReport};
use onnx_posefix::model::proto::{self, Dim};
use onnx_posefix::onnx_protobuf::tensor_proto::DataType;
use onnx_posefix::onnx_protobuf::Message;
use onnx_posefix::onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto};
use onnx_posefix::profiles::{self, Facts, Pattern, Profile, Proof, RuleKind, Violation, PORTABLE, PROFILE_NAMES};
use onnx_posefix::rewrite::{rewrite, RewriteOptions, Rewritten};
use onnx_posefix::testing::synthetic::{self, SyntheticSpec};

use crate::common::{loaded, real_model_path, run_cli, snapshot_settings, stdout};

fn runtimes() -> Vec<Profile> {
    Profile::all().unwrap().into_iter().filter(|p| p.derived_from.is_empty()).collect()
}

fn rewritten(spec: &SyntheticSpec) -> Rewritten {
    rewrite(&loaded(&synthetic::generate(spec)), &RewriteOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", spec.label()))
}

fn decoder_violations(r: &Rewritten, profile: &Profile) -> Vec<Violation> {
    profiles::check_model(
        r.model(),
        &Facts::propagate(r.model(), &[]),
        profile,
        onnx_posefix::model::query::is_decoder_node,
    )
}

#[test]
fn every_profile_loads_and_every_entry_has_a_source() {
    let all = Profile::all().unwrap();
    assert_eq!(all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), PROFILE_NAMES);
    for p in &all {
        assert!(!p.supported.ops.is_empty(), "{}", p.name);
        for source in p.sources() {
            assert!(!source.trim().is_empty(), "{}: an entry without a source", p.name);
        }
        for rule in p.rules.iter().chain(p.op_rules.iter().map(|r| &r.rule)) {
            assert!(
                rule.portable || rule.note.is_some(),
                "{}: \"{}\" left out of portable unexplained",
                p.name,
                rule.kind
            );
        }
    }
    assert_eq!(Profile::by_name("tensorrt-8.4").unwrap().version, "8.4");
    let err = Profile::by_name("barracuda").unwrap_err().to_string();
    assert!(err.contains("barracuda-1.0.4") && err.contains(PORTABLE), "{err}");
    // The Barracuda 1.0.4 gaps are stated, with their sources.
    let b = Profile::by_name("barracuda-1.0.4").unwrap();
    for op in ["ArgMax", "TopK", "Less", "Where", "Expand"] {
        assert!(!b.supported.ops.contains(op) && b.unsupported.contains_key(op), "{op}");
    }
}

#[test]
fn malformed_profiles_are_refused() {
    let file = "ops = [\"Add\"]";
    let text = |extra: &str| {
        format!(
            "name = \"x\"\nruntime = \"r\"\nversion = \"1\"\nsource = \"s\"\n[supported]\nsource = \"list\"\n{file}\n{extra}"
        )
    };
    let proven = "[proof]\nstatus = \"documentation-only\"\nwhy = \"read only\"\n";
    let text = |extra: &str| text(&format!("{proven}{extra}"));
    assert!(Profile::parse("x.toml", &text("")).is_ok());
    let no_source = "[[op_rules]]\nops = [\"Add\"]\nrule = \"constant_input\"\ninput = 1\nsource = \"\"\n";
    assert!(Profile::parse("x.toml", &text(no_source)).unwrap_err().to_string().contains("no source"));
    let unknown_op = "[[op_rules]]\nops = [\"Mul\"]\nrule = \"constant_input\"\ninput = 1\nsource = \"s\"\n";
    assert!(Profile::parse("x.toml", &text(unknown_op)).unwrap_err().to_string().contains("Mul"));
    let unexplained = "[[rules]]\nrule = \"max_rank\"\nrank = 4\nportable = false\nsource = \"s\"\n";
    assert!(Profile::parse("x.toml", &text(unexplained)).unwrap_err().to_string().contains("without a note"));
    assert!(Profile::parse("y.toml", &text("")).unwrap_err().to_string().contains("called x"));
}

#[test]
fn a_profile_says_what_backs_it() {
    let text = |proof: &str| {
        format!(
            "name = \"x\"\nruntime = \"r\"\nversion = \"1\"\nsource = \"s\"\n[supported]\nsource = \"list\"\nops = \
             [\"Add\"]\n{proof}"
        )
    };
    let refused = |proof: &str| Profile::parse("x.toml", &text(proof)).unwrap_err().to_string();
    assert!(refused("").contains("proof"), "{}", refused(""));
    let run = |extra: &str| {
        format!("[proof]\nstatus = \"proven\"\nruntime_version = \"r 1\"\nhow = \"a leg\"\nsingle_pose = true\n{extra}")
    };
    let in_ci = run("in_ci = true\nmulti_pose = false\n");
    let proof = Profile::parse("x.toml", &text(&in_ci)).unwrap().proof;
    assert!(proof.is_proven(), "{proof:?}");
    assert_eq!(proof.to_string(), "proven in CI on r 1, single pose only (multi-pose not proven): a leg");
    // A run outside CI gives its evidence; a proof proves a decoder; documentation says why.
    assert!(refused(&run("in_ci = false\nmulti_pose = false\n")).contains("evidence"));
    let outside = run("in_ci = false\nmulti_pose = true\nevidence = \"17 of 17 exact\"\n");
    assert!(Profile::parse("x.toml", &text(&outside)).is_ok());
    let neither = in_ci.replace("single_pose = true", "single_pose = false");
    assert!(refused(&neither).contains("single-pose or the multi-pose"), "{}", refused(&neither));
    assert!(refused("[proof]\nstatus = \"documentation-only\"\nwhy = \" \"\n").contains("why"));
    assert!(refused("[proof]\nstatus = \"derived\"\n").contains("derived"));
    assert!(refused("[proof]\nstatus = \"maybe\"\n").contains("maybe"));
    assert!(refused(&run("in_ci = true\nmulti_pose = true\nfigures = 3\n")).contains("figures"));

    // The profiles: the runtimes the conformance legs run are proven in CI, Barracuda 1.0.4 by a
    // run outside it, the rest by documentation only.
    let proof = |name: &str| Profile::by_name(name).unwrap().proof;
    for name in ["ort-web-webgl", "ncnn", "wonnx"] {
        match proof(name) {
            Proof::Proven { in_ci: true, single_pose: true, multi_pose: true, how, .. } => {
                assert!(how.contains("conformance leg"), "{name}: {how}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    match proof("barracuda-1.0.4") {
        Proof::Proven { in_ci: false, single_pose: true, evidence: Some(e), runtime_version, .. } => {
            assert!(!e.trim().is_empty() && runtime_version.contains("1.0.4"), "{runtime_version}")
        }
        other => panic!("barracuda-1.0.4: {other:?}"),
    }
    for name in ["barracuda-2.0", "tensorrt-8.4", "opencv-4.x"] {
        assert!(matches!(proof(name), Proof::DocumentationOnly { .. }), "{name}: {:?}", proof(name));
    }
    assert_eq!(proof(PORTABLE), Proof::Derived);
}

/// Recomputes `portable` from the proven runtime profiles, independently of
/// `Profile::intersection`.
#[test]
fn portable_is_the_intersection_of_the_proven_runtimes() {
    let (runtimes, documented): (Vec<Profile>, Vec<Profile>) =
        runtimes().into_iter().partition(|p| p.proof.is_proven());
    assert_eq!(
        runtimes.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["barracuda-1.0.4", "ort-web-webgl", "ncnn", "wonnx", "onnxruntime", "openvino", "mnn"]
    );
    let portable = Profile::by_name(PORTABLE).unwrap();
    assert_eq!(Profile::proven().unwrap(), runtimes);
    // A documentation-only profile shapes nothing: no rule of portable comes from one.
    for r in portable.rules.iter().chain(portable.op_rules.iter().map(|r| &r.rule)) {
        assert!(r.origin.iter().all(|o| documented.iter().all(|d| &d.name != o)), "{}: {:?}", r.kind, r.origin);
    }
    assert!(portable.source.contains("proven"), "{}", portable.source);
    assert_eq!(portable.derived_from, runtimes.iter().map(|p| p.name.clone()).collect::<Vec<_>>());
    let everywhere: BTreeSet<String> = runtimes[0]
        .supported
        .ops
        .iter()
        .filter(|op| runtimes.iter().all(|p| p.supported.ops.contains(*op)))
        .cloned()
        .collect();
    assert_eq!(portable.supported.ops, everywhere);
    for op in ["Reshape", "Clip", "MaxPool", "Sub", "Mul", "Add", "Sigmoid", "Conv"] {
        assert!(portable.supported.ops.contains(op), "the decoder's {op} is not portable");
    }
    for op in ["ArgMax", "TopK", "Where", "Expand", "Less", "NonZero", "Not"] {
        assert!(!portable.supported.ops.contains(op) && portable.unsupported.contains_key(op), "{op}");
    }
    // Every portable rule of every runtime is there, tagged with its origin; no other rule is.
    for p in &runtimes {
        for rule in p.rules.iter().filter(|r| r.portable) {
            let found = portable
                .rules
                .iter()
                .find(|r| r.kind == rule.kind)
                .unwrap_or_else(|| panic!("{}: {}", p.name, rule.kind));
            assert!(found.origin.contains(&p.name));
        }
        for r in &p.op_rules {
            for op in r.ops.iter().filter(|op| everywhere.contains(*op)) {
                let found = portable.rules_for(op).any(|x| x.kind == r.rule.kind && x.origin.contains(&p.name));
                assert_eq!(found, r.rule.portable, "{}: {op} \"{}\"", p.name, r.rule.kind);
            }
        }
    }
    let stated =
        |op: &str, kind: &RuleKind| runtimes.iter().any(|p| p.rules_for(op).any(|r| r.portable && &r.kind == kind));
    for r in &portable.op_rules {
        for op in &r.ops {
            assert!(everywhere.contains(op) && stated(op, &r.rule.kind), "{op} \"{}\" comes from nowhere", r.rule.kind);
        }
    }
    for r in &portable.rules {
        assert!(runtimes.iter().any(|p| p.rules.iter().any(|x| x.portable && x.kind == r.kind)), "{}", r.kind);
    }
}

#[test]
fn every_generated_decoder_satisfies_portable() {
    let portable = Profile::by_name(PORTABLE).unwrap();
    for spec in synthetic::matrix() {
        let r = rewritten(&spec);
        let violations: Vec<Violation> = decoder_violations(&r, &portable);
        assert!(
            violations.is_empty(),
            "{}: {}",
            spec.label(),
            violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
        );
        profiles::check_decoder(r.model(), &[], &portable).unwrap_or_else(|e| panic!("{}: {e:?}", spec.label()));
    }
}

#[test]
fn every_runtime_takes_every_decoder_at_the_opsets_it_reads() {
    // The decoder has no reductions, comparisons or MatMuls left (issue 9): Barracuda 1.0.4's
    // channel-axis reductions and attribute-only axes no longer stop NHWC decoders or opsets 13
    // and 18. What remains depends on the model's opset alone: TensorRT 8.4's ceiling at 13, and
    // wonnx, which cannot read the bounds of Clip before opset 11 (attributes).
    for spec in synthetic::matrix() {
        let r = rewritten(&spec);
        for profile in runtimes() {
            let violations = decoder_violations(&r, &profile);
            let lines = violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n");
            let expected: fn(&Violation) -> bool = match profile.name.as_str() {
                "tensorrt-8.4" if spec.opset > 13 => |v| v.node.is_none() && v.rule == "opset 13 or lower",
                "wonnx" if spec.opset < 11 => |v| v.op.as_deref() == Some("Clip") && v.rule.starts_with("no attribute"),
                _ => |_| false,
            };
            assert!(violations.iter().all(expected), "{} on {}:\n{lines}", spec.label(), profile.name);
            let refused =
                (profile.name == "tensorrt-8.4" && spec.opset > 13) || (profile.name == "wonnx" && spec.opset < 11);
            assert_eq!(!violations.is_empty(), refused, "{} on {}", spec.label(), profile.name);
        }
    }
}

#[test]
fn static_ranks_of_the_decoder_agree_with_tract() {
    for spec in synthetic::matrix() {
        let r = rewritten(&spec);
        let bytes = r.to_bytes(&loaded(&synthetic::generate(&spec))).unwrap();
        let from_tract = Facts::from_tensors(&onnx_posefix::tract_bridge::infer_tensor_facts(&bytes, &[]).unwrap());
        let propagated = Facts::propagate(r.model(), &[]);
        let graph = r.model().graph.as_ref().unwrap();
        let constants: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for node in graph.node.iter().filter(|n| onnx_posefix::model::query::is_decoder_node(n)) {
            // tract folds constants into the ops that read them; their ranks are their dims.
            for t in node.input.iter().chain(&node.output).filter(|t| !constants.contains(t.as_str())) {
                let ranks = (propagated.rank(t), from_tract.rank(t));
                assert!(ranks.0.is_some() && ranks.0 == ranks.1, "{}: {t} {ranks:?}", spec.label());
            }
        }
    }
}

/// `image [1,3,8,8]` -> Transpose to NHWC -> ArgMax over channels (an int64 graph output), a
/// rank-4 MatMul against a constant, and an Unsqueeze at axis 0.
fn argmax_model() -> ModelProto {
    let mut graph = GraphProto::new();
    graph.name = "argmax".into();
    graph.input.push(proto::value_info("image", DataType::FLOAT, &[1, 3, 8, 8].map(Dim::Fixed)));
    graph.initializer.push(proto::tensor_f32("w", &[3, 4], &[0.5; 12]));
    graph.node.push(proto::node(
        "Transpose",
        "to_nhwc",
        &["image"],
        &["nhwc"],
        vec![proto::attr_ints("perm", &[0, 2, 3, 1])],
    ));
    graph.node.push(proto::node(
        "ArgMax",
        "best_channel",
        &["nhwc"],
        &["best"],
        vec![proto::attr_int("axis", 3), proto::attr_int("keepdims", 0)],
    ));
    graph.node.push(proto::node("MatMul", "project", &["nhwc", "w"], &["projected"], vec![]));
    graph.node.push(proto::node(
        "Unsqueeze",
        "batch_axis",
        &["projected"],
        &["lifted"],
        vec![proto::attr_ints("axes", &[0])],
    ));
    graph.output.push(proto::value_info("best", DataType::INT64, &[1, 8, 8].map(Dim::Fixed)));
    graph.output.push(proto::value_info("lifted", DataType::FLOAT, &[1, 1, 8, 8, 4].map(Dim::Fixed)));
    let mut opset = OperatorSetIdProto::new();
    opset.version = 11;
    let mut model = ModelProto::new();
    model.ir_version = 6;
    model.opset_import = vec![opset];
    model.graph = Some(graph).into();
    model
}

#[test]
fn inspect_reports_the_nodes_each_profile_rejects_and_why() {
    let model = loaded(&argmax_model());
    let report = inspect::inspect(&model, None, &[]).unwrap();
    assert_eq!(
        report.ops.iter().map(|o| o.op.as_str()).collect::<Vec<_>>(),
        ["ArgMax", "MatMul", "Transpose", "Unsqueeze"]
    );
    assert!(matches!(report.heads, HeadsReport::NotFound { .. }));
    assert!(!report.decoder.present);
    let rejected = |profile: &str| -> Vec<String> {
        report.profile(profile).unwrap().violations.iter().map(|v| v.to_string()).collect()
    };
    let barracuda = rejected("barracuda-1.0.4");
    let expect = [
        "node best_channel (ArgMax): ArgMax is not supported breaks \"supported ops only\" of barracuda-1.0.4",
        "node project (MatMul): input 0 (nhwc) of rank 4 breaks \"input 0 of rank 2\" of barracuda-1.0.4",
        "node batch_axis (Unsqueeze): lifted has rank 5 breaks \"tensors of rank 4 or less\" of barracuda-1.0.4",
        "node batch_axis (Unsqueeze): axis 0 breaks \"axes 2 or higher\" of barracuda-1.0.4",
    ];
    for e in expect {
        assert!(barracuda.iter().any(|v| v.starts_with(e)), "missing {e:?} in:\n{}", barracuda.join("\n"));
    }
    assert_eq!(report.profile("barracuda-1.0.4").unwrap().rejected_nodes, 3);
    // ArgMax and the int64 output are rejected by portable; Transpose is supported everywhere.
    let portable = rejected(PORTABLE);
    assert!(
        portable.iter().any(|v| v.starts_with("node best_channel (ArgMax): ArgMax is not supported")),
        "{portable:?}"
    );
    assert!(portable.iter().all(|v| !v.contains("(Transpose)")), "{portable:?}");
    let trt = rejected("tensorrt-8.4");
    assert!(trt.iter().any(|v| v.contains("graph output best of type int64")), "{trt:?}");
    // The text lists the same lines; the JSON has the same verdicts.
    let text = report.to_string();
    assert!(text.contains("barracuda-1.0.4: rejects 3 of 4 nodes"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["profiles"][1]["name"], "barracuda-1.0.4");
    // Each profile says what backs it.
    assert_eq!(json["profiles"][1]["proof"]["status"], "proven");
    assert_eq!(json["profiles"][1]["proof"]["in_ci"], false);
    assert_eq!(json["profiles"][2]["proof"]["status"], "documentation-only");
    assert_eq!(json["profiles"][0]["proof"]["status"], "derived");
    assert_eq!(
        json["profiles"][0]["derived_from"],
        serde_json::json!(["barracuda-1.0.4", "ort-web-webgl", "ncnn", "wonnx", "onnxruntime", "openvino", "mnn"])
    );
    assert!(text.contains("  barracuda-2.0: accepts all 4 nodes\n    proof: documentation only: "), "{text}");
    assert!(
        text.contains("    proof: derived, the intersection of the proven profiles barracuda-1.0.4, ort-web-webgl"),
        "{text}"
    );
    assert_eq!(json["inputs"][0]["shape"], serde_json::json!([1, 3, 8, 8]));
    assert_eq!(json["heads"]["status"], "not_found");
    // With a target, only that profile is judged.
    let one = inspect::inspect(&model, Some(&Profile::by_name("opencv-4.x").unwrap()), &[]).unwrap();
    assert_eq!(one.profiles.len(), 1);
    assert_eq!(one.profiles[0].rejected_nodes, 0, "{one}");
}

#[test]
fn inspect_on_a_rewritten_model_finds_the_decoder() {
    let spec = SyntheticSpec { heads_layout: Layout::Nhwc, ..SyntheticSpec::posenet(11) };
    let original = loaded(&synthetic::generate(&spec));
    let r = rewritten(&spec);
    let bytes = r.to_bytes(&original).unwrap();
    let model =
        onnx_posefix::LoadedModel::from_parts(bytes.clone(), onnx_posefix::model::io::parse_model(&bytes).unwrap());
    let report = inspect::inspect(&model, None, &[]).unwrap();
    assert!(report.decoder.present && report.decoder.nodes == r.nodes_added());
    assert_eq!(report.decoder.provenance.as_ref().unwrap().settings.layout, Layout::Nhwc);
    assert_eq!(report.profile(PORTABLE).unwrap().rejected_nodes, 0, "{report}");
    // Square pools and unit strides: Barracuda 1.0.4 takes the NHWC decoder too.
    assert_eq!(report.profile("barracuda-1.0.4").unwrap().rejected_nodes, 0, "{report}");
}

#[test]
fn inspect_on_the_real_model() {
    let model = onnx_posefix::model::io::read_model(&real_model_path()).unwrap();
    let report = inspect::inspect(&model, None, &[]).unwrap();
    match &report.heads {
        HeadsReport::Found { heatmaps, offsets, layout, grid, stride, scores, .. } => {
            assert_eq!((heatmaps.as_str(), offsets.as_str(), layout.as_str()), ("heatmaps", "offsets", "NCHW"));
            assert_eq!((*grid, *stride, scores.as_str()), ([17, 17], Some(16), "sigmoid"));
        }
        HeadsReport::NotFound { reason } => panic!("{reason}"),
    }
    let ops: Vec<&str> = report.ops.iter().map(|o| o.op.as_str()).collect();
    assert!(ops.contains(&"Conv") && ops.contains(&"Clip"), "{ops:?}");
    for p in &report.profiles {
        assert!(p.violations.is_empty(), "{report}");
    }
    snapshot_settings().bind(|| insta::assert_snapshot!("inspect_real_posenet_mobilenet075_257", report.to_string()));
}

/// A graph with each defect of the decoder before issue 9, as `posefix/` nodes: a bool mask from
/// Equal and Cast, a reshape that WebGL reads wrong in the next Mul, ReduceSum with axes as an
/// input (opset 13), all reading heads whose writers WebGL removes at load (a Sigmoid fused into
/// its Conv; the offsets listed after it).
fn old_decoder_defects() -> ModelProto {
    let mut graph = GraphProto::new();
    graph.name = "old_decoder_defects".into();
    graph.input.push(proto::value_info("image", DataType::FLOAT, &[1, 3, 17, 17].map(Dim::Fixed)));
    graph.initializer.push(proto::tensor_f32("w_heat", &[17, 3, 1, 1], &[0.5; 51]));
    graph.initializer.push(proto::tensor_f32("w_off", &[34, 3, 1, 1], &[0.25; 102]));
    graph.initializer.push(proto::tensor_i64("posefix/rows", &[4], &[1, 2, 17, 289]));
    graph.initializer.push(proto::tensor_i64("posefix/axes", &[1], &[3]));
    graph.node.push(proto::node("Conv", "heat_conv", &["image", "w_heat"], &["logits"], vec![]));
    graph.node.push(proto::node("Sigmoid", "heat_sigmoid", &["logits"], &["heatmaps"], vec![]));
    graph.node.push(proto::node("Conv", "offset_conv", &["image", "w_off"], &["offsets"], vec![]));
    let float = vec![proto::attr_int("to", DataType::FLOAT as i64)];
    graph.node.push(proto::node("Equal", "posefix/is_max_eq", &["heatmaps", "heatmaps"], &["posefix/eq"], vec![]));
    graph.node.push(proto::node("Cast", "posefix/is_max", &["posefix/eq"], &["posefix/mask"], float));
    graph.node.push(proto::node(
        "Reshape",
        "posefix/offsets_yx",
        &["offsets", "posefix/rows"],
        &["posefix/yx"],
        vec![],
    ));
    graph.node.push(proto::node("Mul", "posefix/picked", &["posefix/yx", "posefix/yx"], &["posefix/p"], vec![]));
    let keep = vec![proto::attr_int("keepdims", 1)];
    graph.node.push(proto::node("ReduceSum", "posefix/sum", &["posefix/p", "posefix/axes"], &["posefix/s"], keep));
    graph.output.push(proto::value_info("heatmaps", DataType::FLOAT, &[1, 17, 17, 17].map(Dim::Fixed)));
    graph.output.push(proto::value_info("offsets", DataType::FLOAT, &[1, 34, 17, 17].map(Dim::Fixed)));
    graph.output.push(proto::value_info("posefix/s", DataType::FLOAT, &[1, 2, 17, 1].map(Dim::Fixed)));
    let mut opset = OperatorSetIdProto::new();
    opset.version = 13;
    let mut model = ModelProto::new();
    model.ir_version = 7;
    model.opset_import = vec![opset];
    model.graph = Some(graph).into();
    model
}

#[test]
fn thin_runtime_profiles_name_each_defect_of_the_old_decoder_with_its_source() {
    let model = old_decoder_defects();
    let facts = Facts::propagate(&model, &[]);
    let rules = |name: &str| -> Vec<(String, String)> {
        let profile = Profile::by_name(name).unwrap();
        let found = profiles::check_model(&model, &facts, &profile, onnx_posefix::model::query::is_decoder_node);
        assert!(found.iter().all(|v| !v.source.trim().is_empty()), "{found:?}");
        found.into_iter().map(|v| (v.node.unwrap_or_default(), v.rule)).collect()
    };
    let has = |found: &[(String, String)], node: &str, rule: &str| {
        assert!(found.iter().any(|(n, r)| n == node && r.contains(rule)), "{node}: {rule} not in {found:#?}")
    };
    let webgl = rules("ort-web-webgl");
    has(&webgl, "posefix/sum", "registered for opsets 1-12");
    has(&webgl, "posefix/sum", "axes as an attribute");
    has(&webgl, "posefix/picked", "reshape that moves data between texture rows");
    has(&webgl, "posefix/is_max_eq", "where the runtime deletes or fuses its writer");
    // The offsets are listed after the heatmaps, whose Sigmoid WebGL fuses away.
    has(&webgl, "posefix/offsets_yx", "where the runtime deletes or fuses its writer");
    let ncnn = rules("ncnn");
    has(&ncnn, "posefix/is_max_eq", "supported ops only");
    has(&ncnn, "posefix/is_max", "supported ops only");
    has(&ncnn, "posefix/sum", "registered for opsets 1-12");
    let wonnx = rules("wonnx");
    has(&wonnx, "posefix/is_max_eq", "no tensors of type");
    has(&wonnx, "posefix/is_max", "no tensors of type");
}

/// `image [1,3,8,8]` -> one `posefix/` node: a MaxPool of `kernel` or a Conv with a `kernel`-sized
/// weight, at `strides`, no padding.
fn window_model(op: &str, kernel: [i64; 2], strides: [i64; 2]) -> ModelProto {
    let mut graph = GraphProto::new();
    graph.name = "window".into();
    graph.input.push(proto::value_info("image", DataType::FLOAT, &[1, 3, 8, 8].map(Dim::Fixed)));
    let mut attributes = vec![proto::attr_ints("strides", &strides)];
    let (inputs, channels): (&[&str], i64) = if op == "Conv" {
        let weights = vec![0.5; (4 * 3 * kernel[0] * kernel[1]) as usize];
        graph.initializer.push(proto::tensor_f32("w", &[4, 3, kernel[0], kernel[1]], &weights));
        (&["image", "w"], 4)
    } else {
        attributes.push(proto::attr_ints("kernel_shape", &kernel));
        (&["image"], 3)
    };
    graph.node.push(proto::node(op, "posefix/window", inputs, &["out"], attributes));
    let dims = [1, channels, (8 - kernel[0]) / strides[0] + 1, (8 - kernel[1]) / strides[1] + 1];
    graph.output.push(proto::value_info("out", DataType::FLOAT, &dims.map(Dim::Fixed)));
    let mut opset = OperatorSetIdProto::new();
    opset.version = 11;
    let mut model = ModelProto::new();
    model.ir_version = 6;
    model.opset_import = vec![opset];
    model.graph = Some(graph).into();
    model
}

/// An op, its kernel and strides, and the rule and detail Barracuda 1.0.4 refuses it with.
type Window = (&'static str, [i64; 2], [i64; 2], Option<(Pattern, &'static str)>);

#[test]
fn barracuda_1_0_4_refuses_non_square_pool_kernels_and_strides() {
    let barracuda = Profile::by_name("barracuda-1.0.4").unwrap();
    let portable = Profile::by_name(PORTABLE).unwrap();
    let cases: [Window; 6] = [
        (
            "MaxPool",
            [3, 1],
            [1, 1],
            Some((
                Pattern::NonSquarePoolKernel,
                "kernel_shape [3, 1] (3 high, 1 wide), which the runtime pools as 1 high and 3 wide",
            )),
        ),
        (
            "Conv",
            [1, 1],
            [1, 2],
            Some((
                Pattern::NonSquareStrides,
                "strides [1, 2] (1 down, 2 across), which the runtime steps as 2 down and 1 across",
            )),
        ),
        (
            "MaxPool",
            [2, 2],
            [2, 1],
            Some((
                Pattern::NonSquareStrides,
                "strides [2, 1] (2 down, 1 across), which the runtime steps as 1 down and 2 across",
            )),
        ),
        ("MaxPool", [2, 2], [2, 2], None),
        ("Conv", [3, 3], [2, 2], None),
        // A Conv's kernel comes from its weights, which the importer reads right.
        ("Conv", [1, 3], [1, 1], None),
    ];
    let dir = tempfile::TempDir::new().unwrap();
    for (op, kernel, strides, refused) in cases {
        let model = window_model(op, kernel, strides);
        let label = format!("{op} kernel {kernel:?} strides {strides:?}");
        // `inspect --target barracuda-1.0.4`, and the check `--target` runs on a rewrite's decoder.
        let inspected = |p: &Profile| -> Vec<String> {
            let report = inspect::inspect(&loaded(&model), Some(p), &[]).unwrap();
            report.profiles[0].violations.iter().map(|v| v.to_string()).collect()
        };
        let target = |p: &Profile| -> Vec<String> {
            let found = profiles::check_decoder(&model, &[], p).err().unwrap_or_default();
            found.iter().map(|v| v.to_string()).collect()
        };
        let path = dir.path().join("window.onnx");
        std::fs::write(&path, model.write_to_bytes().unwrap()).unwrap();
        let cli =
            stdout(&run_cli(&["inspect".as_ref(), path.as_os_str(), "--target".as_ref(), "barracuda-1.0.4".as_ref()]));
        let Some((pattern, detail)) = refused else {
            assert!(inspected(&barracuda).is_empty(), "{label}: {:?}", inspected(&barracuda));
            assert!(target(&barracuda).is_empty() && target(&portable).is_empty(), "{label}");
            assert!(cli.contains("barracuda-1.0.4: accepts all 1 nodes"), "{label}: {cli}");
            continue;
        };
        let expected = format!("node posefix/window ({op}): {detail} breaks \"{pattern}\" of barracuda-1.0.4 (");
        for found in [inspected(&barracuda), target(&barracuda)] {
            assert_eq!(found.len(), 1, "{label}: {found:#?}");
            assert!(found[0].starts_with(&expected), "{label}: {}", found[0]);
            // The source is the importer's lines at release/1.0.4.
            assert!(found[0].contains("barracuda-release/blob/0f5faef2"), "{label}: {}", found[0]);
        }
        assert!(cli.contains("barracuda-1.0.4: rejects 1 of 1 nodes") && cli.contains(detail), "{label}: {cli}");
        // `portable` must hold on Barracuda 1.0.4: it refuses the same.
        let rule = barracuda
            .rules_for(op)
            .find(|r| r.kind == RuleKind::KnownWrong { pattern })
            .unwrap_or_else(|| panic!("{label}: no {pattern:?} rule on {op}"));
        assert!(rule.portable, "{label}: {pattern:?} left out of portable");
        let expected = format!("node posefix/window ({op}): {detail} breaks \"{pattern}\" of portable (");
        for found in [inspected(&portable), target(&portable)] {
            assert!(found.iter().any(|v| v.starts_with(&expected)), "{label}: {found:#?}");
        }
    }
}

/// MNN's converter takes a pool's missing `strides` for 0 and crashes: `--target mnn` and
/// `portable` refuse such a pool, and accept it with its unit strides written out (as the
/// decoders write them).
#[test]
fn mnn_refuses_pools_whose_strides_are_left_to_the_default() {
    let mnn = Profile::by_name("mnn").unwrap();
    let portable = Profile::by_name(PORTABLE).unwrap();
    let explicit = window_model("MaxPool", [3, 3], [1, 1]);
    let mut implicit = explicit.clone();
    implicit.graph.as_mut().unwrap().node[0].attribute.retain(|a| a.name != "strides");
    let found = |model: &ModelProto, p: &Profile| -> Vec<String> {
        let found = profiles::check_decoder(model, &[], p).err().unwrap_or_default();
        found.iter().map(|v| v.to_string()).collect()
    };
    for p in [&mnn, &portable] {
        assert!(found(&explicit, p).is_empty(), "{}: {:?}", p.name, found(&explicit, p));
        let refused = found(&implicit, p);
        let expected = format!(
            "node posefix/window (MaxPool): no strides attribute, which the runtime reads as 0 (ONNX's default is 1) \
             breaks \"{}\" of {} (",
            Pattern::ImplicitPoolStrides,
            p.name
        );
        assert!(refused.iter().any(|v| v.starts_with(&expected)), "{}: {refused:#?}", p.name);
        assert!(refused.iter().any(|v| v.contains("OnnxPooling.cpp")), "{}: {refused:#?}", p.name);
    }
}
