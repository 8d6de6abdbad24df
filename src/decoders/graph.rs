//! Building a subgraph to append to a model: one name allocator, one node constructor, and the
//! opset-dependent forms of the few ops whose signature changed over the versions we emit.
//!
//! The decoder's op choices live here, each with the runtime that forced it: the emitted ops
//! keep one form over every opset 9 to 21 (ONNX operator docs), so that no runtime meets an op
//! version it does not register.
//! - MaxPool (`kernel_shape` only; one form since 8) for maxima, and `max(x) - max(-x)` for the
//!   sums of one term, not ReduceMax / ReduceSum (`axes` an input from 18 / 13).
//! - Sub, Mul and Clip for the selection of maxima, not Equal / Greater / Cast (no comparisons
//!   or bool tensors: ncnn, wonnx).
//! - 1x1 Conv against 0/1 weights to copy and reorder channels, not Concat or MatMul.
//! - Clip is the one op whose form follows the opset (bounds as attributes before 11): WebGL
//!   and wonnx have no Max or Min to clamp with.
//! - Reshape: `shape` is an input since opset 5 (`allowzero` from 14 defaults to 0; we never
//!   emit a 0 in a shape).
//! - Cast only at the edges, for float16 models: after a float16 head (exact; behind a no-op
//!   Reshape, see [`GraphBuilder::read_head`]) and before a float16 output (`--output-type
//!   float16`). The decoders compute in float32 throughout.

use std::collections::{HashMap, HashSet};

use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use crate::contract::{FloatType, NAME_PREFIX};
use crate::decoders::reroute::{HeadInput, HeadRead};
use crate::model::proto;

/// `2^100`: applied twice, it takes the smallest gap between two f32 values (2^-149) to 2^51.
const SELECT_GAIN: f32 = 1.2676506e30;

/// The name of a Clip bound's constant.
fn bound_name(v: f32) -> String {
    match v {
        f32::MIN => "lowest".to_string(),
        f32::MAX => "highest".to_string(),
        v => format!("bound_{v}").replace('-', "minus_").replace('.', "_"),
    }
}

/// Where the cells of each map lie in a rank-4 tensor the decoder reduces over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cells {
    /// `[N, C, height, width]`: one map per channel (NCHW heads as they come).
    Grid { height: usize, width: usize },
    /// `[N, 1, cells, C]`: one map per column (NHWC heads with their grid flattened).
    Column { cells: usize },
}

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
    /// Scalar constants already made, by (bits, rank): one initializer serves every reader.
    scalars: HashMap<(u32, usize), String>,
    /// The type of the outputs [`GraphBuilder::op_into`] writes.
    output_type: FloatType,
}

impl GraphBuilder {
    pub fn new(opset: i64, names: NameAllocator) -> Self {
        debug_assert!((MIN_OPSET..=MAX_OPSET).contains(&opset));
        GraphBuilder {
            opset,
            names,
            nodes: Vec::new(),
            initializers: Vec::new(),
            scalars: HashMap::new(),
            output_type: FloatType::Float32,
        }
    }

    /// Outputs written by [`GraphBuilder::op_into`] from now on are of type `ty`.
    pub fn set_output_type(&mut self, ty: FloatType) {
        self.output_type = ty;
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The one node constructor: a node named `posefix/hint` whose single output is `output`, or
    /// a fresh tensor of the same name as the node.
    fn push(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: Option<&str>,
    ) -> String {
        let name = self.names.fresh(hint);
        let out = output.map(str::to_string).unwrap_or_else(|| name.clone());
        self.nodes.push(proto::node(op, &name, inputs, &[&out], attrs));
        out
    }

    /// A node with one fresh output tensor; returns that tensor's name.
    pub fn op(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.push(op, hint, inputs, attrs, None)
    }

    /// A node writing to a caller-chosen tensor name (a graph output), through a Cast when the
    /// outputs are float16.
    pub fn op_into(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: &str,
    ) -> String {
        match self.output_type {
            FloatType::Float32 => self.push(op, hint, inputs, attrs, Some(output)),
            FloatType::Float16 => {
                let value = self.push(op, hint, inputs, attrs, None);
                let to = vec![proto::attr_int("to", FloatType::Float16.onnx() as i64)];
                self.push("Cast", &format!("{hint}_f16"), &[&value], to, Some(output))
            }
        }
    }

    /// The float32 tensor the decoder reads for `head`: the head, or a copy of the node writing
    /// it (same op, inputs and attributes), named `posefix/hint`; a float16 one through a Cast.
    pub fn read_head(&mut self, hint: &str, head: &str, input: &HeadInput) -> String {
        let tensor = match &input.read {
            HeadRead::Itself => head.to_string(),
            HeadRead::Recompute(node) => {
                let inputs: Vec<&str> = node.input.iter().map(String::as_str).collect();
                self.op(&node.op_type, hint, &inputs, node.attribute.clone())
            }
        };
        match input.ty {
            FloatType::Float32 => tensor,
            FloatType::Float16 => {
                // onnxruntime's CPU backend (and wasm) runs a float16 Conv in float32 and casts
                // to float16 only for the graph output; it then fuses that Cast with ours and
                // the decoder would read the unrounded values. A Reshape in between (a no-op,
                // run in float16) keeps the rounding (measured on onnxruntime 1.32.0). WebGL, which
                // reads a reshaped head wrong, cannot load a float16 model at all.
                let same = self.reshape(&format!("{hint}_f16"), &tensor, &input.dims);
                self.cast(&format!("{hint}_f32"), &same, FloatType::Float32)
            }
        }
    }

    /// `input` cast to `to` (Cast's `to` is an int attribute from opset 6 on).
    pub fn cast(&mut self, hint: &str, input: &str, to: FloatType) -> String {
        self.op("Cast", hint, &[input], vec![proto::attr_int("to", to.onnx() as i64)])
    }

    pub fn const_f32(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        let name = self.names.fresh(hint);
        self.initializers.push(proto::tensor_f32(&name, dims, values));
        name
    }

    /// A float constant of one value, rank 0 (a Clip bound must be a scalar) or rank 1 (shape
    /// `[1]`, for broadcasting), named `posefix/hint` when first made and shared after.
    pub fn scalar_f32(&mut self, hint: &str, value: f32, rank: usize) -> String {
        debug_assert!(rank <= 1);
        if let Some(name) = self.scalars.get(&(value.to_bits(), rank)) {
            return name.clone();
        }
        let name = self.const_f32(hint, &vec![1; rank], &[value]);
        self.scalars.insert((value.to_bits(), rank), name.clone());
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

    /// `x` with its infinities taken to -FLT_MAX and FLT_MAX, so that `max - x` below is never
    /// `inf - inf`.
    pub fn clamp_finite(&mut self, hint: &str, x: &str) -> String {
        self.clip(hint, x, f32::MIN, f32::MAX)
    }

    /// Clip in the form of the opset (bounds as attributes before 11, as inputs from 11): the
    /// one op whose form follows the opset. Not Max and Min: onnxruntime-web's WebGL backend
    /// registers neither at any opset, and wonnx has neither.
    pub fn clip(&mut self, hint: &str, x: &str, lo: f32, hi: f32) -> String {
        if self.opset < 11 {
            return self.op("Clip", hint, &[x], vec![proto::attr_float("min", lo), proto::attr_float("max", hi)]);
        }
        let lo = self.scalar_f32(&bound_name(lo), lo, 0);
        let hi = self.scalar_f32(&bound_name(hi), hi, 0);
        self.op("Clip", hint, &[x, &lo, &hi], vec![])
    }

    /// The largest value per map, keeping the cell axes as 1s: `[N, C, 1, 1]` for
    /// [`Cells::Grid`], `[N, 1, 1, C]` for [`Cells::Column`]. By MaxPool over the whole map, not
    /// ReduceMax (its axes move to an input at opset 18, and onnxruntime-web's WebGL backend
    /// fails on that form: "Reduce op requires 1 input") nor GlobalMaxPool (wonnx has none).
    /// wonnx's MaxPool starts from -3.4e37, not -inf: a map below that everywhere (all -inf,
    /// say) then has no cell equal to its max, and the decoder's empty-mask fallback takes cell
    /// (0, 0), which is where the reference puts an all -inf map too.
    pub fn max_over(&mut self, hint: &str, x: &str, cells: Cells) -> String {
        let kernel = match cells {
            Cells::Grid { height, width } => [height as i64, width as i64],
            Cells::Column { cells } => [cells as i64, 1],
        };
        self.op("MaxPool", hint, &[x], vec![proto::attr_ints("kernel_shape", &kernel)])
    }

    /// 1.0 where `x` equals `max` (its [`Self::max_over`], broadcast) and 0.0 elsewhere, by
    /// arithmetic alone: `1 - Clip(Clip((max - x) * 2^100, -1, 1) * 2^100, -1, 1)`. No comparison
    /// and no bool tensor: ncnn has no comparison layer (pnnx leaves Equal and Greater as
    /// torch.eq and torch.gt) and wonnx has no bool tensors. For finite `x`, `max - x` is 0 at the
    /// maxima and at least 2^-149 elsewhere, which the two products take to 2^51 or more: the
    /// result is exactly 1 or 0. The Clip between the products keeps optimizers from folding
    /// them into one product by 2^200, which is `inf` in f32: onnxsim (run before wonnx) folds
    /// two Muls in a row, and OpenCV DNN folds them across a Relu. A runtime that flushes
    /// subnormals to zero also takes cells within a subnormal of the max (possible only when
    /// `|max| < 2^-125`) for maxima.
    pub fn select_maxima(&mut self, hint: &str, x: &str, max: &str) -> String {
        let below = self.op("Sub", &format!("{hint}_below"), &[max, x], vec![]);
        let gain = self.scalar_f32("two_pow_100", SELECT_GAIN, 1);
        let scaled = self.op("Mul", &format!("{hint}_scaled"), &[&below, &gain], vec![]);
        // The lower bound never binds (the products are >= 0); it is -1, not 0, because a float
        // attribute of 0 is not written at all, and OpenCV DNN and wonnx then refuse the Clip.
        let scaled = self.clip(&format!("{hint}_scaled_clipped"), &scaled, -1.0, 1.0);
        let scaled = self.op("Mul", &format!("{hint}_scaled_twice"), &[&scaled, &gain], vec![]);
        let below = self.clip(&format!("{hint}_is_below"), &scaled, -1.0, 1.0);
        let one = self.scalar_f32("one", 1.0, 1);
        self.op("Sub", hint, &[&one, &below], vec![])
    }

    /// The sum over the cells of each map (shapes as in [`Self::max_over`]) when at most one
    /// cell is non-zero, as `max(x) - max(-x)` by MaxPool: exact (one of the two is the term,
    /// the other a zero). Not ReduceSum (axes an input from opset 13, which onnxruntime-web's
    /// WebGL backend does not register) nor MatMul against ones (wonnx multiplies no stacks of
    /// different ranks and drops terms when the inner size is not a multiple of 4).
    pub fn sum_of_one_term(&mut self, hint: &str, x: &str, cells: Cells) -> String {
        let one_cell = match cells {
            Cells::Grid { height, width } => height * width == 1,
            Cells::Column { cells } => cells == 1,
        };
        if one_cell {
            // No zero to pair with: the one cell is the sum.
            return x.to_string();
        }
        let high = self.max_over(&format!("{hint}_high"), x, cells);
        let minus_one = self.scalar_f32("minus_one", -1.0, 1);
        let negated = self.op("Mul", &format!("{hint}_negated"), &[x, &minus_one], vec![]);
        let low = self.max_over(&format!("{hint}_low"), &negated, cells);
        self.op("Sub", hint, &[&high, &low], vec![])
    }

    /// A 1x1 Conv with a constant 0/1 `weights[out][in]` matrix: each output channel is one input
    /// channel (or zero), exactly, as no runtime rounds `v * 1 + 0`. The portable way to copy or
    /// reorder channels: no Concat (wonnx concatenates wrongly when a dim before the axis is not
    /// 1), Gather, Transpose or MatMul (see [`Self::sum_of_one_term`]).
    pub fn pick_channels(&mut self, hint: &str, x: &str, sources: &[Option<usize>], inputs: usize) -> String {
        let mut w = vec![0.0f32; sources.len() * inputs];
        for (out, source) in sources.iter().enumerate() {
            if let Some(i) = source {
                w[out * inputs + i] = 1.0;
            }
        }
        let w = self.const_f32(&format!("{hint}_weights"), &[sources.len() as i64, inputs as i64, 1, 1], &w);
        self.op("Conv", hint, &[x, &w], vec![proto::attr_ints("kernel_shape", &[1, 1])])
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
    fn only_clip_changes_form_across_opsets() {
        let build = |opset| {
            let mut b = GraphBuilder::new(opset, NameAllocator::new(HashSet::new()));
            let x = b.clamp_finite("c", "x");
            for cells in [Cells::Grid { height: 3, width: 4 }, Cells::Column { cells: 12 }] {
                let m = b.max_over("m", &x, cells);
                let s = b.select_maxima("s", &x, &m);
                b.sum_of_one_term("t", &s, cells);
            }
            b.pick_channels("p", "x", &[Some(1), None], 2);
            ops(b)
        };
        let first = build(MIN_OPSET);
        let names: Vec<&str> = first.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(names[..8], ["Clip", "MaxPool", "Sub", "Mul", "Clip", "Mul", "Clip", "Sub"]);
        let is_clip = |o: &(String, Vec<String>, Vec<String>)| o.0 == "Clip";
        for opset in MIN_OPSET..=MAX_OPSET {
            let ops = build(opset);
            for clip in ops.iter().filter(|o| is_clip(o)) {
                assert_eq!(clip.1.len(), if opset < 11 { 1 } else { 3 }, "Clip at opset {opset}");
            }
            let others = |ops: &[(String, Vec<String>, Vec<String>)]| {
                ops.iter().filter(|o| !is_clip(o)).cloned().collect::<Vec<_>>()
            };
            assert_eq!(others(&ops), others(&first), "opset {opset}");
        }
    }

    #[test]
    fn a_single_cell_is_its_own_sum() {
        let mut b = GraphBuilder::new(13, NameAllocator::new(HashSet::new()));
        assert_eq!(b.sum_of_one_term("t", "x", Cells::Grid { height: 1, width: 1 }), "x");
        assert!(ops(b).is_empty());
    }

    #[test]
    fn the_gain_takes_the_smallest_gap_past_one() {
        assert_eq!(SELECT_GAIN, 2f32.powi(100));
        let smallest_gap = f32::from_bits(1);
        assert!(smallest_gap * SELECT_GAIN * SELECT_GAIN >= 1.0);
        // The widest gap, FLT_MAX - -FLT_MAX, overflows to inf, which the Clip takes to 1.
        assert_eq!((f32::MAX - f32::MIN) * SELECT_GAIN, f32::INFINITY);
    }
}
