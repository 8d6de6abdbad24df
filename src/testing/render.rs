//! A stable, readable text rendering of the subgraph a rewrite appended, for snapshots and
//! reviews: one line per node, then one per constant with its shape and a digest of its values.

use std::collections::HashSet;
use std::fmt::Write;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, ModelProto, TensorProto};

use crate::contract::NAME_PREFIX;
use crate::model::proto;

/// FNV-1a, 64 bits: a stable digest that needs no dependency.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

fn attribute(a: &AttributeProto) -> String {
    let value = match a.type_.enum_value() {
        Ok(AttributeType::INT) => a.i.to_string(),
        Ok(AttributeType::INTS) => format!("{:?}", a.ints),
        Ok(AttributeType::FLOAT) => a.f.to_string(),
        Ok(AttributeType::FLOATS) => format!("{:?}", a.floats),
        Ok(AttributeType::STRING) => format!("{:?}", String::from_utf8_lossy(&a.s)),
        other => format!("<{other:?}>"),
    };
    format!("{}={value}", a.name)
}

fn constant(t: &TensorProto) -> String {
    let dt = crate::model::element_type::onnx_name(t.data_type).unwrap_or("?".into());
    let shape = t.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    // Digest the decoded values, so the rendering does not depend on raw vs typed storage.
    let (count, bytes, preview) = if let Some(v) = proto::tensor_f32_values(t) {
        let preview = v.iter().take(4).map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        (v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(), preview)
    } else if let Some(v) = proto::tensor_i64_values(t) {
        let preview = v.iter().take(4).map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        (v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(), preview)
    } else {
        (0, t.raw_data.clone(), String::new())
    };
    let more = if count > 4 { ", ..." } else { "" };
    format!("{} : {dt}[{shape}] = [{preview}{more}] fnv1a={:016x}", t.name, digest(&bytes))
}

/// Renders the nodes and initializers named under `posefix/`, the graph outputs and the
/// `posefix.` metadata of a rewritten model.
pub fn appended_subgraph(model: &ModelProto) -> String {
    appended_nodes(model, NAME_PREFIX, |t| t.name.starts_with(NAME_PREFIX))
}

/// As [`appended_subgraph`], for the nodes named under `prefix` (`posefix/mp_`: the multi-pose
/// decoder) and the constants they read.
pub fn appended_subgraph_under(model: &ModelProto, prefix: &str) -> String {
    let read: HashSet<&str> = model
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.name.starts_with(prefix))
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    appended_nodes(model, prefix, |t| t.name.starts_with(NAME_PREFIX) && read.contains(t.name.as_str()))
}

fn appended_nodes(model: &ModelProto, prefix: &str, listed: impl Fn(&TensorProto) -> bool) -> String {
    let mut s = String::new();
    let Some(graph) = model.graph.as_ref() else { return s };
    let opset = crate::model::query::default_opset(model).unwrap_or(0);
    let _ = writeln!(s, "opset {opset}");
    let _ = writeln!(s, "outputs: {}", graph.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", "));
    let ours: HashSet<&str> =
        graph.node.iter().filter(|n| n.name.starts_with(prefix)).map(|n| n.name.as_str()).collect();
    let _ = writeln!(s, "nodes:");
    for n in graph.node.iter().filter(|n| ours.contains(n.name.as_str())) {
        let attrs = n.attribute.iter().map(attribute).collect::<Vec<_>>();
        let attrs = if attrs.is_empty() { String::new() } else { format!(" {{{}}}", attrs.join(", ")) };
        let _ = writeln!(s, "  {} = {}({}){attrs}", n.output.join(", "), n.op_type, n.input.join(", "));
    }
    let _ = writeln!(s, "constants:");
    for t in graph.initializer.iter().filter(|t| listed(t)) {
        let _ = writeln!(s, "  {}", constant(t));
    }
    let _ = writeln!(s, "metadata:");
    for e in model.metadata_props.iter().filter(|e| e.key.starts_with(crate::contract::METADATA_PREFIX)) {
        // The version changes with every release; keep snapshots about the graph.
        let value = if e.key.ends_with(".version") { "<version>" } else { e.value.as_str() };
        let _ = writeln!(s, "  {} = {value}", e.key);
    }
    s
}
