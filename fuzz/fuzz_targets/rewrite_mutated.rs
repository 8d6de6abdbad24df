//! A synthetic PoseNet under structured mutations, through parse, rewrite and the cheap
//! validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onnx_posefix_fuzz::mutate::Case;

fuzz_target!(|case: Case| {
    onnx_posefix_fuzz::run(&case.bytes(), &case.options());
});
