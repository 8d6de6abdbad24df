//! `inspect`: what a model is made of and who would run it. Inputs and outputs with tract's
//! shapes, an op histogram, the pose heads the rewrite would find (layout, grid, stride, score
//! mode), whether a decoder is already there, and for each profile what backs it (a run that
//! proved it, or the documentation only) and the nodes of the whole model it would reject, with
//! the rule and its source. The result serializes to JSON and renders as text; nothing here
//! prints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use onnx_protobuf::GraphProto;
use serde::Serialize;

use crate::contract::{FloatType, Provenance};
use crate::error::{Error, Result};
use crate::heads::Displacements;
use crate::heads::{self, HeadChoice};
use crate::model::io::LoadedModel;
use crate::model::proto::Dim;
use crate::model::query::{self, InputShape};
use crate::model::element_type;
use crate::profiles::{self, Facts, Profile, Proof, Violation};
use crate::tract_bridge::{self, TensorFacts};

/// Everything `inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub ir_version: i64,
    /// The default-domain opset.
    pub opset: Option<i64>,
    pub producer: String,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
    /// Why tract could not infer shapes, when it could not: inputs and outputs are then as
    /// declared, and rank rules are judged only where ranks follow from the declarations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape_inference_error: Option<String>,
    pub nodes: usize,
    /// Op counts, most frequent first (ties by name); ops outside the default domain are
    /// prefixed with their domain.
    pub ops: Vec<OpCount>,
    pub heads: HeadsReport,
    pub decoder: DecoderReport,
    pub profiles: Vec<ProfileReport>,
    /// For a model with a multi-pose decoder: the runtimes behind the target (`portable` by
    /// default) that compute in a narrower type by default, and the setting that makes each exact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub narrow_notes: Vec<String>,
}

/// A graph input or output.
#[derive(Clone, Debug, Serialize)]
pub struct Tensor {
    pub name: String,
    /// ONNX element type name (`float`, `int64`, ...), when known.
    pub element_type: Option<String>,
    /// One entry per axis, a size or a symbol; `None` when the rank is unknown.
    pub shape: Option<Vec<JsonDim>>,
}

/// A dimension as JSON: a number or a symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum JsonDim {
    Fixed(i64),
    Symbol(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpCount {
    pub op: String,
    pub count: usize,
}

/// The heads the rewrite would decode, or why it would not find them.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
// One per inspection: boxing would only make the JSON's construction noisier.
#[allow(clippy::large_enum_variant)]
pub enum HeadsReport {
    Found {
        heatmaps: String,
        offsets: String,
        /// float32, or float16 (read through an exact Cast).
        heatmaps_type: FloatType,
        offsets_type: FloatType,
        layout: String,
        /// Heatmap grid `[height, width]`.
        grid: [usize; 2],
        /// The image input, when one input is recognisably the image.
        image: Option<String>,
        stride: Option<u32>,
        /// Why the stride cannot be derived (the rewrite then needs `--stride`).
        #[serde(skip_serializing_if = "Option::is_none")]
        stride_error: Option<String>,
        scores: String,
        /// The forward and backward displacements `--poses` would read, when found.
        #[serde(skip_serializing_if = "Option::is_none")]
        displacements: Option<Displacements>,
        /// Why `--poses` would be refused (no displacement heads, or names that cannot tell).
        #[serde(skip_serializing_if = "Option::is_none")]
        displacements_error: Option<String>,
    },
    NotFound {
        reason: String,
    },
}

/// Whether the model already carries an onnx-posefix decoder.
#[derive(Clone, Debug, Serialize)]
pub struct DecoderReport {
    pub present: bool,
    /// Nodes named with the `posefix/` prefix.
    pub nodes: usize,
    /// The recorded provenance (tool version, heads, layout, stride, scores, output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// One profile's verdict on the whole model.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    pub name: String,
    pub runtime: String,
    pub version: String,
    /// What backs the profile: `status` `proven` (with `runtime_version`, `how`, `in_ci`,
    /// `single_pose`, `multi_pose`), `documentation-only` (with `why`), or `derived` (`portable`).
    pub proof: Proof,
    /// For `portable`: the proven profiles it is the intersection of.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<String>,
    /// Distinct nodes with at least one violation.
    pub rejected_nodes: usize,
    /// Whether a rule on the whole model (its opset) is broken.
    pub rejects_model: bool,
    pub violations: Vec<Violation>,
}

/// Inspects `model` against `target`, or against every profile when `None`. `input_shapes`
/// pin symbolic input dims as in the rewrite (`--input-shape`).
pub fn inspect(model: &LoadedModel, target: Option<&Profile>, input_shapes: &[InputShape]) -> Result<Inspection> {
    let proto = &model.proto;
    let graph = proto.graph.as_ref().ok_or_else(|| Error::Unsupported("the model has no graph".into()))?;
    let pins = query::resolve_pins(graph, input_shapes)?;
    let real_inputs = query::real_inputs(graph);

    // One shape inference gives every tensor; the graph's inputs and outputs are looked up in it.
    let (facts, inputs, outputs, shape_inference_error) = match tract_bridge::infer_tensor_facts(&model.bytes, &pins) {
        Ok(all) => {
            let by_name: HashMap<&str, &TensorFacts> = all.iter().map(|t| (t.name.as_str(), t)).collect();
            let pick = |list: Vec<TensorFacts>| -> Vec<TensorFacts> {
                list.into_iter().map(|d| by_name.get(d.name.as_str()).map(|t| (*t).clone()).unwrap_or(d)).collect()
            };
            let inputs = pick(declared(real_inputs.iter().copied()));
            let outputs = pick(declared(&graph.output));
            (Facts::from_tensors(&all), inputs, outputs, None)
        }
        Err(e) => {
            let outputs = declared(&graph.output);
            (Facts::propagate(proto, &[]), declared(real_inputs.iter().copied()), outputs, Some(e.to_string()))
        }
    };

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for node in &graph.node {
        let op = match node.domain.as_str() {
            "" | "ai.onnx" => node.op_type.clone(),
            domain => format!("{domain}.{}", node.op_type),
        };
        *counts.entry(op).or_default() += 1;
    }
    let mut ops: Vec<OpCount> = counts.into_iter().map(|(op, count)| OpCount { op, count }).collect();
    ops.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.op.cmp(&b.op)));

    let profiles = match target {
        Some(p) => vec![p.clone()],
        None => Profile::all()?,
    };
    let profiles = profiles
        .iter()
        .map(|p| {
            let violations = profiles::check_model(proto, &facts, p, |_| true);
            let rejected: HashSet<&str> = violations.iter().filter_map(|v| v.node.as_deref()).collect();
            ProfileReport {
                rejects_model: violations.iter().any(|v| v.node.is_none()),
                name: p.name.clone(),
                runtime: p.runtime.clone(),
                version: p.version.clone(),
                proof: p.proof.clone(),
                derived_from: p.derived_from.clone(),
                rejected_nodes: rejected.len(),
                violations,
            }
        })
        .collect();

    let provenance = query::provenance(proto);
    let decoder_nodes = graph.node.iter().filter(|n| query::is_decoder_node(n)).count();
    Ok(Inspection {
        ir_version: proto.ir_version,
        opset: query::default_opset(proto),
        producer: [proto.producer_name.as_str(), proto.producer_version.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
        heads: heads_report(graph, &inputs, &outputs),
        inputs: inputs.iter().map(tensor).collect(),
        outputs: outputs.iter().map(tensor).collect(),
        shape_inference_error,
        nodes: graph.node.len(),
        ops,
        narrow_notes: match provenance.as_ref().and_then(|p| p.multi_pose.as_ref()) {
            Some(_) => Profile::multi_pose_narrow_notes(target.map_or(profiles::PORTABLE, |t| t.name.as_str()))?,
            None => vec![],
        },
        decoder: DecoderReport { present: provenance.is_some() || decoder_nodes > 0, nodes: decoder_nodes, provenance },
        profiles,
    })
}

/// Inputs or outputs as the model declares them (what tract infers replaces them).
fn declared<'a>(list: impl IntoIterator<Item = &'a onnx_protobuf::ValueInfoProto>) -> Vec<TensorFacts> {
    list.into_iter()
        .map(|vi| {
            let declared = crate::model::proto::declared_tensor(vi);
            TensorFacts {
                name: vi.name.clone(),
                datum_type: declared.as_ref().and_then(|(elem, _)| element_type::to_datum(*elem)),
                shape: declared.and_then(|(_, dims)| dims),
            }
        })
        .collect()
}

fn tensor(t: &TensorFacts) -> Tensor {
    Tensor {
        name: t.name.clone(),
        element_type: t.datum_type.map(element_type::datum_name),
        shape: t.shape.as_ref().map(|dims| {
            dims.iter()
                .map(|d| match d {
                    Dim::Fixed(v) => JsonDim::Fixed(*v),
                    other => JsonDim::Symbol(other.to_string()),
                })
                .collect()
        }),
    }
}

fn heads_report(graph: &GraphProto, inputs: &[TensorFacts], outputs: &[TensorFacts]) -> HeadsReport {
    let found = match heads::detect(outputs, &HeadChoice::default()) {
        Ok(found) => found,
        Err(e) => return HeadsReport::NotFound { reason: e.to_string() },
    };
    let image = heads::image_input(inputs);
    let (stride, stride_error) = match &image {
        Some(image) => match heads::derive_stride(image.size, found.grid) {
            Ok(s) => (Some(s), None),
            Err(unknown) => (None, Some(unknown.to_string())),
        },
        None => (None, Some("no single image input to derive it from".to_string())),
    };
    let (displacements, displacements_error) =
        match heads::detect_displacements(outputs, &found, &HeadChoice::default()) {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e.to_string())),
        };
    HeadsReport::Found {
        displacements,
        displacements_error,
        scores: heads::score_mode(graph, &found.heatmaps).to_string(),
        heatmaps_type: heads::head_type(outputs, &found.heatmaps),
        offsets_type: heads::head_type(outputs, &found.offsets),
        heatmaps: found.heatmaps,
        offsets: found.offsets,
        layout: found.layout.to_string(),
        grid: [found.grid.0, found.grid.1],
        image: image.map(|i| i.name),
        stride,
        stride_error,
    }
}

impl Inspection {
    /// The verdict of the profile called `name`, if it was checked.
    pub fn profile(&self, name: &str) -> Option<&ProfileReport> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

fn shape_text(shape: &Option<Vec<JsonDim>>) -> String {
    match shape {
        Some(dims) => format!(
            "[{}]",
            dims.iter()
                .map(|d| match d {
                    JsonDim::Fixed(v) => v.to_string(),
                    JsonDim::Symbol(s) => s.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "?".to_string(),
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opset = self.opset.map(|o| o.to_string()).unwrap_or_else(|| "none".into());
        let producer = if self.producer.is_empty() { String::new() } else { format!(", from {}", self.producer) };
        writeln!(f, "model: IR {}, opset {opset}{producer}", self.ir_version)?;
        for (title, list) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            writeln!(f, "{title}:")?;
            for t in list {
                let ty = t.element_type.as_deref().unwrap_or("?");
                writeln!(f, "  {} {ty} {}", t.name, shape_text(&t.shape))?;
            }
        }
        if let Some(e) = &self.shape_inference_error {
            writeln!(f, "shapes: as declared; tract could not infer them: {e}")?;
        }
        let ops: Vec<String> = self.ops.iter().map(|o| format!("{} {}", o.op, o.count)).collect();
        writeln!(f, "ops ({} nodes): {}", self.nodes, ops.join(", "))?;
        match &self.heads {
            HeadsReport::Found {
                heatmaps,
                offsets,
                heatmaps_type,
                offsets_type,
                layout,
                grid,
                image,
                stride,
                stride_error,
                scores,
                displacements,
                displacements_error,
            } => {
                let stride = match (stride, stride_error) {
                    (Some(s), _) => format!("stride {s}"),
                    (None, Some(e)) => format!("stride unknown ({e})"),
                    (None, None) => "stride unknown".to_string(),
                };
                let image = image.as_ref().map(|i| format!(", image input {i}")).unwrap_or_default();
                let types = if heatmaps_type == offsets_type {
                    heatmaps_type.to_string()
                } else {
                    format!("heatmaps {heatmaps_type}, offsets {offsets_type}")
                };
                writeln!(
                    f,
                    "heads: heatmaps {heatmaps}, offsets {offsets}, {types}, {layout}, {}x{} grid, {stride}, scores \
                     {scores}{image}",
                    grid[0], grid[1]
                )?;
                match (displacements, displacements_error) {
                    (Some(d), _) => writeln!(f, "multi-pose heads: displacements fwd {}, bwd {}", d.fwd, d.bwd)?,
                    (None, Some(e)) => writeln!(f, "multi-pose heads: not found: {e}")?,
                    (None, None) => {}
                }
            }
            HeadsReport::NotFound { reason } => writeln!(f, "heads: not found: {reason}")?,
        }
        match (&self.decoder.provenance, self.decoder.present) {
            (Some(Provenance { tool_version, settings: p, multi_pose, pixels, output_type }), _) => {
                writeln!(
                    f,
                    "decoder: present, {} nodes, output {} ({output_type}) from {} and {} ({}, stride {}, scores {}; \
                     {tool_version})",
                    self.decoder.nodes, p.output, p.heatmaps, p.offsets, p.layout, p.stride, p.scores
                )?;
                if let Some(px) = pixels {
                    writeln!(
                        f,
                        "input normalization: {} takes {} pixels, {} ({}) computed in the graph",
                        px.input,
                        px.pixels,
                        px.preprocess,
                        px.preprocess.formula()
                    )?;
                }
                if let Some(m) = multi_pose {
                    writeln!(f, "multi-pose decoder: outputs {}", m.describe())?;
                    for note in &self.narrow_notes {
                        writeln!(f, "note: {note}")?;
                    }
                }
            }
            (None, true) => writeln!(f, "decoder: {} posefix/ nodes without provenance metadata", self.decoder.nodes)?,
            (None, false) => writeln!(f, "decoder: none")?,
        }
        writeln!(f, "profiles:")?;
        for p in &self.profiles {
            match (p.rejected_nodes, p.rejects_model) {
                (0, false) => writeln!(f, "  {}: accepts all {} nodes", p.name, self.nodes)?,
                (0, true) => writeln!(f, "  {}: rejects the model", p.name)?,
                (n, false) => writeln!(f, "  {}: rejects {n} of {} nodes", p.name, self.nodes)?,
                (n, true) => writeln!(f, "  {}: rejects the model and {n} of {} nodes", p.name, self.nodes)?,
            }
            match &p.proof {
                Proof::Derived => writeln!(
                    f,
                    "    proof: derived, the intersection of the proven profiles {}",
                    p.derived_from.join(", ")
                )?,
                proof => writeln!(f, "    proof: {proof}")?,
            }
            for v in &p.violations {
                writeln!(f, "    {v}")?;
            }
        }
        Ok(())
    }
}
