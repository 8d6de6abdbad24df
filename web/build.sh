#!/usr/bin/env bash
# Builds the page's WebAssembly (web/wasm, release) and stages what the page loads into web/pkg/:
# posefix_wasm.wasm, the bundled model and photo, and onnxruntime-web's dist (a link to
# conformance/legs/ort_web's pinned node_modules, installed there with `npm ci` when npm is on
# the PATH; without it the page takes the same version from jsDelivr), and for web/bench.mjs a
# link to conformance/tfjs's posenet package when it is installed. The first build compiles
# tract for wasm32: about 10 minutes on 2 cores (measured: 10 min 0 s cold); then seconds.
set -euo pipefail
web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$web")"

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# Its own target directory, whatever CARGO_TARGET_DIR says (the copy below looks there).
(cd "$web/wasm" && CARGO_TARGET_DIR="$web/wasm/target" cargo build --release --locked --target wasm32-unknown-unknown)

mkdir -p "$web/pkg"
cp "$web/wasm/target/wasm32-unknown-unknown/release/posefix_wasm.wasm" "$web/pkg/"
cp "$root/models/posenet-mobilenet075-257.onnx" "$root/samples/astronaut.png" "$web/pkg/"
ort_web="$root/conformance/legs/ort_web"
if [[ ! -d "$ort_web/node_modules/onnxruntime-web/dist" ]] && command -v npm >/dev/null; then
    (cd "$ort_web" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) ||
        echo "web/build.sh: npm ci failed; the page will load onnxruntime-web from jsDelivr" >&2
fi
rm -f "$web/pkg/ort"
if [[ -d "$ort_web/node_modules/onnxruntime-web/dist" ]]; then
    ln -s "$ort_web/node_modules/onnxruntime-web/dist" "$web/pkg/ort"
fi
# For web/bench.mjs (the bench's web section): @tensorflow-models/posenet 2.2.2's published
# decoders, pinned in conformance/tfjs (installed there by its `npm ci`); the page does not use them.
rm -f "$web/pkg/posenet"
posenet="$root/conformance/tfjs/node_modules/@tensorflow-models/posenet/dist"
if [[ -d "$posenet" ]]; then
    ln -s "$posenet" "$web/pkg/posenet"
fi
