//! Raw bytes through parse, rewrite (default options) and the cheap validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_posefix::rewrite::RewriteOptions;

fuzz_target!(|bytes: &[u8]| {
    onnx_posefix_fuzz::run(bytes, &RewriteOptions::default());
});
