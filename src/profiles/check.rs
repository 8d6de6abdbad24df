//! Judging nodes against a profile: each rule kind, the known-wrong patterns, and the check
//! of a whole model or of the decoder a rewrite appended.

use std::collections::{HashMap, HashSet};

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, NodeProto};

use crate::decoders::reroute;
use crate::model::proto;
use crate::model::query;
use crate::tract_bridge::TensorFacts;

use super::facts::{axes_input, axes_of, dims_text, Constants};
use super::schema::list;
use super::*;

/// The element-wise ops of onnxruntime-web's WebGL backend that sample every input at the output's
/// texture coordinate: the unary ones, Sum, and the binary ones when they do not broadcast.
const WEBGL_UNARY: [&str; 20] = [
    "Abs",
    "Acos",
    "Asin",
    "Atan",
    "Ceil",
    "Clip",
    "Cos",
    "Elu",
    "Exp",
    "Floor",
    "LeakyRelu",
    "Log",
    "Neg",
    "Not",
    "Relu",
    "Sigmoid",
    "Sin",
    "Sqrt",
    "Tan",
    "Tanh",
];
const WEBGL_BINARY: [&str; 12] =
    ["Add", "Sub", "Mul", "Div", "Pow", "PRelu", "And", "Or", "Xor", "Equal", "Greater", "Less"];

/// Everything a rule may look at besides the node.
struct Context<'a> {
    opset: Option<i64>,
    facts: &'a Facts,
    constants: Constants<'a>,
    graph_outputs: HashSet<&'a str>,
    /// The node writing each tensor.
    producers: HashMap<&'a str, &'a NodeProto>,
    /// The graph outputs in their declared order.
    output_order: Vec<&'a str>,
    graph: &'a GraphProto,
    webgl: WebglLoad<'a>,
}

impl Context<'_> {
    /// The dims of a tensor when all are known: from the facts, or a constant's.
    fn dims_of(&self, tensor: &str) -> Option<Vec<usize>> {
        match self.facts.dims(tensor) {
            Some(dims) => dims.iter().copied().collect(),
            None => self.constants.dims(tensor).map(|d| d.iter().map(|v| *v as usize).collect()),
        }
    }

    /// The rank of a tensor, from the facts or, for constants, their dims.
    fn rank(&self, tensor: &str) -> Option<usize> {
        self.facts.rank(tensor).or_else(|| self.constants.dims(tensor).map(|d| d.len()))
    }
}

fn node_label(node: &NodeProto) -> String {
    match (node.name.is_empty(), node.output.first()) {
        (false, _) => node.name.clone(),
        (true, Some(out)) => format!("writing {out}"),
        (true, None) => "(unnamed)".to_string(),
    }
}

fn attribute_matches(a: &AttributeProto, v: &AttrValue) -> bool {
    match (a.type_.enum_value(), v) {
        (Ok(AttributeType::INT), AttrValue::Int(x)) => a.i == *x,
        (Ok(AttributeType::FLOAT), AttrValue::Float(x)) => (a.f as f64 - x).abs() < 1e-6,
        (Ok(AttributeType::FLOAT), AttrValue::Int(x)) => (a.f as f64 - *x as f64).abs() < 1e-6,
        (Ok(AttributeType::INTS), AttrValue::Ints(x)) => a.ints == *x,
        (Ok(AttributeType::STRING), AttrValue::Text(x)) => a.s == x.as_bytes(),
        _ => false,
    }
}

fn attribute_text(a: &AttributeProto) -> String {
    match a.type_.enum_value() {
        Ok(AttributeType::INT) => a.i.to_string(),
        Ok(AttributeType::FLOAT) => a.f.to_string(),
        Ok(AttributeType::INTS) => format!("{:?}", a.ints),
        Ok(AttributeType::STRING) => format!("{:?}", String::from_utf8_lossy(&a.s)),
        _ => "set".to_string(),
    }
}

impl RuleKind {
    /// Whether the rule is about the model rather than any one node (judged once).
    fn is_model_wide(&self) -> bool {
        matches!(self, RuleKind::Opset { .. })
    }

    /// What the node does that breaks the rule, or `None` when it keeps it (or when the facts to
    /// judge it are missing).
    fn judge(&self, node: &NodeProto, cx: &Context) -> Option<String> {
        let input = |ix: usize| node.input.get(ix).filter(|i| !i.is_empty());
        match self {
            RuleKind::MaxRank { rank } => {
                let (name, r) = node
                    .input
                    .iter()
                    .chain(&node.output)
                    .filter(|t| !t.is_empty())
                    .find_map(|t| cx.rank(t).filter(|r| r > rank).map(|r| (t, r)))?;
                Some(format!("{name} has rank {r}"))
            }
            RuleKind::Opset { min, max } => {
                let opset = cx.opset?;
                let outside = min.is_some_and(|lo| opset < lo) || max.is_some_and(|hi| opset > hi);
                outside.then(|| format!("the model's opset {opset}"))
            }
            RuleKind::GraphOutputTypes { allowed } => {
                node.output.iter().filter(|o| cx.graph_outputs.contains(o.as_str())).find_map(|o| {
                    let ty = cx.facts.element_type(o)?;
                    (!allowed.iter().any(|a| a == ty)).then(|| format!("graph output {o} of type {ty}"))
                })
            }
            RuleKind::ConstantInput { input: ix } => {
                let name = input(*ix)?;
                (!cx.constants.contains(name)).then(|| format!("input {ix} ({name}) computed at run time"))
            }
            RuleKind::InputRank { input: ix, ranks } => {
                let name = input(*ix)?;
                let r = cx.rank(name)?;
                (!ranks.contains(&r)).then(|| format!("input {ix} ({name}) of rank {r}"))
            }
            RuleKind::ReduceAxes { axes, input_ranks } => {
                let data = input(0)?;
                let r = cx.rank(data)?;
                if !input_ranks.contains(&r) {
                    return Some(format!("a reduction of {data}, of rank {r},"));
                }
                let Some(reduced) = axes_of(node, &cx.constants) else {
                    if axes_input(node).is_some() {
                        return None;
                    }
                    return Some(format!("a reduction of {data} over all its axes"));
                };
                let normalized: Vec<i64> = reduced.iter().map(|a| if *a < 0 { a + r as i64 } else { *a }).collect();
                let off: Vec<i64> = normalized.into_iter().filter(|a| !axes.contains(a)).collect();
                (!off.is_empty()).then(|| format!("a reduction of {data} over axis {}", list(&off, "and")))
            }
            RuleKind::AxesAttribute => axes_input(node).map(|axes| format!("axes as input 1 ({axes})")),
            RuleKind::AxesAtLeast { min } => {
                let axes = axes_of(node, &cx.constants)?;
                // Unsqueeze counts negative axes in its output, Squeeze in its input.
                let rank = cx.rank(input(0)?).map(|r| if node.op_type == "Unsqueeze" { r + axes.len() } else { r });
                let low: Vec<i64> = axes
                    .iter()
                    .filter_map(|a| match (*a < 0, rank) {
                        (true, Some(r)) => Some(a + r as i64),
                        (true, None) => None,
                        (false, _) => Some(*a),
                    })
                    .filter(|a| a < min)
                    .collect();
                (!low.is_empty()).then(|| format!("axis {}", list(&low, "and")))
            }
            RuleKind::AttributeDefault { name, default } => {
                let a = node.attribute.iter().find(|a| &a.name == name)?;
                match default {
                    Some(v) if attribute_matches(a, v) => None,
                    _ => Some(format!("attribute {name} = {}", attribute_text(a))),
                }
            }
            RuleKind::RegisteredOpsets { ranges } => {
                let opset = cx.opset?;
                (!ranges.iter().any(|r| r.contains(opset)))
                    .then(|| format!("{} at the model's opset {opset}", node.op_type))
            }
            RuleKind::ForbiddenTypes { types } => {
                node.input.iter().chain(&node.output).filter(|t| !t.is_empty()).find_map(|t| {
                    let ty = cx.facts.element_type(t)?;
                    types.iter().any(|f| f == ty).then(|| format!("{t} of type {ty}"))
                })
            }
            RuleKind::KnownWrong { pattern: Pattern::DeletedNodeOutputRead } => deleted_node_output_read(node, cx),
            RuleKind::KnownWrong { pattern: Pattern::ReshapeThenElementwise } => reshape_then_elementwise(node, cx),
            RuleKind::KnownWrong { pattern: Pattern::MatmulBlockShapes } => matmul_block_shapes(node, cx),
            RuleKind::KnownWrong { pattern: Pattern::ConcatAfterNonUnitDims } => concat_after_non_unit_dims(node, cx),
            RuleKind::KnownWrong { pattern: Pattern::ClipBoundsRounded } => clip_bounds_rounded(node, cx),
            RuleKind::KnownWrong { pattern: Pattern::NonSquarePoolKernel } => non_square_pool_kernel(node),
            RuleKind::KnownWrong { pattern: Pattern::NonSquareStrides } => non_square_strides(node),
            RuleKind::KnownWrong { pattern: Pattern::NonSquareDilations } => non_square_dilations(node),
            RuleKind::KnownWrong { pattern: Pattern::ImplicitPoolStrides } => implicit_pool_strides(node),
        }
    }
}

/// What onnxruntime-web's WebGL backend does to a graph at load (`Graph.transformGraph`): the
/// nodes it deletes (every Identity and Dropout; a Relu, Sigmoid or Clip with constant bounds that
/// alone reads a Conv output, fused into it), and who then reads each tensor. A port of
/// `conformance/legs/ort_web/webgl_patterns.py`, which predicts every probe of that leg.
struct WebglLoad<'a> {
    /// The outputs of the nodes it deletes.
    deleted_outputs: HashSet<&'a str>,
    readers: HashMap<&'a str, Vec<usize>>,
}

impl<'a> WebglLoad<'a> {
    fn of(graph: &'a GraphProto, constants: &Constants) -> WebglLoad<'a> {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (ix, n) in graph.node.iter().enumerate() {
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                readers.entry(i.as_str()).or_default().push(ix);
            }
        }
        let mut deleted = HashSet::new();
        for (ix, n) in graph.node.iter().enumerate() {
            if matches!(n.op_type.as_str(), "Identity" | "Dropout") {
                let (Some(input), Some(output)) = (n.input.first(), n.output.first()) else { continue };
                deleted.insert(ix);
                let moved = readers.remove(output.as_str()).unwrap_or_default();
                let into = readers.entry(input.as_str()).or_default();
                into.retain(|r| *r != ix);
                into.extend(moved);
            }
        }
        for (ix, n) in graph.node.iter().enumerate() {
            if n.op_type != "Conv" || deleted.contains(&ix) {
                continue;
            }
            let Some(out) = n.output.first() else { continue };
            let [next] = readers.get(out.as_str()).map(Vec::as_slice).unwrap_or_default() else { continue };
            let activation = &graph.node[*next];
            let constant_bounds =
                activation.input.iter().skip(1).filter(|i| !i.is_empty()).all(|i| constants.contains(i));
            if reroute::FUSED_ACTIVATIONS.contains(&activation.op_type.as_str()) && constant_bounds {
                deleted.insert(*next);
                let moved = activation.output.first().and_then(|o| readers.remove(o.as_str())).unwrap_or_default();
                readers.insert(out.as_str(), moved);
            }
        }
        let deleted_outputs = deleted.iter().flat_map(|ix| graph.node[*ix].output.iter().map(String::as_str)).collect();
        WebglLoad { deleted_outputs, readers }
    }
}

fn deleted_node_output_read(node: &NodeProto, cx: &Context) -> Option<String> {
    let graph = cx.graph;
    let this = graph.node.iter().position(|n| std::ptr::eq(n, node))?;
    let low: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    for (p, name) in cx.output_order.iter().enumerate() {
        let Some(writer) = cx.producers.get(name).filter(|_| cx.webgl.deleted_outputs.contains(name)) else {
            continue;
        };
        // The tensor that takes the deleted node's place; inputs and initializers are numbered
        // before the outputs and keep their index.
        let replacement = writer.input.first().map(String::as_str).unwrap_or_default();
        let shifted = !low.contains(replacement) && !cx.constants.contains(replacement);
        let reads = |t: &str| cx.webgl.readers.get(t).is_some_and(|r| r.contains(&this));
        if shifted && reads(replacement) {
            return Some(format!(
                "reading {replacement}, which takes graph output {name}'s place when {} ({}) is removed at load",
                node_label(writer),
                writer.op_type
            ));
        }
        if let Some(later) = cx.output_order[p + 1..].iter().find(|o| reads(o)) {
            return Some(format!(
                "reading graph output {later}, listed after {name}, whose writer {} ({}) is removed at load",
                node_label(writer),
                writer.op_type
            ));
        }
    }
    None
}

/// The unpacked 2-D texture onnxruntime-web's WebGL backend stores a tensor of `dims` in, for
/// a largest texture side `max` (`PreferLogicalStrategy.computeTexture`).
fn webgl_texture(dims: &[usize], max: usize) -> [usize; 2] {
    let dims: Vec<usize> =
        if dims.len() == 2 { dims.to_vec() } else { dims.iter().copied().filter(|d| *d != 1).collect() };
    let n: usize = dims.iter().product();
    let fits = |t: [usize; 2]| t[0] <= max && t[1] <= max;
    let candidates: Vec<[usize; 2]> = match dims.as_slice() {
        [] => vec![[1, 1]],
        [a] => vec![[1, *a]],
        [a, b] => vec![[*a, *b]],
        [a, b, c] => vec![[a * b, *c], [*a, b * c]],
        [a, b, c, d] => vec![[a * b * c, *d], [*a, b * c * d]],
        _ => vec![],
    };
    candidates.into_iter().find(|t| fits(*t)).unwrap_or_else(|| {
        let w = (n as f64).sqrt().ceil() as usize;
        [w, n.div_ceil(w.max(1))]
    })
}

fn reshape_then_elementwise(node: &NodeProto, cx: &Context) -> Option<String> {
    let op = node.op_type.as_str();
    let inputs: Vec<&String> = node.input.iter().filter(|i| !i.is_empty()).collect();
    let data: Vec<&String> = if WEBGL_UNARY.contains(&op) {
        inputs.into_iter().take(1).collect()
    } else if op == "Sum" {
        inputs
    } else if WEBGL_BINARY.contains(&op) {
        // A broadcasting op indexes its inputs by element and reads them right.
        match inputs.as_slice() {
            [a, b] if cx.dims_of(a).is_some() && cx.dims_of(a) == cx.dims_of(b) => inputs,
            _ => return None,
        }
    } else {
        return None;
    };
    let out = cx.dims_of(node.output.first()?)?;
    data.into_iter().find_map(|i| {
        // The data keeps the texture of the tensor before the chain of relabelling ops.
        let mut source = i;
        let mut relabelled = None;
        for _ in 0..=cx.producers.len() {
            match cx.producers.get(source.as_str()) {
                Some(p) if RELABELS.contains(&p.op_type.as_str()) || matches!(p.op_type.as_str(), "Identity" | "Dropout") => {
                    if RELABELS.contains(&p.op_type.as_str()) {
                        relabelled = Some(*p);
                    }
                    source = p.input.first()?;
                }
                _ => break,
            }
        }
        let reshape = relabelled?;
        let Some(before) = cx.dims_of(source) else {
            return Some(format!("reading {i}, relabelled by {} from {source} of unknown dims", node_label(reshape)));
        };
        // Texture sides of 4096 (some phones), 8192 (SwiftShader) and 16384 (most desktops).
        let side = [4096, 8192, 16384].into_iter().find(|m| webgl_texture(&before, *m) != webgl_texture(&out, *m))?;
        let text = |d: &[usize]| dims_text(&d.iter().map(|v| Some(*v)).collect::<Vec<_>>());
        Some(format!(
            "reading {i}, relabelled by {} from {} (texture {:?}) but sampled as {} (texture {:?}, for a side of {side})",
            node_label(reshape),
            text(&before),
            webgl_texture(&before, side),
            text(&out),
            webgl_texture(&out, side),
        ))
    })
}

fn matmul_block_shapes(node: &NodeProto, cx: &Context) -> Option<String> {
    if node.op_type != "MatMul" {
        return None;
    }
    let (a, b) = (cx.dims_of(node.input.first()?)?, cx.dims_of(node.input.get(1)?)?);
    let (ra, rb) = (a.len(), b.len());
    if ra < 2 || rb < 2 {
        return Some(format!("a MatMul of ranks {ra} and {rb}"));
    }
    if ra != rb || a[..ra - 2] != b[..rb - 2] {
        return Some(format!("a MatMul of {a:?} by {b:?}, stacks of different shapes"));
    }
    let (m, k, n) = (a[ra - 2], a[ra - 1], b[rb - 1]);
    let gcd = |x: usize, y: usize| -> usize {
        let (mut x, mut y) = (x, y);
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    let block = gcd(m, gcd(k, n));
    let right = if m == 1 { k % 4 == 0 } else { block == 2 || block == 3 || block % 4 == 0 };
    (!right).then(|| format!("a MatMul with M = {m}, K = {k}, N = {n}"))
}

fn concat_after_non_unit_dims(node: &NodeProto, cx: &Context) -> Option<String> {
    if node.op_type != "Concat" {
        return None;
    }
    let dims = cx.dims_of(node.input.first()?)?;
    let axis = proto::get_attr_int(node, "axis")?;
    let axis = usize::try_from(if axis < 0 { axis + dims.len() as i64 } else { axis }).ok()?;
    let before = dims.get(..axis)?;
    before.iter().any(|d| *d != 1).then(|| format!("a Concat on axis {axis} after dims {before:?}"))
}

fn clip_bounds_rounded(node: &NodeProto, cx: &Context) -> Option<String> {
    if node.op_type != "Clip" {
        return None;
    }
    let attrs = node.attribute.iter().filter(|a| a.name == "min" || a.name == "max").map(|a| a.f);
    let inputs = node.input.iter().skip(1).filter(|i| !i.is_empty()).filter_map(|i| cx.constants.f32_value(i));
    let bound = attrs.chain(inputs).find(|v| format!("{v:.1}").parse::<f32>().ok() != Some(*v))?;
    Some(format!("a Clip bound of {bound}, which reads {bound:.1} with one decimal"))
}

/// A 2-D attribute `name` of the node, `[height, width]`, when its two values differ.
fn unequal_pair(node: &NodeProto, name: &str) -> Option<(i64, i64)> {
    match node.attribute.iter().find(|a| a.name == name)?.ints.as_slice() {
        [h, w] if h != w => Some((*h, *w)),
        _ => None,
    }
}

fn non_square_pool_kernel(node: &NodeProto) -> Option<String> {
    if !matches!(node.op_type.as_str(), "MaxPool" | "AveragePool") {
        return None;
    }
    let (h, w) = unequal_pair(node, "kernel_shape")?;
    Some(format!("kernel_shape [{h}, {w}] ({h} high, {w} wide), which the runtime pools as {w} high and {h} wide"))
}

fn non_square_strides(node: &NodeProto) -> Option<String> {
    let (h, w) = unequal_pair(node, "strides")?;
    Some(format!("strides [{h}, {w}] ({h} down, {w} across), which the runtime steps as {w} down and {h} across"))
}

fn implicit_pool_strides(node: &NodeProto) -> Option<String> {
    let pool = matches!(node.op_type.as_str(), "MaxPool" | "AveragePool");
    (pool && !node.attribute.iter().any(|a| a.name == "strides"))
        .then(|| "no strides attribute, which the runtime reads as 0 (ONNX's default is 1)".to_string())
}

fn non_square_dilations(node: &NodeProto) -> Option<String> {
    if node.op_type != "Conv" {
        return None;
    }
    let (h, w) = unequal_pair(node, "dilations")?;
    Some(format!(
        "dilations [{h}, {w}], which the runtime sizes right but places the kernel's taps {w} apart down and {h} \
         apart across"
    ))
}

/// Ops that change a tensor's shape without moving its data.
const RELABELS: [&str; 4] = ["Reshape", "Flatten", "Squeeze", "Unsqueeze"];

/// The rules of `profile` broken by the nodes of `model` that `select` picks, in graph order,
/// after the rules on the whole model (judged when any node is picked). Rules needing facts
/// `facts` lacks are not judged.
pub fn check_model(
    model: &ModelProto,
    facts: &Facts,
    profile: &Profile,
    select: impl Fn(&NodeProto) -> bool,
) -> Vec<Violation> {
    let Some(graph) = model.graph.as_ref() else { return vec![] };
    let constants = Constants::of(graph);
    let webgl = WebglLoad::of(graph, &constants);
    let cx = Context {
        opset: crate::model::query::default_opset(model),
        facts,
        constants,
        graph_outputs: graph.output.iter().map(|o| o.name.as_str()).collect(),
        producers: graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect(),
        output_order: graph.output.iter().map(|o| o.name.as_str()).collect(),
        graph,
        webgl,
    };
    let source_of = |rule: &Rule| match rule.origin.as_slice() {
        [] => rule.source.clone(),
        origins => format!("from {}: {}", origins.join(", "), rule.source),
    };
    let violation = |node: Option<&NodeProto>, rule: String, detail: String, source: String| Violation {
        node: node.map(node_label),
        op: node.map(|n| n.op_type.clone()),
        profile: profile.name.clone(),
        rule,
        detail,
        source,
    };
    let selected: Vec<&NodeProto> = graph.node.iter().filter(|n| select(n)).collect();
    let mut violations = Vec::new();
    if let Some(first) = selected.first() {
        for rule in profile.rules.iter().filter(|r| r.kind.is_model_wide()) {
            if let Some(detail) = rule.kind.judge(first, &cx) {
                violations.push(violation(None, rule.kind.to_string(), detail, source_of(rule)));
            }
        }
    }
    for node in selected {
        let op = node.op_type.as_str();
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            let detail = format!("an op of domain {}", node.domain);
            violations.push(violation(
                Some(node),
                "default-domain ops only".into(),
                detail,
                profile.supported.source.clone(),
            ));
            continue;
        }
        if !profile.supported.ops.contains(op) {
            let source =
                profile.unsupported.get(op).cloned().unwrap_or_else(|| format!("not in {}", profile.supported.source));
            violations.push(violation(
                Some(node),
                "supported ops only".into(),
                format!("{op} is not supported"),
                source,
            ));
            continue;
        }
        for rule in profile.rules_for(op).filter(|r| !r.kind.is_model_wide()) {
            if let Some(detail) = rule.kind.judge(node, &cx) {
                violations.push(violation(Some(node), rule.kind.to_string(), detail, source_of(rule)));
            }
        }
    }
    violations
}

/// Checks the decoder of a rewritten model (its `posefix/` nodes) against `profile`. `heads` are
/// tract's facts of the original model's outputs (the heads the decoder reads); every other
/// rank follows from the decoder's own constants. `Err` lists every broken rule.
pub fn check_decoder(model: &ModelProto, heads: &[TensorFacts], profile: &Profile) -> Result<(), Vec<Violation>> {
    let facts = Facts::propagate(model, heads);
    let violations = check_model(model, &facts, profile, query::is_decoder_node);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}
