#!/usr/bin/env python3
"""ncnn worker: converts ONNX models with pnnx and runs them with ncnn's Python binding.

Runs in the leg's own venv (setup.sh), started by runtime.py. One JSON request per line on stdin,
one JSON answer per line on the protocol channel (the original stdout; fd 1 itself is pointed at
stderr so that nothing ncnn or pnnx prints can corrupt the protocol). Arrays travel as .npy files
in a temporary folder owned by the caller.

Requests:
  {"op": "hello"} -> {"ok": true, "ncnn": version, "pnnx": version, "gpu": [names]}
  {"op": "load", "path": model.onnx, "inputshape": [1,3,257,257], "backend": "cpu"|"vulkan",
   "options": {...}} -> {"ok": true, "handle": int, "outputs": [ncnn names], "pnnx": {...}}
                      | {"ok": false, "error": one line, "pnnx": {...}}
  {"op": "run", "handle": int, "inputs": [x.npy, ...] (one item each, batch axis of 1 kept),
   "out_dir": dir}
     -> {"ok": true, "outputs": [[ncnn name, npy path, ncnn dims], ...]} | {"ok": false, "error": ...}
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
from pathlib import Path

import numpy as np

# The protocol channel is a private copy of stdout; fd 1 then goes to stderr.
_proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)

import importlib.util  # noqa: E402

import ncnn  # noqa: E402

# The converter binary the pnnx wheel ships (site-packages/pnnx/pnnx). The package itself is not
# imported: pnnx/__init__.py imports pnnx.utils.export, which imports torch (not installed).
PNNX = Path(list(importlib.util.find_spec("pnnx").submodule_search_locations)[0]) / "pnnx"

try:
    import importlib.metadata as _md

    PNNX_VERSION = _md.version("pnnx")
except Exception:  # noqa: BLE001
    PNNX_VERSION = "unknown"

# Layer types in an .ncnn.param that ncnn cannot create: pnnx writes an op it could not convert
# under its pnnx name (torch.eq, Tensor.to, F.xxx, aten::xxx, prim::xxx, pnnx.xxx) or, for an ONNX
# op it does not know, the ONNX op name itself.
UNCONVERTED = re.compile(r"^(torch\.|Tensor\.|F\.|nn\.|aten::|prim::|pnnx\.|onnx\.)")

CACHE = Path(tempfile.mkdtemp(prefix="ncnn-leg-"))
NETS: dict[int, "ncnn.Net"] = {}
CONVERTED: dict[str, dict] = {}


class StderrCapture:
    """Captures what native code writes to fd 2 (ncnn's NCNN_LOGE) while active."""

    def __enter__(self):
        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        return False


def param_layers(param_path):
    """(type, name) of every layer line of an .ncnn.param."""
    lines = Path(param_path).read_text().splitlines()
    return [tuple(line.split()[:2]) for line in lines[2:] if line.strip()]


def convert(path, inputshape, fp16):
    """Runs pnnx on the ONNX model (cached by content, input shape and fp16 flag). `inputshape`
    is a list of dims, or pnnx's own string for several inputs ("[1,17,9,9],[1,34,9,9]")."""
    data = Path(path).read_bytes()
    if isinstance(inputshape, str):
        shape_arg = inputshape
    else:
        shape_arg = "[" + ",".join(str(int(d)) for d in inputshape) + "]"
    key = hashlib.sha256(data + shape_arg.encode() + bytes([fp16])).hexdigest()[:20]
    if key in CONVERTED:
        return CONVERTED[key]
    work = CACHE / key
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.onnx"
    model.write_bytes(data)
    cmd = [str(PNNX), model.name, f"inputshape={shape_arg}", f"fp16={int(fp16)}"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, errors="replace", timeout=600)
    seconds = time.monotonic() - started
    log = proc.stdout + proc.stderr
    param, binf = work / "model.ncnn.param", work / "model.ncnn.bin"
    script = work / "model_ncnn.py"
    info = {
        "cmd": " ".join(["pnnx"] + cmd[1:]),
        "rc": proc.returncode,
        "seconds": round(seconds, 3),
        "param": str(param),
        "bin": str(binf),
        "log_tail": log[-4000:],
        "ok": proc.returncode == 0 and param.is_file() and binf.is_file(),
    }
    # pnnx's generated test script says, per input and output, which axis ncnn drops: 0 (the batch
    # axis) or 233 (none: pnnx found no batch axis and keeps every dim). The leg feeds and reads
    # blobs exactly as that script does.
    if script.is_file():
        text = script.read_text()
        info["input_batch_index"] = {
            name: int(bi) for name, bi in re.findall(r'ex\.input\("([^"]+)", ncnn\.Mat\(.*?batch_index=(\d+)\)', text)}
        var_bi = dict(re.findall(r'(\w+)\.numpy\(batch_index=(\d+)\)', text))
        info["output_batch_index"] = {
            name: int(var_bi[var]) if var in var_bi else None
            for var, name in re.findall(r'_, (\w+) = ex\.extract\("([^"]+)"\)', text)}
    # Ops of the source graph pnnx did not convert: they land in the ncnn param under their pnnx
    # (or ONNX) names. Every layer type is also checked against ncnn's registry.
    if param.is_file():
        layers = param_layers(param)
        info["layers"] = sorted({t for t, _ in layers})
        info["unconverted"] = sorted({t for t, _ in layers if UNCONVERTED.match(t) or not layer_exists(t)})
    # pnnx's own complaints (lines like "ignore ...", "unsupported ...", "fallback ...").
    info["messages"] = sorted({line.strip() for line in log.splitlines()
                               if re.search(r"ignore|unsupported|not supported|fallback|error|failed|warn",
                                            line, re.I) and "cpuid_info" not in line})[:40]
    CONVERTED[key] = info
    return info


_LAYER_CACHE: dict[str, bool] = {}


def layer_exists(layer_type):
    if layer_type not in _LAYER_CACHE:
        try:
            with StderrCapture():
                layer = ncnn.create_layer(layer_type)
            _LAYER_CACHE[layer_type] = layer is not None
        except Exception:  # noqa: BLE001
            _LAYER_CACHE[layer_type] = False
    return _LAYER_CACHE[layer_type]


def make_net(backend, options):
    net = ncnn.Net()
    opt = net.opt
    for key, value in (options or {}).items():
        setattr(opt, key, value)
    if backend == "vulkan":
        if ncnn.get_gpu_count() < 1:
            raise RuntimeError("ncnn finds no Vulkan device")
        opt.use_vulkan_compute = True
        net.set_vulkan_device(0)
    else:
        opt.use_vulkan_compute = False
    return net


def do_load(req):
    info = convert(req["path"], req.get("inputshapes") or req["inputshape"], int(req.get("fp16", 1)))
    pub = {k: info.get(k) for k in ("cmd", "rc", "seconds", "layers", "unconverted", "messages",
                                    "input_batch_index", "output_batch_index")}
    if not info["ok"]:
        tail = [line for line in info["log_tail"].splitlines() if line.strip()][-3:]
        return {"ok": False, "error": f"pnnx failed (exit {info['rc']}): " + " | ".join(tail), "pnnx": pub}
    net = make_net(req.get("backend", "cpu"), req.get("options"))
    started = time.monotonic()
    with StderrCapture() as cap:
        rp = net.load_param(info["param"])
        rm = net.load_model(info["bin"]) if rp == 0 else None
    pub["load_seconds"] = round(time.monotonic() - started, 3)
    if rp != 0 or rm != 0:
        msg = " | ".join(l.strip() for l in cap.text.splitlines() if l.strip() and "llvmpipe" not in l)
        what = "load_param" if rp != 0 else "load_model"
        left = f" (pnnx left unconverted: {', '.join(info['unconverted'])})" if info.get("unconverted") else ""
        del net
        return {"ok": False, "error": f"ncnn {what} failed ({rp if rp != 0 else rm}): {msg or 'no message'}{left}",
                "pnnx": pub}
    handle = len(NETS) + 1
    while handle in NETS:
        handle += 1
    NETS[handle] = (net, info)
    return {"ok": True, "handle": handle, "inputs": list(net.input_names()),
            "outputs": output_order(net, info), "pnnx": pub}


def output_order(net, info):
    """The ncnn output blobs in the ONNX graph's output order. pnnx names them out0, out1, ... in
    that order (its model.pnnx.param lists pnnx.Output out0.. with the ONNX outputs' shapes), but
    ncnn's net.output_names() lists them in layer order (e.g. out0, out2, out1, out3 when the
    ONNX outputs are not written in their declared order). pnnx's own script extracts them by
    name in order; so does this."""
    names = list(net.output_names())
    scripted = list((info.get("output_batch_index") or {}).keys())
    if scripted and sorted(scripted) == sorted(names):
        return scripted
    numbered = [n for n in names if re.fullmatch(r"out\d+", n)]
    if len(numbered) == len(names):
        return sorted(names, key=lambda n: int(n[3:]))
    return names


def do_run(req):
    net, info = NETS[req["handle"]]
    in_bi = info.get("input_batch_index") or {}
    out_bi = info.get("output_batch_index") or {}
    files = req["inputs"] if "inputs" in req else [req["input"]]
    out_dir = Path(req["out_dir"])
    names_in = list(net.input_names())
    scripted = list(in_bi.keys())
    if sorted(scripted) == sorted(names_in):
        names_in = scripted  # in0, in1, ... in the ONNX graph's input order (pnnx's script)
    if len(files) != len(names_in):
        raise RuntimeError(f"{len(files)} inputs given, the ncnn net has {names_in}")
    with StderrCapture() as cap:
        ex = net.create_extractor()
        keep = []
        for name, f in zip(names_in, files):
            # The item with its batch axis of 1, as ONNX has it; ncnn.Mat drops the axis pnnx's
            # script names. ncnn.Mat(array) wraps the array's memory without a reference count;
            # ncnn's in-place layers behind a Split then dereference that null count (a segfault)
            # or write into the array: clone() gives ncnn a Mat of its own (as pnnx's script does).
            x = np.ascontiguousarray(np.load(f), dtype=np.float32)
            mat = ncnn.Mat(x, batch_index=in_bi.get(name, 0)).clone()
            keep.append(mat)
            ret = ex.input(name, mat)
            if ret != 0:
                raise RuntimeError(f"ncnn extractor input {name} failed ({ret})")
        outs = []
        for i, name in enumerate(output_order(net, info)):
            ret, mat = ex.extract(name)
            if ret != 0:
                raise RuntimeError(f"ncnn extract {name} failed ({ret})")
            arr = np.array(mat.numpy(batch_index=out_bi.get(name) if out_bi.get(name) is not None else 0),
                           copy=True)
            dims = [int(mat.dims), int(mat.c), int(mat.d), int(mat.h), int(mat.w), int(mat.elemsize)]
            p = out_dir / f"out{i}.npy"
            np.save(p, arr.astype(np.float32, copy=False))
            outs.append([name, str(p), dims])
        del ex
    return {"ok": True, "outputs": outs, "log": cap.text[-500:]}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "hello":
                gpus = []
                with StderrCapture():
                    for i in range(ncnn.get_gpu_count()):
                        gpus.append(ncnn.get_gpu_info(i).device_name())
                ans = {"ok": True, "ncnn": ncnn.__version__, "pnnx": PNNX_VERSION, "gpu": gpus,
                       "pnnx_path": str(PNNX)}
            elif op == "load":
                ans = do_load(req)
            elif op == "run":
                ans = do_run(req)
            elif op == "free":
                NETS.pop(req["handle"], None)
                ans = {"ok": True}
            elif op == "convert":
                ans = {"ok": True, "info": convert(req["path"], req["inputshape"], int(req.get("fp16", 1)))}
            else:
                ans = {"ok": False, "error": f"unknown op {op}"}
        except Exception as exc:  # noqa: BLE001
            ans = {"ok": False, "error": re.sub(r"\s*\n\s*", " | ", str(exc).strip() or type(exc).__name__),
                   "trace": traceback.format_exc()[-2000:]}
        _proto.write(json.dumps(ans) + "\n")
        _proto.flush()
    NETS.clear()
    shutil.rmtree(CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
