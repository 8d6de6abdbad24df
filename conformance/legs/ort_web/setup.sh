#!/usr/bin/env bash
# Installs the ort_web conformance leg (onnxruntime-web in headless Chromium). Idempotent and
# non-interactive; run as root on Debian 12 with node 20 + npm. What it installs:
# - Debian's `chromium` (156.x, from bookworm-security), which ships SwiftShader: WebGL 2 runs in
#   software, no GPU or mesa package needed;
# - the npm packages pinned in package.json / package-lock.json (onnxruntime-web, puppeteer-core),
#   with `npm ci` into node_modules/ beside this file. puppeteer-core downloads no browser; install
#   scripts are not run (none is needed).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
started=$SECONDS

source "$here/../../install.sh"
apt_install "ort_web setup" chromium
/usr/bin/chromium --version 2>/dev/null | grep -i chromium

want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
stamp="$here/node_modules/.posefix-lock-sha256"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "ort_web setup: npm ci"
    (cd "$here" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    echo "$want" >"$stamp"
fi
node -e 'for (const p of ["onnxruntime-web", "puppeteer-core"]) console.log(p, require(process.argv[1] + "/node_modules/" + p + "/package.json").version)' "$here"
echo "ort_web setup: done in $((SECONDS - started))s"
