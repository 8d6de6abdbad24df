//! PoseNets of realistic size and cost for the benchmarks: a ResNet50-shaped backbone under the
//! four heads of the synthetic models.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto};

use super::{ir_version, wrap_graph, Head, HeadNames, INPUT_NAME};
use crate::model::proto::{attr_ints, node, value_info, Dim};
use crate::rng::Rng;

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

#[cfg(test)]
mod tests {
    use onnx_protobuf::Message;
    use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
    use tract_onnx::prelude::IntoTensor;

    use super::*;
    use crate::tract_bridge::Runner;

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
