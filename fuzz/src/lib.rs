//! Fuzzing onnx-posefix: the harness shared with the integration tests, and the structured
//! mutations of synthetic models. The targets are in `fuzz_targets/`.

pub mod harness;
pub mod mutate;

use onnx_posefix::rewrite::RewriteOptions;

/// The body of every target: any violation of the contract is a crash.
pub fn run(bytes: &[u8], options: &RewriteOptions) {
    if let Err(violation) = harness::exercise(bytes, options) {
        panic!("contract violated: {violation}");
    }
}
