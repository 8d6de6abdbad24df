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
//! ResNet50-shaped backbone (about 95 MB of weights at full width) under the same four heads.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto};

use crate::contract::{Layout, NUM_KEYPOINTS};
use crate::model::proto::{attr_ints, node, tensor_f32, value_info, Dim};
use crate::rng::Rng;

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
fn wrap_graph(graph: GraphProto, opset: i64, ir_version: i64, label: String) -> ModelProto {
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

/// What [`resnet_sized`] builds: a PoseNet with a ResNet50-shaped backbone, for benchmarks that
/// need a model of realistic size and cost rather than the minimal models of [`generate`].
///
/// The backbone is ResNet50 v1.5 as PoseNet exports it, batch norms folded into conv biases: a
/// 7x7 stride-2 stem, a 3x3 stride-2 max pool, then bottleneck stages of 3, 4, 6 and 3 blocks
/// (1x1, 3x3, 1x1 convs, projection shortcut on each stage's first block, Relu after the Add),
/// 256 to 2048 channels wide. The stages that would take the output stride past `stride` keep
/// stride 1 and dilate their 3x3 convs instead (atrous, as PoseNet's ResNet50 does at stride 16).
/// The four heads are 1x1 convs on the 2048 channels: logits, NCHW, batch 1, named as
/// [`HeadNames::default`]. At `width_percent` 100 the weights are 23.5 million float32 values
/// (about 94 MB), stored as `raw_data`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResnetSpec {
    /// Default-domain opset, 9..=21.
    pub opset: i64,
    /// Image height and width; `16k+1` sizes give `(H-1)/stride+1` heads exactly.
    pub input_hw: (usize, usize),
    /// Output stride: 8, 16 or 32.
    pub stride: usize,
    /// Channel widths in percent of ResNet50's (rounded to multiples of 8): the size knob, the
    /// weights growing with its square.
    pub width_percent: usize,
    pub seed: u64,
}

/// One conv of a [`ResnetSpec`] model, with its output channels and geometry.
#[derive(Clone, Copy, Debug)]
struct ResnetConv {
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
}

impl ResnetConv {
    fn weight_count(&self) -> usize {
        self.out_ch * self.in_ch * self.kernel * self.kernel + self.out_ch
    }

    /// ONNX output size for an input of `n` with symmetric `dilation * (kernel - 1) / 2` pads.
    fn output_size(&self, n: usize) -> usize {
        let pad = self.dilation * (self.kernel - 1) / 2;
        (n + 2 * pad - self.dilation * (self.kernel - 1) - 1) / self.stride + 1
    }
}

/// ResNet50's stages: blocks, bottleneck width, output width.
const RESNET50_STAGES: [(usize, usize, usize); 4] = [(3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048)];

impl ResnetSpec {
    /// The full-size ResNet50 PoseNet: 257x257 input, opset 11.
    pub fn resnet50(stride: usize) -> Self {
        ResnetSpec { opset: 11, input_hw: (257, 257), stride, width_percent: 100, seed: 0x2E50 }
    }

    /// `resnet50_w100_s16_257x257`
    pub fn label(&self) -> String {
        format!("resnet50_w{}_s{}_{}x{}", self.width_percent, self.stride, self.input_hw.0, self.input_hw.1)
    }

    fn width(&self, channels: usize) -> usize {
        ((channels * self.width_percent + 400) / 800).max(1) * 8
    }

    /// Stride and dilation of each stage's 3x3 convs for the output stride.
    fn stage_geometry(&self) -> [(usize, usize); 4] {
        match self.stride {
            8 => [(1, 1), (2, 1), (1, 2), (1, 4)],
            16 => [(1, 1), (2, 1), (2, 1), (1, 2)],
            32 => [(1, 1), (2, 1), (2, 1), (2, 1)],
            s => panic!("ResNet PoseNets have output stride 8, 16 or 32, not {s}"),
        }
    }

    /// Channels out of the backbone.
    fn features(&self) -> usize {
        self.width(RESNET50_STAGES[3].2)
    }

    /// Number of float32 weights (biases included) of the model, heads included.
    pub fn weight_count(&self) -> usize {
        let backbone: usize = self.backbone().iter().flatten().map(ResnetConv::weight_count).sum();
        let heads: usize = Head::ALL.iter().map(|h| (self.features() + 1) * h.channels()).sum();
        backbone + heads
    }

    /// Height and width of the heads.
    pub fn output_hw(&self) -> (usize, usize) {
        let size = |n: usize| {
            let stem = ResnetConv { in_ch: 3, out_ch: 1, kernel: 7, stride: 2, dilation: 1 };
            let pool = ResnetConv { kernel: 3, ..stem };
            let mut n = pool.output_size(stem.output_size(n));
            for (stride, _) in self.stage_geometry() {
                n = ResnetConv { stride, ..pool }.output_size(n);
            }
            n
        };
        (size(self.input_hw.0), size(self.input_hw.1))
    }

    /// The convs in graph order: the stem, then per block conv1, conv2, conv3 and the
    /// projection shortcut where there is one.
    fn backbone(&self) -> Vec<Vec<ResnetConv>> {
        let mut layers = vec![vec![ResnetConv { in_ch: 3, out_ch: self.width(64), kernel: 7, stride: 2, dilation: 1 }]];
        let mut in_ch = self.width(64);
        for ((blocks, mid, out), (stride, dilation)) in RESNET50_STAGES.into_iter().zip(self.stage_geometry()) {
            let (mid, out) = (self.width(mid), self.width(out));
            for b in 0..blocks {
                let stride = if b == 0 { stride } else { 1 };
                let conv =
                    |in_ch, out_ch, kernel, stride, dilation| ResnetConv { in_ch, out_ch, kernel, stride, dilation };
                let mut block =
                    vec![conv(in_ch, mid, 1, 1, 1), conv(mid, mid, 3, stride, dilation), conv(mid, out, 1, 1, 1)];
                if b == 0 {
                    block.push(conv(in_ch, out, 1, stride, 1));
                }
                layers.push(block);
                in_ch = out;
            }
        }
        layers
    }
}

/// A float32 initializer of shape `dims`, uniform in `[-range, range)`, written straight into
/// `raw_data` (a 95 MB model is built in a fraction of a second).
fn raw_uniform(name: &str, dims: &[i64], range: f32, rng: &mut Rng) -> onnx_protobuf::TensorProto {
    let count = dims.iter().product::<i64>() as usize;
    let mut raw = Vec::with_capacity(count * 4);
    for _ in 0..count {
        raw.extend_from_slice(&rng.uniform(-range, range).to_le_bytes());
    }
    let mut t = onnx_protobuf::TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = raw;
    t
}

/// Builds the model of `spec` (see [`ResnetSpec`]).
///
/// # Panics
///
/// On an opset outside 9..=21, a stride other than 8, 16 or 32, or a zero input size or width.
pub fn resnet_sized(spec: &ResnetSpec) -> ModelProto {
    let ir = ir_version(spec.opset).unwrap_or_else(|| panic!("synthetic models need opset 9..=21, not {}", spec.opset));
    assert!(spec.input_hw.0 > 0 && spec.input_hw.1 > 0 && spec.width_percent > 0, "empty model in {spec:?}");
    let mut rng = Rng::new(spec.seed);
    let mut graph = GraphProto::new();
    graph.name = "synthetic_resnet_posenet".to_string();
    graph.input.push(value_info(
        INPUT_NAME,
        DataType::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(spec.input_hw.0 as i64), Dim::Fixed(spec.input_hw.1 as i64)],
    ));

    // The conv writes `out`, then a Relu `{out}_relu` when `relu`; returns the last tensor. Weights
    // of variance 1/fan_in keep the activations in range through the 16 blocks.
    let mut conv = |graph: &mut GraphProto, name: &str, x: &str, c: &ResnetConv, out: &str, relu: bool| -> String {
        let fan_in = (c.in_ch * c.kernel * c.kernel) as f32;
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        let k = c.kernel as i64;
        graph.initializer.push(raw_uniform(
            &w,
            &[c.out_ch as i64, c.in_ch as i64, k, k],
            (3.0 / fan_in).sqrt(),
            &mut rng,
        ));
        graph.initializer.push(raw_uniform(&b, &[c.out_ch as i64], 0.1, &mut rng));
        let (s, d) = (c.stride as i64, c.dilation as i64);
        let pad = d * (k - 1) / 2;
        graph.node.push(node(
            "Conv",
            name,
            &[x, &w, &b],
            &[out],
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[s, s]),
                attr_ints("dilations", &[d, d]),
                attr_ints("pads", &[pad, pad, pad, pad]),
            ],
        ));
        if !relu {
            return out.to_string();
        }
        let relu_out = format!("{out}_relu");
        graph.node.push(node("Relu", &relu_out, &[out], &[&relu_out], vec![]));
        relu_out
    };

    let layers = spec.backbone();
    let mut x = conv(&mut graph, "stem/conv", INPUT_NAME, &layers[0][0], "stem/conv_output", true);
    graph.node.push(node(
        "MaxPool",
        "stem/pool",
        &[&x],
        &["stem/pool_output"],
        vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])],
    ));
    x = "stem/pool_output".to_string();
    let mut blocks = layers[1..].iter();
    for (stage, (count, _, _)) in RESNET50_STAGES.iter().enumerate() {
        for b in 0..*count {
            let block = blocks.next().expect("one entry per block");
            let prefix = format!("stage{}/block{}", stage + 1, b + 1);
            let mut step = |graph: &mut GraphProto, part: &str, x: &str, c: &ResnetConv, relu: bool| {
                let name = format!("{prefix}/{part}");
                conv(graph, &name, x, c, &format!("{name}_output"), relu)
            };
            let y = step(&mut graph, "conv1", &x, &block[0], true);
            let y = step(&mut graph, "conv2", &y, &block[1], true);
            let y = step(&mut graph, "conv3", &y, &block[2], false);
            let shortcut = match block.get(3) {
                Some(projection) => step(&mut graph, "shortcut", &x, projection, false),
                None => x.clone(),
            };
            let sum = format!("{prefix}/add");
            graph.node.push(node("Add", &sum, &[&y, &shortcut], &[&sum], vec![]));
            let out = format!("{prefix}/relu");
            graph.node.push(node("Relu", &out, &[&sum], &[&out], vec![]));
            x = out;
        }
    }

    let names = HeadNames::default();
    let (oh, ow) = spec.output_hw();
    for head in Head::ALL {
        let c = ResnetConv { in_ch: spec.features(), out_ch: head.channels(), kernel: 1, stride: 1, dilation: 1 };
        conv(&mut graph, &format!("{}_conv", head.stem()), &x, &c, names.get(head), false);
        let dims = [1, head.channels(), oh, ow].map(|d| Dim::Fixed(d as i64));
        graph.output.push(value_info(names.get(head), DataType::FLOAT, &dims));
    }

    wrap_graph(graph, spec.opset, ir, spec.label())
}

/// The bytes of [`SyntheticSpec::posenet`] at `opset` after `edit` changed its graph: hostile
/// variants for the tests of validation and of tract's containment.
pub fn edited_posenet_bytes(opset: i64, edit: impl FnOnce(&mut onnx_protobuf::GraphProto)) -> Vec<u8> {
    let mut model = generate(&SyntheticSpec::posenet(opset));
    edit(model.graph.as_mut().expect("generated with a graph"));
    protobuf::Message::write_to_bytes(&model).expect("a generated model encodes")
}

/// `model` converted to float16 as onnxconverter-common's `convert_float_to_float16` converts a
/// PoseNet: every float32 initializer and declared tensor becomes float16. With
/// `keep_io_types`, the graph's inputs and outputs stay float32 and Casts go in between (the
/// heads are then float32 outputs of Casts). Only for graphs whose ops take float16 as they take
/// float32 (Conv, Clip, Sigmoid, Transpose, Reshape: the synthetic models and the real one).
///
/// # Panics
///
/// On a float32 initializer without readable values (a stripped or external one).
pub fn float16(model: &ModelProto, keep_io_types: bool) -> ModelProto {
    use tract_onnx::prelude::f16;
    let mut out = model.clone();
    let g = out.graph.as_mut().expect("a model with a graph");
    for t in g.initializer.iter_mut().filter(|t| t.data_type == DataType::FLOAT as i32) {
        let values = crate::model::proto::tensor_f32_values(t).expect("a float32 initializer with its values");
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
        t.data_type = DataType::FLOAT16 as i32;
    }
    let to_f16 = |vi: &mut onnx_protobuf::ValueInfoProto| {
        if let Some(onnx_protobuf::type_proto::Value::TensorType(t)) = vi.type_.as_mut().and_then(|t| t.value.as_mut())
        {
            if t.elem_type == DataType::FLOAT as i32 {
                t.elem_type = DataType::FLOAT16 as i32;
            }
        }
    };
    g.value_info.iter_mut().for_each(to_f16);
    if !keep_io_types {
        g.input.iter_mut().chain(g.output.iter_mut()).for_each(to_f16);
        return out;
    }
    let cast = |name: &str, from: &str, to: &str, ty: DataType| {
        node("Cast", name, &[from], &[to], vec![crate::model::proto::attr_int("to", ty as i64)])
    };
    let (inputs, outputs): (Vec<String>, Vec<String>) =
        (g.input.iter().map(|i| i.name.clone()).collect(), g.output.iter().map(|o| o.name.clone()).collect());
    let rename = |nodes: &mut [onnx_protobuf::NodeProto], from: &str, to: &str, inputs_side: bool| {
        for n in nodes {
            let names = if inputs_side { &mut n.input } else { &mut n.output };
            names.iter_mut().filter(|x| *x == from).for_each(|x| *x = to.to_string());
        }
    };
    for name in &inputs {
        let inner = format!("{name}_f16");
        rename(&mut g.node, name, &inner, true);
        g.node.insert(0, cast(&format!("{name}_cast"), name, &inner, DataType::FLOAT16));
    }
    for name in &outputs {
        let inner = format!("{name}_f16");
        rename(&mut g.node, name, &inner, false);
        rename(&mut g.node, name, &inner, true);
        g.node.push(cast(&format!("{name}_cast"), &inner, name, DataType::FLOAT));
    }
    out
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

    #[test]
    fn resnet50_has_the_size_and_grids_of_the_real_one() {
        let spec = ResnetSpec::resnet50(16);
        let megabytes = spec.weight_count() * 4 / 1_000_000;
        assert!((90..=100).contains(&megabytes), "{megabytes} MB");
        assert_eq!(spec.output_hw(), (17, 17));
        assert_eq!(ResnetSpec::resnet50(32).output_hw(), (9, 9));
        assert_eq!(ResnetSpec::resnet50(8).output_hw(), (33, 33));
        assert_eq!(ResnetSpec { input_hw: (513, 1025), ..spec.clone() }.output_hw(), (33, 65));
        let half = ResnetSpec { width_percent: 50, ..spec.clone() }.weight_count() as f64;
        assert!((half / spec.weight_count() as f64 - 0.25).abs() < 0.02, "weights grow with the width squared");
    }

    #[test]
    fn small_resnets_run_in_tract_with_the_declared_heads() {
        for stride in [8, 16, 32] {
            let spec = ResnetSpec { width_percent: 10, input_hw: (65, 97), ..ResnetSpec::resnet50(stride) };
            let model = resnet_sized(&spec);
            let graph = model.graph.as_ref().unwrap();
            let floats: usize = graph.initializer.iter().map(|t| t.raw_data.len() / 4).sum();
            assert_eq!(floats, spec.weight_count(), "{}", spec.label());
            let bytes = model.write_to_bytes().unwrap();
            assert_eq!(bytes, resnet_sized(&spec).write_to_bytes().unwrap(), "deterministic");
            let runner = Runner::new(&bytes, &[vec![1, 3, 65, 97]]).unwrap_or_else(|e| panic!("{}: {e}", spec.label()));
            let names = HeadNames::default();
            assert_eq!(runner.output_names(), Head::ALL.map(|h| names.get(h).to_string()).as_slice());
            let input =
                ArrayD::from_shape_fn(IxDyn(&[1, 3, 65, 97]), |ix| ((ix[2] * 3 + ix[3]) % 11) as f32 / 5.0 - 1.0);
            let outputs = runner.run(vec![input.into_tensor()]).unwrap();
            let (oh, ow) = spec.output_hw();
            assert_eq!((oh, ow), ((65 - 1) / stride + 1, (97 - 1) / stride + 1));
            for (head, out) in Head::ALL.iter().zip(outputs) {
                let out = out.into_plain_array::<f32>().unwrap();
                assert_eq!(out.shape(), &[1, head.channels(), oh, ow], "{} {head:?}", spec.label());
                assert!(out.iter().all(|v| v.is_finite()), "{} {head:?}", spec.label());
            }
        }
    }
}
