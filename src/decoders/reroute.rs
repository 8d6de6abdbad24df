//! Where the decoder reads each head from, so that reading it cannot break the model on
//! onnxruntime-web's WebGL backend.
//!
//! At load, that backend deletes every Identity and Dropout node, and fuses a Relu, Sigmoid or
//! Clip into the Conv before it when it is that Conv output's only reader. A graph output written
//! by a deleted node keeps a stale index once another node reads it: the run fails with `required
//! output [N] does not have value`, or returns another tensor under the output's name
//! (onnxruntime-web 1.30.0, `ort.webgl.mjs`: `Graph.transformGraph`, `finalizeGraph`). So the
//! decoder does not read a head that a Relu, Sigmoid or Clip on a Conv output writes (possibly
//! through Identity or Dropout nodes): it computes the activation again from the same input, with
//! the same attributes. The Conv output then has two readers, nothing is fused, and the copy is
//! bit for bit the head (checked on WebGL, wasm and CPU runtimes). A head that is an Identity's
//! output breaks WebGL whichever tensor the decoder reads; the `ort-web-webgl` profile says so
//! (`deleted_node_output_read`).
//!
//! The verification that cuts the decoder out of a model (`verify`) finds the same places with
//! [`aliases`], to feed its crafted heads there.

use std::collections::HashMap;

use onnx_protobuf::{GraphProto, NodeProto};

use crate::contract::FloatType;
use crate::model::query;

/// Ops WebGL fuses into a Conv before them (`Graph.isActivation`); the `ort-web-webgl` profile's
/// check of that pattern reads the same list.
pub(crate) const FUSED_ACTIVATIONS: [&str; 3] = ["Relu", "Sigmoid", "Clip"];

/// How the decoder reads one head: where from, and as which type.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadInput {
    pub read: HeadRead,
    /// A float16 head is read through a Cast to float32 (exact).
    pub ty: FloatType,
    /// The head's dims, -1 for one not fixed (the batch): a float16 head is reshaped to them
    /// before its Cast (see [`crate::decoders::graph::GraphBuilder::read_head`]).
    pub dims: Vec<i64>,
}

/// Where the decoder reads one head from.
#[derive(Clone, Debug, PartialEq)]
pub enum HeadRead {
    /// The head itself.
    Itself,
    /// A copy of this node (same op, inputs and attributes), whose output is the head's value.
    Recompute(Box<NodeProto>),
}

/// How to read `head`, of type `ty` and dims `dims` (-1 for the batch when it is not fixed), in
/// `graph`.
pub fn head_input(graph: &GraphProto, head: &str, ty: FloatType, dims: Vec<i64>) -> HeadInput {
    HeadInput { read: head_read(graph, head), ty, dims }
}

/// Where to read `head` from in `graph`.
pub fn head_read(graph: &GraphProto, head: &str) -> HeadRead {
    read_among(graph, head, |_| false)
}

/// [`head_read`] with the nodes `ignore` picks left out of the count of readers (in a rewritten
/// graph: the decoder, whose copy is the second reader).
fn read_among(graph: &GraphProto, head: &str, ignore: impl Fn(&NodeProto) -> bool) -> HeadRead {
    let producers = query::producers(graph);
    let readers = reader_counts(graph, ignore);
    let mut tensor = head;
    // Bounded walk: a malformed graph may contain an Identity cycle.
    for _ in 0..=graph.node.len() {
        let Some(node) = producers.get(tensor) else { break };
        if !query::is_default_domain(node) {
            break;
        }
        match node.op_type.as_str() {
            // These copy their input at inference: look behind them for a fused activation.
            "Identity" | "Dropout" if node.output.first().is_some_and(|o| o == tensor) => match node.input.first() {
                Some(input) if !input.is_empty() => tensor = input,
                _ => break,
            },
            op if FUSED_ACTIVATIONS.contains(&op) => {
                let input = node.input.first().map(String::as_str).unwrap_or_default();
                let on_conv = producers.get(input).is_some_and(|p| p.op_type == "Conv" && query::is_default_domain(p));
                // A Conv output read by something else besides is not fused.
                if on_conv && readers.get(input).copied().unwrap_or(0) == 1 {
                    return HeadRead::Recompute(Box::new((*node).clone()));
                }
                break;
            }
            _ => break,
        }
    }
    HeadRead::Itself
}

/// In a rewritten graph, the tensors the decoder (`is_decoder` nodes) reads in place of each of
/// `heads`, mapped to that head; a head read as itself is not listed.
#[cfg(not(target_arch = "wasm32"))]
pub fn aliases(graph: &GraphProto, heads: &[&str], is_decoder: impl Fn(&NodeProto) -> bool) -> HashMap<String, String> {
    let mut found = HashMap::new();
    for head in heads {
        match read_among(graph, head, &is_decoder) {
            HeadRead::Itself => {}
            HeadRead::Recompute(original) => {
                // Each decoder reading the head makes its own copy.
                let copies = graph.node.iter().filter(|n| {
                    is_decoder(n)
                        && n.op_type == original.op_type
                        && n.input == original.input
                        && n.attribute == original.attribute
                });
                for out in copies.filter_map(|n| n.output.first()) {
                    found.insert(out.clone(), head.to_string());
                }
            }
        }
    }
    found
}

/// How many node inputs read each tensor (subgraphs left out: WebGL does not fuse across them).
fn reader_counts(graph: &GraphProto, ignore: impl Fn(&NodeProto) -> bool) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    let inputs = graph.node.iter().filter(|n| !ignore(n)).flat_map(|n| &n.input);
    for input in inputs.filter(|i| !i.is_empty()) {
        *counts.entry(input.as_str()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::proto;

    fn graph(nodes: Vec<NodeProto>) -> GraphProto {
        let mut g = GraphProto::new();
        g.node = nodes;
        g
    }

    #[test]
    fn fused_activations_are_recomputed_through_identity_chains() {
        let conv = proto::node("Conv", "conv", &["x", "w"], &["logits"], vec![]);
        let sig = proto::node("Sigmoid", "sig", &["logits"], &["heat"], vec![]);
        let id = proto::node("Identity", "id", &["heat"], &["heatmaps"], vec![]);
        let g = graph(vec![conv.clone(), sig.clone(), id]);
        assert_eq!(head_read(&g, "heatmaps"), HeadRead::Recompute(Box::new(sig.clone())));
        // A second reader of the Conv output: WebGL fuses nothing, the head is read as it is.
        let other = proto::node("Relu", "other", &["logits"], &["r"], vec![]);
        let g = graph(vec![conv.clone(), sig.clone(), other]);
        assert_eq!(head_read(&g, "heat"), HeadRead::Itself);
        let offsets_id = proto::node("Identity", "oid", &["o"], &["offsets"], vec![]);
        let g = graph(vec![conv, offsets_id]);
        assert_eq!(head_read(&g, "offsets"), HeadRead::Itself);
        assert_eq!(head_read(&g, "logits"), HeadRead::Itself);
    }

    #[test]
    fn aliases_find_the_decoders_copy() {
        let conv = proto::node("Conv", "conv", &["x", "w"], &["logits"], vec![]);
        let sig = proto::node("Sigmoid", "sig", &["logits"], &["heatmaps"], vec![]);
        let copy = proto::node("Sigmoid", "posefix/heatmaps_copy", &["logits"], &["posefix/heatmaps_copy"], vec![]);
        let oid = proto::node("Identity", "oid", &["o"], &["offsets"], vec![]);
        let g = graph(vec![conv, sig, copy, oid]);
        let found = aliases(&g, &["heatmaps", "offsets"], |n| n.name.starts_with("posefix/"));
        assert_eq!(found.get("posefix/heatmaps_copy").map(String::as_str), Some("heatmaps"));
        assert_eq!(found.len(), 1);
    }
}
