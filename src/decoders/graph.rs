//! Building a subgraph to append to a model: one name allocator, one node constructor, and the
//! opset-dependent forms of the few ops whose signature changed over the versions we emit.
//!
//! The decoders' op choices live here, each with the runtime that forced it. They hold on the
//! runtimes the conformance legs run and are chosen for converters and runtimes we do not see:
//! the plainest form of each op, as a CNN uses it, and arithmetic that stays exact in float16.
//! - One form per op over every opset 9 to 21 (ONNX operator docs), so that no runtime meets an
//!   op version it does not register; Clip is the one exception (bounds as attributes before
//!   11): WebGL and wonnx have no Max or Min to clamp with.
//! - MaxPool for maxima, not ReduceMax (`axes` an input from 18: WebGL refuses that form) nor
//!   GlobalMaxPool (wonnx has none); its kernel is square with unit strides, and a non-square
//!   map is padded to the square ([`GraphBuilder::max_over`]): Barracuda 1.0.4's importer hands
//!   `kernel_shape` and `strides` over as (height, width) to arrays ordered (x, y) and so
//!   transposes every non-square kernel and stride (it swaps the pads); converters (onnx2tf,
//!   pnnx) take a square pool or Conv by their most common path. Its `strides` are written out:
//!   MNN's converter takes a missing attribute for 0, not ONNX's default of 1, and crashes.
//! - Sub, Clip and Ceil for "equal to the maximum", not Equal / Greater / Cast: no comparisons or
//!   bool tensors (ncnn has no comparison layer, wonnx no bool tensors). `Ceil(Clip(max - x, -1,
//!   1))` is 0 at the maxima and 1 elsewhere for any gap, down to the smallest float, in float32
//!   and float16 alike: no gain, no constant beyond the float16 range (the 2^100 factors before
//!   it overflowed float16 and picked wrong cells on ncnn's Vulkan defaults).
//! - 1x1 Convs against constant weights with one non-zero weight per output channel to copy,
//!   reorder and scale channels, not Concat, Gather or MatMul: exact in any summation order
//!   (`v * w + 0 + ...`), as every runtime's Conv is (wonnx concatenates wrongly when a dim before
//!   the axis is not 1 and drops MatMul terms when the inner size is not a multiple of 4).
//! - Per-cell values (the grid, the first-cell ranks, the multi-pose cell numbers) as Convs of a
//!   one-channel map of the graph ([`GraphBuilder::cell_maps`]): a 1x1 Conv with a bias, a 2x2
//!   Conv and a square Conv of the map's longer side, at unit strides, padded more at the top and
//!   left (Barracuda 1.0.4's importer swaps pads right; every conformance leg, the converters
//!   pnnx and onnx2tf included, runs them exactly), no pad wider than the map (Barracuda 1.0.4's
//!   CPU Conv asserts on one in debug builds). Each output is one exact product plus zeros.
//! - Transpose only to take NHWC heads to NCHW (`[0, 3, 1, 2]`, the standard permutation every
//!   converter knows; WebGL reads it right, unlike a Reshape between textures).
//! - Reshape: `shape` is an input since opset 5 (`allowzero` from 14 defaults to 0; we never
//!   emit a 0 in a shape).
//! - Cast only at the edges, for float16 models: after a float16 head (exact; behind a no-op
//!   Reshape, see [`GraphBuilder::read_head`]) and before a float16 output (`--output-type
//!   float16`). The decoders compute in float32 throughout.
//! - No constant outside the float16 range where a result depends on it: the clamps to
//!   +-FLT_MAX become +-inf in float16 and change nothing there, since float16 heads are finite.
//!   Every other constant is a float16 value: onnx2tf's float16 `.tflite` stores constants in
//!   float16 and computes in float32 (the multi-pose decoder makes its 2^64 in the graph).
//! - Constants that onnx2tf (1.29.24, at its defaults) converts as ONNX means them: no rank-4
//!   constant operand of an element-wise op (Add, Sub, Mul, Div) broadcast against a tensor of
//!   another shape (onnx2tf transposes the constant to NHWC, then, its
//!   `shape_unmatched_special_avoidance_workaround` taking the transposed constant for its ONNX
//!   shape, once more: `[1, 1, H, W]` becomes `(1, H, 1, W)`), and no rank-1 one of more than
//!   two values (it reorders them as NCHW dims). A per-channel constant goes into a 1x1 Conv's
//!   weights or bias. A per-cell constant (the grid, the first-cell ranks, the multi-pose cell
//!   numbers) is a tensor of the graph, of the heads' batch, read out of a Conv's weights
//!   ([`GraphBuilder::cell_maps`]): with a symbolic batch no constant can have the other
//!   operand's shape, and so none escapes that second transpose.
//!
//! The builder shares nodes: a node with the op, inputs and attributes of an earlier one (and a
//! constant with the values of an earlier one) is not made twice, so the two decoders share the
//! maps they both compute (the clamped heatmaps, the sigmoid, the heads' copies).

use std::collections::{HashMap, HashSet};

use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use crate::contract::{FloatType, NAME_PREFIX, NUM_KEYPOINTS};
use crate::decoders::reroute::{HeadInput, HeadRead};
use crate::model::proto;

/// The name of a Clip bound's constant.
fn bound_name(v: f32) -> String {
    match v {
        f32::MIN => "lowest".to_string(),
        f32::MAX => "highest".to_string(),
        v => format!("bound_{v}").replace('-', "minus_").replace('.', "_"),
    }
}

/// The cells of each map in a rank-4 `[N, C, height, width]` tensor the decoder reduces over:
/// one map per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    pub height: usize,
    pub width: usize,
}

/// The origin map that per-cell maps are read out from ([`GraphBuilder::cell_maps`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellMaps {
    /// `[N, 1, H, W]` of ones.
    ones: String,
    /// `[N, 1, H, W]`, 1 at the first cell, 0 elsewhere.
    origin: String,
    cells: Cells,
}

impl CellMaps {
    /// `[N, 1, H, W]` of ones, of the batch of the tensor the maps were made from.
    pub fn ones(&self) -> &str {
        &self.ones
    }
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
    /// Nodes already made, by (op, inputs, attributes): an equal node is the same tensor.
    made: HashMap<String, String>,
    /// Constants already made, by (type, dims, values): one initializer serves every reader.
    constants: HashMap<String, String>,
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
            made: HashMap::new(),
            constants: HashMap::new(),
            output_type: FloatType::Float32,
        }
    }

    /// Outputs written by [`GraphBuilder::op_into`] from now on are of type `ty`.
    pub fn set_output_type(&mut self, ty: FloatType) {
        self.output_type = ty;
    }

    #[cfg(feature = "testing")]
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The one node constructor: a node named `posefix/hint` whose single output is `output`, or
    /// a fresh tensor of the same name as the node. A node equal to an earlier one (op, inputs,
    /// attributes) with a fresh output is that node's tensor: deterministic ops, so the same value.
    fn push(
        &mut self,
        op: &str,
        hint: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: Option<&str>,
    ) -> String {
        let key = format!("{op}|{inputs:?}|{attrs:?}");
        if output.is_none() {
            if let Some(made) = self.made.get(&key) {
                return made.clone();
            }
        }
        let name = self.names.fresh(hint);
        let out = output.map(str::to_string).unwrap_or_else(|| name.clone());
        self.nodes.push(proto::node(op, &name, inputs, &[&out], attrs));
        if output.is_none() {
            self.made.insert(key, out.clone());
        }
        out
    }

    /// A node with one fresh output tensor; returns that tensor's name.
    pub fn op(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.push(op, hint, inputs, attrs, None)
    }

    /// A node with two fresh output tensors (TopK's values and indices); never shared.
    pub fn op_two(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> (String, String) {
        let name = self.names.fresh(hint);
        let second = self.names.fresh(&format!("{hint}_second"));
        self.nodes.push(proto::node(op, &name, inputs, &[&name, &second], attrs));
        (name, second)
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

    /// A constant, named `posefix/hint` when first made; an equal one made earlier is reused.
    fn constant(&mut self, hint: &str, key: String, make: impl FnOnce(&str) -> TensorProto) -> String {
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = self.names.fresh(hint);
        self.initializers.push(make(&name));
        self.constants.insert(key, name.clone());
        name
    }

    pub fn const_f32(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        self.constant(hint, format!("f32|{dims:?}|{bits:?}"), |name| proto::tensor_f32(name, dims, values))
    }

    /// A float constant of one value, rank 0 (a Clip bound must be a scalar) or rank 1 (shape
    /// `[1]`, for broadcasting).
    pub fn scalar_f32(&mut self, hint: &str, value: f32, rank: usize) -> String {
        debug_assert!(rank <= 1);
        self.const_f32(hint, &vec![1; rank], &[value])
    }

    pub fn const_i64(&mut self, hint: &str, dims: &[i64], values: &[i64]) -> String {
        self.constant(hint, format!("i64|{dims:?}|{values:?}"), |name| proto::tensor_i64(name, dims, values))
    }

    pub fn reshape(&mut self, hint: &str, x: &str, shape: &[i64]) -> String {
        debug_assert!(!shape.contains(&0), "0 copies a dim before opset 14 and means 0 after");
        let shape = self.const_i64(&format!("{hint}_shape"), &[shape.len() as i64], shape);
        self.op("Reshape", hint, &[x, &shape], vec![])
    }

    /// An NHWC tensor `[N, H, W, C]` as NCHW `[N, C, H, W]`: the one Transpose the decoders emit,
    /// the permutation every converter and runtime knows (onnx2tf and Barracuda write NHWC
    /// models with it; WebGL's Transpose moves data, so it reads right where a Reshape would not).
    pub fn nhwc_to_nchw(&mut self, hint: &str, x: &str) -> String {
        self.op("Transpose", hint, &[x], vec![proto::attr_ints("perm", &[0, 3, 1, 2])])
    }

    /// The origin of the per-cell maps of `like` (a finite `[N, C, H, W]` tensor of the graph,
    /// `like_channels` = C): `[N, 1, H, W]`, 1 at the first cell and 0 elsewhere, exactly, by two
    /// Convs: ones (zero weights over `like`, bias 1), then a 2x2 kernel `[[1, -1], [-1, 1]]`
    /// padded at the top and left only, which sums to 0 wherever its window holds more than the
    /// first cell. Integers in any summation order; a NaN in `like` makes its cell NaN.
    pub fn cell_maps(&mut self, like: &str, like_channels: usize, cells: Cells) -> CellMaps {
        let zeros = self.const_f32("cell_ones_weights", &[1, like_channels as i64, 1, 1], &vec![0.0; like_channels]);
        let one = self.const_f32("cell_ones_bias", &[1], &[1.0]);
        let ones = self.op("Conv", "cell_ones", &[like, &zeros, &one], vec![proto::attr_ints("kernel_shape", &[1, 1])]);
        let corner = self.const_f32("first_cell_weights", &[1, 1, 2, 2], &[1.0, -1.0, -1.0, 1.0]);
        let attrs = vec![proto::attr_ints("kernel_shape", &[2, 2]), proto::attr_ints("pads", &[1, 1, 0, 0])];
        let origin = self.op("Conv", "first_cell", &[&ones, &corner], attrs);
        CellMaps { ones, origin, cells }
    }

    /// A map of constant values per cell as a tensor of the graph: `[N, channels, H, W]`, of the
    /// batch of [`Self::cell_maps`]' `like`, `per_cell` holding `[channels, H, W]` values. A
    /// Conv of the origin map whose square kernel (the longer side, S) holds the values
    /// mirrored: padded by H - 1 at the top and W - 1 at the left (and to S at the other ends),
    /// the window of cell (y, x) meets the first cell at kernel tap (H-1-y, W-1-x), so the
    /// output is that value times 1 plus zeros: exact in any precision the value is. No pad
    /// exceeds the map's side when it is at most twice the other: Barracuda 1.0.4's CPU Conv
    /// (`Conv2DUsingIm2ColSliced`) asserts, in debug builds, on a left pad wider than the map
    /// (its results are right). It costs `channels * S^2` multiply-adds a cell, so a map of few
    /// channels is made and widened by a 1x1 Conv where many are needed.
    pub fn per_cell_map(&mut self, hint: &str, maps: &CellMaps, channels: usize, per_cell: &[f32]) -> String {
        let Cells { height, width } = maps.cells;
        debug_assert_eq!(per_cell.len(), channels * height * width);
        let side = height.max(width);
        let mut kernel = vec![0.0f32; channels * side * side];
        for (i, &value) in per_cell.iter().enumerate() {
            let (c, y, x) = (i / (height * width), i / width % height, i % width);
            kernel[(c * side + height - 1 - y) * side + width - 1 - x] = value;
        }
        let (s, c, h, w) = (side as i64, channels as i64, height as i64, width as i64);
        let kernel = self.const_f32(&format!("{hint}_values"), &[c, 1, s, s], &kernel);
        let pads = [h - 1, w - 1, s - h, s - w];
        let attrs = vec![proto::attr_ints("kernel_shape", &[s, s]), proto::attr_ints("pads", &pads)];
        self.op("Conv", hint, &[&maps.origin, &kernel], attrs)
    }

    /// Every cell's position per keypoint in model-input pixels, `[N, 34, H, W]` in the offsets'
    /// layout (y of keypoint k in channel k, x in k + 17): the offsets plus the cell's pixel
    /// position (`gy*stride`, `gx*stride`), one f32 addition, as the references add them. The
    /// pixel positions are a two-channel map ([`Self::per_cell_map`]) widened to the offsets'
    /// 34 channels, negated, by a 1x1 Conv of weights -1, then subtracted (`a - (-b)` is `a + b`
    /// exactly): onnxruntime-web 1.30.0's wasm backend loses a graph output (the offsets head)
    /// that an Add reads with the output of a Conv ("Reading data from non-tensor typed value",
    /// measured; the Sub runs exactly).
    pub fn cell_positions(&mut self, hint: &str, offsets: &str, maps: &CellMaps, stride: u32) -> String {
        let Cells { height: h, width: w } = maps.cells;
        let stride = stride as f32;
        let pixels: Vec<f32> = (0..2).flat_map(|c| (0..h * w).map(move |i| if c == 0 { i / w } else { i % w } as f32 * stride)).collect();
        let pixels = self.per_cell_map("grid_px", maps, 2, &pixels);
        let k = NUM_KEYPOINTS;
        let negated: Vec<Option<(usize, f32)>> = (0..2 * k).map(|c| Some((c / k, -1.0))).collect();
        let pixels = self.scale_channels("grid_px_negated", &pixels, &negated, 2);
        self.op("Sub", hint, &[offsets, &pixels], vec![])
    }

    /// `x` with its infinities taken to -FLT_MAX and FLT_MAX, so that `max - x` below is never
    /// `inf - inf`. (In float16 the bounds read +-inf: float16 heads are finite, so nothing
    /// there depends on them.)
    pub fn clamp_finite(&mut self, hint: &str, x: &str) -> String {
        self.clip(hint, x, f32::MIN, f32::MAX)
    }

    /// Clip in the form of the opset (bounds as attributes before 11, as inputs from 11): the
    /// one op whose form follows the opset. Not Max and Min: onnxruntime-web's WebGL backend
    /// registers neither at any opset, and wonnx has neither. A bound is never 0: a float
    /// attribute of 0 is not written at all, and OpenCV DNN and wonnx then refuse the Clip.
    pub fn clip(&mut self, hint: &str, x: &str, lo: f32, hi: f32) -> String {
        debug_assert!(lo != 0.0 && hi != 0.0);
        if self.opset < 11 {
            return self.op("Clip", hint, &[x], vec![proto::attr_float("min", lo), proto::attr_float("max", hi)]);
        }
        let lo = self.scalar_f32(&bound_name(lo), lo, 0);
        let hi = self.scalar_f32(&bound_name(hi), hi, 0);
        self.op("Clip", hint, &[x, &lo, &hi], vec![])
    }

    /// ReduceMin over `axis`, kept, in the form of the opset (axes an attribute before 18, an
    /// input from 18). Only where the target profile allows it (the multi-pose Gather form):
    /// WebGL fails on the input form, and pnnx converts one axis only.
    pub fn reduce_min(&mut self, hint: &str, x: &str, axis: i64) -> String {
        if self.opset < 18 {
            return self.op("ReduceMin", hint, &[x], vec![proto::attr_ints("axes", &[axis])]);
        }
        let axes = self.const_i64(&format!("{hint}_axes"), &[1], &[axis]);
        self.op("ReduceMin", hint, &[x, &axes], vec![])
    }

    /// The largest value per map, `[N, C, 1, 1]`, by a MaxPool over the whole map, not ReduceMax
    /// (its axes move to an input at opset 18, and onnxruntime-web's WebGL backend fails on that
    /// form: "Reduce op requires 1 input") nor GlobalMaxPool (wonnx has none). The kernel is
    /// square, with unit strides: a non-square map is padded at its bottom or right end to the
    /// square (MaxPool's padding is never a maximum), since Barracuda 1.0.4 transposes
    /// non-square kernels (see the module doc); the strides are written out (MNN). wonnx's MaxPool starts from -3.4e37, not -inf:
    /// values below that everywhere read -3.4e37, which the decoders allow for.
    pub fn max_over(&mut self, hint: &str, x: &str, cells: Cells) -> String {
        let Cells { height, width } = cells;
        let side = height.max(width) as i64;
        // Unit strides written out, not left to their default: MNN's converter (3.6.1) reads a
        // missing `strides` as 0 and divides by it (SIGILL while converting, SIGFPE at run time).
        let mut attrs = vec![proto::attr_ints("kernel_shape", &[side, side]), proto::attr_ints("strides", &[1, 1])];
        if height != width {
            let pads = [0, 0, side - height as i64, side - width as i64];
            attrs.push(proto::attr_ints("pads", &pads));
        }
        self.op("MaxPool", hint, &[x], attrs)
    }

    /// 0.0 where `x` equals `max` (its [`Self::max_over`], broadcast) and 1.0 where it is below,
    /// exactly, by `Ceil(Clip(max - x, -1, 1))`: `max - x` is 0 at the maxima and a positive
    /// float elsewhere, however small, and Ceil takes any float in (0, 1] to 1. Float16-safe (no
    /// gain, and the Clip keeps the values in [0, 1]). For finite `x` and `max`; a runtime that
    /// flushes subnormal differences to zero takes cells within a subnormal of the max for
    /// maxima (possible only when `|max| < 2^-125`, or `2^-14` in float16).
    pub fn below_max(&mut self, hint: &str, x: &str, max: &str) -> String {
        let gap = self.op("Sub", &format!("{hint}_gap"), &[max, x], vec![]);
        let gap = self.clip(&format!("{hint}_gap_clipped"), &gap, -1.0, 1.0);
        self.op("Ceil", hint, &[&gap], vec![])
    }

    /// A 1x1 Conv with constant weights `weights[out][in]`, each output channel one input channel
    /// times its weight (or zero): exact, as no runtime rounds `v * w + 0 + ...` when `v * w` is
    /// exact. The portable way to copy, reorder or scale channels: no Concat (wonnx concatenates
    /// wrongly when a dim before the axis is not 1), Gather, Transpose or MatMul (wonnx drops
    /// terms when the inner size is not a multiple of 4). A non-finite input anywhere in the
    /// cell turns every output channel there NaN (`inf * 0`).
    pub fn scale_channels(&mut self, hint: &str, x: &str, sources: &[Option<(usize, f32)>], inputs: usize) -> String {
        let mut w = vec![0.0f32; sources.len() * inputs];
        for (out, source) in sources.iter().enumerate() {
            if let Some((i, weight)) = source {
                w[out * inputs + i] = *weight;
            }
        }
        let w = self.const_f32(&format!("{hint}_weights"), &[sources.len() as i64, inputs as i64, 1, 1], &w);
        self.op("Conv", hint, &[x, &w], vec![proto::attr_ints("kernel_shape", &[1, 1])])
    }

    /// [`Self::scale_channels`] with weights of 1: output channel `o` is input channel
    /// `sources[o]`, or zeros.
    pub fn pick_channels(&mut self, hint: &str, x: &str, sources: &[Option<usize>], inputs: usize) -> String {
        let sources: Vec<Option<(usize, f32)>> = sources.iter().map(|s| s.map(|i| (i, 1.0))).collect();
        self.scale_channels(hint, x, &sources, inputs)
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
            for cells in [Cells { height: 3, width: 4 }, Cells { height: 5, width: 5 }] {
                let m = b.max_over(&format!("m{}", cells.height), &x, cells);
                b.below_max(&format!("s{}", cells.height), &x, &m);
            }
            b.pick_channels("p", "x", &[Some(1), None], 2);
            ops(b)
        };
        let first = build(MIN_OPSET);
        let names: Vec<&str> = first.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(names[..5], ["Clip", "MaxPool", "Sub", "Clip", "Ceil"]);
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

    fn ints(b: &GraphBuilder, node: usize, name: &str) -> Option<Vec<i64>> {
        b.nodes[node].attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
    }

    #[test]
    fn pools_are_square_with_unit_strides_and_pad_a_non_square_map() {
        let mut b = GraphBuilder::new(13, NameAllocator::new(HashSet::new()));
        b.max_over("tall", "x", Cells { height: 23, width: 17 });
        b.max_over("wide", "x", Cells { height: 1, width: 4 });
        b.max_over("square", "x", Cells { height: 9, width: 9 });
        assert_eq!(ints(&b, 0, "kernel_shape"), Some(vec![23, 23]));
        assert_eq!(ints(&b, 0, "pads"), Some(vec![0, 0, 0, 6]));
        assert_eq!(ints(&b, 1, "kernel_shape"), Some(vec![4, 4]));
        assert_eq!(ints(&b, 1, "pads"), Some(vec![0, 0, 3, 0]));
        assert_eq!(ints(&b, 2, "kernel_shape"), Some(vec![9, 9]));
        assert_eq!(ints(&b, 2, "pads"), None);
        assert!((0..3).all(|n| ints(&b, n, "strides") == Some(vec![1, 1]) && b.nodes[n].op_type == "MaxPool"));
    }

    #[test]
    fn equal_nodes_and_constants_are_made_once() {
        let mut b = GraphBuilder::new(13, NameAllocator::new(HashSet::new()));
        let first = b.clamp_finite("a", "x");
        let again = b.clamp_finite("b", "x");
        assert_eq!(first, again);
        let other = b.clamp_finite("c", "y");
        assert_ne!(first, other);
        let k1 = b.const_f32("k", &[2], &[1.0, 2.0]);
        let k2 = b.const_f32("k_again", &[2], &[1.0, 2.0]);
        let k3 = b.const_f32("k_other", &[1, 2], &[1.0, 2.0]);
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
        // A graph output is always written by its own node.
        b.op_into("Clip", "out", &["x"], vec![], "out");
        b.op_into("Clip", "out2", &["x"], vec![], "out2");
        let (nodes, initializers) = b.finish();
        assert_eq!(nodes.len(), 4);
        // Two Clip bounds, then the two distinct constants.
        assert_eq!(initializers.len(), 4);
    }

    #[test]
    fn per_cell_maps_hold_their_values_at_every_cell_of_every_item() {
        use onnx_protobuf::tensor_proto::DataType;
        use tract_onnx::prelude::Tensor;

        for (h, w) in [(1, 1), (3, 5), (5, 3), (4, 4)] {
            let mut b = GraphBuilder::new(13, NameAllocator::new(HashSet::new()));
            let cells = Cells { height: h, width: w };
            let maps = b.cell_maps("x", 2, cells);
            // Values of 8 significant bits and a large one: exact only if read out as one product.
            let values: Vec<f32> = (0..2 * h * w).map(|i| if i == 1 { 65504.0 } else { 1.0 - i as f32 / 256.0 }).collect();
            let out = b.per_cell_map("m", &maps, 2, &values);
            let (nodes, initializers) = b.finish();
            let mut graph = onnx_protobuf::GraphProto::new();
            let dims = [2, 2, h as i64, w as i64].map(proto::Dim::Fixed);
            graph.input.push(proto::value_info("x", DataType::FLOAT, &dims));
            graph.output.push(proto::value_info(&out, DataType::FLOAT, &[]));
            graph.node = nodes;
            graph.initializer = initializers;
            let model = crate::testing::synthetic::wrap_graph(graph, 13, 8, format!("maps {h}x{w}"));
            let bytes = crate::model::io::to_bytes(&model).unwrap();
            let runner = crate::tract_bridge::Runner::new(&bytes, &[vec![2, 2, h, w]]).unwrap();
            // Any finite input: the maps do not depend on its values.
            let x: Vec<f32> = (0..4 * h * w).map(|i| (i as f32 * 0.37).sin() * 1e30).collect();
            let input = Tensor::from_shape(&[2, 2, h, w], &x).unwrap();
            let got = runner.run(vec![input]).unwrap().remove(0);
            assert_eq!(got.shape(), &[2, 2, h, w]);
            let got: Vec<f32> = got.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            for item in 0..2 {
                assert_eq!(&got[item * 2 * h * w..(item + 1) * 2 * h * w], &values[..], "{h}x{w}, item {item}");
            }
        }
    }

    #[test]
    fn below_max_is_exact_for_the_smallest_gaps_in_float32_and_float16() {
        // Ceil(Clip(gap, -1, 1)): 0 for a zero gap, 1 for the smallest positive one.
        let step = |gap: f32| gap.clamp(-1.0, 1.0).ceil();
        assert_eq!(step(0.0), 0.0);
        assert_eq!(step(f32::from_bits(1)), 1.0);
        assert_eq!(step(2f32.powi(-24)), 1.0); // the smallest float16 gap
        assert_eq!(step(f32::INFINITY), 1.0);
    }
}
