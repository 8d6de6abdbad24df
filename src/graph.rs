//! Building a subgraph to append to a model: one name allocator, one node constructor, and the
//! opset-dependent forms of the few ops whose signature changed over the versions we emit.
//!
//! Opset history that matters here (ONNX operator docs):
//! - ReduceMax: `axes` is an attribute up to opset 17, an int64 input from opset 18.
//! - ReduceSum: `axes` is an attribute up to opset 12, an int64 input from opset 13.
//! - Equal: float inputs only from opset 11; before that `x == max` is written
//!   `1 - Cast(Greater(max, x))`, which is the same wherever `max >= x` holds (not `Not(...)`:
//!   OpenCV DNN has no Not).
//! - Reshape: `shape` is an input since opset 5 (`allowzero` from 14 defaults to 0; we never
//!   emit a 0 in a shape).
//! - Cast: `to` is an int attribute since opset 6.

use std::collections::HashSet;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use crate::contract::NAME_PREFIX;
use crate::proto;

/// Default-domain opsets the emitted nodes are written for.
pub const MIN_OPSET: i64 = 9;
pub const MAX_OPSET: i64 = 21;

/// Hands out names under [`NAME_PREFIX`] that collide with nothing in the model or in what was
/// already handed out.
#[derive(Debug, Clone)]
pub struct NameAllocator {
    taken: HashSet<String>,
}

impl NameAllocator {
    pub fn new(taken: HashSet<String>) -> Self {
        NameAllocator { taken }
    }

    /// `posefix/hint`, or `posefix/hint_2`, `_3`, ... when taken.
    pub fn fresh(&mut self, hint: &str) -> String {
        let base = format!("{NAME_PREFIX}{hint}");
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// Accumulates nodes and constant initializers for one opset.
#[derive(Debug)]
pub struct GraphBuilder {
    opset: i64,
    names: NameAllocator,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    pub fn new(opset: i64, names: NameAllocator) -> Self {
        debug_assert!((MIN_OPSET..=MAX_OPSET).contains(&opset));
        GraphBuilder { opset, names, nodes: Vec::new(), initializers: Vec::new() }
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The one node constructor: a node named `posefix/hint` whose single output is `output`, or
    /// a fresh tensor of the same name as the node.
    fn push(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: Vec<AttributeProto>, output: Option<&str>) -> String {
        let name = self.names.fresh(hint);
        let out = output.map(str::to_string).unwrap_or_else(|| name.clone());
        self.nodes.push(proto::node(op, &name, inputs, &[&out], attrs));
        out
    }

    /// A node with one fresh output tensor; returns that tensor's name.
    pub fn op(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.push(op, hint, inputs, attrs, None)
    }

    /// A node writing to a caller-chosen tensor name (the graph output).
    pub fn op_into(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: Vec<AttributeProto>, output: &str) -> String {
        self.push(op, hint, inputs, attrs, Some(output))
    }

    pub fn const_f32(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        let name = self.names.fresh(hint);
        self.initializers.push(proto::tensor_f32(&name, dims, values));
        name
    }

    pub fn const_i64(&mut self, hint: &str, dims: &[i64], values: &[i64]) -> String {
        let name = self.names.fresh(hint);
        self.initializers.push(proto::tensor_i64(&name, dims, values));
        name
    }

    pub fn reshape(&mut self, hint: &str, x: &str, shape: &[i64]) -> String {
        debug_assert!(!shape.contains(&0), "0 copies a dim before opset 14 and means 0 after");
        let shape = self.const_i64(&format!("{hint}_shape"), &[shape.len() as i64], shape);
        self.op("Reshape", hint, &[x, &shape], vec![])
    }

    /// ReduceMax over one axis, keeping it.
    pub fn reduce_max(&mut self, hint: &str, x: &str, axis: i64) -> String {
        self.reduce("ReduceMax", 18, hint, x, axis)
    }

    /// ReduceSum over one axis, keeping it.
    pub fn reduce_sum(&mut self, hint: &str, x: &str, axis: i64) -> String {
        self.reduce("ReduceSum", 13, hint, x, axis)
    }

    fn reduce(&mut self, op: &str, axes_input_since: i64, hint: &str, x: &str, axis: i64) -> String {
        let keepdims = proto::attr_int("keepdims", 1);
        if self.opset >= axes_input_since {
            let axes = self.const_i64(&format!("{hint}_axes"), &[1], &[axis]);
            self.op(op, hint, &[x, &axes], vec![keepdims])
        } else {
            self.op(op, hint, &[x], vec![proto::attr_ints("axes", &[axis]), keepdims])
        }
    }

    /// A float mask, 1.0 where `x` equals `max` and 0.0 elsewhere; `max` must be a reduce-max of
    /// `x` (broadcast), which makes the pre-opset-11 form `1 - Cast(Greater(max, x))` equivalent.
    pub fn max_mask(&mut self, hint: &str, x: &str, max: &str) -> String {
        let to_float = || vec![proto::attr_int("to", DataType::FLOAT as i64)];
        if self.opset >= 11 {
            let is_max = self.op("Equal", &format!("{hint}_eq"), &[x, max], vec![]);
            self.op("Cast", hint, &[&is_max], to_float())
        } else {
            let below = self.op("Greater", &format!("{hint}_below"), &[max, x], vec![]);
            let below = self.op("Cast", &format!("{hint}_below_f"), &[&below], to_float());
            let one = self.const_f32(&format!("{hint}_one"), &[1], &[1.0]);
            self.op("Sub", hint, &[&one, &below], vec![])
        }
    }

    pub fn finish(self) -> (Vec<NodeProto>, Vec<TensorProto>) {
        (self.nodes, self.initializers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_avoid_existing_and_earlier_ones() {
        let mut names = NameAllocator::new(["posefix/mask".to_string()].into_iter().collect());
        assert_eq!(names.fresh("mask"), "posefix/mask_2");
        assert_eq!(names.fresh("mask"), "posefix/mask_3");
        assert_eq!(names.fresh("ramp"), "posefix/ramp");
    }

    fn ops(b: GraphBuilder) -> Vec<(String, Vec<String>, Vec<String>)> {
        b.finish()
            .0
            .into_iter()
            .map(|n| (n.op_type, n.input, n.attribute.into_iter().map(|a| a.name).collect()))
            .collect()
    }

    #[test]
    fn reduce_axes_move_from_attribute_to_input_by_opset() {
        for (opset, max_axes_input, sum_axes_input) in [(11, false, false), (13, false, true), (18, true, true)] {
            let mut b = GraphBuilder::new(opset, NameAllocator::new(HashSet::new()));
            b.reduce_max("m", "x", 1);
            b.reduce_sum("s", "x", 1);
            let ops = ops(b);
            assert_eq!(ops[0].1.len() == 2, max_axes_input, "ReduceMax at opset {opset}");
            assert_eq!(ops[0].2.contains(&"axes".to_string()), !max_axes_input);
            assert_eq!(ops[1].1.len() == 2, sum_axes_input, "ReduceSum at opset {opset}");
            assert_eq!(ops[1].2.contains(&"axes".to_string()), !sum_axes_input);
        }
    }

    #[test]
    fn equality_on_floats_needs_opset_11() {
        let mut b = GraphBuilder::new(9, NameAllocator::new(HashSet::new()));
        b.max_mask("m", "x", "mx");
        let names: Vec<_> = ops(b).into_iter().map(|o| o.0).collect();
        assert_eq!(names, ["Greater", "Cast", "Sub"]);
        let mut b = GraphBuilder::new(11, NameAllocator::new(HashSet::new()));
        b.max_mask("m", "x", "mx");
        let names: Vec<_> = ops(b).into_iter().map(|o| o.0).collect();
        assert_eq!(names, ["Equal", "Cast"]);
    }
}
