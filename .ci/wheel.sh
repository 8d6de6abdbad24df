#!/usr/bin/env bash
# The wheel, as a Python user gets it: maturin (pinned, from PyPI) builds it from pyproject.toml,
# a fresh venv installs it with pip, and the `onnx-posefix` that pip put on that venv's PATH
# rewrites and verifies the bundled model. .ci/run calls it after the tests.
#
# The wheel is built with the dev profile, whose dependencies (tract above all) `cargo test` has
# already built in the same target directory: a release build would compile tract a second time
# (about 17 minutes on 2 cores), for a wheel that only CI installs. A release wheel for users is
# `maturin build --release`. Nothing is downloaded but maturin's wheel from PyPI: no zig (no
# --zig), no toolchain or target (the host's, as cargo has it), no other index for the install.
#
# Needs python3 with venv and pip. Everything lands in target/wheel-check/ (rebuilt each run).
# Environment: PYTHON (default python3), CARGO_TARGET_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/wheel-check"
python="${PYTHON:-python3}"
maturin_version="1.16.0"
started=$SECONDS

rm -rf "$work"
mkdir -p "$work"
"$python" -m venv "$work/build-venv"
"$work/build-venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "maturin==$maturin_version"
"$work/build-venv/bin/maturin" build --locked --profile dev --out "$work/wheels"
wheels=("$work"/wheels/onnx_posefix-*.whl)
if ((${#wheels[@]} != 1)) || [[ ! -f "${wheels[0]}" ]]; then
    echo "wheel: expected one onnx_posefix wheel in $work/wheels, found: ${wheels[*]}" >&2
    exit 1
fi
echo "wheel: built $(basename "${wheels[0]}") in $((SECONDS - started))s"

# A fresh venv, the wheel alone (it has no dependencies), and the command from that venv's PATH,
# run outside the repository.
"$python" -m venv "$work/user-venv"
"$work/user-venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
    "${wheels[0]}"
cd "$work"
export PATH="$work/user-venv/bin:$PATH"
installed="$(command -v onnx-posefix)"
if [[ "$installed" != "$work/user-venv/bin/onnx-posefix" ]]; then
    echo "wheel: onnx-posefix on the PATH is $installed, not the venv's" >&2
    exit 1
fi
onnx-posefix --version
onnx-posefix "$root/models/posenet-mobilenet075-257.onnx" posenet-keypoints.onnx --verify | tee run.txt
[[ -s posenet-keypoints.onnx ]] || { echo "wheel: no posenet-keypoints.onnx written" >&2; exit 1; }
grep -q '^wrote posenet-keypoints.onnx: keypoints \[1, 17, 3\]' run.txt ||
    { echo "wheel: no summary line for the rewrite" >&2; exit 1; }
grep -q '^summary: .*: all equal$' run.txt || { echo "wheel: verification did not say all equal" >&2; exit 1; }
echo "wheel: installed and ran in $((SECONDS - started))s"
