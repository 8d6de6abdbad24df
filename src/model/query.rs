//! Read-only questions about a model that every part of the tool asks: its opset, its real
//! inputs, who writes each tensor, which names are taken, whether it already carries a decoder,
//! and which input a `--input-shape` pins.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use onnx_protobuf::{GraphProto, ModelProto, NodeProto, ValueInfoProto};

use crate::contract::{Provenance, METADATA_PREFIX, NAME_PREFIX};
use crate::error::{Error, Result};
use crate::model::proto::{self, Dim};
use crate::model::walk;

/// The default-domain opset of a model.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
}

pub fn is_default_domain(node: &NodeProto) -> bool {
    node.domain.is_empty() || node.domain == "ai.onnx"
}

/// The graph inputs that are not initializers (what a runtime feeds), in order. IR 3 declares
/// every initializer as an input too.
pub fn real_inputs(graph: &GraphProto) -> Vec<&ValueInfoProto> {
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).collect()
}

/// The names of [`real_inputs`].
pub fn real_input_names(graph: &GraphProto) -> Vec<String> {
    real_inputs(graph).iter().map(|i| i.name.clone()).collect()
}

/// The node writing each tensor of the top-level graph.
pub fn producers(graph: &GraphProto) -> HashMap<&str, &NodeProto> {
    graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect()
}

/// Every name in the graph and its nested graphs (whose names must stay distinct from the outer
/// scope's): nodes, tensors, initializers, inputs, outputs, value-infos.
pub fn taken_names(graph: &GraphProto) -> HashSet<String> {
    let mut names = HashSet::new();
    for g in walk::graphs(graph) {
        for n in &g.node {
            names.insert(n.name.clone());
            names.extend(n.input.iter().cloned());
            names.extend(n.output.iter().cloned());
        }
        names.extend(g.initializer.iter().map(|t| t.name.clone()));
        names.extend(g.input.iter().chain(&g.output).chain(&g.value_info).map(|v| v.name.clone()));
    }
    names
}

/// Whether a node was appended by a rewrite.
pub fn is_decoder_node(node: &NodeProto) -> bool {
    node.name.starts_with(NAME_PREFIX)
}

/// The decoder's provenance when `model` already carries one.
pub fn provenance(model: &ModelProto) -> Option<Provenance> {
    Provenance::from_metadata(model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
}

/// Whether `model` carries a decoder, by its metadata or its node names.
pub fn has_decoder(model: &ModelProto) -> bool {
    model.metadata_props.iter().any(|e| e.key.starts_with(METADATA_PREFIX))
        || model.graph.as_ref().is_some_and(|g| g.node.iter().any(is_decoder_node))
}

/// `--input-shape [NAME:]D,D,D,D`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub name: Option<String>,
    pub dims: Vec<usize>,
}

/// Why an `--input-shape` value does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputShapeError {
    #[error("'{0}': empty input name before ':'")]
    EmptyName(String),
    #[error("'{0}': expected [NAME:]D,D,... with positive integers, e.g. 1,3,257,257")]
    Dims(String),
}

impl FromStr for InputShape {
    type Err = InputShapeError;

    fn from_str(s: &str) -> std::result::Result<Self, InputShapeError> {
        let (name, dims) = match s.rsplit_once(':') {
            Some((name, dims)) if !name.is_empty() => (Some(name.to_string()), dims),
            Some(_) => return Err(InputShapeError::EmptyName(s.to_string())),
            None => (None, s),
        };
        let dims = dims
            .split(',')
            .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| InputShapeError::Dims(s.to_string()))?;
        Ok(InputShape { name, dims })
    }
}

/// Checks pinned `dims` against an input's declared dims: same rank, and no fixed dim changed.
pub fn check_pin(input: &str, declared: &[Dim], dims: &[usize]) -> Result<()> {
    if declared.len() != dims.len() {
        return Err(Error::Usage(format!(
            "--input-shape gives {} dims, but input {input} has rank {}",
            dims.len(),
            declared.len()
        )));
    }
    for (axis, (d, p)) in declared.iter().zip(dims).enumerate() {
        if matches!(d, Dim::Fixed(v) if *v != *p as i64) {
            return Err(Error::Usage(format!(
                "--input-shape sets axis {axis} of {input} to {p}, but the model fixes it at {d}"
            )));
        }
    }
    Ok(())
}

/// Names and dims to pin, checked against the declared inputs.
pub fn resolve_pins(graph: &GraphProto, shapes: &[InputShape]) -> Result<Vec<(String, Vec<usize>)>> {
    let inputs = real_inputs(graph);
    let mut pins = Vec::new();
    for shape in shapes {
        let input = match &shape.name {
            Some(name) => inputs.iter().find(|i| &i.name == name).ok_or_else(|| {
                Error::Usage(format!(
                    "--input-shape names {name}, but the inputs are: {}",
                    inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?,
            None if inputs.len() == 1 => inputs[0],
            None => {
                return Err(Error::Usage(format!(
                    "the model has {} inputs; name the one to pin: --input-shape NAME:D,D,...",
                    inputs.len()
                )))
            }
        };
        if let Some((_, Some(declared))) = proto::declared_tensor(input) {
            check_pin(&input.name, &declared, &shape.dims)?;
        }
        if pins.iter().any(|(n, _)| n == &input.name) {
            return Err(Error::Usage(format!("--input-shape given twice for {}", input.name)));
        }
        pins.push((input.name.clone(), shape.dims.clone()));
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shapes_parse() {
        assert_eq!("1,3,257,257".parse::<InputShape>().unwrap(), InputShape { name: None, dims: vec![1, 3, 257, 257] });
        let named: InputShape = "image:2,257,193,3".parse().unwrap();
        assert_eq!(named.name.as_deref(), Some("image"));
        assert!(matches!("1,3,x,257".parse::<InputShape>(), Err(InputShapeError::Dims(_))));
        assert!(matches!("1,0,257".parse::<InputShape>(), Err(InputShapeError::Dims(_))));
        assert!(matches!(":1,3".parse::<InputShape>(), Err(InputShapeError::EmptyName(_))));
    }
}
