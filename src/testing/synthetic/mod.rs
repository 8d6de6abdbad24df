//! PoseNet-like ONNX models built in memory, for tests and benchmarks.
//!
//! Each model has the outward shape of a PoseNet export: one float image input `image` (NCHW or
//! NHWC, batch fixed or symbolic) and four head outputs (heatmaps 17 channels, offsets 34,
//! forward and backward displacements 32 each) in NCHW or NHWC, in any order and under any names.
//! Inside, each head is a single 1x1 Conv with stride `s` and no padding, so the heads are
//! `(H-1)/s+1` by `(W-1)/s+1` (257 at stride 16 gives 17), optionally followed by a Sigmoid
//! (heatmaps) and a Transpose (NHWC heads). Weights are drawn from [`Rng`] seeded by the spec, so
//! a spec always yields the same bytes.
//!
//! Tests rely on this: an all-zero image makes every heatmap channel constant (its bias, or the
//! sigmoid of it), i.e. exact ties across all cells, which the contract resolves to cell (0, 0).
//!
//! No name here starts with `posefix`, so nothing is mistaken for a decoder the rewrite appended.
//!
//! For benchmarks, [`resnet_sized`] builds PoseNets of realistic size and cost instead: a
//! ResNet50-shaped backbone (about 95 MB of weights at full width) under the same four heads
//! ([`resnet`]); [`float16()`] converts a model as onnxconverter-common does ([`float16`]).

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto};

use crate::contract::{Layout, NUM_KEYPOINTS};
use crate::model::proto::{attr_ints, node, tensor_f32, value_info, Dim};
use crate::rng::Rng;

mod float16;
mod resnet;

pub use float16::float16;
pub use resnet::{resnet_sized, ResnetSpec};

/// Name of the image input of every synthetic model.
pub const INPUT_NAME: &str = "image";

/// The batch dimension as the model declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    Fixed(i64),
    /// A `dim_param`, e.g. `"N"`.
    Symbolic(String),
}

impl Batch {
    pub fn dim(&self) -> Dim {
        match self {
            Batch::Fixed(n) => Dim::Fixed(*n),
            Batch::Symbolic(s) => Dim::Symbol(s.clone()),
        }
    }

    /// The concrete batch size: the fixed one, or `symbolic_as` for a symbolic batch.
    pub fn concrete(&self, symbolic_as: usize) -> usize {
        match self {
            Batch::Fixed(n) => *n as usize,
            Batch::Symbolic(_) => symbolic_as,
        }
    }
}

/// The four PoseNet heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Head {
    Heatmaps,
    Offsets,
    DisplacementFwd,
    DisplacementBwd,
}

impl Head {
    /// In the order the graph computes them.
    pub const ALL: [Head; 4] = [Head::Heatmaps, Head::Offsets, Head::DisplacementFwd, Head::DisplacementBwd];

    pub fn channels(self) -> usize {
        match self {
            Head::Heatmaps => NUM_KEYPOINTS,
            Head::Offsets => 2 * NUM_KEYPOINTS,
            // 16 skeleton edges of the multi-pose decoder, times (y, x).
            Head::DisplacementFwd | Head::DisplacementBwd => 32,
        }
    }

    /// Stem of the node and initializer names of this head.
    fn stem(self) -> &'static str {
        match self {
            Head::Heatmaps => "heatmap",
            Head::Offsets => "offset",
            Head::DisplacementFwd => "displacement_fwd",
            Head::DisplacementBwd => "displacement_bwd",
        }
    }

    /// One letter per head, for labels.
    fn letter(self) -> char {
        match self {
            Head::Heatmaps => 'h',
            Head::Offsets => 'o',
            Head::DisplacementFwd => 'f',
            Head::DisplacementBwd => 'b',
        }
    }

    /// Half-widths of the uniform ranges of the conv weights and biases. Offsets and
    /// displacements come out as a few to a few tens of pixels, like a trained PoseNet's.
    fn init_ranges(self) -> (f32, f32) {
        match self {
            Head::Heatmaps => (1.0, 1.0),
            Head::Offsets | Head::DisplacementFwd | Head::DisplacementBwd => (8.0, 4.0),
        }
    }
}

/// The graph-output name of each head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadNames {
    pub heatmaps: String,
    pub offsets: String,
    pub displacement_fwd: String,
    pub displacement_bwd: String,
}

impl Default for HeadNames {
    fn default() -> Self {
        HeadNames {
            heatmaps: "heatmaps".into(),
            offsets: "offsets".into(),
            displacement_fwd: "displacement_fwd".into(),
            displacement_bwd: "displacement_bwd".into(),
        }
    }
}

impl HeadNames {
    /// The tensor names of the tfjs MobileNetV1 PoseNet as tf2onnx exports it.
    pub fn mobilenet_v1() -> Self {
        HeadNames {
            heatmaps: "MobilenetV1/heatmap_2/BiasAdd".into(),
            offsets: "MobilenetV1/offset_2/BiasAdd".into(),
            displacement_fwd: "MobilenetV1/displacement_fwd_2/BiasAdd".into(),
            displacement_bwd: "MobilenetV1/displacement_bwd_2/BiasAdd".into(),
        }
    }

    pub fn get(&self, head: Head) -> &str {
        match head {
            Head::Heatmaps => &self.heatmaps,
            Head::Offsets => &self.offsets,
            Head::DisplacementFwd => &self.displacement_fwd,
            Head::DisplacementBwd => &self.displacement_bwd,
        }
    }
}

/// What [`generate`] builds.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Default-domain opset, 9..=21; the IR version follows (see [`ir_version`]).
    pub opset: i64,
    pub batch: Batch,
    /// Image height and width.
    pub input_hw: (usize, usize),
    /// 8, 16 or 32 in real PoseNets; any positive value works.
    pub stride: usize,
    /// `[N, 3, H, W]` or `[N, H, W, 3]`.
    pub input_layout: Layout,
    pub heads_layout: Layout,
    /// The heatmaps end in a Sigmoid (scores are then the raw max).
    pub sigmoid_heatmaps: bool,
    /// The order of the four graph outputs; a permutation of [`Head::ALL`].
    pub output_order: [Head; 4],
    pub names: HeadNames,
    pub seed: u64,
}

impl SyntheticSpec {
    /// The common case: 257x257 NCHW in and out, stride 16, logits, batch 1.
    pub fn posenet(opset: i64) -> Self {
        SyntheticSpec {
            opset,
            batch: Batch::Fixed(1),
            input_hw: (257, 257),
            stride: 16,
            input_layout: Layout::Nchw,
            heads_layout: Layout::Nchw,
            sigmoid_heatmaps: false,
            output_order: Head::ALL,
            names: HeadNames::default(),
            seed: 0x5EED,
        }
    }

    /// Height and width of the heads.
    pub fn output_hw(&self) -> (usize, usize) {
        let (h, w) = self.input_hw;
        ((h - 1) / self.stride + 1, (w - 1) / self.stride + 1)
    }

    /// A short stable id such as `nchw_logits_op11_b1_257x257`, usable as a snapshot or test
    /// name. It names the structure, not the weights: the seed is left out. Suffixes mark what
    /// departs from [`SyntheticSpec::posenet`]: `_s8`, `_input-nhwc`, `_order-ohbf`, `_renamed`.
    pub fn label(&self) -> String {
        let batch = match &self.batch {
            Batch::Fixed(n) => n.to_string(),
            Batch::Symbolic(_) => "sym".to_string(),
        };
        let (h, w) = self.input_hw;
        let mut label = format!(
            "{}_{}_op{}_b{batch}_{h}x{w}",
            self.heads_layout.as_str().to_ascii_lowercase(),
            if self.sigmoid_heatmaps { "sigmoid" } else { "logits" },
            self.opset,
        );
        if self.stride != 16 {
            label += &format!("_s{}", self.stride);
        }
        if self.input_layout != Layout::Nchw {
            label += &format!("_input-{}", self.input_layout.as_str().to_ascii_lowercase());
        }
        if self.output_order != Head::ALL {
            label += "_order-";
            label.extend(self.output_order.iter().map(|h| h.letter()));
        }
        if self.names != HeadNames::default() {
            label += "_renamed";
        }
        label
    }

    /// The declared input shape.
    pub fn input_dims(&self) -> Vec<Dim> {
        let (h, w) = self.input_hw;
        let (h, w) = (Dim::Fixed(h as i64), Dim::Fixed(w as i64));
        match self.input_layout {
            Layout::Nchw => vec![self.batch.dim(), Dim::Fixed(3), h, w],
            Layout::Nhwc => vec![self.batch.dim(), h, w, Dim::Fixed(3)],
        }
    }

    /// The concrete input shape, a symbolic batch taken as `symbolic_as`.
    pub fn input_shape(&self, symbolic_as: usize) -> Vec<usize> {
        let n = self.batch.concrete(symbolic_as);
        let (h, w) = self.input_hw;
        match self.input_layout {
            Layout::Nchw => vec![n, 3, h, w],
            Layout::Nhwc => vec![n, h, w, 3],
        }
    }

    /// The declared shape of a head output.
    pub fn head_dims(&self, head: Head) -> Vec<Dim> {
        let (oh, ow) = self.output_hw();
        let (c, h, w) = (Dim::Fixed(head.channels() as i64), Dim::Fixed(oh as i64), Dim::Fixed(ow as i64));
        match self.heads_layout {
            Layout::Nchw => vec![self.batch.dim(), c, h, w],
            Layout::Nhwc => vec![self.batch.dim(), h, w, c],
        }
    }

    /// The concrete shape of a head output, a symbolic batch taken as `symbolic_as`.
    pub fn head_shape(&self, head: Head, symbolic_as: usize) -> Vec<usize> {
        let n = self.batch.concrete(symbolic_as);
        let (h, w) = self.output_hw();
        let c = head.channels();
        match self.heads_layout {
            Layout::Nchw => vec![n, c, h, w],
            Layout::Nhwc => vec![n, h, w, c],
        }
    }
}

/// The IR version that goes with a default-domain opset (the release that introduced the
/// opset), or `None` outside 9..=21.
pub fn ir_version(opset: i64) -> Option<i64> {
    Some(match opset {
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21 => 10,
        _ => return None,
    })
}

/// Builds the model of `spec`.
///
/// # Panics
///
/// On a spec no model can have: an opset outside 9..=21, a zero stride or input size, an output
/// order that is not a permutation of the heads, or two heads under one name. Specs are written
/// by tests, so these are programming errors.
pub fn generate(spec: &SyntheticSpec) -> ModelProto {
    let ir = ir_version(spec.opset).unwrap_or_else(|| panic!("synthetic models need opset 9..=21, not {}", spec.opset));
    assert!(spec.stride > 0 && spec.input_hw.0 > 0 && spec.input_hw.1 > 0, "zero stride or input size in {spec:?}");
    assert!(
        Head::ALL.iter().all(|h| spec.output_order.contains(h)),
        "output order {:?} misses a head",
        spec.output_order
    );
    for (i, a) in Head::ALL.iter().enumerate() {
        for b in &Head::ALL[i + 1..] {
            assert_ne!(spec.names.get(*a), spec.names.get(*b), "two heads share a name");
        }
    }

    let mut rng = Rng::new(spec.seed);
    let mut graph = GraphProto::new();
    graph.name = "synthetic_posenet".to_string();
    graph.input.push(value_info(INPUT_NAME, DataType::FLOAT, &spec.input_dims()));

    let mut image = INPUT_NAME.to_string();
    if spec.input_layout == Layout::Nhwc {
        graph.node.push(node(
            "Transpose",
            "image_to_nchw",
            &[INPUT_NAME],
            &["image_nchw"],
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        ));
        image = "image_nchw".to_string();
    }

    let s = spec.stride as i64;
    for head in Head::ALL {
        let stem = head.stem();
        let channels = head.channels();
        let (w_range, b_range) = head.init_ranges();
        let weights: Vec<f32> = (0..channels * 3).map(|_| rng.uniform(-w_range, w_range)).collect();
        let bias: Vec<f32> = (0..channels).map(|_| rng.uniform(-b_range, b_range)).collect();
        let (conv, weight_name, bias_name) =
            (format!("{stem}_conv"), format!("{stem}_conv.weight"), format!("{stem}_conv.bias"));
        graph.initializer.push(tensor_f32(&weight_name, &[channels as i64, 3, 1, 1], &weights));
        graph.initializer.push(tensor_f32(&bias_name, &[channels as i64], &bias));

        // The chain after the conv; the last node writes the graph output.
        let mut stages = vec![(
            "Conv",
            conv,
            vec![weight_name, bias_name],
            vec![attr_ints("kernel_shape", &[1, 1]), attr_ints("strides", &[s, s]), attr_ints("pads", &[0, 0, 0, 0])],
        )];
        if head == Head::Heatmaps && spec.sigmoid_heatmaps {
            stages.push(("Sigmoid", format!("{stem}_sigmoid"), vec![], vec![]));
        }
        if spec.heads_layout == Layout::Nhwc {
            stages.push(("Transpose", format!("{stem}_to_nhwc"), vec![], vec![attr_ints("perm", &[0, 2, 3, 1])]));
        }
        let mut x = image.clone();
        let last = stages.len() - 1;
        for (i, (op, name, extra_inputs, attrs)) in stages.into_iter().enumerate() {
            let out = if i == last { spec.names.get(head).to_string() } else { format!("{name}_output") };
            let mut inputs = vec![x.as_str()];
            inputs.extend(extra_inputs.iter().map(String::as_str));
            graph.node.push(node(op, &name, &inputs, &[&out], attrs));
            x = out;
        }
    }

    for head in spec.output_order {
        graph.output.push(value_info(spec.names.get(head), DataType::FLOAT, &spec.head_dims(head)));
    }

    wrap_graph(graph, spec.opset, ir, spec.label())
}

/// A model around a generated graph, in the default domain at `opset`.
pub fn wrap_graph(graph: GraphProto, opset: i64, ir_version: i64, label: String) -> ModelProto {
    let mut import = OperatorSetIdProto::new();
    import.version = opset;
    let mut model = ModelProto::new();
    model.ir_version = ir_version;
    model.opset_import = vec![import];
    model.producer_name = "onnx-posefix synthetic".to_string();
    model.producer_version = env!("CARGO_PKG_VERSION").to_string();
    model.doc_string = label;
    model.graph = Some(graph).into();
    model
}

/// The test matrix: every head layout, score mode, opset family, batch form, aspect, stride and
/// output order the rewrite must handle, kept small enough that all of them run in tract quickly.
/// Labels are distinct.
pub fn matrix() -> Vec<SyntheticSpec> {
    use Head::{DisplacementBwd as Bwd, DisplacementFwd as Fwd, Heatmaps as Hm, Offsets as Off};
    let base = SyntheticSpec::posenet;
    let specs = vec![
        base(11),
        base(9),
        SyntheticSpec { sigmoid_heatmaps: true, batch: Batch::Fixed(2), ..base(13) },
        SyntheticSpec { heads_layout: Layout::Nhwc, ..base(11) },
        SyntheticSpec { heads_layout: Layout::Nhwc, sigmoid_heatmaps: true, input_hw: (257, 353), ..base(18) },
        SyntheticSpec { batch: Batch::Symbolic("N".into()), ..base(13) },
        SyntheticSpec { input_hw: (257, 353), output_order: [Off, Hm, Bwd, Fwd], ..base(11) },
        SyntheticSpec {
            input_layout: Layout::Nhwc,
            heads_layout: Layout::Nhwc,
            sigmoid_heatmaps: true,
            batch: Batch::Fixed(2),
            input_hw: (193, 257),
            ..base(11)
        },
        // The tfjs MobileNetV1 export: NHWC everywhere, logits, tf2onnx tensor names.
        SyntheticSpec {
            input_layout: Layout::Nhwc,
            heads_layout: Layout::Nhwc,
            output_order: [Off, Fwd, Bwd, Hm],
            names: HeadNames::mobilenet_v1(),
            ..base(13)
        },
        SyntheticSpec { stride: 8, input_hw: (225, 225), ..base(11) },
        SyntheticSpec { stride: 32, heads_layout: Layout::Nhwc, sigmoid_heatmaps: true, ..base(9) },
        SyntheticSpec { sigmoid_heatmaps: true, output_order: [Hm, Fwd, Off, Bwd], ..base(21) },
        SyntheticSpec { sigmoid_heatmaps: true, input_hw: (353, 257), ..base(18) },
        SyntheticSpec {
            heads_layout: Layout::Nhwc,
            batch: Batch::Fixed(2),
            output_order: [Bwd, Fwd, Off, Hm],
            ..base(13)
        },
    ];
    // Distinct weights per spec, still fixed.
    specs.into_iter().enumerate().map(|(i, spec)| SyntheticSpec { seed: spec.seed + i as u64, ..spec }).collect()
}

/// The bytes of [`SyntheticSpec::posenet`] at `opset` after `edit` changed its graph: hostile
/// variants for the tests of validation and of tract's containment.
pub fn edited_posenet_bytes(opset: i64, edit: impl FnOnce(&mut onnx_protobuf::GraphProto)) -> Vec<u8> {
    let mut model = generate(&SyntheticSpec::posenet(opset));
    edit(model.graph.as_mut().expect("generated with a graph"));
    protobuf::Message::write_to_bytes(&model).expect("a generated model encodes")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use onnx_protobuf::Message;
    use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
    use tract_onnx::prelude::*;

    use super::*;
    use crate::contract::ScoreMode;
    use crate::model::proto::tensor_f32_values;
    use crate::reference;
    use crate::tract_bridge::Runner;

    const SYMBOLIC_BATCH: usize = 2;

    fn bytes(spec: &SyntheticSpec) -> Vec<u8> {
        generate(spec).write_to_bytes().expect("serializes")
    }

    fn initializer(model: &ModelProto, name: &str) -> Vec<f32> {
        let graph = model.graph.as_ref().expect("graph");
        let t = graph.initializer.iter().find(|t| t.name == name).expect(name);
        tensor_f32_values(t).expect("float initializer")
    }

    /// The input of `spec` filled by `f(n, c, y, x)`, in its declared layout.
    fn image(spec: &SyntheticSpec, f: impl Fn(usize, usize, usize, usize) -> f32) -> ArrayD<f32> {
        let shape = spec.input_shape(SYMBOLIC_BATCH);
        ArrayD::from_shape_fn(IxDyn(&shape), |ix| match spec.input_layout {
            Layout::Nchw => f(ix[0], ix[1], ix[2], ix[3]),
            Layout::Nhwc => f(ix[0], ix[3], ix[1], ix[2]),
        })
    }

    /// Runs the model and returns the outputs by head, checking names and order on the way.
    fn run(spec: &SyntheticSpec, input: ArrayD<f32>) -> Vec<(Head, ArrayD<f32>)> {
        let runner = Runner::new(&bytes(spec), &[spec.input_shape(SYMBOLIC_BATCH)])
            .unwrap_or_else(|e| panic!("{}: {e}", spec.label()));
        let expected_names: Vec<&str> = spec.output_order.iter().map(|h| spec.names.get(*h)).collect();
        assert_eq!(runner.output_names(), expected_names.as_slice(), "{}", spec.label());
        let outputs = runner.run(vec![input.into_tensor()]).unwrap_or_else(|e| panic!("{}: {e}", spec.label()));
        spec.output_order
            .iter()
            .zip(outputs)
            .map(|(head, t)| (*head, t.into_plain_array::<f32>().expect("f32 output")))
            .collect()
    }

    fn head(outputs: &[(Head, ArrayD<f32>)], head: Head) -> &ArrayD<f32> {
        &outputs.iter().find(|(h, _)| *h == head).expect("every head is an output").1
    }

    fn score_mode(spec: &SyntheticSpec) -> ScoreMode {
        if spec.sigmoid_heatmaps {
            ScoreMode::Raw
        } else {
            ScoreMode::Sigmoid
        }
    }

    #[test]
    fn matrix_labels_are_distinct_and_cover_the_cases() {
        let specs = matrix();
        let labels: HashSet<String> = specs.iter().map(|s| s.label()).collect();
        assert_eq!(labels.len(), specs.len());
        assert!((12..=16).contains(&specs.len()));
        assert_eq!(SyntheticSpec::posenet(11).label(), "nchw_logits_op11_b1_257x257");
        for opset in [9, 11, 13, 18, 21] {
            assert!(specs.iter().any(|s| s.opset == opset), "opset {opset}");
        }
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for sigmoid in [false, true] {
                assert!(specs.iter().any(|s| s.heads_layout == layout && s.sigmoid_heatmaps == sigmoid));
            }
        }
        assert!(specs.iter().any(|s| matches!(s.batch, Batch::Symbolic(_))));
        assert!(specs.iter().any(|s| s.batch == Batch::Fixed(2)));
        assert!(specs.iter().any(|s| s.input_hw.0 != s.input_hw.1));
        assert!(specs.iter().any(|s| s.stride == 8));
        assert!(specs.iter().any(|s| s.names != HeadNames::default()));
        assert!(specs.iter().any(|s| s.input_layout == Layout::Nhwc));
    }

    #[test]
    fn models_are_well_formed_and_deterministic() {
        for spec in matrix() {
            let model = generate(&spec);
            assert_eq!(model.ir_version, ir_version(spec.opset).unwrap());
            assert_eq!(bytes(&spec), bytes(&spec), "{}", spec.label());
            let graph = model.graph.as_ref().unwrap();
            let mut names = HashSet::new();
            for n in &graph.node {
                assert!(!n.name.is_empty());
                assert!(names.insert(n.name.clone()), "duplicate node name {}", n.name);
            }
            for t in &graph.initializer {
                assert!(!t.name.is_empty());
                assert!(names.insert(t.name.clone()), "duplicate name {}", t.name);
            }
            let all = graph.node.iter().flat_map(|n| n.output.iter().chain([&n.name])).chain(names.iter());
            for name in all {
                assert!(!name.to_ascii_lowercase().starts_with("posefix"), "{name}");
            }
        }
        let a = bytes(&SyntheticSpec::posenet(11));
        let b = bytes(&SyntheticSpec { seed: 1, ..SyntheticSpec::posenet(11) });
        assert_ne!(a, b, "the seed drives the weights");
    }

    #[test]
    fn posenet_257_at_stride_16_has_17x17_heads() {
        let spec = SyntheticSpec::posenet(11);
        assert_eq!(spec.output_hw(), (17, 17));
        assert_eq!(SyntheticSpec { input_hw: (257, 353), ..spec.clone() }.output_hw(), (17, 23));
        assert_eq!(SyntheticSpec { input_hw: (225, 225), stride: 8, ..spec }.output_hw(), (29, 29));
    }

    /// Every model runs in tract, its heads have the declared shapes in the declared order, they
    /// equal the 1x1 strided conv computed here from the initializers (so the NHWC transposes
    /// and the sigmoid are where the spec says), and the reference decoder accepts them.
    #[test]
    fn models_run_in_tract_as_specified() {
        for spec in matrix() {
            let label = spec.label();
            let input = image(&spec, |n, c, y, x| ((n * 7 + c * 5 + y * 3 + x) % 17) as f32 / 8.0 - 1.0);
            let outputs = run(&spec, input.clone());
            let model = generate(&spec);
            for (h, out) in &outputs {
                assert_eq!(out.shape(), spec.head_shape(*h, SYMBOLIC_BATCH).as_slice(), "{label} {h:?}");
                let w = initializer(&model, &format!("{}_conv.weight", h.stem()));
                let b = initializer(&model, &format!("{}_conv.bias", h.stem()));
                let s = spec.stride;
                for (ix, &got) in out.indexed_iter() {
                    let (n, c, y, x) = match spec.heads_layout {
                        Layout::Nchw => (ix[0], ix[1], ix[2], ix[3]),
                        Layout::Nhwc => (ix[0], ix[3], ix[1], ix[2]),
                    };
                    let pixel = |i: usize| match spec.input_layout {
                        Layout::Nchw => input[[n, i, y * s, x * s]],
                        Layout::Nhwc => input[[n, y * s, x * s, i]],
                    };
                    let mut want = b[c] + (0..3).map(|i| w[c * 3 + i] * pixel(i)).sum::<f32>();
                    if *h == Head::Heatmaps && spec.sigmoid_heatmaps {
                        want = 1.0 / (1.0 + (-want).exp());
                    }
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{label} {h:?} {ix:?}: {got} vs {want}");
                }
            }
            let poses = reference::decode(
                head(&outputs, Head::Heatmaps).view(),
                head(&outputs, Head::Offsets).view(),
                spec.heads_layout,
                spec.stride as u32,
                score_mode(&spec),
            )
            .expect(&label);
            assert_eq!(poses.len(), spec.batch.concrete(SYMBOLIC_BATCH), "{label}");
        }
    }

    /// A zero image leaves only the biases: every heatmap channel is one value repeated, so every
    /// keypoint is an exact tie that decodes to cell (0, 0).
    #[test]
    fn zero_input_gives_all_equal_heatmaps() {
        for spec in matrix() {
            let label = spec.label();
            let outputs = run(&spec, image(&spec, |_, _, _, _| 0.0));
            let heatmaps = head(&outputs, Head::Heatmaps);
            let bias = initializer(&generate(&spec), "heatmap_conv.bias");
            let channel_axis = spec.heads_layout.channel_axis();
            for (k, channel) in heatmaps.axis_iter(tract_ndarray::Axis(channel_axis)).enumerate() {
                let first = channel.iter().next().copied().unwrap();
                assert!(
                    channel.iter().all(|v| v.to_bits() == first.to_bits()),
                    "{label} keypoint {k} has no exact tie"
                );
                let want = if spec.sigmoid_heatmaps { 1.0 / (1.0 + (-bias[k]).exp()) } else { bias[k] };
                assert!((first - want).abs() < 1e-5, "{label} keypoint {k}: {first} vs {want}");
            }
            let poses = reference::decode(
                heatmaps.view(),
                head(&outputs, Head::Offsets).view(),
                spec.heads_layout,
                spec.stride as u32,
                score_mode(&spec),
            )
            .unwrap();
            assert!(poses.iter().flatten().all(|kp| kp.cell == (0, 0)), "{label}");
        }
    }
}
