//! One run of the pipeline on untrusted bytes, and the cheap validation of what it produced.
//!
//! Shared by the fuzz targets and by `tests/it/hostile.rs` (which includes this file with
//! `#[path]`), so it depends on nothing but `onnx_posefix` and std.
//!
//! The contract checked: bytes that decode are either refused with a one-line error, or rewritten
//! into a model that encodes and decodes again, keeps the original outputs in order with the
//! keypoints output last (only the keypoints with `--prune`), keeps the original nodes, appends
//! only well-formed `posefix/` nodes whose every input exists and whose every output is new, and
//! that tract can load and type, with keypoints `[N, 17, 3]` float.

use std::collections::HashSet;

use onnx_posefix::contract::{NAME_PREFIX, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use onnx_posefix::model::io::{self as model_io, LoadedModel};
use onnx_posefix::model::proto::{declared_tensor, Dim};
use onnx_posefix::onnx_protobuf::{GraphProto, Message, ModelProto, TensorProto};
use onnx_posefix::rewrite::{self, InputShape, RewriteOptions, Rewritten};
use onnx_posefix::tract_bridge;
use onnx_posefix::tract_onnx::prelude::DatumType;

/// What became of one input.
#[derive(Debug)]
pub enum Outcome {
    /// The bytes are not a model (`parse_model` said why).
    NotAModel(String),
    /// A model, refused with this one-line message.
    Refused(String),
    /// A model, rewritten and validated.
    Rewritten(Box<Rewritten>),
}

/// The loaded form of bytes, as `model_io::read_structure` makes it minus the file system.
pub fn load(bytes: &[u8]) -> Result<LoadedModel, String> {
    let proto = model_io::parse_structure(bytes).map_err(|e| e.to_string())?;
    Ok(LoadedModel::from_parts(bytes.to_vec(), proto))
}

/// Parses, rewrites and validates. `Err` means the contract was broken: a multi-line or empty
/// error, or a rewritten model that fails [`check_rewrite`].
pub fn exercise(bytes: &[u8], options: &RewriteOptions) -> Result<Outcome, String> {
    let model = match load(bytes) {
        Ok(model) => model,
        Err(reason) => return one_line(&reason).map(|()| Outcome::NotAModel(reason)),
    };
    match rewrite::rewrite(&model, options) {
        Err(e) => {
            let message = e.to_string();
            one_line(&message).map(|()| Outcome::Refused(message))
        }
        Ok(rewritten) => {
            check_rewrite(&model, options, &rewritten)?;
            Ok(Outcome::Rewritten(Box::new(rewritten)))
        }
    }
}

fn one_line(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("empty error message".into());
    }
    if message.contains('\n') || message.contains('\r') {
        return Err(format!("error message spans several lines: {message:?}"));
    }
    Ok(())
}

/// Every tensor the graph defines: graph inputs, initializers and node outputs.
fn defined(graph: &GraphProto) -> HashSet<&str> {
    let mut names: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    names.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    names.extend(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)));
    names
}

/// `structure` (a model parsed without its large weights) with the weights of `full` put back:
/// initializers match in order, by name, type and dims (pruning may have dropped some).
fn with_weights(structure: &ModelProto, full: &ModelProto) -> ModelProto {
    let mut model = structure.clone();
    let (Some(graph), Some(source)) = (model.graph.as_mut(), full.graph.as_ref()) else { return model };
    let mut from = 0;
    for t in graph.initializer.iter_mut() {
        let same = |s: &&TensorProto| s.name == t.name && s.data_type == t.data_type && s.dims == t.dims;
        if let Some(k) = source.initializer[from..].iter().position(|s| same(&s)) {
            if !model_io::has_data(t) {
                *t = source.initializer[from + k].clone();
            }
            from += k + 1;
        }
    }
    model
}

/// The cheap validation of a successful rewrite of `original` (see the module doc).
pub fn check_rewrite(original: &LoadedModel, options: &RewriteOptions, rewritten: &Rewritten) -> Result<(), String> {
    let original_bytes = original.file_bytes().to_vec();
    let bytes = rewritten.to_bytes(original).map_err(|e| format!("OUT does not encode: {e}"))?;
    let out = model_io::parse_model(&bytes).map_err(|e| format!("OUT does not decode: {e}"))?;
    // The splice carries the weights over: OUT reads as the rewritten structure plus IN's weights.
    let full_in = model_io::parse_model(original.file_bytes())
        .map_err(|e| format!("IN rewrote, but does not fully decode: {e}"))?;
    // Compared encoded: a NaN attribute is not equal to itself as a message.
    let expected = model_io::to_bytes(&with_weights(rewritten.model(), &full_in)).map_err(|e| e.to_string())?;
    if model_io::to_bytes(&out).map_err(|e| e.to_string())? != expected {
        return Err("OUT, decoded, is not the rewritten model with IN's weights".into());
    }
    let original = &full_in;
    let before = original.graph.as_ref().ok_or("IN has no graph")?;
    let after = out.graph.as_ref().ok_or("OUT has no graph")?;
    let keypoints = options.output_name.as_str();

    let mut want: Vec<&str> =
        if options.prune { vec![] } else { before.output.iter().map(|o| o.name.as_str()).collect() };
    want.push(keypoints);
    let got: Vec<&str> = after.output.iter().map(|o| o.name.as_str()).collect();
    if got != want {
        return Err(format!("OUT outputs are {got:?}, expected {want:?}"));
    }
    match after.output.last().and_then(declared_tensor) {
        Some((elem, Some(dims)))
            if elem == 1
                && dims.len() == 3
                && dims[1..] == [Dim::Fixed(NUM_KEYPOINTS as i64), Dim::Fixed(VALUES_PER_KEYPOINT as i64)] => {}
        other => return Err(format!("{keypoints} is declared as {other:?}, not float [N, 17, 3]")),
    }

    // The original nodes, untouched and in order (a subsequence when pruning), then ours.
    let ours_from = after.node.iter().position(|n| n.name.starts_with(NAME_PREFIX)).ok_or("OUT has no posefix node")?;
    let (kept, ours) = after.node.split_at(ours_from);
    if let Some(n) = ours.iter().find(|n| !n.name.starts_with(NAME_PREFIX)) {
        return Err(format!("node {:?} ({}) sits among the appended nodes", n.name, n.op_type));
    }
    // Compared encoded, as above.
    let encoded = |n: &onnx_posefix::onnx_protobuf::NodeProto| n.write_to_bytes().unwrap_or_default();
    let mut originals = before.node.iter().map(encoded);
    for n in kept {
        let n_bytes = encoded(n);
        if !originals.any(|o| o == n_bytes) {
            return Err(format!("node {:?} ({}) of OUT is not an original node in order", n.name, n.op_type));
        }
    }
    if !options.prune && kept.len() != before.node.len() {
        return Err(format!("OUT keeps {} of the {} original nodes", kept.len(), before.node.len()));
    }

    // Ours: fresh names, single definitions, inputs that exist before they are read.
    let taken_before: HashSet<&str> = defined(before)
        .into_iter()
        .chain(before.node.iter().flat_map(|n| n.input.iter().chain([&n.name]).map(String::as_str)))
        .chain(before.output.iter().chain(&before.value_info).map(|v| v.name.as_str()))
        .collect();
    let mut available: HashSet<&str> = after.input.iter().map(|i| i.name.as_str()).collect();
    available.extend(after.initializer.iter().map(|t| t.name.as_str()));
    available.extend(kept.iter().flat_map(|n| n.output.iter().map(String::as_str)));
    let initializers_before: HashSet<&str> = before.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut appended_initializers = HashSet::new();
    for t in after.initializer.iter().filter(|t| !initializers_before.contains(t.name.as_str())) {
        if taken_before.contains(t.name.as_str()) || !appended_initializers.insert(t.name.as_str()) {
            return Err(format!("appended initializer {} is not fresh", t.name));
        }
        if !t.name.starts_with(NAME_PREFIX) {
            return Err(format!("appended initializer {} is outside the {NAME_PREFIX} namespace", t.name));
        }
    }
    let mut node_names = HashSet::new();
    for n in ours {
        if taken_before.contains(n.name.as_str()) || !node_names.insert(n.name.as_str()) {
            return Err(format!("appended node name {} is not fresh", n.name));
        }
        if let Some(missing) = n.input.iter().find(|i| !available.contains(i.as_str())) {
            return Err(format!("appended node {} reads {missing}, which nothing defines before it", n.name));
        }
        for o in &n.output {
            if taken_before.contains(o.as_str()) || !available.insert(o.as_str()) {
                return Err(format!("appended node {} writes {o}, which is already defined", n.name));
            }
            if o != keypoints && !o.starts_with(NAME_PREFIX) {
                return Err(format!("appended node {} writes {o}, outside the {NAME_PREFIX} namespace", n.name));
            }
        }
    }
    if !available.contains(keypoints) {
        return Err(format!("nothing writes {keypoints}"));
    }
    if onnx_posefix::model::query::provenance(&out).is_none() {
        return Err("OUT carries no provenance metadata".into());
    }

    // tract typed IN, so it must type OUT; the pins are written into OUT's declarations.
    let facts =
        tract_bridge::infer_facts(&bytes, &[]).map_err(|e| match tract_bridge::infer_facts(&original_bytes, &[]) {
            Ok(_) => format!("tract cannot type OUT: {e}"),
            Err(in_error) => format!("IN was rewritten though tract cannot type it ({in_error}), nor OUT: {e}"),
        })?;
    let last = facts.outputs.iter().find(|o| o.name == keypoints).ok_or("tract does not see the keypoints output")?;
    let shape_ok = last.shape.as_ref().is_some_and(|d| {
        d.len() == 3 && d[1..] == [Dim::Fixed(NUM_KEYPOINTS as i64), Dim::Fixed(VALUES_PER_KEYPOINT as i64)]
    });
    if last.datum_type != Some(DatumType::F32) || !shape_ok {
        return Err(format!("tract types {keypoints} as {:?} {}", last.datum_type, last.shape_string()));
    }
    Ok(())
}

/// Options as command-line flags (`--prune`, `--input-shape [NAME:]D,..`, `--output-name N`),
/// the form the `.args` files beside `fuzz/regressions/*.onnx` use, one flag or value per line.
pub fn options_from_args(text: &str) -> Result<RewriteOptions, String> {
    let mut options = RewriteOptions::default();
    let mut words = text.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag {
            "--prune" => options.prune = true,
            "--input-shape" => options.input_shapes.push(value()?.parse::<InputShape>().map_err(|e| e.to_string())?),
            "--output-name" => options.output_name = value()?.to_string(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(options)
}

/// The inverse of [`options_from_args`].
pub fn options_to_args(options: &RewriteOptions) -> String {
    let mut lines = vec![];
    if options.prune {
        lines.push("--prune".to_string());
    }
    for shape in &options.input_shapes {
        lines.push("--input-shape".into());
        let dims = shape.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        lines.push(match &shape.name {
            Some(name) => format!("{name}:{dims}"),
            None => dims,
        });
    }
    if options.output_name != RewriteOptions::default().output_name {
        lines.push("--output-name".into());
        lines.push(options.output_name.clone());
    }
    lines.into_iter().map(|l| l + "\n").collect()
}
