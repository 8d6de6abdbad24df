//! Static facts on a model's tensors (rank, element type, dims), for the rules that need them:
//! from tract's shape inference ([`Facts::from_tensors`]) or propagated through the few ops the
//! decoders emit ([`Facts::propagate`]), and the constants a graph holds.

use std::collections::{BTreeSet, HashMap};

use onnx_protobuf::{GraphProto, ModelProto, NodeProto};

use crate::model::element_type::{datum_name, onnx_name};
use crate::model::io as model_io;
use crate::model::proto;
use crate::tract_bridge::TensorFacts;

/// Ranks and element types of a model's tensors, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    ranks: HashMap<String, usize>,
    types: HashMap<String, String>,
    /// Dims where known, `None` for a symbolic or unknown one.
    dims: HashMap<String, Vec<Option<usize>>>,
}

impl Facts {
    /// Facts of the given tensors only.
    pub fn from_tensors(tensors: &[TensorFacts]) -> Facts {
        let mut facts = Facts::default();
        for t in tensors {
            facts.insert(t);
        }
        facts
    }

    /// Facts computed without tract, from `known` tensors, the initializers and the declared
    /// inputs and outputs, through the ops whose output rank follows from their inputs'
    /// (elementwise ops, Reshape against a constant shape, reductions, Concat, MatMul...).
    /// Enough for the appended decoder given the facts of the heads.
    pub fn propagate(model: &ModelProto, known: &[TensorFacts]) -> Facts {
        let mut facts = Facts::default();
        let Some(graph) = model.graph.as_ref() else { return facts };
        for vi in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
            if let Some((elem, dims)) = proto::declared_tensor(vi) {
                if let Some(dims) = dims {
                    facts.ranks.insert(vi.name.clone(), dims.len());
                    facts.dims.insert(vi.name.clone(), dims.iter().map(known_dim).collect());
                }
                if let Some(name) = onnx_name(elem) {
                    facts.types.insert(vi.name.clone(), name);
                }
            }
        }
        for t in known {
            facts.insert(t);
        }
        for t in &graph.initializer {
            facts.ranks.insert(t.name.clone(), t.dims.len());
            if let Some(name) = onnx_name(t.data_type) {
                facts.types.insert(t.name.clone(), name);
            }
        }
        let constants = Constants::of(graph);
        for node in &graph.node {
            facts.infer(node, &constants);
        }
        facts
    }

    fn insert(&mut self, t: &TensorFacts) {
        if let Some(shape) = &t.shape {
            self.ranks.insert(t.name.clone(), shape.len());
            self.dims.insert(t.name.clone(), shape.iter().map(known_dim).collect());
        }
        if let Some(dt) = t.datum_type {
            self.types.insert(t.name.clone(), datum_name(dt));
        }
    }

    pub fn rank(&self, tensor: &str) -> Option<usize> {
        self.ranks.get(tensor).copied()
    }

    /// The dims of a tensor, `None` for each one unknown or symbolic.
    pub fn dims(&self, tensor: &str) -> Option<&[Option<usize>]> {
        self.dims.get(tensor).map(Vec::as_slice)
    }

    /// The ONNX element type name (`float`, `int64`, ...).
    pub fn element_type(&self, tensor: &str) -> Option<&str> {
        self.types.get(tensor).map(String::as_str)
    }

    /// Every element type the facts know a tensor of.
    pub fn element_types(&self) -> BTreeSet<&str> {
        self.types.values().map(String::as_str).collect()
    }

    /// The output rank of one node from its inputs', when its op makes that plain.
    fn infer(&mut self, node: &NodeProto, constants: &Constants) {
        let Some(out) = node.output.first().filter(|o| !o.is_empty()) else { return };
        let input = |ix: usize| node.input.get(ix).filter(|i| !i.is_empty());
        let rank_of = |ix: usize| input(ix).and_then(|i| self.rank(i));
        let inputs_max =
            || node.input.iter().filter(|i| !i.is_empty()).map(|i| self.rank(i)).collect::<Option<Vec<_>>>();
        let rank = match node.op_type.as_str() {
            "Reshape" => input(1).and_then(|s| constants.dims(s)).and_then(|d| d.first().map(|n| *n as usize)),
            "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceMean" | "ReduceProd" | "ReduceL1" | "ReduceL2"
            | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
                let keep = proto::get_attr_int(node, "keepdims").unwrap_or(1) == 1;
                match (keep, rank_of(0), axes_of(node, constants)) {
                    (true, r, _) => r,
                    (false, Some(r), Some(axes)) => r.checked_sub(axes.len()),
                    (false, Some(_), None) => Some(0),
                    _ => None,
                }
            }
            "Concat" | "Identity" | "Cast" | "Sigmoid" | "Relu" | "GlobalMaxPool" | "MaxPool" | "Conv" | "Tanh"
            | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Not" | "Clip" | "Softmax" | "Dropout" | "Ceil" | "Floor"
            | "Transpose" => rank_of(0),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Greater" | "Less" | "And" | "Or" | "Xor" | "Max"
            | "Min" | "Sum" | "Where" | "MatMul" => inputs_max().and_then(|r| r.into_iter().max()),
            _ => None,
        };
        if let Some(rank) = rank {
            self.ranks.insert(out.clone(), rank);
        }
        if let Some(dims) = self.output_dims(node, constants) {
            self.dims.insert(out.clone(), dims);
        }
        let ty = match node.op_type.as_str() {
            "Cast" => proto::get_attr_int(node, "to").and_then(|t| onnx_name(t as i32)),
            "Equal" | "Greater" | "Less" | "Not" | "And" | "Or" | "Xor" => Some("bool".to_string()),
            "Reshape" | "Concat" | "Identity" | "Add" | "Sub" | "Mul" | "Div" | "Sigmoid" | "MatMul" | "ReduceMax"
            | "ReduceSum" | "ReduceMin" | "ReduceMean" | "Relu" | "Max" | "Min" | "GlobalMaxPool" | "MaxPool"
            | "Conv" | "Clip" | "Ceil" | "Floor" | "Transpose" => {
                input(0).and_then(|i| self.element_type(i)).map(str::to_string)
            }
            _ => None,
        };
        if let Some(ty) = ty {
            self.types.insert(out.clone(), ty);
        }
    }
}

impl Facts {
    /// The dims of a node's first output from its inputs', for the ops the decoder and the
    /// known-wrong patterns involve; `None` where the op is not modelled.
    fn output_dims(&self, node: &NodeProto, constants: &Constants) -> Option<Vec<Option<usize>>> {
        let dims = |ix: usize| -> Option<Vec<Option<usize>>> {
            let name = node.input.get(ix).filter(|i| !i.is_empty())?;
            match self.dims(name) {
                Some(d) => Some(d.to_vec()),
                None => constants.dims(name).map(|d| d.iter().map(|v| usize::try_from(*v).ok()).collect()),
            }
        };
        let op = node.op_type.as_str();
        let inputs = node.input.iter().filter(|i| !i.is_empty()).count();
        match op {
            "Reshape" => self.reshaped_dims(node, constants),
            "Identity" | "Dropout" | "Cast" | "Relu" | "Sigmoid" | "Clip" | "Neg" | "Abs" | "Exp" | "Log" | "Sqrt"
            | "Tanh" | "Not" | "Floor" | "Ceil" | "LeakyRelu" | "Elu" => dims(0),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Equal" | "Greater" | "Less" | "And"
            | "Or" | "Xor" | "Where" => {
                let all: Vec<Vec<Option<usize>>> = (0..inputs).map(dims).collect::<Option<_>>()?;
                let rank = all.iter().map(Vec::len).max()?;
                Some(
                    (0..rank)
                        .map(|axis| {
                            let sizes: Vec<Option<usize>> =
                                all.iter().filter_map(|d| (axis + d.len()).checked_sub(rank).map(|ix| d[ix])).collect();
                            let big: Vec<usize> = sizes.iter().flatten().copied().filter(|v| *v != 1).collect();
                            match (big.first(), sizes.iter().all(Option::is_some)) {
                                (Some(v), _) => Some(*v),
                                (None, true) => Some(1),
                                (None, false) => None,
                            }
                        })
                        .collect(),
                )
            }
            "Concat" => {
                let all: Vec<Vec<Option<usize>>> = (0..inputs).map(dims).collect::<Option<_>>()?;
                let rank = all.first()?.len() as i64;
                let axis = proto::get_attr_int(node, "axis")?;
                let axis = usize::try_from(if axis < 0 { axis + rank } else { axis }).ok()?;
                let mut out = all.first()?.clone();
                *out.get_mut(axis)? = all.iter().map(|d| d.get(axis).copied().flatten()).sum();
                Some(out)
            }
            "GlobalMaxPool" | "GlobalAveragePool" => {
                let d = dims(0)?;
                Some(d.iter().enumerate().map(|(i, v)| if i < 2 { *v } else { Some(1) }).collect())
            }
            "Transpose" => {
                let d = dims(0)?;
                let perm = node.attribute.iter().find(|a| a.name == "perm")?;
                perm.ints.iter().map(|&p| d.get(usize::try_from(p).ok()?).copied()).collect()
            }
            "MaxPool" | "AveragePool" | "Conv" => {
                // Unit strides, explicit pads: what the decoders emit.
                let plain = node.attribute.iter().all(|a| match a.name.as_str() {
                    "strides" | "dilations" => a.ints.iter().all(|v| *v == 1),
                    "kernel_shape" | "group" | "pads" => true,
                    _ => false,
                });
                let pads = node.attribute.iter().find(|a| a.name == "pads").map(|a| a.ints.clone());
                if !plain {
                    return None;
                }
                let d = dims(0)?;
                let (channels, kernel) = if op == "Conv" {
                    let w = dims(1)?;
                    (w.first().copied().flatten(), w.get(2..)?.to_vec())
                } else {
                    let k = node.attribute.iter().find(|a| a.name == "kernel_shape")?;
                    (d.get(1).copied().flatten(), k.ints.iter().map(|v| usize::try_from(*v).ok()).collect())
                };
                let rank = kernel.len();
                let padded = |axis: usize| -> usize {
                    pads.as_ref().map_or(0, |p| {
                        (p.get(axis).copied().unwrap_or(0) + p.get(axis + rank).copied().unwrap_or(0)).max(0) as usize
                    })
                };
                let spatial = d.get(2..)?.iter().zip(&kernel).enumerate().map(|(axis, (i, k))| {
                    i.zip(*k).and_then(|(i, k)| (i + padded(axis)).checked_sub(k)).map(|v| v + 1)
                });
                Some([d.first().copied().flatten(), channels].into_iter().chain(spatial).collect())
            }
            _ => None,
        }
    }

    /// The output dims of a Reshape against a constant shape (0 copies an input dim; one -1
    /// takes what is left, when the input's dims are all known).
    fn reshaped_dims(&self, node: &NodeProto, constants: &Constants) -> Option<Vec<Option<usize>>> {
        let target = constants.i64_values(node.input.get(1)?)?;
        let input = self.dims(node.input.first()?);
        let mut dims: Vec<Option<usize>> = target
            .iter()
            .enumerate()
            .map(|(ix, &d)| match d {
                0 => input.and_then(|i| i.get(ix).copied().flatten()),
                d if d > 0 => Some(d as usize),
                _ => None,
            })
            .collect();
        if let (Some(free), Some(input)) = (target.iter().position(|&d| d == -1), input) {
            let total: Option<usize> = input.iter().copied().product();
            let known: Option<usize> = dims.iter().enumerate().filter(|(ix, _)| *ix != free).map(|(_, d)| *d).product();
            dims[free] = total.zip(known).and_then(|(t, k)| (k > 0).then(|| t / k));
        }
        Some(dims)
    }
}

pub(super) fn known_dim(d: &proto::Dim) -> Option<usize> {
    match d {
        proto::Dim::Fixed(v) => usize::try_from(*v).ok(),
        proto::Dim::Symbol(_) | proto::Dim::Unknown => None,
    }
}

pub(super) fn dims_text(dims: &[Option<usize>]) -> String {
    let dims: Vec<String> = dims.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
    format!("[{}]", dims.join(", "))
}

/// The tensors of a graph whose values are known before it runs.
pub(super) struct Constants<'a> {
    initializers: HashMap<&'a str, &'a onnx_protobuf::TensorProto>,
    constant_nodes: HashMap<&'a str, &'a NodeProto>,
}

impl<'a> Constants<'a> {
    pub(super) fn of(graph: &'a GraphProto) -> Constants<'a> {
        Constants {
            initializers: graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
            constant_nodes: graph
                .node
                .iter()
                .filter(|n| n.op_type == "Constant")
                .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
                .collect(),
        }
    }

    pub(super) fn contains(&self, tensor: &str) -> bool {
        self.initializers.contains_key(tensor) || self.constant_nodes.contains_key(tensor)
    }

    pub(super) fn dims(&self, tensor: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.initializers.get(tensor) {
            return Some(t.dims.clone());
        }
        let value = self.constant_nodes.get(tensor)?.attribute.iter().find(|a| a.name == "value")?;
        value.t.as_ref().map(|t| t.dims.clone())
    }

    /// The one value of a float constant (an initializer with its data, or a Constant node).
    pub(super) fn f32_value(&self, tensor: &str) -> Option<f32> {
        let values = match self.initializers.get(tensor) {
            Some(t) => model_io::has_data(t).then(|| proto::tensor_f32_values(t)).flatten()?,
            None => {
                let value = self.constant_nodes.get(tensor)?.attribute.iter().find(|a| a.name == "value")?;
                proto::tensor_f32_values(value.t.as_ref()?)?
            }
        };
        match values.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// The values of an int64 constant (an initializer or a Constant node's `value`); `None` for
    /// an initializer whose data a structure-only read left out.
    pub(super) fn i64_values(&self, tensor: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.initializers.get(tensor) {
            return model_io::has_data(t).then(|| proto::tensor_i64_values(t)).flatten();
        }
        let value = self.constant_nodes.get(tensor)?.attribute.iter().find(|a| a.name == "value")?;
        value.t.as_ref().and_then(proto::tensor_i64_values)
    }
}

/// The `axes` of a node, from the attribute or a constant second input; `None` when absent or
/// computed at run time.
pub(super) fn axes_of(node: &NodeProto, constants: &Constants) -> Option<Vec<i64>> {
    if let Some(axes) = node.attribute.iter().find(|a| a.name == "axes") {
        return Some(axes.ints.clone());
    }
    node.input.get(1).filter(|i| !i.is_empty()).and_then(|i| constants.i64_values(i))
}

pub(super) fn axes_input(node: &NodeProto) -> Option<&String> {
    node.input.get(1).filter(|i| !i.is_empty())
}
