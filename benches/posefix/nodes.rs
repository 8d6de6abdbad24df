//! The decoders' size as a GPU sees it (issue 21, section 1): for each decoder as the tool builds
//! it for the real model at 257 and 513 (single pose, `--poses 1`, `5`, `10`, and the forms
//! `--target onnxruntime` builds), the nodes it adds
//! and its critical path, the longest chain of added nodes each of which reads an output of the
//! one before: what a GPU runtime must run one after another whatever it runs side by side. On
//! a GPU runtime nearly every node is at least one dispatch with a fixed cost (the `web`
//! section measures it per backend), so these counts are the decoders' budget.

use std::collections::HashMap;
use std::path::PathBuf;

use onnx_posefix::contract::NAME_PREFIX;
use onnx_posefix::onnx_protobuf::ModelProto;

use crate::models::{self, Workspace};

/// The decoders measured, as (label, the tool's flags).
pub const DECODERS: [(&str, &[&str]); 7] = [
    ("single pose", &[]),
    ("`--poses 1`", &["--poses", "1"]),
    ("`--poses 5`", &["--poses", "5"]),
    ("`--poses 10`", &["--poses", "10"]),
    // ArgMax and GatherElements, where a proven profile allows them (docs/profiles.md).
    ("single pose, `--target onnxruntime`", &["--target", "onnxruntime"]),
    ("`--poses 5 --target onnxruntime`", &["--poses", "5", "--target", "onnxruntime"]),
    ("`--poses 10 --target onnxruntime`", &["--poses", "10", "--target", "onnxruntime"]),
];
pub const SIZES: [usize; 2] = [257, 513];

/// One rewrite of the real model.
pub struct Built {
    pub size: usize,
    pub label: &'static str,
    pub args: &'static [&'static str],
    pub original: PathBuf,
    pub model: ModelProto,
    pub count: Count,
}

/// The appended nodes (named under [`NAME_PREFIX`]) of a rewritten model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    pub nodes: usize,
    /// The longest chain of added nodes, each reading an output of the one before, in nodes.
    pub critical_path: usize,
}

/// Counts the added nodes and their critical path. The graph's own nodes count as sources (a
/// head is there before the decoder starts); only edges between added nodes make a chain.
pub fn count(model: &ModelProto) -> Count {
    let graph = model.graph.as_ref().expect("a graph");
    let added: Vec<_> = graph.node.iter().filter(|n| n.name.starts_with(NAME_PREFIX)).collect();
    let producer: HashMap<&str, usize> =
        added.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    // Kahn's order over the added nodes (ONNX lists nodes in topological order, but this does not
    // rely on it), each node's depth one more than its deepest added producer's.
    let preds: Vec<Vec<usize>> = added
        .iter()
        .map(|n| {
            let mut p: Vec<usize> = n.input.iter().filter_map(|i| producer.get(i.as_str()).copied()).collect();
            p.sort_unstable();
            p.dedup();
            p
        })
        .collect();
    let mut readers = vec![vec![]; added.len()];
    let mut waiting: Vec<usize> = preds.iter().map(Vec::len).collect();
    for (i, p) in preds.iter().enumerate() {
        for &q in p {
            readers[q].push(i);
        }
    }
    let mut depth = vec![1usize; added.len()];
    let mut ready: Vec<usize> = (0..added.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &r in &readers[i] {
            depth[r] = depth[r].max(depth[i] + 1);
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push(r);
            }
        }
    }
    assert_eq!(done, added.len(), "the added nodes form a cycle");
    Count { nodes: added.len(), critical_path: depth.into_iter().max().unwrap_or(0) }
}

/// The real model declared for a `size` input (stride 16), cached in the scratch directory.
pub fn real_at(ws: &Workspace, size: usize) -> PathBuf {
    if size == 257 {
        return ws.real_model();
    }
    let base = models::load(&ws.real_model());
    ws.cached(&format!("real_{size}_s16.onnx"), || models::real_variant(&base, size, 16))
}

/// Every decoder of [`DECODERS`] built by the tool for the real model at each of [`SIZES`].
pub fn build(ws: &Workspace) -> Vec<Built> {
    self_check();
    let mut out = vec![];
    for size in SIZES {
        let original = real_at(ws, size);
        for (label, args) in DECODERS {
            let tag = if args.is_empty() { "single".to_string() } else { args.join("_").replace('-', "") };
            let path = ws.path(&format!("nodes_real_{size}_{tag}.onnx"));
            ws.rewrite_with(&original, &path, args);
            let model = models::load(&path);
            let count = count(&model);
            out.push(Built { size, label, args, original: original.clone(), model, count });
        }
    }
    out
}

/// The table: nodes added and critical path per decoder and input size.
pub fn table(built: &[Built]) -> String {
    let mut md = String::from(
        "| decoder | nodes added (257) | critical path (257) | nodes added (513) | critical path (513) |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for (label, _) in DECODERS {
        let at = |size| built.iter().find(|b| b.label == label && b.size == size).expect("built").count;
        let (a, b) = (at(257), at(513));
        md += &format!("| {label} | {} | {} | {} | {} |\n", a.nodes, a.critical_path, b.nodes, b.critical_path);
    }
    md
}

pub fn section(ws: &Workspace) -> String {
    let built = build(ws);
    format!(
        "Nodes the tool appends to the real MobileNetV1 0.75 (stride 16; `--poses N` appends the \
         single-pose decoder too), and the critical path: the longest chain of added nodes each \
         reading an output of the one before (what a GPU runs one after another). On a GPU \
         runtime nearly every node is a dispatch of fixed cost; the `web` section measures that \
         cost per backend.\n\n{}",
        table(&built)
    )
}

/// [`count`] on a graph small enough to count by hand (the bench has no test harness).
fn self_check() {
    use onnx_posefix::model::proto;
    use onnx_posefix::onnx_protobuf::GraphProto;
    // head -> posefix/1 -> posefix/2 -> posefix/4; posefix/3 beside, reading the head only.
    let mut g = GraphProto::new();
    g.node.push(proto::node("Relu", "head", &["x"], &["h"], vec![]));
    g.node.push(proto::node("Neg", "posefix/1", &["h"], &["a"], vec![]));
    g.node.push(proto::node("Neg", "posefix/2", &["a"], &["b"], vec![]));
    g.node.push(proto::node("Neg", "posefix/3", &["h"], &["c"], vec![]));
    g.node.push(proto::node("Add", "posefix/4", &["b", "c"], &["d"], vec![]));
    let mut m = ModelProto::new();
    m.graph = Some(g).into();
    assert_eq!(count(&m), Count { nodes: 4, critical_path: 3 });
}
