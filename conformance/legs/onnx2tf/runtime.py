"""onnx2tf leg: ONNX -> onnx2tf (its default options) -> .tflite -> LiteRT, float32 and float16.

Imported by conformance/check.py with this folder on sys.path. onnx2tf, TensorFlow and LiteRT
live in the leg's own venv (setup.sh); this module only needs numpy, onnx and onnxruntime
(check.py's venv) and talks to worker.py, a long-lived subprocess in the leg's venv, over JSON
lines with .npy files.

How a model is converted and run, the way onnx2tf's and LiteRT's users do it:
  onnx2tf -i model.onnx -o out               (every option at its default: it writes
                                              out/model_float32.tflite and out/model_float16.tflite)
  interpreter = Interpreter(model_path=...)   (ai_edge_litert.interpreter; XNNPACK by default)
  runner = interpreter.get_signature_runner(); outs = runner(image=x_nhwc)

Two runtimes, one per .tflite: `onnx2tf-litert-f32` and `onnx2tf-litert-f16`. onnx2tf's float16
file stores the weights in float16 behind DEQUANTIZE ops; LiteRT's CPU kernels compute in float32
(measured on the real model: its heads are within 5e-5 of onnxruntime running the ONNX model with
its weights rounded to float16, and 0.1 away from the float32 model's; they are not float16
values). So both are held to the float32 rules, the reference decoding the heads of the same run.

Layout: onnx2tf turns an NCHW model into NHWC, input and outputs included. The leg feeds the
image transposed when the .tflite's input is the NHWC form of the ONNX input, and takes each
output by its ONNX name (the signature keeps them) and transposes it back to the ONNX output's
shape. Where more than one axis order gives that shape (heatmaps [1,17,17,17]), the order is the
one under which the output is nearest to onnxruntime's on the model's first run, once per model
(a layout, decided before any comparison; the heads are compared with the original's after).

Only the models users deploy run here (accepts()): the real model and its variants (single pose,
--poses 5, --pixels), and its float16 conversions; `ONNX2TF_LEG_ALL=1` runs the whole matrix.
"""

from __future__ import annotations

import itertools
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
VENV = Path(os.environ.get("ONNX2TF_LEG_VENV") or
            Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "legs" / "onnx2tf-venv")
IMAGES = REPO.parent / "shared" / "images"


def one_line(text):
    return re.sub(r"\s*\n\s*", " | ", str(text).strip())


class Worker:
    """The worker subprocess; restarted when it dies (a crash in LiteRT is reported as the error)."""

    def __init__(self):
        self.proc = None
        self.tmp = Path(tempfile.mkdtemp(prefix="onnx2tf-leg-io-"))
        self.log = self.tmp / "worker.stderr"
        self.generation = 0
        self.calibration = None

    def start(self):
        python = VENV / "bin" / "python"
        if not python.is_file():
            raise RuntimeError(f"onnx2tf leg venv missing: {python} (run conformance/legs/onnx2tf/setup.sh)")
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
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
            tail = [l for l in self.log.read_text(errors="replace").splitlines() if l.strip()][-2:]
            why = f"signal {-rc}" if rc < 0 else f"exit {rc}"
            raise RuntimeError(f"onnx2tf worker died ({why}) during {req['op']}" +
                               (": " + " | ".join(tail) if tail else ""))
        ans = json.loads(line)
        if not ans.get("ok"):
            raise RuntimeError(ans.get("error", "unknown worker error"))
        return ans

    def calibration_file(self):
        """The stand-in for the sample images onnx2tf downloads at conversion (see worker.py):
        20 of the suite's photos, 128x128 RGB in [0, 1] float32 as onnx2tf's file holds them
        (seeded noise in [0, 1] where there are no photos)."""
        if self.calibration is None:
            photos = sorted(p for p in IMAGES.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:20]
            if photos:
                from PIL import Image

                arrs = []
                for p in photos:
                    with Image.open(p) as img:
                        arrs.append(np.asarray(img.convert("RGB").resize((128, 128), Image.BILINEAR), np.float32))
                data = np.stack(arrs) / np.float32(255)
            else:
                data = np.random.default_rng(20240917).uniform(0, 1, (20, 128, 128, 3))
            self.calibration = self.tmp / "calibration.npy"
            np.save(self.calibration, data.astype(np.float32))
        return self.calibration

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
    """(input name, input shape, [(output name, shape or None)]) of an ONNX model, the output
    shapes by onnx's shape inference (None where a dim stays symbolic)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    shape = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        outs = []
        for o in inferred.graph.output:
            t = o.type.tensor_type
            ds = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] \
                if t.HasField("shape") else None
            outs.append((o.name, ds))
    except Exception:  # noqa: BLE001 - shapes are a check, not a requirement
        outs = [(o.name, None) for o in model.graph.output]
    return inp.name, shape, outs


def fits(shape, want):
    return len(shape) == len(want) and all(w is None or w == 0 or s == w for s, w in zip(shape, want))


def axis_orders(shape, want):
    """The axis orders (axis 0 kept first) that turn an array of `shape` into one of `want`,
    identity first, then onnx2tf's channels-last to channels-first."""
    if want is None or len(shape) != len(want):
        return [tuple(range(len(shape)))]
    rank = len(shape)
    orders = [tuple(range(rank))]
    if rank >= 3:
        orders.append((0, rank - 1, *range(1, rank - 1)))
    orders += [(0, *p) for p in itertools.permutations(range(1, rank)) if (0, *p) not in orders]
    return [o for o in orders if fits([shape[i] for i in o], want)]


class Handle:
    def __init__(self, path, worker_handle, generation, ans, input_name, input_shape, outputs):
        self.path = path
        self.worker_handle = worker_handle
        self.generation = generation
        self.tfl_inputs = {name: (shape, dtype) for name, shape, dtype in ans["inputs"]}
        self.tfl_outputs = {name: (shape, dtype) for name, shape, dtype in ans["outputs"]}
        self.input_name = input_name
        self.input_shape = input_shape
        self.outputs = outputs
        self.orders = None  # per ONNX output, decided on the first run

    def __del__(self):
        w = _WORKER
        try:
            if w is not None and w.proc is not None and w.proc.poll() is None and w.generation == self.generation:
                w.request(op="free", handle=self.worker_handle)
        except Exception:  # noqa: BLE001 - best effort (also at interpreter exit)
            pass


# One synthetic model of each shape the real model does not have (7 to 17 s a conversion here; a
# multi-pose one 1 to 2.5 minutes): NHWC input and heads, NHWC heads with a Sigmoid at opset 9 and
# stride 32, non-square grids either way round, a fixed batch of 2, a symbolic batch (NCHW and NHWC
# heads; run at the manifest's batch of 2), and the multi-pose decoder at stride 8 and with a
# symbolic batch.
SYNTHETIC_IN_CI = {
    "nhwc_logits_op15_b1_257x257_input-nhwc",
    "nhwc_sigmoid_op9_b1_257x257_s32",
    "nhwc_sigmoid_op18_b1_257x353",
    "nchw_sigmoid_op18_b1_353x257",
    "nchw_logits_op19_b2_257x257",
    "nchw_logits_op13_bsym_257x257",
    "nhwc_sigmoid_op12_bsym_257x257",
    "nchw_logits_op17_b1_161x225_s8_multi-pose-n3",
    "nchw_logits_op15_bsym_257x257_multi-pose-n2",
}


class LiteRt:
    fatal_load = "if_original"

    def __init__(self, flavor, versions):
        self.flavor = flavor
        self.name = f"onnx2tf-litert-{'f32' if flavor == 'float32' else 'f16'}"
        self.version = (f"onnx2tf {versions['onnx2tf']} (tensorflow {versions['tensorflow']}), "
                        f"ai-edge-litert {versions['litert']}, *_{flavor}.tflite")
        self.conversions = []
        # The float16 .tflite stores every float constant in float16, the --pixels normalization's
        # too (check.py then compares a pixel model's heads with the original's within its fp16
        # tolerance; see README.md).
        self.float16_constants = flavor == "float16"

    def accepts(self, entry):
        """The real model and its float32 variants (the --poses 5 one included), and the synthetic
        models of SYNTHETIC_IN_CI; the float16 conversions with ONNX2TF_LEG_FP16=1, every model with
        ONNX2TF_LEG_ALL=1 (each conversion takes onnx2tf 7 to 80 s here, a multi-pose model 2 to
        4.5 minutes: CI runs what users deploy and one model of each shape)."""
        if os.environ.get("ONNX2TF_LEG_ALL") == "1":
            return None
        if entry.get("kind") != "real" and entry["name"] not in SYNTHETIC_IN_CI:
            return ("the onnx2tf leg runs the real model, its variants and one synthetic model of each "
                    "shape (ONNX2TF_LEG_ALL=1: every model)")
        if entry.get("fp16") and os.environ.get("ONNX2TF_LEG_FP16") != "1":
            return "float16 ONNX models only with ONNX2TF_LEG_FP16=1 (time)"
        return None

    def load(self, path):
        input_name, input_shape, outputs = onnx_signature(path)
        w = worker()
        try:
            ans = w.request(op="load", path=str(path), flavor=self.flavor, calibration=str(w.calibration_file()))
        except RuntimeError as exc:
            self.conversions.append((str(path), {"error": str(exc)}))
            raise
        self.conversions.append((str(path), ans.get("onnx2tf")))
        missing = [name for name, _ in outputs if name not in {n for n, _, _ in ans["outputs"]}]
        if missing or input_name not in {n for n, _, _ in ans["inputs"]}:
            raise RuntimeError(f"the .tflite signature has inputs {[n for n, _, _ in ans['inputs']]} and outputs "
                               f"{[n for n, _, _ in ans['outputs']]}, not the ONNX model's {input_name} and {missing}")
        return Handle(path, ans["handle"], w.generation, ans, input_name, input_shape, outputs)

    def _orders(self, handle, feed_x, outs):
        """Each output's axis order; where several fit its shape, the one nearest onnxruntime's."""
        orders = {}
        ort_outs = None
        for name, want in handle.outputs:
            arr = outs[name]
            cands = axis_orders(arr.shape, want)
            if not cands:
                raise RuntimeError(f"output {name} of shape {list(arr.shape)} fits the ONNX shape {want} in no axis order")
            if len(cands) > 1:
                if ort_outs is None:
                    import onnxruntime as ort

                    sess = ort.InferenceSession(str(handle.path), providers=["CPUExecutionProvider"])
                    ort_outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {handle.input_name: feed_x})))
                ref = np.asarray(ort_outs[name], dtype=np.float64)
                cands.sort(key=lambda o: float(np.nanmax(np.abs(arr.transpose(o).astype(np.float64) - ref))))
            orders[name] = cands[0]
        return orders

    def run(self, handle, input_name, x):
        w = worker()
        if w.generation != handle.generation or w.proc is None:
            raise RuntimeError("the onnx2tf worker was restarted since this model was loaded")
        shape, dtype = handle.tfl_inputs[handle.input_name]
        if handle.input_shape and handle.input_shape[0] is None:
            # A symbolic batch: the .tflite declares 1 and its signature runner resizes to the feed.
            shape = [x.shape[0], *shape[1:]]
        feed = x
        if tuple(shape) != x.shape:
            # onnx2tf lays every input out channels-last, ONNX axes (0, 2, ..., 1), whatever the
            # ONNX model's own layout: an NHWC input [1, H, W, 3] becomes [1, W, 3, H]. Another
            # order of the same shape (H and W swapped) would feed the image transposed.
            to_tf = (0, *range(2, x.ndim), 1)
            fitting = [o for o in axis_orders(x.shape, shape) if o != tuple(range(x.ndim))]
            order = to_tf if to_tf in fitting else next(iter(fitting), None)
            if order is None:
                raise RuntimeError(f"input {list(x.shape)} does not fit the .tflite input {shape}")
            feed = x.transpose(order)
        if np.dtype(dtype) != feed.dtype:
            if not (feed.dtype == np.float16 and np.dtype(dtype) == np.float32):  # exact widening only
                raise RuntimeError(f"input {feed.dtype}, the .tflite takes {dtype}")
            feed = feed.astype(np.float32)
        w.tmp.mkdir(parents=True, exist_ok=True)
        xin = w.tmp / "x.npy"
        np.save(xin, np.ascontiguousarray(feed))
        ans = w.request(op="run", handle=handle.worker_handle, inputs={handle.input_name: str(xin)}, out_dir=str(w.tmp))
        outs = {name: np.load(p) for name, p in ans["outputs"].items()}
        if handle.orders is None:
            handle.orders = self._orders(handle, x, outs)
        return {name: np.ascontiguousarray(outs[name].transpose(handle.orders[name])) for name, _ in handle.outputs}

    def close(self):
        worker().close()


def runtimes():
    hello = worker().request(op="hello")
    return [LiteRt("float32", hello), LiteRt("float16", hello)]
