#!/usr/bin/env bash
# Cross-runtime conformance suite: rewrites a matrix of generated PoseNet-like models and the real
# model (and float16 conversions of some, conformance/fp16_models.py), then checks the rewritten
# models with onnx.checker and runs them in onnxruntime and OpenCV DNN against the reference
# decoders (see conformance/check.py; the multi-pose models' heads are decoded by the Rust
# reference through the decode_multi_pose example).
#
# Needs python3 (with venv and pip), cargo and network access to PyPI on the first run. The venv
# lives in target/conformance-venv and is rebuilt when requirements.txt or the Python changes;
# models and report.json go to target/conformance/. Extra arguments go to check.py; with
# `--legs ort_web,ncnn,wonnx,onnx2tf` each leg's conformance/legs/LEG/setup.sh installs its runtime
# first (Debian packages with apt-get, so as root, and pinned npm or PyPI packages; onnx2tf, its
# TensorFlow and LiteRT in a venv of their own). check.py's --models REGEX and --runtimes NAMES
# narrow a run down while debugging a leg.
#
# Environment: PYTHON (default python3), POSEFIX_CONFORMANCE_VENV (venv location).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="${POSEFIX_CONFORMANCE_VENV:-$target/conformance-venv}"
out="$target/conformance"
requirements="$root/conformance/requirements.txt"

source "$root/conformance/install.sh"
pinned_venv conformance "$venv" "$requirements"
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null

# The thin-runtime legs named by --legs (as in check.py) install what they need.
legs=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --legs) legs="${args[i + 1]:-}" ;;
        --legs=*) legs="${args[i]#--legs=}" ;;
    esac
done
for leg in ${legs//,/ }; do
    bash "$root/conformance/legs/$leg/setup.sh"
done

rm -rf "$out"
# One build for the model writer, the multi-pose reference check.py runs on the heads of each run
# of the multi-pose models, and the binary that rewrites the float16 variants.
cargo build --quiet --manifest-path "$root/Cargo.toml" --example conformance_models --example decode_multi_pose \
    --features cli --bin onnx-posefix
"$target/debug/examples/conformance_models" "$out"
# The float16 variants: originals converted by onnxconverter-common, rewritten by the binary.
"$venv/bin/python" "$root/conformance/fp16_models.py" "$out" --posefix "$target/debug/onnx-posefix"
exec "$venv/bin/python" "$root/conformance/check.py" "$out" \
    --multi-pose-reference "$target/debug/examples/decode_multi_pose" "$@"
