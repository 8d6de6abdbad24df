//! Structured mutations of a synthetic PoseNet, decoded from fuzzer bytes with `arbitrary`.
//!
//! Byte-level fuzzing of protobuf mostly ends in decode errors; these mutations keep the model a
//! model and aim at what the brief lists as hostile: wrong head types, odd ranks, zero, negative
//! and huge dims, duplicate names, cycles, nodes out of order, dangling inputs, subgraphs, names
//! that collide with the decoder's, broken initializers, odd opsets. Every index is taken modulo
//! the length of what it indexes, so any bytes give a valid list of mutations.

use arbitrary::Arbitrary;
use onnx_posefix::onnx_protobuf::attribute_proto::AttributeType;
use onnx_posefix::onnx_protobuf::tensor_proto::DataType;
use onnx_posefix::onnx_protobuf::type_proto;
use onnx_posefix::onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use onnx_posefix::model::proto::{self, Dim};
use onnx_posefix::rewrite::{InputShape, RewriteOptions};
use onnx_posefix::testing::synthetic;

/// One fuzz case: a synthetic model, the options of the rewrite, and mutations. The mutations
/// come last so that they take all the remaining bytes (`arbitrary_take_rest`): a longer input is
/// a longer list, not a longer length prefix.
#[derive(Arbitrary, Debug, Clone)]
pub struct Case {
    pub spec: u8,
    pub prune: bool,
    pub pin: Option<Vec<DimChoice>>,
    pub output_name: Option<NameChoice>,
    pub mutations: Vec<Mutation>,
}

/// A name: one the model already uses, one the decoder uses, or another.
#[derive(Arbitrary, Debug, Clone)]
pub enum NameChoice {
    Existing(u16),
    Ours(u8),
    Other(u8),
}

const OUR_NAMES: [&str; 8] = [
    "keypoints",
    "posefix/heatmaps_flat",
    "posefix/first_cell_rank",
    "posefix/keypoints",
    "posefix/grid_px",
    "posefix/heatmap_max",
    "posefix/",
    "",
];

const OTHER_NAMES: [&str; 8] = ["x", "ghost", "heatmap", "offset", "Heatmaps", "image", "N", "a/b:0"];

#[derive(Arbitrary, Debug, Clone)]
pub enum DimChoice {
    Small(u8),
    Zero,
    Negative(i8),
    /// `2^(32 + n % 31)`
    Huge(u8),
    Raw(i64),
    Symbol(u8),
    Unknown,
}

/// A tensor's dims from the choices: at most rank 6, every dim fixed.
fn tensor_dims(dims: &[DimChoice]) -> Vec<i64> {
    dims.iter().take(6).map(DimChoice::fixed).collect()
}

const SYMBOLS: [&str; 8] = ["N", "H", "W", "?", "unk__1", "N+1", "1/2", "batch*2"];

impl DimChoice {
    fn dim(&self) -> Dim {
        match self {
            DimChoice::Small(v) => Dim::Fixed(*v as i64),
            DimChoice::Zero => Dim::Fixed(0),
            DimChoice::Negative(v) => Dim::Fixed(-(v.unsigned_abs() as i64) - 1),
            DimChoice::Huge(v) => Dim::Fixed(1i64 << (32 + *v as u32 % 31)),
            DimChoice::Raw(v) => Dim::Fixed(*v),
            DimChoice::Symbol(s) => Dim::Symbol(SYMBOLS[*s as usize % SYMBOLS.len()].to_string()),
            DimChoice::Unknown => Dim::Unknown,
        }
    }

    /// As a tensor's dim, which has no symbols: symbolic and unknown dims become 1.
    fn fixed(&self) -> i64 {
        match self.dim() {
            Dim::Fixed(v) => v,
            _ => 1,
        }
    }

    fn pin(&self) -> usize {
        match self {
            DimChoice::Small(v) => *v as usize,
            DimChoice::Huge(v) => 1usize << (32 + *v as u32 % 31),
            DimChoice::Raw(v) => *v as usize,
            DimChoice::Negative(_) | DimChoice::Zero => 0,
            DimChoice::Symbol(_) | DimChoice::Unknown => 257,
        }
    }
}

/// Which value-info.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Slot {
    Input(u8),
    Output(u8),
    ValueInfo(u8),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum AttrValue {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Tensor {
        data_type: u8,
        dims: Vec<DimChoice>,
        data: Vec<u8>,
    },
    /// A one-node graph: `Identity(input) -> output`.
    Graph {
        input: NameChoice,
        output: NameChoice,
    },
    Str(u8),
}

const ATTR_NAMES: [&str; 14] = [
    "perm",
    "axis",
    "to",
    "kernel_shape",
    "strides",
    "pads",
    "group",
    "dilations",
    "axes",
    "keepdims",
    "value",
    "then_branch",
    "else_branch",
    "body",
];

const OPS: [&str; 28] = [
    "Identity",
    "Relu",
    "Sigmoid",
    "Cast",
    "Transpose",
    "Reshape",
    "Conv",
    "If",
    "Loop",
    "Add",
    "Concat",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Constant",
    "NoSuchOp",
    "Resize",
    "MatMul",
    "Gather",
    "Split",
    "Shape",
    "Slice",
    "Pad",
    "Scan",
    "ReduceMax",
];

const DOMAINS: [&str; 4] = ["", "ai.onnx", "com.microsoft", "posefix"];

#[derive(Arbitrary, Debug, Clone)]
pub enum Mutation {
    ElemType {
        slot: Slot,
        data_type: u8,
    },
    SetDim {
        slot: Slot,
        axis: u8,
        dim: DimChoice,
    },
    Rank {
        slot: Slot,
        rank: u8,
    },
    ClearShape {
        slot: Slot,
    },
    ClearType {
        slot: Slot,
    },
    Rename {
        from: NameChoice,
        to: NameChoice,
    },
    NodeInput {
        node: u8,
        ix: u8,
        to: NameChoice,
    },
    NodeOutput {
        node: u8,
        ix: u8,
        to: NameChoice,
    },
    DropNodeInput {
        node: u8,
        ix: u8,
    },
    NodeName {
        node: u8,
        to: NameChoice,
    },
    SwapNodes {
        a: u8,
        b: u8,
    },
    ReverseNodes,
    DuplicateNode {
        node: u8,
    },
    RemoveNode {
        node: u8,
    },
    OpType {
        node: u8,
        op: u8,
    },
    Domain {
        node: u8,
        domain: u8,
    },
    Attr {
        node: u8,
        name: u8,
        value: AttrValue,
    },
    RemoveAttr {
        node: u8,
        ix: u8,
    },
    /// `Cast(to)` between an output's producer and the output: heads of another type.
    CastOutput {
        output: u8,
        data_type: u8,
        declare: bool,
    },
    /// The output computed inside an `If` whose branches read it from the outer scope.
    WrapInIf {
        output: u8,
    },
    AddOutput {
        name: NameChoice,
        data_type: u8,
        dims: Vec<DimChoice>,
    },
    RemoveOutput {
        ix: u8,
    },
    SwapOutputs {
        a: u8,
        b: u8,
    },
    AddInput {
        name: NameChoice,
        data_type: u8,
        dims: Vec<DimChoice>,
    },
    RemoveInput {
        ix: u8,
    },
    AddValueInfo {
        name: NameChoice,
        data_type: u8,
        dims: Vec<DimChoice>,
    },
    InitializerDims {
        ix: u8,
        dims: Vec<DimChoice>,
    },
    InitializerType {
        ix: u8,
        data_type: u8,
    },
    InitializerTruncate {
        ix: u8,
        len: u16,
    },
    InitializerToFloatData {
        ix: u8,
    },
    InitializerExternal {
        ix: u8,
    },
    RemoveInitializer {
        ix: u8,
    },
    DuplicateInitializer {
        ix: u8,
        name: NameChoice,
    },
    Opset {
        version: i8,
    },
    AddOpset {
        domain: u8,
        version: i8,
    },
    IrVersion {
        version: i8,
    },
    Metadata {
        key: u8,
        value: NameChoice,
    },
}

const METADATA_KEYS: [&str; 4] = ["posefix.version", "posefix.output", "posefix.", "author"];

/// Every name in the graph, sorted, for [`NameChoice::Existing`].
fn names(graph: &GraphProto) -> Vec<String> {
    let mut names: Vec<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).chain([&n.name]).cloned())
        .chain(graph.initializer.iter().map(|t| t.name.clone()))
        .chain(graph.input.iter().chain(&graph.output).chain(&graph.value_info).map(|v| v.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

impl NameChoice {
    fn resolve(&self, graph: &GraphProto) -> String {
        match self {
            NameChoice::Existing(i) => {
                let names = names(graph);
                if names.is_empty() {
                    "x".into()
                } else {
                    names[*i as usize % names.len()].clone()
                }
            }
            NameChoice::Ours(i) => OUR_NAMES[*i as usize % OUR_NAMES.len()].into(),
            NameChoice::Other(i) => OTHER_NAMES[*i as usize % OTHER_NAMES.len()].into(),
        }
    }
}

fn pick<T>(items: &mut [T], ix: impl Into<usize>) -> Option<&mut T> {
    let len = items.len();
    (len > 0).then(|| &mut items[ix.into() % len])
}

fn data_type(v: u8) -> DataType {
    // 0..=16 are the classic types; keep float, f16, double and int32 frequent.
    let v = match v % 24 {
        20 => 1,
        21 => 10,
        22 => 11,
        23 => 6,
        v => v,
    };
    <DataType as protobuf::Enum>::from_i32(v as i32).unwrap_or(DataType::UNDEFINED)
}

fn slot(graph: &mut GraphProto, slot: Slot) -> Option<&mut ValueInfoProto> {
    match slot {
        Slot::Input(i) => pick(&mut graph.input, i),
        Slot::Output(i) => pick(&mut graph.output, i),
        Slot::ValueInfo(i) => pick(&mut graph.value_info, i),
    }
}

fn tensor_type(vi: &mut ValueInfoProto) -> Option<&mut type_proto::Tensor> {
    match vi.type_.as_mut()?.value.as_mut()? {
        type_proto::Value::TensorType(t) => Some(t),
        _ => None,
    }
}

fn dims_of(vi: &ValueInfoProto) -> Vec<Dim> {
    proto::declared_tensor(vi).and_then(|(_, d)| d).unwrap_or_default()
}

fn value_info(name: &str, data_type: u8, dims: &[DimChoice]) -> ValueInfoProto {
    let dims: Vec<Dim> = dims.iter().take(8).map(DimChoice::dim).collect();
    proto::value_info(name, self::data_type(data_type), &dims)
}

fn rename_everywhere(graph: &mut GraphProto, from: &str, to: &str) {
    for n in graph.node.iter_mut() {
        for t in n.input.iter_mut().chain(n.output.iter_mut()) {
            if t == from {
                *t = to.to_string();
            }
        }
    }
    for vi in graph.input.iter_mut().chain(graph.output.iter_mut()).chain(graph.value_info.iter_mut()) {
        if vi.name == from {
            vi.name = to.to_string();
        }
    }
    for t in graph.initializer.iter_mut() {
        if t.name == from {
            t.name = to.to_string();
        }
    }
}

fn attribute(name: &str, value: &AttrValue, graph: &GraphProto) -> AttributeProto {
    match value {
        AttrValue::Int(v) => proto::attr_int(name, *v),
        AttrValue::Ints(v) => proto::attr_ints(name, &v[..v.len().min(8)]),
        AttrValue::Float(v) => proto::attr_float(name, *v),
        AttrValue::Tensor { data_type: dt, dims, data } => {
            let mut a = AttributeProto::new();
            a.name = name.into();
            a.type_ = AttributeType::TENSOR.into();
            let mut t = TensorProto::new();
            t.data_type = data_type(*dt) as i32;
            t.dims = tensor_dims(dims);
            t.raw_data = data[..data.len().min(256)].to_vec();
            a.t = Some(t).into();
            a
        }
        AttrValue::Graph { input, output } => {
            let mut a = AttributeProto::new();
            a.name = name.into();
            a.type_ = AttributeType::GRAPH.into();
            a.g = Some(branch(&input.resolve(graph), &output.resolve(graph), data_type(1))).into();
            a
        }
        AttrValue::Str(s) => {
            let mut a = AttributeProto::new();
            a.name = name.into();
            a.type_ = AttributeType::STRING.into();
            a.s = OTHER_NAMES[*s as usize % OTHER_NAMES.len()].as_bytes().to_vec();
            a
        }
    }
}

/// A branch graph `Identity(outer) -> inner`, declaring `inner` as its output.
fn branch(outer: &str, inner: &str, elem: DataType) -> GraphProto {
    let mut g = GraphProto::new();
    g.name = format!("branch_{inner}");
    g.node.push(proto::node("Identity", &format!("{inner}_identity"), &[outer], &[inner], vec![]));
    g.output.push(proto::value_info(inner, elem, &[]));
    if let Some(t) = g.output[0].type_.as_mut().and_then(|t| match t.value.as_mut() {
        Some(type_proto::Value::TensorType(t)) => Some(t),
        _ => None,
    }) {
        t.shape = Default::default();
    }
    g
}

impl Mutation {
    fn apply(&self, model: &mut ModelProto) {
        if let Mutation::Opset { version } = self {
            if let Some(o) = model.opset_import.first_mut() {
                o.version = *version as i64;
            }
            return;
        }
        if let Mutation::AddOpset { domain, version } = self {
            let mut o = OperatorSetIdProto::new();
            o.domain = DOMAINS[*domain as usize % DOMAINS.len()].into();
            o.version = *version as i64;
            model.opset_import.push(o);
            return;
        }
        if let Mutation::IrVersion { version } = self {
            model.ir_version = *version as i64;
            return;
        }
        if let Mutation::Metadata { key, value } = self {
            let empty = GraphProto::new();
            let value = value.resolve(model.graph.as_ref().unwrap_or(&empty));
            model
                .metadata_props
                .push(proto::metadata_entry(METADATA_KEYS[*key as usize % METADATA_KEYS.len()], &value));
            return;
        }
        let Some(graph) = model.graph.as_mut() else { return };
        let snapshot = graph.clone();
        match self {
            Mutation::ElemType { slot: s, data_type: dt } => {
                if let Some(t) = slot(graph, *s).and_then(tensor_type) {
                    t.elem_type = data_type(*dt) as i32;
                }
            }
            Mutation::SetDim { slot: s, axis, dim } => {
                if let Some(vi) = slot(graph, *s) {
                    let mut dims = dims_of(vi);
                    if let Some(d) = pick(&mut dims, *axis) {
                        *d = dim.dim();
                        proto::set_declared_shape(vi, &dims);
                    }
                }
            }
            Mutation::Rank { slot: s, rank } => {
                if let Some(vi) = slot(graph, *s) {
                    let mut dims = dims_of(vi);
                    dims.resize(*rank as usize % 7, Dim::Fixed(1));
                    proto::set_declared_shape(vi, &dims);
                }
            }
            Mutation::ClearShape { slot: s } => {
                if let Some(t) = slot(graph, *s).and_then(tensor_type) {
                    t.shape = Default::default();
                }
            }
            Mutation::ClearType { slot: s } => {
                if let Some(vi) = slot(graph, *s) {
                    vi.type_ = Default::default();
                }
            }
            Mutation::Rename { from, to } => {
                rename_everywhere(graph, &from.resolve(&snapshot), &to.resolve(&snapshot));
            }
            Mutation::NodeInput { node, ix, to } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    let to = to.resolve(&snapshot);
                    let ix = *ix as usize % (n.input.len() + 1);
                    if ix == n.input.len() {
                        n.input.push(to);
                    } else {
                        n.input[ix] = to;
                    }
                }
            }
            Mutation::NodeOutput { node, ix, to } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    let to = to.resolve(&snapshot);
                    let ix = *ix as usize % (n.output.len() + 1);
                    if ix == n.output.len() {
                        n.output.push(to);
                    } else {
                        n.output[ix] = to;
                    }
                }
            }
            Mutation::DropNodeInput { node, ix } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    if !n.input.is_empty() {
                        let ix = *ix as usize % n.input.len();
                        n.input.remove(ix);
                    }
                }
            }
            Mutation::NodeName { node, to } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    n.name = to.resolve(&snapshot);
                }
            }
            Mutation::SwapNodes { a, b } => {
                let len = graph.node.len();
                if len > 0 {
                    graph.node.swap(*a as usize % len, *b as usize % len);
                }
            }
            Mutation::ReverseNodes => graph.node.reverse(),
            Mutation::DuplicateNode { node } => {
                if let Some(n) = pick(&mut graph.node, *node).cloned() {
                    graph.node.push(n);
                }
            }
            Mutation::RemoveNode { node } => {
                let len = graph.node.len();
                if len > 0 {
                    graph.node.remove(*node as usize % len);
                }
            }
            Mutation::OpType { node, op } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    n.op_type = OPS[*op as usize % OPS.len()].into();
                }
            }
            Mutation::Domain { node, domain } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    n.domain = DOMAINS[*domain as usize % DOMAINS.len()].into();
                }
            }
            Mutation::Attr { node, name, value } => {
                let name = ATTR_NAMES[*name as usize % ATTR_NAMES.len()];
                let attr = attribute(name, value, &snapshot);
                if let Some(n) = pick(&mut graph.node, *node) {
                    n.attribute.retain(|a| a.name != name);
                    n.attribute.push(attr);
                }
            }
            Mutation::RemoveAttr { node, ix } => {
                if let Some(n) = pick(&mut graph.node, *node) {
                    if !n.attribute.is_empty() {
                        let ix = *ix as usize % n.attribute.len();
                        n.attribute.remove(ix);
                    }
                }
            }
            Mutation::CastOutput { output, data_type: dt, declare } => {
                let Some(out) = pick(&mut graph.output, *output) else { return };
                let to = data_type(*dt);
                if *declare {
                    if let Some(t) = tensor_type(out) {
                        t.elem_type = to as i32;
                    }
                }
                let name = out.name.clone();
                let pre = format!("{name}__pre_cast");
                for n in graph.node.iter_mut() {
                    for o in n.output.iter_mut().filter(|o| **o == name) {
                        *o = pre.clone();
                    }
                }
                let cast = proto::node(
                    "Cast",
                    &format!("{name}__cast"),
                    &[&pre],
                    &[&name],
                    vec![proto::attr_int("to", to as i64)],
                );
                graph.node.push(cast);
            }
            Mutation::WrapInIf { output } => {
                let Some(out) = pick(&mut graph.output, *output) else { return };
                let name = out.name.clone();
                let elem = proto::declared_tensor(out).map(|(e, _)| e).unwrap_or(1);
                let elem = <DataType as protobuf::Enum>::from_i32(elem).unwrap_or(DataType::FLOAT);
                let pre = format!("{name}__outer");
                for n in graph.node.iter_mut() {
                    for o in n.output.iter_mut().filter(|o| **o == name) {
                        *o = pre.clone();
                    }
                }
                let cond = format!("{name}__cond");
                graph.initializer.push(bool_scalar(&cond, true));
                let mut then_branch = AttributeProto::new();
                then_branch.name = "then_branch".into();
                then_branch.type_ = AttributeType::GRAPH.into();
                then_branch.g = Some(branch(&pre, &format!("{name}__then"), elem)).into();
                let mut else_branch = then_branch.clone();
                else_branch.name = "else_branch".into();
                else_branch.g = Some(branch(&pre, &format!("{name}__else"), elem)).into();
                graph.node.push(proto::node(
                    "If",
                    &format!("{name}__if"),
                    &[&cond],
                    &[&name],
                    vec![then_branch, else_branch],
                ));
            }
            Mutation::AddOutput { name, data_type: dt, dims } => {
                graph.output.push(value_info(&name.resolve(&snapshot), *dt, dims));
            }
            Mutation::RemoveOutput { ix } => {
                let len = graph.output.len();
                if len > 0 {
                    graph.output.remove(*ix as usize % len);
                }
            }
            Mutation::SwapOutputs { a, b } => {
                let len = graph.output.len();
                if len > 0 {
                    graph.output.swap(*a as usize % len, *b as usize % len);
                }
            }
            Mutation::AddInput { name, data_type: dt, dims } => {
                graph.input.push(value_info(&name.resolve(&snapshot), *dt, dims));
            }
            Mutation::RemoveInput { ix } => {
                let len = graph.input.len();
                if len > 0 {
                    graph.input.remove(*ix as usize % len);
                }
            }
            Mutation::AddValueInfo { name, data_type: dt, dims } => {
                graph.value_info.push(value_info(&name.resolve(&snapshot), *dt, dims));
            }
            Mutation::InitializerDims { ix, dims } => {
                if let Some(t) = pick(&mut graph.initializer, *ix) {
                    t.dims = tensor_dims(dims);
                }
            }
            Mutation::InitializerType { ix, data_type: dt } => {
                if let Some(t) = pick(&mut graph.initializer, *ix) {
                    t.data_type = data_type(*dt) as i32;
                }
            }
            Mutation::InitializerTruncate { ix, len } => {
                if let Some(t) = pick(&mut graph.initializer, *ix) {
                    let len = (*len as usize).min(t.raw_data.len());
                    t.raw_data.truncate(len);
                }
            }
            Mutation::InitializerToFloatData { ix } => {
                if let Some(t) = pick(&mut graph.initializer, *ix) {
                    if let Some(values) = proto::tensor_f32_values(t) {
                        t.raw_data.clear();
                        t.float_data = values;
                    }
                }
            }
            Mutation::InitializerExternal { ix } => {
                if let Some(t) = pick(&mut graph.initializer, *ix) {
                    t.raw_data.clear();
                    t.external_data.push(proto::metadata_entry("location", "weights.bin"));
                }
            }
            Mutation::RemoveInitializer { ix } => {
                let len = graph.initializer.len();
                if len > 0 {
                    graph.initializer.remove(*ix as usize % len);
                }
            }
            Mutation::DuplicateInitializer { ix, name } => {
                if let Some(mut t) = pick(&mut graph.initializer, *ix).cloned() {
                    t.name = name.resolve(&snapshot);
                    graph.initializer.push(t);
                }
            }
            Mutation::Opset { .. }
            | Mutation::AddOpset { .. }
            | Mutation::IrVersion { .. }
            | Mutation::Metadata { .. } => {
                unreachable!("handled above")
            }
        }
    }
}

fn bool_scalar(name: &str, value: bool) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = DataType::BOOL as i32;
    t.raw_data = vec![value as u8];
    t
}

impl Case {
    /// At most this many mutations are applied: more only slows the fuzzer down.
    pub const MAX_MUTATIONS: usize = 16;

    pub fn model(&self) -> ModelProto {
        let specs = synthetic::matrix();
        let spec = &specs[self.spec as usize % specs.len()];
        let mut model = synthetic::generate(spec);
        for m in self.mutations.iter().take(Self::MAX_MUTATIONS) {
            m.apply(&mut model);
        }
        model
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.model().write_to_bytes().unwrap_or_default()
    }

    pub fn options(&self) -> RewriteOptions {
        let mut options = RewriteOptions { prune: self.prune, ..RewriteOptions::default() };
        if let Some(dims) = &self.pin {
            let dims: Vec<usize> = dims.iter().take(6).map(DimChoice::pin).collect();
            // The CLI refuses zero dims before the library sees them.
            if !dims.is_empty() && dims.iter().all(|d| *d > 0) {
                options.input_shapes.push(InputShape { name: None, dims });
            }
        }
        if let Some(name) = &self.output_name {
            let name = name.resolve(&GraphProto::new());
            if !name.is_empty() {
                options.output_name = name;
            }
        }
        options
    }
}
