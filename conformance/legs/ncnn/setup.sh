#!/usr/bin/env bash
# Installs the ncnn conformance leg (idempotent, non-interactive; run as root by CI):
# - Debian: mesa-vulkan-drivers (lavapipe, Mesa's software Vulkan driver) and libvulkan1 (the
#   Vulkan loader ncnn opens at run time), for the ncnn-vulkan runtime;
# - PyPI: ncnn and pnnx pinned in requirements.txt, into a venv at
#   ${CARGO_TARGET_DIR:-<repo>/target}/legs/ncnn-venv (rebuilt when the pins or the Python change).
# Environment: PYTHON (default python3), NCNN_LEG_VENV (venv location).
set -euo pipefail

leg="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$leg/../../.." && pwd)"
venv="${NCNN_LEG_VENV:-${CARGO_TARGET_DIR:-$root/target}/legs/ncnn-venv}"

source "$root/conformance/install.sh"
apt_install "ncnn leg" mesa-vulkan-drivers libvulkan1
# --no-deps: see requirements.txt (pnnx declares torch; ncnn declares its model_zoo's needs).
pinned_venv "ncnn leg" "$venv" "$leg/requirements.txt" --no-deps

# Smoke test: the binding imports, the converter binary runs, and a Vulkan device shows up.
"$venv/bin/python" - <<'PY'
import importlib.util, pathlib, subprocess
import ncnn
pnnx = pathlib.Path(list(importlib.util.find_spec("pnnx").submodule_search_locations)[0]) / "pnnx"
out = subprocess.run([str(pnnx)], capture_output=True, text=True)
assert "Usage: pnnx" in out.stdout + out.stderr, f"pnnx binary {pnnx} does not run"
gpus = [ncnn.get_gpu_info(i).device_name() for i in range(ncnn.get_gpu_count())]
print(f"ncnn leg: ncnn {ncnn.__version__}, pnnx binary {pnnx}, Vulkan devices: {gpus or 'none'}")
PY
