"""ncnn conformance leg: ONNX -> pnnx -> ncnn, on the CPU and on Vulkan (Mesa lavapipe).

Imported by conformance/check.py with this folder on sys.path. ncnn and pnnx live in the leg's
own venv (setup.sh); this module only needs numpy and onnx (check.py's venv) and talks to
worker.py, a long-lived subprocess in the leg's venv, over JSON lines with .npy files.

How a model is run, the way ncnn users do it (and as the model_ncnn.py pnnx writes does it):
  pnnx model.onnx inputshape=[1,C,H,W]       (the converter binary the pnnx wheel ships; a
                                              symbolic batch is fixed to 1; pnnx's defaults, so
                                              fp16=1: weights stored as fp16 in model.ncnn.bin)
  net = ncnn.Net(); net.load_param(...); net.load_model(...)
  ex = net.create_extractor(); ex.input("in0", ncnn.Mat(x, batch_index=K).clone())
  ex.extract("out0"), ex.extract("out1"), ...; out.numpy(batch_index=K)

ncnn blobs have no batch axis: pnnx's script says which axis each blob drops (K = 0, or 233 when
pnnx found no batch axis). A batch of several items is run one item at a time (what ncnn users
do), and only for models whose batch axis is symbolic: a model with a fixed batch > 1 is skipped
(accepts()). pnnx renames the outputs out0, out1, ... in the order of the ONNX graph outputs
(ncnn's net.output_names() does not keep that order; the worker extracts them by name); they are
mapped back by that order and each one's element count is checked against the ONNX output's
shape (at batch 1) before it is reshaped to it.

Precision: see OPTIONS below.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LEG = Path(__file__).resolve().parent
REPO = LEG.parent.parent.parent
VENV = Path(os.environ.get("NCNN_LEG_VENV") or
            Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "legs" / "ncnn-venv")

# ncnn's run-time options, per backend. ncnn's defaults (Option()) turn on fp16 storage, fp16
# arithmetic and fp16 packing wherever the device supports them; lavapipe reports fp16
# storage/arithmetic support, so on Vulkan every blob would be stored and computed in fp16. Then
# the decoder's own arithmetic (cell * stride + offset, the 2^100 scaling of the selection) runs
# in fp16: positions are rounded to fp16 (an error of up to 0.25 px at 512 px) whatever ops the
# decoder uses, and 2^100 is infinite in fp16 (measured: every new-decoder model mismatches on
# Vulkan with the defaults). See README.md. The leg therefore runs fp32 on both backends (what an
# ncnn user needing exact positions must set): use_fp16_packed/storage/arithmetic = False, bf16
# off. On this x86 CPU ncnn's defaults gave the same bits as fp32 on every probe and model.
#
# A third runtime, ncnn-vulkan-defaults, is Vulkan at ncnn's defaults as users run it:
# `ncnn.Net()` with `opt.use_vulkan_compute = True` and nothing else changed (fp16 storage and
# arithmetic on). It is held to check.py's fp16 rules (`fp16_arithmetic`): keypoints that pick the
# cells of a first-occurrence argmax of the heads this run computed, positions equal to the
# reference's rounded to fp16; the multi-pose decoder is not expected to be exact there, and
# EXACT_SETTING (what ncnn-vulkan above sets) is the setting that makes it so.
FP32 = {"use_fp16_packed": False, "use_fp16_storage": False, "use_fp16_arithmetic": False,
        "use_bf16_storage": False, "use_bf16_packed": False}
OPTIONS = {"cpu": dict(FP32), "vulkan": dict(FP32), "vulkan-defaults": {}}
if os.environ.get("NCNN_LEG_DEFAULT_PRECISION"):  # for measurements: ncnn's own defaults
    OPTIONS = {"cpu": {}, "vulkan": {}, "vulkan-defaults": {}}
EXACT_SETTING = "opt.use_fp16_storage = False, opt.use_fp16_arithmetic = False"
# Whether ncnn-vulkan-defaults runs (NCNN_LEG_VULKAN_DEFAULTS=0 turns it off). The decoder before
# the fp16-safe one (2^100 factors) failed it on all 28 models it loads.
VULKAN_DEFAULTS = "1"
# Photos of the real model (single pose) run at the defaults besides the generated inputs (CI time;
# the fp32 runtimes run all 26).
DEFAULTS_PHOTOS = int(os.environ.get("NCNN_LEG_DEFAULTS_PHOTOS", "8"))
# pnnx's fp16 flag (fp16=1 is its default): stores Convolution/InnerProduct/Gemm weights as fp16.
PNNX_FP16 = int(os.environ.get("NCNN_LEG_PNNX_FP16", "1"))


def one_line(text):
    return re.sub(r"\s*\n\s*", " | ", str(text).strip())


class Worker:
    """The worker subprocess; restarted when it dies (a crash in ncnn is reported as the error)."""

    def __init__(self):
        self.proc = None
        self.tmp = Path(tempfile.mkdtemp(prefix="ncnn-leg-io-"))
        self.log = self.tmp / "worker.stderr"
        self.generation = 0

    def start(self):
        python = VENV / "bin" / "python"
        if not python.is_file():
            raise RuntimeError(f"ncnn leg venv missing: {python} (run conformance/legs/ncnn/setup.sh)")
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        self.proc = subprocess.Popen([str(python), str(LEG / "worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True,
                                     env=env, bufsize=1)
        self.generation += 1

    def request(self, **req):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            rc = self.proc.wait()
            self.proc = None
            tail = [l for l in self.log.read_text(errors="replace").splitlines()
                    if l.strip() and "llvmpipe" not in l][-2:]
            why = f"signal {-rc}" if rc < 0 else f"exit {rc}"
            raise RuntimeError(f"ncnn worker died ({why}) during {req['op']}" +
                               (": " + " | ".join(tail) if tail else ""))
        ans = json.loads(line)
        if not ans.get("ok"):
            raise RuntimeError(ans.get("error", "unknown worker error"))
        return ans

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


_WORKER = None


def worker():
    global _WORKER
    if _WORKER is None:
        _WORKER = Worker()
    return _WORKER


def onnx_signature(path):
    """(input name, pnnx input shape with batch 1, fixed batch or None, [(output name, shape at
    batch 1 or None)]) of an ONNX model."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    shape = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    if batch is None:
        dims[0].ClearField("dim_param")
        dims[0].dim_value = 1
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        outs = []
        for o in inferred.graph.output:
            t = o.type.tensor_type
            ds = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] \
                if t.HasField("shape") else None
            outs.append((o.name, ds if ds is not None and None not in ds else None))
    except Exception:  # noqa: BLE001 - shapes are a check, not a requirement
        outs = [(o.name, None) for o in model.graph.output]
    return inp.name, shape, batch, outs


def float16_input(path):
    """Whether the model's image input (its one graph input that is not an initializer) is float16."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    return inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


class Handle:
    def __init__(self, worker_handle, generation, input_name, batch, outputs, ncnn_outputs, pnnx):
        self.worker_handle = worker_handle
        self.generation = generation
        self.input_name = input_name
        self.batch = batch
        self.outputs = outputs
        self.ncnn_outputs = ncnn_outputs
        self.pnnx = pnnx

    def __del__(self):
        # check.py drops a model's handles when it moves on: free the ncnn Net in the worker.
        w = _WORKER
        try:
            if w is not None and w.proc is not None and w.proc.poll() is None and w.generation == self.generation:
                w.request(op="free", handle=self.worker_handle)
        except Exception:  # noqa: BLE001 - best effort (also at interpreter exit)
            pass


class Ncnn:
    fatal_load = "if_original"
    # check.py holds both backends to this profile's forbidden_types (they must refuse such models).
    profile = "ncnn"

    def __init__(self, backend, versions):
        self.backend = backend
        self.name = f"ncnn-{backend}"
        self.version = f"ncnn {versions['ncnn']}, pnnx {versions['pnnx']}" + \
            (f", {versions['gpu'][0]}" if backend.startswith("vulkan") and versions.get("gpu") else "") + \
            (", ncnn's default options (fp16 storage and arithmetic)" if backend == "vulkan-defaults" else "")
        self.options = OPTIONS[backend]
        # check.py: positions compared rounded to fp16, multi-pose expected inexact (see OPTIONS).
        self.fp16_arithmetic = backend == "vulkan-defaults"
        self.exact_setting = EXACT_SETTING
        self.conversions = []  # (model path, pnnx info) for the report

    def accepts(self, entry):
        batch = str(entry.get("batch", "1"))
        if batch.isdigit() and int(batch) > 1:
            return f"batch {batch}: ncnn has no batch axis (pnnx drops axis 0)"
        return None

    def select_inputs(self, entry, inputs):
        """Every input, except on Vulkan (lavapipe, a software GPU: about 1 s per run of the real
        model) for the real model: with the multi-pose decoder (`--poses 5`) only the
        multi-person photos check.py names (`subset_photos`); at ncnn's defaults
        (vulkan-defaults) also the single-pose real models take the generated inputs and only
        DEFAULTS_PHOTOS photos plus the bundled sample. The CPU runs them all; NCNN_LEG_ALL=1
        runs every input everywhere."""
        if not self.backend.startswith("vulkan") or entry.get("kind") != "real" \
                or os.environ.get("NCNN_LEG_ALL") == "1":
            return inputs
        if entry.get("multi_pose"):
            keep = {f"photo {name}" for name in entry.get("subset_photos", [])}
            return [(label, x) for label, x in inputs if label in keep]
        if self.backend != "vulkan-defaults":
            return inputs
        photos = [label for label, _ in inputs if label.startswith("photo ")]
        keep = set(photos[:DEFAULTS_PHOTOS]) | {label for label in photos if "astronaut" in label}
        return [(label, x) for label, x in inputs if not label.startswith("photo ") or label in keep]

    def load(self, path):
        input_name, shape, batch, outputs = onnx_signature(path)
        if batch is not None and batch != 1:
            raise RuntimeError(f"batch {batch}: ncnn has no batch axis (pnnx drops axis 0)")
        w = worker()
        # A float16 image input is declared to pnnx as such (`inputshape=[1,3,257,257]f16`, pnnx's
        # syntax), as an ncnn user converting a float16 model must: without the suffix pnnx stops
        # with "input_shapes[0] expect [1,3,257,257]f16 but got [1,3,257,257]f32".
        shapes = "[" + ",".join(str(int(d)) for d in shape) + "]f16" if float16_input(path) else None
        try:
            ans = w.request(op="load", path=str(path), inputshape=shape, inputshapes=shapes,
                            backend="vulkan" if self.backend.startswith("vulkan") else self.backend,
                            options=self.options, fp16=PNNX_FP16)
        except RuntimeError as exc:
            self.conversions.append((str(path), {"error": str(exc)}))
            raise
        self.conversions.append((str(path), ans.get("pnnx")))
        if len(ans["outputs"]) != len(outputs):
            raise RuntimeError(f"pnnx wrote {len(ans['outputs'])} outputs {ans['outputs']}, "
                               f"the ONNX model has {len(outputs)}")
        return Handle(ans["handle"], w.generation, input_name, batch, outputs, ans["outputs"], ans["pnnx"])

    def run(self, handle, input_name, x):
        w = worker()
        if w.generation != handle.generation or w.proc is None:
            raise RuntimeError("the ncnn worker was restarted since this model was loaded")
        if handle.batch is not None and x.shape[0] != handle.batch:
            raise RuntimeError(f"input batch {x.shape[0]}, the model's is {handle.batch}")
        items = []
        w.tmp.mkdir(parents=True, exist_ok=True)
        for b in range(x.shape[0]):
            xin = w.tmp / "x.npy"
            np.save(xin, np.ascontiguousarray(x[b:b + 1], dtype=np.float32))
            ans = w.request(op="run", handle=handle.worker_handle, input=str(xin), out_dir=str(w.tmp))
            item = {}
            for (onnx_name, shape), (ncnn_name, npy, dims) in zip(handle.outputs, ans["outputs"]):
                arr = np.load(npy)
                if shape is not None:
                    if int(np.prod(shape)) != arr.size:
                        raise RuntimeError(
                            f"output {ncnn_name} (taken as {onnx_name}) has {arr.size} values "
                            f"{list(arr.shape)}, the ONNX output has shape {shape}")
                    arr = arr.reshape(shape)
                elif arr.ndim == 0 or arr.shape[0] != 1:
                    arr = arr[None]
                item[onnx_name] = arr
            items.append(item)
        return {name: np.concatenate([it[name] for it in items]).astype(np.float32, copy=False)
                for name, _ in handle.outputs}

    def close(self):
        worker().close()


def runtimes():
    w = worker()
    hello = w.request(op="hello")
    out = [Ncnn("cpu", hello)]
    if os.environ.get("NCNN_LEG_VULKAN", "1") == "0":
        return out
    if hello.get("gpu"):
        out.append(Ncnn("vulkan", hello))
        if os.environ.get("NCNN_LEG_VULKAN_DEFAULTS", VULKAN_DEFAULTS) == "1":
            out.append(Ncnn("vulkan-defaults", hello))
    else:
        print("ncnn leg: no Vulkan device (is mesa-vulkan-drivers installed?): ncnn-vulkan not run",
              file=sys.stderr)
    return out
