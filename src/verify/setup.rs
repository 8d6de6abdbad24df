//! Step 1: what to compare (provenance, flags or detection), at which input shape, with which
//! tract plans. Everything here fails with a one-line error: without a setup nothing is checked.

use std::collections::HashMap;

use crate::contract::{DecoderSettings, FloatType, MultiPoseSettings, PixelInput};
use crate::error::{Error, Result};
use crate::heads::{self, GivenSettings, HeadChoice, ImageInput};
use crate::model::io::LoadedModel;
use crate::model::proto::Dim;
use crate::model::query::{self, provenance as existing_provenance};
use crate::tract_bridge::{self, list_tensors, ModelFacts, Runner};

use super::report::{DecoderInfo, DecoderSource};
use super::VerifyOptions;

/// The heads REWRITTEN's decoder reads and how it decodes them.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub settings: DecoderSettings,
    pub source: DecoderSource,
    /// REWRITTEN's multi-pose decoder, from its provenance.
    pub multi_pose: Option<MultiPoseSettings>,
}

/// Where the multi-pose heads and outputs are, when REWRITTEN has that decoder.
pub(crate) struct MultiPoseSetup {
    pub settings: MultiPoseSettings,
    /// ORIGINAL's forward and backward displacements: shapes and output indices.
    pub fwd_shape: Vec<usize>,
    pub bwd_shape: Vec<usize>,
    pub fwd_ix: usize,
    pub bwd_ix: usize,
    /// REWRITTEN's `poses` and `pose_scores` output indices.
    pub poses_ix: usize,
    pub pose_scores_ix: usize,
}

/// Both models ready to run on inputs of one fixed shape.
pub(crate) struct Setup {
    pub spec: Spec,
    pub image: ImageInput,
    /// The concrete shape fed to both models.
    pub input_shape: Vec<usize>,
    pub heatmaps_shape: Vec<usize>,
    pub offsets_shape: Vec<usize>,
    pub original: Runner,
    pub rewritten: Runner,
    pub heatmaps_ix: usize,
    pub offsets_ix: usize,
    pub keypoints_ix: usize,
    pub multi_pose: Option<MultiPoseSetup>,
    /// REWRITTEN takes pixels and normalizes them itself (`--pixels`, from its provenance).
    pub pixels: Option<PixelInput>,
    /// The type of REWRITTEN's appended outputs (`--output-type`, from its provenance).
    pub output_type: FloatType,
    /// ORIGINAL's float outputs and their types: the crafted heads fed to a cut decoder are of
    /// the type the decoder reads.
    pub head_types: HashMap<String, FloatType>,
    pub notes: Vec<String>,
}

impl Setup {
    /// The type of ORIGINAL's head `name`.
    pub fn head_type(&self, name: &str) -> FloatType {
        self.head_types.get(name).copied().unwrap_or_default()
    }

    pub fn decoder_info(&self) -> DecoderInfo {
        DecoderInfo {
            settings: self.spec.settings.clone(),
            source: self.spec.source,
            multi_pose: self.spec.multi_pose.clone(),
            output_type: self.output_type,
        }
    }
}

/// Says of a tract, usage or heads error which model it is about.
fn about(which: &'static str, e: Error) -> Error {
    e.about(which)
}

/// Graph inputs that are not initializers (what tract sees as inputs), in order.
fn graph_inputs(model: &LoadedModel) -> Vec<String> {
    model.proto.graph.as_ref().map(query::real_input_names).unwrap_or_default()
}


pub(crate) fn prepare(original: &LoadedModel, rewritten: &LoadedModel, options: &VerifyOptions) -> Result<Setup> {
    let inputs = graph_inputs(rewritten);
    if graph_inputs(original) != inputs {
        return Err(Error::Usage(format!(
            "ORIGINAL has inputs [{}] but REWRITTEN has [{}]: REWRITTEN must be a rewrite of ORIGINAL",
            graph_inputs(original).join(", "),
            inputs.join(", ")
        )));
    }
    let (name, input_shape, mut notes) = input_shape(rewritten, &inputs, options)?;
    let pins = [(name.clone(), input_shape.clone())];
    let rw_facts = tract_bridge::infer_facts(&rewritten.bytes, &pins).map_err(|e| about("REWRITTEN", e))?;
    let orig_facts = tract_bridge::infer_facts(&original.bytes, &pins).map_err(|e| about("ORIGINAL", e))?;
    let image = heads::image_input(&rw_facts.inputs).ok_or_else(|| {
        Error::Unsupported(format!(
            "cannot feed images to input {name} {}: expected rank 4 with 1 or 3 channels (NCHW or NHWC)",
            rw_facts.inputs[0].shape_string()
        ))
    })?;
    let (spec, spec_notes) = resolve_spec(original, rewritten, &orig_facts, &image, options)?;
    notes.extend(spec_notes);

    let fixed = |facts: &ModelFacts, which: &str, tensor: &str| -> Result<Vec<usize>> {
        let fact = facts.outputs.iter().find(|o| o.name == tensor).ok_or_else(|| {
            Error::Usage(format!("{which} has no output called {tensor} (outputs: {})", list_tensors(&facts.outputs)))
        })?;
        fact.fixed_shape().ok_or_else(|| {
            Error::Unsupported(format!(
                "{which}'s output {tensor} has shape {} even with input {name} pinned to {input_shape:?}",
                fact.shape_string()
            ))
        })
    };
    let heatmaps_shape = fixed(&orig_facts, "ORIGINAL", &spec.settings.heatmaps)?;
    let offsets_shape = fixed(&orig_facts, "ORIGINAL", &spec.settings.offsets)?;
    let multi_pose_shapes = match &spec.multi_pose {
        Some(m) => {
            for output in [&m.poses, &m.pose_scores] {
                if !rw_facts.outputs.iter().any(|o| &o.name == output) {
                    return Err(Error::Usage(format!(
                        "REWRITTEN's provenance names a multi-pose output {output} it does not have (outputs: {})",
                        list_tensors(&rw_facts.outputs)
                    )));
                }
            }
            Some((
                fixed(&orig_facts, "ORIGINAL", &m.displacement_fwd)?,
                fixed(&orig_facts, "ORIGINAL", &m.displacement_bwd)?,
            ))
        }
        None => None,
    };
    if !rw_facts.outputs.iter().any(|o| o.name == spec.settings.output) {
        let hint = if existing_provenance(&original.proto).is_some() {
            "; ORIGINAL has an onnx-posefix decoder: are ORIGINAL and REWRITTEN swapped?"
        } else if spec.source == DecoderSource::Provenance {
            "; its provenance is stale"
        } else {
            "; pass --output-name"
        };
        return Err(Error::Usage(format!(
            "REWRITTEN has no output called {} (outputs: {}){hint}",
            spec.settings.output,
            list_tensors(&rw_facts.outputs)
        )));
    }

    let original_runner =
        Runner::new(&original.bytes, std::slice::from_ref(&input_shape)).map_err(|e| about("ORIGINAL", e))?;
    let rewritten_runner =
        Runner::new(&rewritten.bytes, std::slice::from_ref(&input_shape)).map_err(|e| about("REWRITTEN", e))?;
    let index = |runner: &Runner, which: &str, tensor: &str| {
        runner.output_index(tensor).ok_or_else(|| Error::Tract(format!("{which}: tract lost the output {tensor}")))
    };
    let multi_pose = match (&spec.multi_pose, multi_pose_shapes) {
        (Some(m), Some((fwd_shape, bwd_shape))) => Some(MultiPoseSetup {
            fwd_ix: index(&original_runner, "ORIGINAL", &m.displacement_fwd)?,
            bwd_ix: index(&original_runner, "ORIGINAL", &m.displacement_bwd)?,
            poses_ix: index(&rewritten_runner, "REWRITTEN", &m.poses)?,
            pose_scores_ix: index(&rewritten_runner, "REWRITTEN", &m.pose_scores)?,
            settings: m.clone(),
            fwd_shape,
            bwd_shape,
        }),
        _ => None,
    };
    let provenance = existing_provenance(&rewritten.proto);
    let output_type = provenance.as_ref().map(|p| p.output_type).unwrap_or_default();
    if output_type == FloatType::Float16 {
        notes.push("REWRITTEN's outputs are float16: compared with the reference rounded once to float16".into());
    }
    let head_types: HashMap<String, FloatType> =
        orig_facts.outputs.iter().filter_map(|o| Some((o.name.clone(), FloatType::of_datum(o.datum_type?)?))).collect();
    let d = &spec.settings;
    let displacements = spec.multi_pose.iter().flat_map(|m| [&m.displacement_fwd, &m.displacement_bwd]);
    let float16_heads: Vec<&str> = [&d.heatmaps, &d.offsets]
        .into_iter()
        .chain(displacements)
        .filter(|h| head_types.get(*h) == Some(&FloatType::Float16))
        .map(String::as_str)
        .collect();
    if !float16_heads.is_empty() {
        notes.push(format!(
            "heads {} are float16: the reference reads them exactly as float32, and the crafted heads are rounded \
             to float16 first",
            float16_heads.join(", ")
        ));
    }
    Ok(Setup {
        output_type,
        pixels: provenance.and_then(|p| p.pixels),
        head_types,
        multi_pose,
        heatmaps_ix: index(&original_runner, "ORIGINAL", &spec.settings.heatmaps)?,
        offsets_ix: index(&original_runner, "ORIGINAL", &spec.settings.offsets)?,
        keypoints_ix: index(&rewritten_runner, "REWRITTEN", &spec.settings.output)?,
        spec,
        image,
        input_shape,
        heatmaps_shape,
        offsets_shape,
        original: original_runner,
        rewritten: rewritten_runner,
        notes,
    })
}

/// The single input's name and concrete shape: `--input-shape` where given, else the declared
/// dims with a symbolic batch taken as 1.
fn input_shape(
    rewritten: &LoadedModel,
    inputs: &[String],
    options: &VerifyOptions,
) -> Result<(String, Vec<usize>, Vec<String>)> {
    let [name] = inputs else {
        return Err(Error::Unsupported(format!(
            "verification feeds images to a model with one input; REWRITTEN has {} ({})",
            inputs.len(),
            inputs.join(", ")
        )));
    };
    let mut notes = vec![];
    let pinned = match options.input_shapes.as_slice() {
        [] => None,
        [one] if one.name.as_ref().is_none_or(|n| n == name) => Some(one.dims.clone()),
        [one] => {
            return Err(Error::Usage(format!(
                "--input-shape names {}, but the model's input is {name}",
                one.name.as_deref().unwrap_or_default()
            )))
        }
        _ => return Err(Error::Usage(format!("--input-shape given more than once; the model has one input, {name}"))),
    };
    let facts = tract_bridge::infer_facts(&rewritten.bytes, &[]).map_err(|e| about("REWRITTEN", e))?;
    let fact = facts.inputs.iter().find(|f| &f.name == name).unwrap_or(&facts.inputs[0]);
    let declared = fact.shape.clone().unwrap_or_default();
    if let Some(dims) = pinned {
        if !declared.is_empty() {
            query::check_pin(name, &declared, &dims)?;
        }
        return Ok((name.clone(), dims, notes));
    }
    let mut dims = Vec::with_capacity(declared.len());
    for (axis, d) in declared.iter().enumerate() {
        match d {
            Dim::Fixed(v) if *v > 0 => dims.push(*v as usize),
            Dim::Symbol(_) | Dim::Unknown if axis == 0 => {
                notes.push(format!("the batch of input {name} is {d}; verified at batch 1"));
                dims.push(1);
            }
            _ => {
                return Err(Error::Usage(format!(
                    "input {name} has shape {}; pin it with --input-shape {name}:D,D,D,D",
                    fact.shape_string()
                )))
            }
        }
    }
    if dims.is_empty() {
        return Err(Error::Usage(format!("the shape of input {name} is unknown; pin it with --input-shape")));
    }
    Ok((name.clone(), dims, notes))
}

/// Provenance first; flags override it; without provenance the heads, stride and score mode are
/// detected from ORIGINAL as the rewrite would.
fn resolve_spec(
    original: &LoadedModel,
    rewritten: &LoadedModel,
    orig_facts: &ModelFacts,
    image: &ImageInput,
    options: &VerifyOptions,
) -> Result<(Spec, Vec<String>)> {
    let flags = &options.decoder;
    let full_provenance = existing_provenance(&rewritten.proto);
    let multi_pose = full_provenance.as_ref().and_then(|p| p.multi_pose.clone());
    let provenance = full_provenance.map(|p| p.settings);
    let mut notes = vec![];
    if existing_provenance(&original.proto).is_some() {
        notes.push("ORIGINAL itself carries an onnx-posefix decoder (are the arguments swapped?)".to_string());
    }
    let source = match (&provenance, flags.any()) {
        (_, true) => DecoderSource::Flags,
        (Some(_), false) => DecoderSource::Provenance,
        (None, false) => DecoderSource::Detected,
    };
    if provenance.is_none() {
        notes.push(
            "REWRITTEN carries no onnx-posefix provenance: heads, stride and scores not given by flags were \
             detected from ORIGINAL"
                .to_string(),
        );
    }

    // Flags over provenance; what neither gives is detected from ORIGINAL, as the rewrite does.
    let given = GivenSettings {
        heads: HeadChoice {
            heatmaps: flags.heatmaps.clone().or_else(|| provenance.as_ref().map(|p| p.heatmaps.clone())),
            offsets: flags.offsets.clone().or_else(|| provenance.as_ref().map(|p| p.offsets.clone())),
            ..HeadChoice::default()
        },
        stride: flags.stride.or(provenance.as_ref().map(|p| p.stride)),
        scores: flags.scores.or(provenance.as_ref().map(|p| p.scores)),
        output: flags.output.clone().or(provenance.as_ref().map(|p| p.output.clone())),
    };
    let graph = original.proto.graph.as_ref().expect("read_model checked");
    let (settings, _) = heads::settle(&given, &orig_facts.outputs, &orig_facts.inputs, Some(image), graph)
        .map_err(|e| about("ORIGINAL", e))?;
    Ok((Spec { settings, source, multi_pose }, notes))
}
