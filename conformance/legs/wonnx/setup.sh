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
python="${PYTHON:-python3}"
requirements="$leg/requirements.txt"
started=$SECONDS

# 1. lavapipe + the Vulkan loader, only when missing.
missing=()
for pkg in mesa-vulkan-drivers libvulkan1; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "wonnx leg: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ ! -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]]; then
    echo "wonnx leg: lavapipe's ICD file /usr/share/vulkan/icd.d/lvp_icd.x86_64.json is missing" >&2
    exit 1
fi

# 2. The venv, reused while the pins and the interpreter are the same.
want="$("$python" - "$requirements" <<'PY'
import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read() + sys.version.encode()).hexdigest())
PY
)"
stamp="$venv/.posefix-requirements"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "wonnx leg: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
        -r "$requirements"
    "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
    echo "$want" >"$stamp"
fi

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
