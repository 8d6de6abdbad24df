//! The rewrite pipeline: read, check, infer shapes, find the heads, build the decoder apart,
//! splice it in, record provenance, optionally prune, write whole.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto};
use protobuf::{Enum, Message};

use crate::contract::{
    Provenance, ScoreMode, DEFAULT_OUTPUT_NAME, METADATA_PREFIX, NAME_PREFIX, NUM_KEYPOINTS, TOOL_VERSION,
    VALUES_PER_KEYPOINT,
};
use crate::decoders::graph::{GraphBuilder, NameAllocator, MAX_OPSET, MIN_OPSET};
use crate::decoders::reroute;
use crate::decoders::single_pose::{self as decoder, DecoderSpec};
use crate::error::{Error, Result};
use crate::heads::{self, HeadChoice, Heads, ImageInput};
use crate::model::io::{self as model_io, Durability, ModelSource};
use crate::model::proto::{self, Dim};
use crate::model::wire;
use crate::profiles::{self, Profile};
use crate::prune;
use crate::tract_bridge::{self, ModelFacts};

/// `--input-shape [NAME:]D,D,D,D`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub name: Option<String>,
    pub dims: Vec<usize>,
}

impl FromStr for InputShape {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, dims) = match s.rsplit_once(':') {
            Some((name, dims)) if !name.is_empty() => (Some(name.to_string()), dims),
            Some(_) => return Err(format!("'{s}': empty input name before ':'")),
            None => (None, s),
        };
        let dims = dims
            .split(',')
            .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("'{s}': expected [NAME:]D,D,... with positive integers, e.g. 1,3,257,257"))?;
        Ok(InputShape { name, dims })
    }
}

#[derive(Clone, Debug)]
pub struct RewriteOptions {
    pub heads: HeadChoice,
    pub input_shapes: Vec<InputShape>,
    pub stride: Option<u32>,
    pub scores: Option<ScoreMode>,
    pub output_name: String,
    pub prune: bool,
    /// The runtime profile the emitted decoder must satisfy (`--target`).
    pub target: String,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            heads: HeadChoice::default(),
            input_shapes: vec![],
            stride: None,
            scores: None,
            output_name: DEFAULT_OUTPUT_NAME.to_string(),
            prune: false,
            target: profiles::PORTABLE.to_string(),
        }
    }
}

/// The rewritten model and what was decided on the way.
#[derive(Clone, Debug)]
pub struct Rewritten {
    pub model: ModelProto,
    pub provenance: Provenance,
    pub heads: Heads,
    pub image: Option<ImageInput>,
    /// Whether the score mode was detected (true) or forced with `--scores`.
    pub scores_detected: bool,
    pub nodes_added: usize,
    pub nodes_pruned: usize,
    /// Things worth telling the user that are not errors.
    pub notes: Vec<String>,
}

/// The default-domain opset of a model.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version)
}

impl Rewritten {
    /// The rewritten model's bytes, the weights carried over from `original` (the model this was
    /// rewritten from) without being decoded.
    pub fn to_bytes(&self, original: &dyn ModelSource) -> Result<Vec<u8>> {
        let pieces = model_io::encode_edited(original, &self.model)?;
        wire::collect_pieces(original.source(), &pieces)
            .map_err(|e| Error::Unsupported(format!("cannot read the original model again: {e}")))
    }
}

/// The decoder's provenance when `model` already carries one.
pub fn existing_provenance(model: &ModelProto) -> Option<Provenance> {
    Provenance::from_metadata(model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
}

fn graph_of(model: &ModelProto) -> &GraphProto {
    model.graph.as_ref().expect("model_io checked the graph")
}

/// Every name in the graph and its subgraphs (If, Loop, Scan bodies, whose names must stay
/// distinct from the outer scope's): nodes, tensors, initializers, inputs, outputs, value-infos.
fn taken_names(graph: &GraphProto) -> HashSet<String> {
    let mut names = HashSet::new();
    collect_names(graph, &mut names);
    names
}

fn collect_names(graph: &GraphProto, names: &mut HashSet<String>) {
    for n in &graph.node {
        names.insert(n.name.clone());
        names.extend(n.input.iter().cloned());
        names.extend(n.output.iter().cloned());
        for attr in &n.attribute {
            for g in attr.g.as_ref().into_iter().chain(&attr.graphs) {
                collect_names(g, names);
            }
        }
    }
    names.extend(graph.initializer.iter().map(|t| t.name.clone()));
    names.extend(graph.input.iter().chain(&graph.output).chain(&graph.value_info).map(|v| v.name.clone()));
}

fn check_not_decorated(model: &ModelProto, output_name: &str) -> Result<()> {
    let graph = graph_of(model);
    if model.metadata_props.iter().any(|e| e.key.starts_with(METADATA_PREFIX))
        || graph.node.iter().any(|n| n.name.starts_with(NAME_PREFIX))
    {
        return Err(Error::AlreadyDecoded(
            "the model already has an onnx-posefix decoder; rewrite the original model instead".into(),
        ));
    }
    if taken_names(graph).contains(output_name) {
        return Err(Error::Usage(format!(
            "the model already has a tensor called {output_name}; choose another with --output-name"
        )));
    }
    Ok(())
}

/// Names and dims to pin, checked against the declared inputs.
pub(crate) fn resolve_pins(graph: &GraphProto, shapes: &[InputShape]) -> Result<Vec<(String, Vec<usize>)>> {
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> = graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).collect();
    let mut pins = Vec::new();
    for shape in shapes {
        let input = match &shape.name {
            Some(name) => inputs.iter().find(|i| &i.name == name).ok_or_else(|| {
                Error::Usage(format!(
                    "--input-shape names {name}, but the inputs are: {}",
                    inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?,
            None if inputs.len() == 1 => inputs[0],
            None => {
                return Err(Error::Usage(format!(
                    "the model has {} inputs; name the one to pin: --input-shape NAME:D,D,...",
                    inputs.len()
                )))
            }
        };
        if let Some((_, Some(declared))) = proto::declared_tensor(input) {
            if declared.len() != shape.dims.len() {
                return Err(Error::Usage(format!(
                    "--input-shape gives {} dims, but input {} has rank {}",
                    shape.dims.len(),
                    input.name,
                    declared.len()
                )));
            }
            for (axis, (d, p)) in declared.iter().zip(&shape.dims).enumerate() {
                if matches!(d, Dim::Fixed(v) if *v != *p as i64) {
                    return Err(Error::Usage(format!(
                        "--input-shape sets axis {axis} of {} to {p}, but the model fixes it at {d}",
                        input.name
                    )));
                }
            }
        }
        if pins.iter().any(|(n, _)| n == &input.name) {
            return Err(Error::Usage(format!("--input-shape given twice for {}", input.name)));
        }
        pins.push((input.name.clone(), shape.dims.clone()));
    }
    Ok(pins)
}

/// A weightless copy of a structure-only model for tract's shape inference: initializers without
/// data become graph inputs of the same type and shape. They are renamed, because tract names
/// some nodes it creates after the ONNX node plus a suffix (a Conv's bias cast is `conv.bias`),
/// which a graph input of that name would collide with; the new names have no dot.
fn shape_skeleton(structure: &ModelProto) -> Vec<u8> {
    let mut skeleton = structure.clone();
    let graph = skeleton.graph.as_mut().expect("checked when read");
    let mut taken = taken_names(graph);
    let (stripped, kept): (Vec<_>, Vec<_>) =
        std::mem::take(&mut graph.initializer).into_iter().partition(|t| model_io::stripped_raw_len(t).is_some());
    graph.initializer = kept;
    let mut renamed = std::collections::HashMap::new();
    for (i, t) in stripped.iter().enumerate() {
        let mut name = format!("posefix_weight_{i}");
        while taken.contains(&name) {
            name.push('_');
        }
        taken.insert(name.clone());
        renamed.insert(t.name.clone(), name.clone());
        let dims: Vec<Dim> = t.dims.iter().map(|d| Dim::Fixed(*d)).collect();
        let dt = DataType::from_i32(t.data_type).unwrap_or(DataType::FLOAT);
        graph.input.retain(|i| i.name != t.name);
        graph.input.push(proto::value_info(&name, dt, &dims));
    }
    rename_reads(&mut graph.node, &renamed);
    skeleton.write_to_bytes().unwrap_or_default()
}

/// Renames the tensors nodes read, in subgraphs too.
fn rename_reads(nodes: &mut [onnx_protobuf::NodeProto], renamed: &std::collections::HashMap<String, String>) {
    for node in nodes {
        for input in node.input.iter_mut() {
            if let Some(new) = renamed.get(input.as_str()) {
                *input = new.clone();
            }
        }
        for attr in node.attribute.iter_mut() {
            if let Some(g) = attr.g.as_mut() {
                rename_reads(&mut g.node, renamed);
            }
            for g in attr.graphs.iter_mut() {
                rename_reads(&mut g.node, renamed);
            }
        }
    }
}

/// tract's facts on the model's real inputs (initializers excluded) and outputs. A model read
/// without its weights is inferred from its skeleton; only when that fails, or leaves dims
/// beyond the batch unknown (an op needed the values of a weight), does tract get the whole model.
fn shape_facts(model: &dyn ModelSource, pins: &[(String, Vec<usize>)]) -> Result<(ModelFacts, Vec<String>)> {
    let settled = |facts: &ModelFacts| {
        facts
            .outputs
            .iter()
            .all(|o| o.shape.as_ref().is_some_and(|d| d.iter().skip(1).all(|d| matches!(d, Dim::Fixed(_)))))
    };
    let skeleton = model
        .weights_stripped()
        .then(|| tract_bridge::infer_facts(&shape_skeleton(model.proto()), pins).ok())
        .flatten()
        .filter(settled);
    let mut notes = Vec::new();
    let mut facts = match skeleton {
        Some(facts) => facts,
        None => {
            if model.weights_stripped() {
                notes.push("shape inference needed the weights' values, so tract read the whole model".to_string());
            }
            tract_bridge::infer_facts(&model.bytes()?, pins)?
        }
    };
    let graph = graph_of(model.proto());
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let real_inputs: HashSet<&str> =
        graph.input.iter().map(|i| i.name.as_str()).filter(|n| !initializers.contains(n)).collect();
    facts.inputs.retain(|i| real_inputs.contains(i.name.as_str()));
    Ok((facts, notes))
}

/// Rewrites a loaded model. Nothing is written.
pub fn rewrite(model: &dyn ModelSource, options: &RewriteOptions) -> Result<Rewritten> {
    let proto = model.proto();
    let opset = default_opset(proto)
        .ok_or_else(|| Error::Unsupported("the model imports no default-domain (ai.onnx) opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(Error::Unsupported(format!(
            "the model uses opset {opset}; onnx-posefix emits opsets {MIN_OPSET} to {MAX_OPSET} \
             (convert it first, e.g. with onnx.version_converter)"
        )));
    }
    check_not_decorated(proto, &options.output_name)?;
    let target = Profile::by_name(&options.target)?;
    let graph = graph_of(proto);
    let pins = resolve_pins(graph, &options.input_shapes)?;
    let (facts, notes) = shape_facts(model, &pins)?;
    let heads = heads::detect(&facts.outputs, &options.heads)?;
    let image = heads::image_input(&facts.inputs);
    let stride = match (options.stride, &image) {
        (Some(0), _) => return Err(Error::Usage("--stride must be positive".into())),
        (Some(s), _) => s,
        (None, Some(image)) => heads::output_stride(image.size, heads.grid).map_err(|candidates| {
            let options = match candidates.as_slice() {
                [] => String::new(),
                c => format!(" (it could be {})", c.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" or ")),
            };
            Error::Usage(format!(
                "cannot derive the output stride from input {}x{} and heatmap grid {}x{}{options}; pass --stride N",
                image.size.0, image.size.1, heads.grid.0, heads.grid.1
            ))
        })?,
        (None, None) => {
            return Err(Error::Usage(format!(
                "cannot tell the image input among {}; pass --stride N (and --input-shape for symbolic dims)",
                facts.inputs.iter().map(|i| format!("{} {}", i.name, i.shape_string())).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let scores = options.scores.unwrap_or_else(|| heads::score_mode(graph, &heads.heatmaps));

    let spec = DecoderSpec {
        heatmaps: heads.heatmaps.clone(),
        offsets: heads.offsets.clone(),
        heatmaps_read: reroute::head_read(graph, &heads.heatmaps),
        offsets_read: reroute::head_read(graph, &heads.offsets),
        layout: heads.layout,
        grid: heads.grid,
        stride,
        scores,
        output: options.output_name.clone(),
    };
    // The output name is ours to write: no decoder node may take it for its own tensor.
    let mut taken = taken_names(graph);
    taken.insert(options.output_name.clone());
    let mut builder = GraphBuilder::new(opset, NameAllocator::new(taken));
    decoder::build(&mut builder, &spec)?;
    let (nodes, initializers) = builder.finish();
    let nodes_added = nodes.len();

    let provenance = Provenance {
        tool_version: TOOL_VERSION.to_string(),
        heatmaps: heads.heatmaps.clone(),
        offsets: heads.offsets.clone(),
        layout: heads.layout,
        stride,
        scores,
        output: options.output_name.clone(),
    };
    let mut out = proto.clone();
    let graph = out.graph.as_mut().expect("checked above");
    if out.ir_version < 4 {
        // IR 3 requires every initializer to be declared as a graph input too.
        for t in &initializers {
            let dims: Vec<Dim> = t.dims.iter().map(|d| Dim::Fixed(*d)).collect();
            let dt = DataType::from_i32(t.data_type).unwrap_or(DataType::FLOAT);
            graph.input.push(proto::value_info(&t.name, dt, &dims));
        }
    }
    graph.node.extend(nodes);
    graph.initializer.extend(initializers);
    let batch = heads.batch.clone();
    let dims = [batch, Dim::Fixed(NUM_KEYPOINTS as i64), Dim::Fixed(VALUES_PER_KEYPOINT as i64)];
    graph.output.push(proto::value_info(&options.output_name, DataType::FLOAT, &dims));
    if !pins.is_empty() {
        write_pinned_shapes(graph, &facts);
    }
    let nodes_pruned = if options.prune { prune::prune(graph, &[&options.output_name]) } else { 0 };
    out.metadata_props.extend(provenance.to_metadata().iter().map(|(k, v)| proto::metadata_entry(k, v)));
    profiles::check_decoder(&out, &facts.outputs, &target)?;

    Ok(Rewritten {
        model: out,
        provenance,
        heads,
        image,
        scores_detected: options.scores.is_none(),
        nodes_added,
        nodes_pruned,
        notes,
    })
}

/// Writes the inferred shapes of the inputs and outputs into their declarations, so that a model
/// whose symbolic dims were pinned stays consistent.
fn write_pinned_shapes(graph: &mut GraphProto, facts: &ModelFacts) {
    for vi in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        if let Some(dims) =
            facts.inputs.iter().chain(&facts.outputs).find(|f| f.name == vi.name).and_then(|f| f.shape.clone())
        {
            proto::set_declared_shape(vi, &dims);
        }
    }
}

/// How [`rewrite_file`] treats OUT.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputOptions {
    /// Allow OUT to be IN, which is then replaced atomically.
    pub force: bool,
    pub durability: Durability,
}

/// Reads `input`, rewrites it and writes `output` atomically. `input` is never modified unless
/// it is `output` and `force` is set, in which case it is replaced atomically.
pub fn rewrite_file(input: &Path, output: &Path, options: &RewriteOptions, out: OutputOptions) -> Result<Rewritten> {
    if model_io::same_file(input, output) && !out.force {
        return Err(Error::Usage(format!(
            "OUT {} is the same file as IN; pass --force to replace it",
            output.display()
        )));
    }
    let model = model_io::open_structure(input)?;
    let rewritten = rewrite(&model, options)?;
    let pieces = model_io::encode_edited(&model, &rewritten.model)?;
    model_io::write_pieces_atomically(output, &model, &pieces, out.durability)?;
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shapes_parse() {
        assert_eq!("1,3,257,257".parse::<InputShape>().unwrap(), InputShape { name: None, dims: vec![1, 3, 257, 257] });
        let named: InputShape = "image:2,257,193,3".parse().unwrap();
        assert_eq!(named.name.as_deref(), Some("image"));
        assert!("1,3,x,257".parse::<InputShape>().is_err());
        assert!("1,0,257".parse::<InputShape>().is_err());
        assert!(":1,3".parse::<InputShape>().is_err());
    }
}
