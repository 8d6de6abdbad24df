#!/usr/bin/env bash
# The page, locally: builds it (web/build.sh) and serves web/ on http://127.0.0.1:${PORT:-8000}/
# with Python's static server. Open that address; Ctrl-C stops the server.
set -euo pipefail
web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$web/build.sh"
port="${PORT:-8000}"
echo "onnx-posefix page: http://127.0.0.1:$port/"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$web"
