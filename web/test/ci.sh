#!/usr/bin/env bash
# CI's test of the browser page (.ci/run calls it after `cargo test`, which built the CLI and the
# decode_page example): installs Chromium and the pinned npm packages (conformance/legs/ort_web's
# setup.sh, shared with that leg), builds the page (web/build.sh: the wasm32 target, then the
# wasm; about 10 minutes cold), then web/test/run.mjs drives the page in headless Chromium
# and checks it against the CLI and the reference decoders, with the page's own short saving
# measurement at start (WebGPU, on SwiftShader: Chromium runs with --enable-unsafe-webgpu
# --use-webgpu-adapter=swiftshader) and one on wasm (the figures come from `cargo bench --bench
# posefix -- web`), then the fallbacks in a Chromium without WebGPU and one without WebGL either.
# The screenshots and results land in web/out/. About 1.5 minutes once built with WebGL first;
# with WebGPU first 8 minutes under a load average of 13 (SwiftShader's WebGPU runs the model in
# 5 to 12 s a frame there): an upper bound.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started=$SECONDS
bash conformance/legs/ort_web/setup.sh
bash web/build.sh
echo "web test: page built in $((SECONDS - started))s"
# The wasm crate's own lints (the library's run in .ci/run; this crate builds only for wasm32).
(cd web/wasm && cargo clippy --locked --target wasm32-unknown-unknown -- -D warnings)
cargo build --locked --features cli --bin onnx-posefix --example decode_page
target="${CARGO_TARGET_DIR:-target}"
node web/test/run.mjs --cli "$target/debug/onnx-posefix" --decode "$target/debug/examples/decode_page" \
    --out web/out --measure --frames 3 --warmup 1 --sizes model --backends wasm
echo "web test: done in $((SECONDS - started))s"
