//! REWRITTEN cut at the heads: the decoder as a model of its own, fed crafted heads.

use std::collections::HashSet;

use onnx_protobuf::{GraphProto, ModelProto};

use crate::contract::{FloatType, NUM_KEYPOINTS, VALUES_PER_KEYPOINT};
use crate::decoders::reroute;
use crate::model::io as model_io;
use crate::model::proto::{self, Dim};
use crate::model::query;
use crate::model::walk;

use crate::verify::setup::Setup;

/// Why the decoder cannot be cut out of REWRITTEN (the direct checks are then skipped).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Uncut {
    #[error("REWRITTEN has no graph")]
    NoGraph,
    #[error("the decoder reads graph input {0}, not only the heads")]
    ReadsInput(String),
    #[error("nothing in REWRITTEN produces {0}")]
    Unproduced(String),
    #[error("{0}")]
    Encode(Box<crate::error::Error>),
    #[error("tract cannot run the decoder cut at the heads: {0}")]
    Tract(Box<crate::error::Error>),
}

/// The decoder of `rewritten` that writes `outputs` (name, dims, all of `output_type`), as a
/// model of its own, serialized; its inputs are `heads` (name, shape, type), in that order.
pub(crate) fn cut(
    rewritten: &ModelProto,
    heads: &[(&str, &[usize], FloatType)],
    outputs: &[(&str, Vec<Dim>)],
    output_type: FloatType,
) -> Result<Vec<u8>, Uncut> {
    let graph = rewritten.graph.as_ref().ok_or(Uncut::NoGraph)?;
    let produced: HashSet<&str> = graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let head_names: Vec<&str> = heads.iter().map(|(name, _, _)| *name).collect();
    // Where the decoder reads a head through a copy or behind an Identity (crate::decoders::reroute), the
    // crafted head is fed there.
    let aliases = reroute::aliases(graph, &head_names, query::is_decoder_node);

    // Fed by the crafted heads where the decoder reads them; the weights are taken along.
    let fed = |t: &str| head_names.contains(&t) || aliases.contains_key(t);
    let output_names: Vec<&str> = outputs.iter().map(|(name, _)| *name).collect();
    let walk::Feeders { nodes: keep_nodes, tensors } =
        walk::feeders(graph, &output_names, |t| fed(t) || initializers.contains(t));
    let mut keep_inits = HashSet::new();
    for tensor in tensors.iter().filter(|t| !fed(t)) {
        if initializers.contains(tensor.as_str()) {
            keep_inits.insert(tensor.clone());
        } else if produced.contains(tensor.as_str()) {
            continue;
        } else if inputs.contains(tensor.as_str()) {
            return Err(Uncut::ReadsInput(tensor.clone()));
        } else {
            return Err(Uncut::Unproduced(tensor.clone()));
        }
    }

    let dims = |shape: &[usize]| shape.iter().map(|d| Dim::Fixed(*d as i64)).collect::<Vec<_>>();
    let mut g = GraphProto::new();
    g.name = "posefix_decoder_cut".to_string();
    for (name, shape, ty) in heads {
        g.input.push(proto::value_info(name, ty.onnx(), &dims(shape)));
    }
    // IR 3 wants initializers declared as inputs too; keep those declarations after the heads.
    g.input.extend(graph.input.iter().filter(|i| keep_inits.contains(&i.name)).cloned());
    let mut read: Vec<(&String, &String)> = aliases.iter().filter(|(alias, _)| tensors.contains(alias)).collect();
    read.sort();
    for (alias, head) in read {
        g.node.push(proto::node("Identity", &format!("{alias}_fed"), &[head], &[alias], vec![]));
    }
    g.node.extend(graph.node.iter().zip(&keep_nodes).filter(|(_, k)| **k).map(|(n, _)| n.clone()));
    g.initializer = graph.initializer.iter().filter(|t| keep_inits.contains(&t.name)).cloned().collect();
    for (name, dims) in outputs {
        g.output.push(proto::value_info(name, output_type.onnx(), dims));
    }

    let mut model = ModelProto::new();
    model.ir_version = rewritten.ir_version;
    model.opset_import = rewritten.opset_import.clone();
    model.functions = rewritten.functions.clone();
    model.producer_name = "onnx-posefix verify".to_string();
    model.graph = Some(g).into();
    model_io::to_bytes(&model).map_err(|e| Uncut::Encode(Box::new(e)))
}

/// [`cut`] at the single-pose decoder: inputs heatmaps then offsets, output `keypoints`.
pub(crate) fn cut_single_pose(rewritten: &ModelProto, setup: &Setup) -> Result<Vec<u8>, Uncut> {
    let d = &setup.spec.settings;
    let batch = Dim::Fixed(setup.heatmaps_shape[0] as i64);
    let out = vec![batch, Dim::Fixed(NUM_KEYPOINTS as i64), Dim::Fixed(VALUES_PER_KEYPOINT as i64)];
    let heads = [
        (d.heatmaps.as_str(), setup.heatmaps_shape.as_slice(), setup.head_type(&d.heatmaps)),
        (d.offsets.as_str(), setup.offsets_shape.as_slice(), setup.head_type(&d.offsets)),
    ];
    cut(rewritten, &heads, &[(&d.output, out)], setup.output_type)
}
