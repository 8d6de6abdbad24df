//! Generators for tests, benchmarks, examples and fuzzing: synthetic PoseNet-shaped models and a
//! seeded random number generator. Compiled only with the `testing` feature, which the crate's
//! own tests, benches and examples turn on (a dev-dependency on itself); the product never
//! carries them.

pub mod render;
pub mod synthetic;

pub use crate::rng;

/// A rewritten model's decoder cut at its heads, as `verify` cuts it for its direct checks: a
/// model whose inputs are `heads` (name, shape, type; in that order) and whose outputs are
/// `outputs` (name, dims), all of `output_type`, holding the nodes that compute them from the
/// heads and initializers; serialized. The benchmarks time a decoder alone with it. An error
/// says why it cannot be cut (the decoder reads another graph input, say).
#[cfg(not(target_arch = "wasm32"))]
pub fn cut_at_heads(
    rewritten: &onnx_protobuf::ModelProto,
    heads: &[(&str, &[usize], crate::contract::FloatType)],
    outputs: &[(&str, Vec<crate::model::proto::Dim>)],
    output_type: crate::contract::FloatType,
) -> Result<Vec<u8>, String> {
    crate::verify::direct::cut(rewritten, heads, outputs, output_type).map_err(|e| e.to_string())
}
