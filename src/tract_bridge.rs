//! The one place where models meet tract: bytes in, input facts pinned, typed, optimized, run.
//!
//! tract has its own (prost) ONNX messages, so models cross over as serialized bytes; the rewrite
//! hands over the input file's bytes untouched.
//!
//! Models are untrusted, and tract 0.23.9 trusts them more than we can: it indexes by tensor name
//! without checking (a graph output nobody computes panics), keeps the last of two writers of a
//! name, loops forever on a Transpose `perm` that is no permutation, and sizes tensors from
//! declared dims. So before tract sees a model, `preflight` refuses what ONNX forbids and tract
//! would misread or choke on (tensors written twice, reads of undefined tensors, cycles, such
//! perms) and declared or pinned shapes too large to mean anything; and every call into tract runs
//! under `shielded`, which turns a panic into an error naming it, without printing it. The fuzz
//! targets in `fuzz/` found each of these.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::error::Error;
use crate::model::proto::Dim;

/// The most elements a declared or pinned tensor may have: 2^31, 8 GiB of floats, far beyond any
/// pose model, and small enough that shape arithmetic cannot overflow.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 31;

/// A graph input or output as tract's shape inference sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFacts {
    pub name: String,
    /// `Some(f32)` etc.; `None` when inference could not settle it.
    pub datum_type: Option<DatumType>,
    /// One entry per axis: a fixed size or the name of a symbolic dimension.
    pub shape: Option<Vec<Dim>>,
}

impl TensorFacts {
    /// The fixed dims, or `None` if any dim is symbolic or the rank is unknown.
    pub fn fixed_shape(&self) -> Option<Vec<usize>> {
        self.shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(v) if *v >= 0 => Some(*v as usize),
                _ => None,
            })
            .collect()
    }

    /// `[1, 3, 257, 257]`, `[N, 17, 17, 17]`, `?`
    pub fn shape_string(&self) -> String {
        match &self.shape {
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(|d| printable(&d.to_string()).into_owned()).collect();
                format!("[{}]", dims.join(", "))
            }
            None => "?".to_string(),
        }
    }
}

/// The facts of a model's inputs and outputs after tract's shape inference.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub inputs: Vec<TensorFacts>,
    pub outputs: Vec<TensorFacts>,
}

fn load(bytes: &[u8]) -> Result<InferenceModel, Error> {
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| Error::Tract(format!("tract could not read the model: {}", one_line(&e))))?;
    preflight(&proto)?;
    onnx.model_for_proto_model(&proto)
        .map_err(|e| Error::Tract(format!("tract could not load the model: {}", one_line(&e))))
}

thread_local! {
    /// Set while this thread runs tract under [`shielded`].
    static SHIELDED: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic caught under [`shielded`], with its location.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the panic hook, once: panics on a thread inside [`shielded`] are recorded instead of
/// printed; every other panic goes to the previous hook as before (tests still show theirs).
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if SHIELDED.with(Cell::get) {
                let at = info.location().map(|l| format!(" at {}:{}", crate_relative(l.file()), l.line()));
                let message = format!("{}{}", panic_message(info.payload()), at.unwrap_or_default());
                CAUGHT.with(|c| *c.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "unknown panic".to_string(),
    }
}

/// `tract-onnx-0.23.9/src/model.rs` rather than the whole registry path.
fn crate_relative(file: &str) -> &str {
    file.find("tract-").map_or(file, |i| &file[i..])
}

/// Runs `f` (which calls tract) so that a panic becomes an [`Error::Tract`] on one line.
fn shielded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    install_panic_hook();
    let outer = SHIELDED.with(|s| s.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    SHIELDED.with(|s| s.set(outer));
    result.unwrap_or_else(|payload| {
        let message = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| panic_message(&*payload));
        Err(Error::Tract(format!("tract failed on this model (internal error: {})", flatten(&message))))
    })
}

fn flatten(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A name from a model as it may appear in a one-line message: as is when it is plain, quoted
/// and escaped when it is empty or holds control characters or line breaks (names come from
/// untrusted bytes; a message must stay one line).
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')) {
        format!("{name:?}").into()
    } else {
        name.into()
    }
}

/// Refuses, before tract parses it, a model whose top-level graph is not what ONNX allows or
/// whose declared shapes are absurd (see the module doc). Subgraphs are left to tract.
fn preflight(model: &pb::ModelProto) -> Result<(), Error> {
    let invalid = |what: String| Err(Error::Unsupported(format!("the model is not valid ONNX: {what}")));
    let Some(graph) = model.graph.as_ref() else { return Ok(()) };

    // Who defines each tensor. A graph input may share its name with an initializer (its
    // default value); anything else defined twice is ambiguous.
    let mut defined: HashMap<&str, String> = HashMap::new();
    for (i, input) in graph.input.iter().enumerate() {
        if graph.input[..i].iter().any(|other| other.name == input.name) {
            return invalid(format!("graph input {} is declared twice", printable(&input.name)));
        }
        defined.insert(&input.name, format!("graph input {}", printable(&input.name)));
    }
    let mut initializers = HashSet::new();
    for t in &graph.initializer {
        if !initializers.insert(t.name.as_str()) {
            return invalid(format!("initializer {} is defined twice", printable(&t.name)));
        }
        defined.insert(&t.name, format!("initializer {}", printable(&t.name)));
    }
    let node_label = |n: &pb::NodeProto| format!("node {} ({})", printable(&n.name), printable(&n.op_type));
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (ix, node) in graph.node.iter().enumerate() {
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            if let Some(first) = defined.get(output.as_str()) {
                let output = printable(output);
                return invalid(format!("tensor {output} is written by {} and by {first}", node_label(node)));
            }
            defined.insert(output, node_label(node));
            producer.insert(output, ix);
        }
    }
    for node in &graph.node {
        if let Some(missing) = node.input.iter().find(|i| !i.is_empty() && !defined.contains_key(i.as_str())) {
            return invalid(format!(
                "{} reads {}, which no node, initializer or graph input defines",
                node_label(node),
                printable(missing)
            ));
        }
    }
    if let Some(missing) = graph.output.iter().find(|o| !defined.contains_key(o.name.as_str())) {
        let missing = printable(&missing.name);
        return invalid(format!("graph output {missing} is computed by no node (nor an input or initializer)"));
    }
    if let Some(ix) = node_on_a_cycle(graph, &producer) {
        return invalid(format!("the graph has a cycle through {}", node_label(&graph.node[ix])));
    }
    // tract-hir 0.23.9 loops forever, allocating, on a Transpose whose perm is no permutation.
    if let Some((node, perm)) = bad_transpose(&graph.node) {
        return invalid(format!("{} has perm {perm:?}, which is not a permutation", node_label(node)));
    }

    for (what, infos) in [("input", &graph.input), ("output", &graph.output), ("tensor", &graph.value_info)] {
        for info in infos.iter() {
            let Some(pb::type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
                continue;
            };
            let Some(shape) = t.shape.as_ref() else { continue };
            let mut fixed = shape.dim.iter().filter_map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => Some(v as u64),
                _ => None,
            });
            if fixed.try_fold(1u64, |n, d| n.checked_mul(d)).is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
                let dims: Vec<String> = shape
                    .dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => v.to_string(),
                        Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => p.clone(),
                        None => "?".into(),
                    })
                    .collect();
                let (name, dims) = (printable(&info.name), dims.join(", "));
                return Err(too_large(&format!("{what} {name} declares shape [{}]", printable(&dims))));
            }
        }
    }
    Ok(())
}

fn too_large(what: &str) -> Error {
    Error::Unsupported(format!("{what}, over {MAX_TENSOR_ELEMENTS} elements: too large to be a pose model"))
}

/// Refuses pinned shapes beyond [`MAX_TENSOR_ELEMENTS`].
fn check_pinned(what: &str, dims: &[usize]) -> Result<(), Error> {
    let elements = dims.iter().try_fold(1u64, |n, d| n.checked_mul(*d as u64));
    if elements.is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
        let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(too_large(&format!("{what} pinned to [{}]", dims.join(", "))));
    }
    Ok(())
}

/// Some node on a cycle of the top-level graph, counting the outer tensors its subgraphs read.
fn node_on_a_cycle(graph: &pb::GraphProto, producer: &HashMap<&str, usize>) -> Option<usize> {
    let deps: Vec<HashSet<usize>> = graph
        .node
        .iter()
        .map(|n| {
            let mut reads: HashSet<&str> = n.input.iter().map(String::as_str).collect();
            subgraph_reads(n, &mut reads);
            reads.into_iter().filter_map(|r| producer.get(r).copied()).collect()
        })
        .collect();
    // Kahn: whatever cannot be ordered lies on or behind a cycle.
    let mut pending: Vec<usize> = deps.iter().map(HashSet::len).collect();
    let mut users: Vec<Vec<usize>> = vec![vec![]; deps.len()];
    for (ix, d) in deps.iter().enumerate() {
        for &p in d {
            users[p].push(ix);
        }
    }
    let mut ready: Vec<usize> = (0..deps.len()).filter(|&ix| pending[ix] == 0).collect();
    let mut ordered = 0;
    while let Some(ix) = ready.pop() {
        ordered += 1;
        for &u in &users[ix] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(u);
            }
        }
    }
    (ordered < deps.len()).then(|| pending.iter().position(|&p| p > 0)).flatten()
}

/// A Transpose, at any depth, whose `perm` is not a permutation of `0..perm.len()`.
fn bad_transpose(nodes: &[pb::NodeProto]) -> Option<(&pb::NodeProto, &[i64])> {
    nodes.iter().find_map(|node| {
        let perm = node.attribute.iter().find(|a| a.name == "perm").map(|a| a.ints.as_slice());
        if let Some(perm) = perm.filter(|_| node.op_type == "Transpose") {
            let mut seen = vec![false; perm.len()];
            let is_permutation = perm.iter().all(|&p| {
                usize::try_from(p).ok().and_then(|p| seen.get_mut(p)).is_some_and(|s| !std::mem::replace(s, true))
            });
            if !is_permutation {
                return Some((node, perm));
            }
        }
        subgraphs(node).find_map(|g| bad_transpose(&g.node))
    })
}

/// The bodies of the control-flow ops, the only graph attributes tract reads (others are inert).
fn subgraphs(node: &pb::NodeProto) -> impl Iterator<Item = &pb::GraphProto> {
    let control_flow = matches!(node.op_type.as_str(), "If" | "Loop" | "Scan");
    node.attribute.iter().filter(move |_| control_flow).flat_map(|a| a.g.iter().chain(&a.graphs))
}

/// Every tensor the subgraphs of `node` read, at any depth (their own tensors included, which
/// is harmless: they do not name top-level producers in a valid model).
fn subgraph_reads<'a>(node: &'a pb::NodeProto, into: &mut HashSet<&'a str>) {
    for g in subgraphs(node) {
        for n in &g.node {
            into.extend(n.input.iter().map(String::as_str));
            subgraph_reads(n, into);
        }
    }
}

/// Pins named inputs to concrete float shapes.
fn pin_inputs(model: &mut InferenceModel, pins: &[(String, Vec<usize>)]) -> Result<(), Error> {
    let names: Vec<String> = model
        .input_outlets()
        .map_err(|e| Error::Tract(one_line(&e)))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for (name, dims) in pins {
        let ix = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Usage(format!("the model has no input called {}", printable(name))))?;
        check_pinned(&format!("input {}", printable(name)), dims)?;
        let fact = InferenceFact::dt_shape(f32::datum_type(), dims.as_slice());
        model.set_input_fact(ix, fact).map_err(|e| {
            Error::Tract(format!("tract rejected the shape pinned on input {}: {}", printable(name), one_line(&e)))
        })?;
    }
    Ok(())
}

fn dims_of(shape: &ShapeFact) -> Vec<Dim> {
    shape
        .iter()
        .map(|d| match d.to_i64() {
            Ok(v) => Dim::Fixed(v),
            Err(_) => Dim::Symbol(d.to_string()),
        })
        .collect()
}

/// The model typed by tract's shape inference, the named inputs pinned.
fn typed_model(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<TypedModel, Error> {
    let mut model = load(bytes)?;
    pin_inputs(&mut model, pins)?;
    model.into_typed().map_err(|e| Error::Tract(format!("tract shape inference failed: {}", one_line(&e))))
}

/// Shape inference: the facts of every input and output, with the named inputs pinned to
/// concrete shapes; other inputs keep what the model declares.
pub fn infer_facts(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<ModelFacts, Error> {
    shielded(|| {
        let typed = typed_model(bytes, pins)?;
        let facts_of = |outlets: &[OutletId]| -> Vec<TensorFacts> {
            outlets
                .iter()
                .map(|o| {
                    let fact = typed.outlet_fact(*o).expect("outlet of the model");
                    TensorFacts {
                        name: typed.outlet_label(*o).unwrap_or(&typed.node(o.node).name).to_string(),
                        datum_type: Some(fact.datum_type),
                        shape: Some(dims_of(&fact.shape)),
                    }
                })
                .collect()
        };
        let inputs = facts_of(typed.input_outlets().expect("inputs"));
        let outputs = facts_of(typed.output_outlets().expect("outputs"));
        Ok(ModelFacts { inputs, outputs })
    })
}

/// Shape inference over the whole graph: the facts of every tensor, named as in the ONNX model
/// (tract labels each outlet with the ONNX tensor it stands for; initializers are named nodes).
/// Used to judge rank and axis rules on intermediate tensors.
pub fn infer_tensor_facts(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<Vec<TensorFacts>, Error> {
    shielded(|| {
        let typed = typed_model(bytes, pins)?;
        let mut facts = Vec::new();
        for node in typed.nodes() {
            for (slot, output) in node.outputs.iter().enumerate() {
                let outlet = OutletId::new(node.id, slot);
                let name = match typed.outlet_label(outlet) {
                    Some(label) => label.to_string(),
                    None if slot == 0 => node.name.clone(),
                    None => continue,
                };
                facts.push(TensorFacts {
                    name,
                    datum_type: Some(output.fact.datum_type),
                    shape: Some(dims_of(&output.fact.shape)),
                });
            }
        }
        Ok(facts)
    })
}

/// An optimized, runnable model with fixed input shapes, built once and reused for every input.
pub struct Runner {
    plan: std::sync::Arc<TypedRunnableModel>,
    output_names: Vec<String>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("outputs", &self.output_names).finish()
    }
}

impl Runner {
    /// Builds the plan with every input pinned to `input_shapes` (one per graph input that is
    /// not an initializer, in order).
    pub fn new(bytes: &[u8], input_shapes: &[Vec<usize>]) -> Result<Runner, Error> {
        shielded(|| {
            let mut model = load(bytes)?;
            for (ix, dims) in input_shapes.iter().enumerate() {
                check_pinned(&format!("input #{ix}"), dims)?;
                let fact = InferenceFact::dt_shape(f32::datum_type(), dims.as_slice());
                model
                    .set_input_fact(ix, fact)
                    .map_err(|e| Error::Tract(format!("tract rejected the shape of input #{ix}: {}", one_line(&e))))?;
            }
            let output_names = model
                .output_outlets()
                .map_err(|e| Error::Tract(one_line(&e)))?
                .iter()
                .map(|o| model.outlet_label(*o).unwrap_or(&model.node(o.node).name).to_string())
                .collect();
            let plan = model
                .into_optimized()
                .and_then(|m| m.into_runnable())
                .map_err(|e| Error::Tract(format!("tract could not optimize the model: {}", one_line(&e))))?;
            Ok(Runner { plan, output_names })
        })
    }

    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// The position of the output called `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.output_names.iter().position(|n| n == name)
    }

    /// Runs the model on one set of inputs (in graph-input order) and returns every output.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        shielded(|| {
            let outputs = self
                .plan
                .run(inputs.into_iter().map(|t| t.into()).collect())
                .map_err(|e| Error::Tract(format!("tract failed to run the model: {}", one_line(&e))))?;
            Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
        })
    }
}

/// tract's error chain on one line, outermost first.
fn one_line(e: &anyhow::Error) -> String {
    flatten(&e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": "))
}

#[cfg(test)]
mod tests {
    use onnx_protobuf::tensor_proto::DataType;
    use onnx_protobuf::{GraphProto, Message};

    use super::*;
    use crate::model::proto;
    use crate::testing::synthetic::{self, SyntheticSpec};

    fn model_bytes(edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
        let mut model = synthetic::generate(&SyntheticSpec::posenet(11));
        edit(model.graph.as_mut().unwrap());
        model.write_to_bytes().unwrap()
    }

    fn error(bytes: &[u8]) -> String {
        infer_facts(bytes, &[]).unwrap_err().to_string()
    }

    #[test]
    fn a_panic_inside_tract_is_an_error_and_leaves_the_hook_alone() {
        // tract-core 0.23.9 indexes a Conv's `pads` by spatial axis unchecked.
        let bytes = model_bytes(|g| {
            let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
            conv.attribute.retain(|a| a.name != "pads");
            conv.attribute.push(proto::attr_ints("pads", &[]));
        });
        let err = error(&bytes);
        assert!(err.starts_with("tract failed on this model (internal error: index out of bounds"), "{err}");
        assert!(err.contains("tract-core-0.23.9/src/ops/cnn/padding.rs") && !err.contains('\n'), "{err}");
        assert!(!SHIELDED.with(Cell::get));
        // Panics elsewhere still unwind as usual.
        assert!(std::panic::catch_unwind(|| panic!("an ordinary panic")).is_err());
    }

    #[test]
    fn preflight_refuses_what_tract_would_misread() {
        let err = error(&model_bytes(|g| g.output.push(proto::value_info("ghost", DataType::FLOAT, &[]))));
        assert!(err.contains("graph output ghost is computed by no node"), "{err}");
        let twin = proto::node("Relu", "twin", &["heatmaps"], &["offsets"], vec![]);
        let err = error(&model_bytes(|g| g.node.push(twin)));
        assert!(err.contains("tensor offsets is written by node twin (Relu) and by node offset_conv (Conv)"), "{err}");
        let err = error(&model_bytes(|g| g.node[0].input[1] = "nowhere".into()));
        assert!(err.contains("reads nowhere, which no node, initializer or graph input defines"), "{err}");
        let err = error(&model_bytes(|g| {
            g.node.push(proto::node("Relu", "a", &["b_out"], &["a_out"], vec![]));
            g.node.push(proto::node("Relu", "b", &["a_out"], &["b_out"], vec![]));
        }));
        assert!(err.contains("cycle through node a (Relu)") || err.contains("cycle through node b (Relu)"), "{err}");
        let err = error(&model_bytes(|g| {
            proto::set_declared_shape(&mut g.input[0], &[1, 3, 1 << 40, 257].map(crate::model::proto::Dim::Fixed));
        }));
        let want = "input image declares shape [1, 3, 1099511627776, 257], over 2147483648 elements";
        assert!(err.contains(want), "{err}");
        // Through the outer tensors an If's branches read; a graph attribute on another op is inert.
        let branch = |reads: &str| {
            let mut body = GraphProto::new();
            body.node.push(proto::node("Identity", "inner", &[reads], &["inner_out"], vec![]));
            body.output.push(proto::value_info("inner_out", DataType::FLOAT, &[]));
            let mut a = onnx_protobuf::AttributeProto::new();
            a.name = "then_branch".into();
            a.type_ = onnx_protobuf::attribute_proto::AttributeType::GRAPH.into();
            a.g = Some(body).into();
            a
        };
        let err = error(&model_bytes(|g| {
            g.node.push(proto::node("If", "if", &["heatmaps"], &["if_out"], vec![branch("back_out")]));
            g.node.push(proto::node("Relu", "back", &["if_out"], &["back_out"], vec![]));
        }));
        assert!(err.contains("the graph has a cycle through node if (If)"), "{err}");
        let inert = model_bytes(|g| {
            g.node.push(proto::node("Relu", "r", &["heatmaps"], &["r_out"], vec![branch("r_out")]));
            g.output.push(proto::value_info("r_out", DataType::FLOAT, &[]));
        });
        assert!(infer_facts(&inert, &[]).is_ok());
        let err = error(&model_bytes(|g| {
            let perm = proto::attr_ints("perm", &[0, 1, 1, 3]);
            g.node.push(proto::node("Transpose", "t", &["heatmaps"], &["t"], vec![perm]));
            g.output.push(proto::value_info("t", DataType::FLOAT, &[]));
        }));
        assert!(err.contains("node t (Transpose) has perm [0, 1, 1, 3], which is not a permutation"), "{err}");
        // Out of order is fine: ONNX wants a sorted graph, but the order does not change its meaning.
        assert!(infer_facts(&model_bytes(|g| g.node.reverse()), &[]).is_ok());
    }

    #[test]
    fn names_in_messages_stay_on_one_line() {
        assert_eq!(printable("MobilenetV1/heatmap_2/BiasAdd:0"), "MobilenetV1/heatmap_2/BiasAdd:0");
        assert_eq!(printable("two words"), "two words");
        assert_eq!(printable("a\nb"), "\"a\\nb\"");
        assert_eq!(printable(""), "\"\"");
        let err = error(&model_bytes(|g| g.output.push(proto::value_info("line\nbreak\u{1}", DataType::FLOAT, &[]))));
        assert!(err.contains("graph output \"line\\nbreak\\u{1}\" is computed by no node"), "{err}");
    }

    #[test]
    fn pinned_shapes_are_bounded() {
        let bytes = model_bytes(|g| {
            let dims = [Dim::Fixed(1), Dim::Fixed(3), Dim::Symbol("H".into()), Dim::Fixed(257)];
            proto::set_declared_shape(&mut g.input[0], &dims);
        });
        let err = infer_facts(&bytes, &[("image".into(), vec![1, 3, 1 << 40, 257])]).unwrap_err().to_string();
        assert!(err.contains("input image pinned to [1, 3, 1099511627776, 257]"), "{err}");
        let err = Runner::new(&bytes, &[vec![1, 3, usize::MAX, 257]]).unwrap_err().to_string();
        assert!(err.contains("input #0 pinned to"), "{err}");
    }
}
