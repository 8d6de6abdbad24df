#!/usr/bin/env python3
"""onnx2tf worker: converts ONNX models with the onnx2tf command line and runs the .tflite files it
writes with LiteRT (ai-edge-litert).

Runs in the leg's own venv (setup.sh), started by runtime.py. One JSON request per line on stdin,
one JSON answer per line on the protocol channel (the original stdout; fd 1 itself is pointed at
stderr so that nothing LiteRT prints can corrupt the protocol). Arrays travel as .npy files in a
temporary folder owned by the caller. TensorFlow is never imported here: onnx2tf runs as a
subprocess, as a user runs it.

Requests:
  {"op": "hello"} -> {"ok": true, "onnx2tf": version, "litert": version, "tensorflow": version}
  {"op": "load", "path": model.onnx, "flavor": "float32"|"float16", "calibration": npy or null}
     -> {"ok": true, "handle": int, "inputs": [[name, shape, dtype]], "outputs": [[name, shape,
        dtype]], "onnx2tf": {...}} | {"ok": false, "error": one line, "onnx2tf": {...}}
  {"op": "run", "handle": int, "inputs": {name: x.npy}, "out_dir": dir}
     -> {"ok": true, "outputs": {name: npy path}}
  {"op": "free", "handle": int}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np

_proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

ONNX2TF = Path(sys.executable).parent / "onnx2tf"
# The sample images onnx2tf downloads at every conversion of a model whose input looks like a
# batch of RGB images (onnx2tf.utils.common_functions.download_test_image_data, from onnx2tf's
# GitHub release; unreachable here), unless a file of this name is in the working folder. onnx2tf
# feeds them (resized) to onnxruntime to check its own per-op conversions.
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CACHE = Path(tempfile.mkdtemp(prefix="onnx2tf-leg-"))
CONVERTED: dict[str, dict] = {}
MODELS: dict[int, tuple] = {}


def one_line(text):
    return re.sub(r"\s*\n\s*", " | ", str(text).strip())


def failure_summary(log):
    """What onnx2tf says when a conversion fails, on one line: the node it stopped at (its
    `ERROR: onnx_op_name:` line, with the op type from its progress lines), the exception and its
    first line of detail (TensorFlow's own message), and onnx2tf's first piece of advice."""
    lines = [ANSI.sub("", line).rstrip() for line in log.splitlines()]
    found = []
    names = [m.group(1) for line in lines for m in [re.match(r"ERROR: onnx_op_name: (\S+)", line)] if m]
    if names:
        types = [m.group(1) for line in lines
                 for m in [re.match(rf"INFO: onnx_op_type: (\S+) onnx_op_name: {re.escape(names[-1])}$", line)] if m]
        found.append(f"node {names[-1]}" + (f" ({types[-1]})" if types else ""))
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", line):
            detail = next((l.strip() for l in lines[i + 1:i + 4] if l.strip()), "")
            found.append(f"{line.strip()[:200]} {detail[:300]}".strip())
            break
    advice = [line for line in lines if line.startswith("ERROR:") and ("-kt" in line or "-b or -ois" in line)]
    found += [a[len("ERROR: "):][:160] for a in advice[:1]]
    if not found:
        found = [line for line in lines if line.strip()][-3:]
    return " | ".join(found)


def convert(path, calibration):
    """`onnx2tf -i model.onnx -o out` (onnx2tf's defaults), cached by the model's content."""
    data = Path(path).read_bytes()
    key = hashlib.sha256(data).hexdigest()[:20]
    if key in CONVERTED:
        return CONVERTED[key]
    work = CACHE / key
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.onnx").write_bytes(data)
    if calibration:
        shutil.copyfile(calibration, work / CALIBRATION_FILE)
    cmd = [str(ONNX2TF), "-i", "model.onnx", "-o", "out"]
    started = time.monotonic()
    # The venv's bin first on PATH, as in an activated venv: onnx2tf runs the `onnxsim` command
    # (onnx-simplifier) as a subprocess, and skips the simplification when it is not found.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1",
               PATH=f"{ONNX2TF.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, errors="replace", timeout=1800, env=env)
    log = proc.stdout + proc.stderr
    (work / "onnx2tf.log").write_text(log)
    files = {flavor: work / "out" / f"model_{flavor}.tflite" for flavor in ("float32", "float16")}
    info = {"cmd": "onnx2tf -i model.onnx -o out", "rc": proc.returncode,
            "seconds": round(time.monotonic() - started, 2), "log": str(work / "onnx2tf.log"),
            "tflite": {k: str(v) for k, v in files.items() if v.is_file()}}
    info["ok"] = proc.returncode == 0 and len(info["tflite"]) == 2
    if not info["ok"]:
        info["error"] = f"onnx2tf failed (exit {proc.returncode}): {failure_summary(log)}"
    CONVERTED[key] = info
    return info


def details(items):
    """[signature name, shape, dtype] of a signature's inputs or outputs (keyed by the names the
    signature gives them: the ONNX names; each detail's own `name` is the tensor's)."""
    return [[name, [int(v) for v in d["shape"]], np.dtype(d["dtype"]).name] for name, d in items.items()]


def do_load(req):
    info = convert(req["path"], req.get("calibration"))
    pub = {k: info.get(k) for k in ("cmd", "rc", "seconds", "log", "tflite")}
    if not info["ok"]:
        return {"ok": False, "error": info["error"], "onnx2tf": pub}
    # LiteRT at its defaults, as its docs show it: an Interpreter (the XNNPACK delegate applied by
    # default) and the model's signature, which takes and gives tensors by their ONNX names.
    interpreter = Interpreter(model_path=info["tflite"][req["flavor"]])
    runner = interpreter.get_signature_runner()
    handle = max(MODELS, default=0) + 1
    MODELS[handle] = (interpreter, runner)
    ops = sorted({d["op_name"] for d in interpreter._get_ops_details()})
    return {"ok": True, "handle": handle, "inputs": details(runner.get_input_details()),
            "outputs": details(runner.get_output_details()), "ops": ops, "onnx2tf": pub}


def do_run(req):
    _, runner = MODELS[req["handle"]]
    feeds = {name: np.load(path) for name, path in req["inputs"].items()}
    outs = runner(**feeds)
    out_dir = Path(req["out_dir"])
    paths = {}
    for i, (name, arr) in enumerate(outs.items()):
        p = out_dir / f"out{i}.npy"
        np.save(p, np.asarray(arr))
        paths[name] = str(p)
    return {"ok": True, "outputs": paths}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "hello":
                ans = {"ok": True, "onnx2tf": version("onnx2tf"), "litert": version("ai-edge-litert"),
                       "tensorflow": version("tensorflow")}
            elif op == "load":
                ans = do_load(req)
            elif op == "run":
                ans = do_run(req)
            elif op == "free":
                MODELS.pop(req["handle"], None)
                ans = {"ok": True}
            else:
                ans = {"ok": False, "error": f"unknown op {op}"}
        except Exception as exc:  # noqa: BLE001
            ans = {"ok": False, "error": one_line(f"{type(exc).__name__}: {exc}"),
                   "trace": traceback.format_exc()[-2000:]}
        _proto.write(json.dumps(ans) + "\n")
        _proto.flush()
    MODELS.clear()
    shutil.rmtree(CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
