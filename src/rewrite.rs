//! The rewrite pipeline: read, check, infer shapes, find the heads, build the decoder apart,
//! splice it in, record provenance, optionally prune, write whole.

use std::path::Path;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto, NodeProto, TensorProto};
use protobuf::{Enum, Message};

use crate::contract::{
    DecoderSettings, FloatType, MultiPoseSettings, PixelInput, Pixels, Preprocess, Provenance, ScoreMode,
    MultiPoseParams, DEFAULT_OUTPUT_NAME, DEFAULT_POSES_NAME, DEFAULT_POSE_SCORES_NAME,
    NUM_KEYPOINTS, TOOL_VERSION, VALUES_PER_KEYPOINT,
};
use crate::decoders::graph::{GraphBuilder, NameAllocator, MAX_OPSET, MIN_OPSET};
use crate::decoders::multi_pose::{self, MultiPoseSpec};
use crate::decoders::normalize;
use crate::decoders::reroute;
use crate::decoders::{Forms, GATHER_ELEMENTS_OPSET};
use crate::decoders::single_pose::{self as decoder, DecoderSpec};
use crate::error::{printable, Error, Result};
use crate::heads::{self, GivenSettings, HeadChoice, Heads, ImageInput};
use crate::model::io::{self as model_io, Durability, ModelSource};
use crate::model::proto::{self, Dim};
use crate::model::query;
pub use crate::model::query::InputShape;
use crate::model::walk;
use crate::model::wire;
use crate::profiles::{self, Profile};
use crate::prune;
use crate::tract_bridge::{self, ModelFacts};

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
    /// Append the multi-pose decoder too (`--poses N`).
    pub multi_pose: Option<MultiPoseOptions>,
    /// Prepend the normalization: the image input then takes pixels (`--pixels`).
    pub pixels: Option<PixelOptions>,
    /// The type of every appended output (`--output-type`).
    pub output_type: FloatType,
}

/// `--pixels unit|byte` with `--preprocess mobilenet|resnet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelOptions {
    pub pixels: Pixels,
    pub preprocess: Preprocess,
}

/// The multi-pose decoder's options (`--poses`, `--score-threshold`, `--nms-radius`, and the
/// outputs' names).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiPoseOptions {
    pub params: MultiPoseParams,
    pub poses_name: String,
    pub pose_scores_name: String,
}

impl MultiPoseOptions {
    /// tfjs posenet's defaults for `max_poses` poses.
    pub fn new(max_poses: usize) -> MultiPoseOptions {
        MultiPoseOptions {
            params: MultiPoseParams::new(max_poses),
            poses_name: DEFAULT_POSES_NAME.to_string(),
            pose_scores_name: DEFAULT_POSE_SCORES_NAME.to_string(),
        }
    }
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
            multi_pose: None,
            pixels: None,
            output_type: FloatType::Float32,
        }
    }
}

/// The rewritten model and what was decided on the way.
#[derive(Clone, Debug)]
pub struct Rewritten {
    pub(crate) model: ModelProto,
    pub(crate) provenance: Provenance,
    pub(crate) heads: Heads,
    pub(crate) image: Option<ImageInput>,
    pub(crate) scores_detected: bool,
    pub(crate) nodes_added: usize,
    pub(crate) nodes_pruned: usize,
    pub(crate) notes: Vec<String>,
}

impl Rewritten {
    /// The rewritten model (structure-only when IN was read so: write it with [`Self::to_bytes`]).
    pub fn model(&self) -> &ModelProto {
        &self.model
    }

    /// What the decoder reads and writes, as recorded in the model's metadata.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The heads found, their layout and grid.
    pub fn heads(&self) -> &Heads {
        &self.heads
    }

    /// The image input, when one was recognised.
    pub fn image(&self) -> Option<&ImageInput> {
        self.image.as_ref()
    }

    /// Whether the score mode was detected (true) or forced with `--scores`.
    pub fn scores_detected(&self) -> bool {
        self.scores_detected
    }

    pub fn nodes_added(&self) -> usize {
        self.nodes_added
    }

    pub fn nodes_pruned(&self) -> usize {
        self.nodes_pruned
    }

    /// Things worth telling the user that are not errors.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The line the tool prints once OUT is written.
    pub fn summary(&self, out: &Path) -> String {
        let p = &self.provenance.settings;
        let poses = match &self.provenance.multi_pose {
            Some(m) => format!(
                ", {} [{b}, {n}, 17, 3] and {} [{b}, {n}] (up to {n} poses, score threshold {}, NMS radius {} px) \
                 with displacements '{}' and '{}'",
                m.poses,
                m.pose_scores,
                m.params.score_threshold,
                m.params.nms_radius,
                m.displacement_fwd,
                m.displacement_bwd,
                b = self.heads.batch,
                n = m.params.max_poses,
            ),
            None => String::new(),
        };
        let pixels = match &self.provenance.pixels {
            Some(p) => format!(
                "; input {} now takes {} pixels ({}) and computes {} ({}) itself",
                p.input,
                p.pixels,
                match p.pixels {
                    Pixels::Unit => "0..1",
                    Pixels::Byte => "0..255",
                },
                p.preprocess,
                p.preprocess.formula()
            ),
            None => String::new(),
        };
        format!(
            "wrote {}: {} [{}, 17, 3] (x, y, score) from heatmaps '{}' and offsets '{}' ({}, {}x{} grid, stride {}, \
             scores {}{}){poses}, {} nodes added{}{pixels}",
            out.display(),
            p.output,
            self.heads.batch,
            p.heatmaps,
            p.offsets,
            p.layout,
            self.heads.grid.0,
            self.heads.grid.1,
            p.stride,
            p.scores,
            if self.scores_detected { " detected" } else { " forced" },
            self.nodes_added,
            if self.nodes_pruned > 0 { format!(", {} pruned", self.nodes_pruned) } else { String::new() },
        )
    }

    /// The rewritten model's bytes, the weights carried over from `original` (the model this was
    /// rewritten from) without being decoded.
    pub fn to_bytes(&self, original: &dyn ModelSource) -> Result<Vec<u8>> {
        let pieces = model_io::encode_edited(original, &self.model)?;
        wire::collect_pieces(original.source(), &pieces)
            .map_err(|e| Error::Unsupported(format!("cannot read the original model again: {e}")))
    }
}

fn graph_of(model: &ModelProto) -> &GraphProto {
    model.graph.as_ref().expect("model_io checked the graph")
}

/// The outputs the rewrite appends, with the flag that names each.
fn appended_outputs(options: &RewriteOptions) -> Vec<(&str, &'static str)> {
    let mut names = vec![(options.output_name.as_str(), "--output-name")];
    if let Some(m) = &options.multi_pose {
        names.push((m.poses_name.as_str(), "--poses-name"));
        names.push((m.pose_scores_name.as_str(), "--pose-scores-name"));
    }
    names
}

fn check_not_decorated(model: &ModelProto, options: &RewriteOptions) -> Result<()> {
    let graph = graph_of(model);
    if query::has_decoder(model) {
        return Err(Error::AlreadyDecoded);
    }
    let taken = query::taken_names(graph);
    let appended = appended_outputs(options);
    for (i, (name, flag)) in appended.iter().enumerate() {
        if taken.contains(*name) {
            return Err(Error::Usage(format!(
                "the model already has a tensor called {}; choose another with {flag}",
                printable(name)
            )));
        }
        if let Some((_, other)) = appended[..i].iter().find(|(n, _)| n == name) {
            return Err(Error::Usage(format!("{flag} and {other} both name {}", printable(name))));
        }
    }
    Ok(())
}

/// A weightless copy of a structure-only model for tract's shape inference: initializers without
/// data become graph inputs of the same type and shape. They are renamed, because tract names
/// some nodes it creates after the ONNX node plus a suffix (a Conv's bias cast is `conv.bias`),
/// which a graph input of that name would collide with; the new names have no dot.
fn shape_skeleton(structure: &ModelProto) -> Vec<u8> {
    let mut skeleton = structure.clone();
    let graph = skeleton.graph.as_mut().expect("checked when read");
    let mut taken = query::taken_names(graph);
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
    walk::for_each_node_mut(&mut graph.node, &mut |node| {
        for input in node.input.iter_mut() {
            if let Some(new) = renamed.get(input.as_str()) {
                *input = new.clone();
            }
        }
    });
    skeleton.write_to_bytes().unwrap_or_default()
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
    let real_inputs = query::real_input_names(graph_of(model.proto()));
    facts.inputs.retain(|i| real_inputs.contains(&i.name));
    Ok((facts, notes))
}

/// Rewrites a loaded model. Nothing is written.
pub fn rewrite(model: &dyn ModelSource, options: &RewriteOptions) -> Result<Rewritten> {
    let mut settled = settle(model, options)?;
    let built = build(model.proto(), &mut settled, options)?;
    splice(model.proto(), settled, built, options)
}

/// What the rewrite decided before building anything: the decoder settings and the heads, the
/// target profile, the input normalization, and what it noticed on the way.
struct Settled {
    opset: i64,
    pins: Vec<(String, Vec<usize>)>,
    facts: ModelFacts,
    image: Option<ImageInput>,
    settings: DecoderSettings,
    heads: Heads,
    displacements: Option<heads::Displacements>,
    pixels: Option<PixelInput>,
    target: Profile,
    notes: Vec<String>,
}

impl Settled {
    /// Where the decoders read `head` (see `decoders::reroute`).
    fn head_input(&self, graph: &GraphProto, head: &str) -> reroute::HeadInput {
        let dims = self.facts.outputs.iter().find(|o| o.name == head).and_then(|o| o.shape.as_ref());
        let dims = dims.map(|d| d.iter().map(|d| if let Dim::Fixed(v) = d { *v } else { -1 }).collect());
        reroute::head_input(graph, head, heads::head_type(&self.facts.outputs, head), dims.unwrap_or_default())
    }
}

/// Checks the model and the options, infers the shapes, finds the heads and settles the decoder
/// settings and the target.
fn settle(model: &dyn ModelSource, options: &RewriteOptions) -> Result<Settled> {
    let proto = model.proto();
    let opset = query::default_opset(proto).filter(|o| (MIN_OPSET..=MAX_OPSET).contains(o));
    let Some(opset) = opset else {
        return Err(Error::Opset { found: query::default_opset(proto), supported: (MIN_OPSET, MAX_OPSET) });
    };
    if let Some(m) = &options.multi_pose {
        if let Some(why) = m.params.out_of_range() {
            return Err(Error::Usage(why));
        }
    }
    check_not_decorated(proto, options)?;
    let graph = graph_of(proto);
    let pins = query::resolve_pins(graph, &options.input_shapes)?;
    let (facts, mut notes) = shape_facts(model, &pins)?;
    let image = heads::image_input(&facts.inputs);
    let given = GivenSettings {
        heads: options.heads.clone(),
        stride: options.stride,
        scores: options.scores,
        output: Some(options.output_name.clone()),
    };
    let (settings, heads) = heads::settle(&given, &facts.outputs, &facts.inputs, image.as_ref(), graph)?;
    let displacements = match &options.multi_pose {
        Some(_) => Some(heads::detect_displacements(&facts.outputs, &heads, &options.heads)?),
        None => None,
    };
    let read = [&heads.heatmaps, &heads.offsets].into_iter().chain(displacements.iter().flat_map(|d| [&d.fwd, &d.bwd]));
    let head_types: Vec<&str> = read.map(|h| heads::head_type(&facts.outputs, h).as_str()).collect();
    let (target, left_out) = Profile::for_heads(&options.target, &head_types)?;
    if !left_out.is_empty() {
        notes.push(format!(
            "{} here leaves out {}: they cannot run a model with float16 heads at all (their profiles forbid \
             float16 tensors)",
            target.name,
            left_out.join(", ")
        ));
    }
    // The model's own tensors too: a float16 body behind float32 heads (onnxconverter-common's
    // keep_io_types) does not load on a runtime without float16, whatever the decoder; the
    // target's check covers the appended nodes only.
    let own = profiles::Facts::propagate(proto, &[]);
    let refusing = Profile::refusing_types(&target.name, &own.element_types(), &left_out)?;
    if !refusing.is_empty() {
        let said: Vec<String> = refusing.iter().map(|(runtime, ty)| format!("{runtime} ({ty})")).collect();
        notes.push(format!(
            "the model's own tensors hold types that {} cannot hold at all, so the model will not load there \
             whatever the decoder (`inspect --target NAME` lists its nodes)",
            said.join(", ")
        ));
    }
    let pixels = match options.pixels {
        Some(p) => Some(pixel_input(p, image.as_ref(), &facts)?),
        None => None,
    };
    Ok(Settled { opset, pins, facts, image, settings, heads, displacements, pixels, target, notes })
}

/// The nodes and weights a rewrite adds: the normalization (before the model's nodes) and the
/// decoders (after them).
struct Built {
    normalized: Option<String>,
    prepended: Vec<NodeProto>,
    appended: Vec<NodeProto>,
    weights: Vec<TensorProto>,
    multi_pose: Option<MultiPoseSettings>,
}

/// Builds the normalization and the decoders for `settled`, under names `proto` leaves free.
fn build(proto: &ModelProto, settled: &mut Settled, options: &RewriteOptions) -> Result<Built> {
    let graph = graph_of(proto);
    // The output names are ours to write: no decoder node may take one for its own tensor.
    let mut taken = query::taken_names(graph);
    taken.extend(appended_outputs(options).into_iter().map(|(name, _)| name.to_string()));
    // The normalization first (its nodes go before the model's), then the decoders.
    let (normalized, prepended, prepended_weights) = match (&settled.pixels, &settled.image) {
        (Some(p), Some(image)) => {
            let mut b = GraphBuilder::new(settled.opset, NameAllocator::new(taken.clone()));
            let channels = input_channels(&settled.facts, image);
            let normalized = normalize::build(&mut b, &p.input, p.pixels, p.preprocess, image.layout, channels);
            let (nodes, weights) = b.finish();
            taken.extend(nodes.iter().flat_map(|n| n.output.iter().chain(std::iter::once(&n.name)).cloned()));
            taken.extend(weights.iter().map(|t| t.name.clone()));
            (Some(normalized), nodes, weights)
        }
        _ => (None, vec![], vec![]),
    };
    let mut builder = GraphBuilder::new(settled.opset, NameAllocator::new(taken));
    builder.set_output_type(options.output_type);
    let heads = &settled.heads;
    let mut forms = settled.target.decoder_forms();
    if forms == Forms::ArgMaxGather && settled.opset < GATHER_ELEMENTS_OPSET {
        forms = Forms::Thin;
        settled.notes.push(format!(
            "{} runs ArgMax and GatherElements, but GatherElements came in opset {GATHER_ELEMENTS_OPSET} and the \
             model is at {}: the decoder keeps the thin ops",
            settled.target.name, settled.opset
        ));
    }
    let spec = DecoderSpec {
        settings: &settled.settings,
        heatmaps_read: settled.head_input(graph, &heads.heatmaps),
        offsets_read: settled.head_input(graph, &heads.offsets),
        grid: heads.grid,
        forms,
    };
    decoder::build(&mut builder, &spec)?;
    let multi_pose = match (&options.multi_pose, &settled.displacements) {
        (Some(m), Some(displacements)) => {
            let mut read = |hint: &str, head: &str| builder.read_head(hint, head, &settled.head_input(graph, head));
            let spec = MultiPoseSpec {
                heatmaps: read("mp_heatmaps_copy", &heads.heatmaps),
                offsets: read("mp_offsets_copy", &heads.offsets),
                displacement_fwd: read("mp_displacement_fwd_copy", &displacements.fwd),
                displacement_bwd: read("mp_displacement_bwd_copy", &displacements.bwd),
                layout: heads.layout,
                grid: heads.grid,
                stride: settled.settings.stride,
                scores: settled.settings.scores,
                params: m.params,
                poses: m.poses_name.clone(),
                pose_scores: m.pose_scores_name.clone(),
                forms,
            };
            multi_pose::build(&mut builder, &spec)?;
            settled.notes.extend(Profile::multi_pose_narrow_notes(&settled.target.name)?);
            Some(MultiPoseSettings {
                displacement_fwd: displacements.fwd.clone(),
                displacement_bwd: displacements.bwd.clone(),
                params: m.params,
                poses: m.poses_name.clone(),
                pose_scores: m.pose_scores_name.clone(),
            })
        }
        _ => None,
    };
    let (appended, mut weights) = builder.finish();
    weights.extend(prepended_weights);
    Ok(Built { normalized, prepended, appended, weights, multi_pose })
}

/// `proto` with what was built spliced in: the normalization before its nodes, the decoders
/// after them, their outputs and provenance; pruned if asked; checked against the target.
fn splice(proto: &ModelProto, settled: Settled, built: Built, options: &RewriteOptions) -> Result<Rewritten> {
    let Settled { pins, facts, image, settings, heads, pixels, target, notes, .. } = settled;
    let nodes_added = built.prepended.len() + built.appended.len();
    let provenance = Provenance {
        tool_version: TOOL_VERSION.to_string(),
        settings,
        multi_pose: built.multi_pose,
        pixels,
        output_type: options.output_type,
    };
    let mut out = proto.clone();
    let graph = out.graph.as_mut().expect("settle checked the graph");
    if let (Some(p), Some(normalized)) = (&provenance.pixels, &built.normalized) {
        normalize::rewire(graph, &p.input, normalized);
        graph.node.splice(0..0, built.prepended);
    }
    if out.ir_version < 4 {
        // IR 3 requires every initializer to be declared as a graph input too.
        for t in &built.weights {
            let dims: Vec<Dim> = t.dims.iter().map(|d| Dim::Fixed(*d)).collect();
            let dt = DataType::from_i32(t.data_type).unwrap_or(DataType::FLOAT);
            graph.input.push(proto::value_info(&t.name, dt, &dims));
        }
    }
    graph.node.extend(built.appended);
    graph.initializer.extend(built.weights);
    let batch = heads.batch.clone();
    let (k, v) = (Dim::Fixed(NUM_KEYPOINTS as i64), Dim::Fixed(VALUES_PER_KEYPOINT as i64));
    let output_type = options.output_type.onnx();
    graph.output.push(proto::value_info(&options.output_name, output_type, &[batch.clone(), k.clone(), v.clone()]));
    if let Some(m) = &provenance.multi_pose {
        let n = Dim::Fixed(m.params.max_poses as i64);
        graph.output.push(proto::value_info(&m.poses, output_type, &[batch.clone(), n.clone(), k, v]));
        graph.output.push(proto::value_info(&m.pose_scores, output_type, &[batch, n]));
    }
    if !pins.is_empty() {
        write_pinned_shapes(graph, &facts);
    }
    let kept: Vec<&str> = appended_outputs(options).into_iter().map(|(name, _)| name).collect();
    let nodes_pruned = if options.prune { prune::prune(graph, &kept) } else { 0 };
    out.metadata_props.extend(provenance.to_metadata().iter().map(|(k, v)| proto::metadata_entry(k, v)));
    profiles::check_decoder(&out, &facts.outputs, &target)
        .map_err(|violations| Error::Target { profile: target.name.clone(), violations })?;

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

/// What `--pixels` prepends to: the image input, float32, with its channels known.
fn pixel_input(p: PixelOptions, image: Option<&ImageInput>, facts: &ModelFacts) -> Result<PixelInput> {
    if !matches!(p.preprocess, Preprocess::Mobilenet | Preprocess::Resnet) {
        return Err(Error::Usage(format!(
            "--pixels needs --preprocess mobilenet or resnet (the normalization to prepend), not {}",
            p.preprocess
        )));
    }
    let Some(image) = image else {
        return Err(Error::Usage(format!(
            "--pixels: cannot tell the image input among {} (expected one rank-4 input with 1 or 3 channels)",
            tract_bridge::list_tensors(&facts.inputs)
        )));
    };
    let fact = &facts.inputs[image.index];
    if fact.datum_type.is_some_and(|dt| dt != tract_onnx::prelude::DatumType::F32) {
        return Err(Error::Unsupported(format!(
            "--pixels: the image input {} is {}, not float32",
            printable(&image.name),
            crate::model::element_type::datum_name(fact.datum_type.expect("checked"))
        )));
    }
    Ok(PixelInput { input: image.name.clone(), pixels: p.pixels, preprocess: p.preprocess })
}

/// The channel count of the image input (`image_input` found it to be 1 or 3).
fn input_channels(facts: &ModelFacts, image: &ImageInput) -> usize {
    match facts.inputs[image.index].shape.as_ref().map(|d| &d[image.layout.channel_axis()]) {
        Some(Dim::Fixed(c)) => *c as usize,
        _ => 3,
    }
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

#[cfg(not(target_arch = "wasm32"))]
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
