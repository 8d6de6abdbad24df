#!/usr/bin/env bash
# Installs the onnx2tf conformance leg (idempotent, non-interactive): onnx2tf, its TensorFlow and
# LiteRT (ai-edge-litert), pinned in requirements.txt, into a venv of its own at
# ${CARGO_TARGET_DIR:-<repo>/target}/legs/onnx2tf-venv (rebuilt when the pins or the Python
# change). No Debian packages.
# Environment: PYTHON (default python3), ONNX2TF_LEG_VENV (venv location).
set -euo pipefail

leg="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$leg/../../.." && pwd)"
venv="${ONNX2TF_LEG_VENV:-${CARGO_TARGET_DIR:-$root/target}/legs/onnx2tf-venv}"

source "$root/conformance/install.sh"
started=$SECONDS
pinned_venv "onnx2tf leg" "$venv" "$leg/requirements.txt"
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null

# Smoke test: LiteRT imports and the onnx2tf command is there (its import of TensorFlow is left to
# the first conversion).
"$venv/bin/python" - "$venv" <<'PY'
import sys
from importlib.metadata import version
from pathlib import Path
from ai_edge_litert.interpreter import Interpreter  # noqa: F401
assert (Path(sys.argv[1]) / "bin" / "onnx2tf").is_file(), "no onnx2tf command in the venv"
print(f"onnx2tf leg: onnx2tf {version('onnx2tf')}, tensorflow {version('tensorflow')}, "
      f"ai-edge-litert {version('ai-edge-litert')}")
PY
echo "onnx2tf leg: set up in $((SECONDS - started)) s"
