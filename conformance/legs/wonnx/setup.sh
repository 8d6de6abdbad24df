#!/usr/bin/env bash
# Installs the wonnx leg: Mesa's lavapipe software Vulkan driver (Debian's mesa-vulkan-drivers and
# the Vulkan loader libvulkan1) and a venv with the pinned wonnx + onnxsim wheels
# (requirements.txt). Idempotent and non-interactive; apt-get needs root (CI runs it as root).
#
# The venv lives in ${CARGO_TARGET_DIR:-<repo>/target}/legs/wonnx-venv (POSEFIX_WONNX_VENV
# overrides it) and is rebuilt when requirements.txt or the interpreter changes.
# Environment: PYTHON (default python3, must be CPython 3.11+ on Linux x86_64).
set -euo pipefail

leg="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$leg/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="${POSEFIX_WONNX_VENV:-$target/legs/wonnx-venv}"
requirements="$leg/requirements.txt"
started=$SECONDS

source "$root/conformance/install.sh"
# 1. lavapipe + the Vulkan loader.
apt_install "wonnx leg" mesa-vulkan-drivers libvulkan1
if [[ ! -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]]; then
    echo "wonnx leg: lavapipe's ICD file /usr/share/vulkan/icd.d/lvp_icd.x86_64.json is missing" >&2
    exit 1
fi

# 2. The venv (--no-deps: every dependency is pinned in requirements.txt).
pinned_venv "wonnx leg" "$venv" "$requirements" --no-deps
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null

# 3. Smoke test: wonnx finds the lavapipe device and runs a one-node model.
xdg="$(mktemp -d)"
trap 'rm -rf "$xdg"' EXIT
XDG_RUNTIME_DIR="$xdg" RUST_BACKTRACE=0 WGPU_BACKEND=vulkan \
VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.x86_64.json}" \
"$venv/bin/python" - <<'PY'
import os, tempfile
import numpy as np
import onnx
from onnx import TensorProto, helper
import wonnx

g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "smoke",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "relu.onnx")
    onnx.save(m, p)
    y = wonnx.Session.from_path(p).run({"x": np.array([-1, 2, -3, 4], np.float32)})["y"]
assert list(y) == [0.0, 2.0, 0.0, 4.0], y
PY
echo "wonnx leg: ready ($("$venv/bin/python" -c 'from importlib.metadata import version as v; print("wonnx", v("wonnx"), "onnxsim", v("onnxsim"))'), $((SECONDS - started)) s)"
