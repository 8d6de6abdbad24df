//! Validation of untrusted models, on the messages [`crate::model::io`] parsed, before anything
//! else (tract above all) sees them.
//!
//! tract 0.23.9 trusts a model more than we can: it indexes by tensor name without checking (a
//! graph output nobody computes panics), keeps the last of two writers of a name, loops forever
//! on a Transpose `perm` that is no permutation, and sizes tensors from declared dims. So this
//! refuses what ONNX forbids and tract would misread or choke on (tensors written twice, reads of
//! undefined tensors, cycles, such perms) and declared shapes too large to mean anything. Panics
//! that remain are caught by [`crate::tract_bridge`]. The fuzz targets in `fuzz/` found each case.

use std::collections::{HashMap, HashSet};

use onnx_protobuf::{GraphProto, ModelProto, NodeProto};

use crate::error::{printable, Error, Invalid, Result};
use crate::model::proto::{self, Dim};
use crate::model::walk;

/// The most elements a declared or pinned tensor may have: 2^31, 8 GiB of floats, far beyond any
/// pose model, and small enough that shape arithmetic cannot overflow.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 31;

/// Refuses a model whose top-level graph is not what ONNX allows, or whose declared shapes are
/// absurd (see the module doc). Nested graphs are checked only for what tract reads of them.
pub fn model(model: &ModelProto) -> Result<()> {
    let invalid = |what: String| Err(Error::invalid(Invalid::Graph(what)));
    let Some(graph) = model.graph.as_ref() else { return Ok(()) };

    // Who defines each tensor. A graph input may share its name with an initializer (its
    // default value); anything else defined twice is ambiguous.
    let mut defined: HashMap<&str, String> = HashMap::new();
    for (i, input) in graph.input.iter().enumerate() {
        if graph.input[..i].iter().any(|other| other.name == input.name) {
            return invalid(format!("graph input {} is declared twice", printable(&input.name)));
        }
        defined.insert(&input.name, format!("graph input {}", printable(&input.name)));
    }
    let mut initializers = HashSet::new();
    for t in &graph.initializer {
        if !initializers.insert(t.name.as_str()) {
            return invalid(format!("initializer {} is defined twice", printable(&t.name)));
        }
        defined.insert(&t.name, format!("initializer {}", printable(&t.name)));
    }
    let node_label = |n: &NodeProto| format!("node {} ({})", printable(&n.name), printable(&n.op_type));
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (ix, node) in graph.node.iter().enumerate() {
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            if let Some(first) = defined.get(output.as_str()) {
                let output = printable(output);
                return invalid(format!("tensor {output} is written by {} and by {first}", node_label(node)));
            }
            defined.insert(output, node_label(node));
            producer.insert(output, ix);
        }
    }
    for node in &graph.node {
        if let Some(missing) = node.input.iter().find(|i| !i.is_empty() && !defined.contains_key(i.as_str())) {
            return invalid(format!(
                "{} reads {}, which no node, initializer or graph input defines",
                node_label(node),
                printable(missing)
            ));
        }
    }
    if let Some(missing) = graph.output.iter().find(|o| !defined.contains_key(o.name.as_str())) {
        let missing = printable(&missing.name);
        return invalid(format!("graph output {missing} is computed by no node (nor an input or initializer)"));
    }
    if let Some(ix) = node_on_a_cycle(graph, &producer) {
        return invalid(format!("the graph has a cycle through {}", node_label(&graph.node[ix])));
    }
    // tract-hir 0.23.9 loops forever, allocating, on a Transpose whose perm is no permutation.
    if let Some((node, perm)) = bad_transpose(&graph.node) {
        return invalid(format!("{} has perm {perm:?}, which is not a permutation", node_label(node)));
    }

    for (what, infos) in [("input", &graph.input), ("output", &graph.output), ("tensor", &graph.value_info)] {
        for info in infos.iter() {
            let Some((_, Some(dims))) = proto::declared_tensor(info) else { continue };
            let mut fixed = dims.iter().filter_map(|d| match d {
                Dim::Fixed(v) if *v > 0 => Some(*v as u64),
                _ => None,
            });
            if fixed.try_fold(1u64, |n, d| n.checked_mul(d)).is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
                let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                let (name, dims) = (printable(&info.name), dims.join(", "));
                return Err(too_large(&format!("{what} {name} declares shape [{}]", printable(&dims))));
            }
        }
    }
    Ok(())
}

pub(crate) fn too_large(what: &str) -> Error {
    Error::Unsupported(format!("{what}, over {MAX_TENSOR_ELEMENTS} elements: too large to be a pose model"))
}

/// Some node on a cycle of the top-level graph, counting the outer tensors its subgraphs read.
fn node_on_a_cycle(graph: &GraphProto, producer: &HashMap<&str, usize>) -> Option<usize> {
    let deps: Vec<HashSet<usize>> = graph
        .node
        .iter()
        .map(|n| {
            let mut reads: HashSet<&str> = n.input.iter().map(String::as_str).collect();
            subgraph_reads(n, &mut reads);
            reads.into_iter().filter_map(|r| producer.get(r).copied()).collect()
        })
        .collect();
    // Kahn: whatever cannot be ordered lies on or behind a cycle.
    let mut pending: Vec<usize> = deps.iter().map(HashSet::len).collect();
    let mut users: Vec<Vec<usize>> = vec![vec![]; deps.len()];
    for (ix, d) in deps.iter().enumerate() {
        for &p in d {
            users[p].push(ix);
        }
    }
    let mut ready: Vec<usize> = (0..deps.len()).filter(|&ix| pending[ix] == 0).collect();
    let mut ordered = 0;
    while let Some(ix) = ready.pop() {
        ordered += 1;
        for &u in &users[ix] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(u);
            }
        }
    }
    (ordered < deps.len()).then(|| pending.iter().position(|&p| p > 0)).flatten()
}

/// A Transpose, at any depth, whose `perm` is not a permutation of `0..perm.len()`.
fn bad_transpose(nodes: &[NodeProto]) -> Option<(&NodeProto, &[i64])> {
    nodes.iter().find_map(|node| {
        let perm = node.attribute.iter().find(|a| a.name == "perm").map(|a| a.ints.as_slice());
        if let Some(perm) = perm.filter(|_| node.op_type == "Transpose") {
            let mut seen = vec![false; perm.len()];
            let is_permutation = perm.iter().all(|&p| {
                usize::try_from(p).ok().and_then(|p| seen.get_mut(p)).is_some_and(|s| !std::mem::replace(s, true))
            });
            if !is_permutation {
                return Some((node, perm));
            }
        }
        bodies(node).find_map(|g| bad_transpose(&g.node))
    })
}

/// The bodies of the control-flow ops, the only graph attributes tract reads (others are inert).
fn bodies(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    let control_flow = matches!(node.op_type.as_str(), "If" | "Loop" | "Scan");
    walk::subgraphs(node).filter(move |_| control_flow)
}

/// Every tensor the subgraphs of `node` read, at any depth (their own tensors included, which
/// is harmless: they do not name top-level producers in a valid model).
fn subgraph_reads<'a>(node: &'a NodeProto, into: &mut HashSet<&'a str>) {
    for g in bodies(node) {
        for n in &g.node {
            into.extend(n.input.iter().map(String::as_str));
            subgraph_reads(n, into);
        }
    }
}

#[cfg(test)]
mod tests {
    use onnx_protobuf::tensor_proto::DataType;

    use super::*;
    use crate::model::io::parse_model;
    use crate::testing::synthetic;

    fn model_bytes(edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
        synthetic::edited_posenet_bytes(11, edit)
    }

    fn error(bytes: &[u8]) -> String {
        parse_model(bytes).unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_tract_would_misread() {
        let err = error(&model_bytes(|g| g.output.push(proto::value_info("ghost", DataType::FLOAT, &[]))));
        assert!(err.contains("graph output ghost is computed by no node"), "{err}");
        let twin = proto::node("Relu", "twin", &["heatmaps"], &["offsets"], vec![]);
        let err = error(&model_bytes(|g| g.node.push(twin)));
        assert!(err.contains("tensor offsets is written by node twin (Relu) and by node offset_conv (Conv)"), "{err}");
        let err = error(&model_bytes(|g| g.node[0].input[1] = "nowhere".into()));
        assert!(err.contains("reads nowhere, which no node, initializer or graph input defines"), "{err}");
        let err = error(&model_bytes(|g| {
            g.node.push(proto::node("Relu", "a", &["b_out"], &["a_out"], vec![]));
            g.node.push(proto::node("Relu", "b", &["a_out"], &["b_out"], vec![]));
        }));
        assert!(err.contains("cycle through node a (Relu)") || err.contains("cycle through node b (Relu)"), "{err}");
        let err = error(&model_bytes(|g| {
            proto::set_declared_shape(&mut g.input[0], &[1, 3, 1 << 40, 257].map(crate::model::proto::Dim::Fixed));
        }));
        let want = "input image declares shape [1, 3, 1099511627776, 257], over 2147483648 elements";
        assert!(err.contains(want), "{err}");
        // Through the outer tensors an If's branches read; a graph attribute on another op is inert.
        let branch = |reads: &str| {
            let mut body = GraphProto::new();
            body.node.push(proto::node("Identity", "inner", &[reads], &["inner_out"], vec![]));
            body.output.push(proto::value_info("inner_out", DataType::FLOAT, &[]));
            let mut a = onnx_protobuf::AttributeProto::new();
            a.name = "then_branch".into();
            a.type_ = onnx_protobuf::attribute_proto::AttributeType::GRAPH.into();
            a.g = Some(body).into();
            a
        };
        let err = error(&model_bytes(|g| {
            g.node.push(proto::node("If", "if", &["heatmaps"], &["if_out"], vec![branch("back_out")]));
            g.node.push(proto::node("Relu", "back", &["if_out"], &["back_out"], vec![]));
        }));
        assert!(err.contains("the graph has a cycle through node if (If)"), "{err}");
        let inert = model_bytes(|g| {
            g.node.push(proto::node("Relu", "r", &["heatmaps"], &["r_out"], vec![branch("r_out")]));
            g.output.push(proto::value_info("r_out", DataType::FLOAT, &[]));
        });
        assert!(parse_model(&inert).is_ok());
        let err = error(&model_bytes(|g| {
            let perm = proto::attr_ints("perm", &[0, 1, 1, 3]);
            g.node.push(proto::node("Transpose", "t", &["heatmaps"], &["t"], vec![perm]));
            g.output.push(proto::value_info("t", DataType::FLOAT, &[]));
        }));
        assert!(err.contains("node t (Transpose) has perm [0, 1, 1, 3], which is not a permutation"), "{err}");
        // Out of order is fine: ONNX wants a sorted graph, but the order does not change its meaning.
        assert!(parse_model(&model_bytes(|g| g.node.reverse())).is_ok());
    }

    #[test]
    fn names_in_messages_stay_on_one_line() {
        assert_eq!(printable("MobilenetV1/heatmap_2/BiasAdd:0"), "MobilenetV1/heatmap_2/BiasAdd:0");
        assert_eq!(printable("two words"), "two words");
        assert_eq!(printable("a\nb"), "\"a\\nb\"");
        assert_eq!(printable(""), "\"\"");
        let err = error(&model_bytes(|g| g.output.push(proto::value_info("line\nbreak\u{1}", DataType::FLOAT, &[]))));
        assert!(err.contains("graph output \"line\\nbreak\\u{1}\" is computed by no node"), "{err}");
    }
}
