#!/usr/bin/env python3
"""Cross-runtime conformance of the models onnx-posefix writes.

Reads MODELS_DIR/manifest.json (written by `cargo run --example conformance_models`) and, for each
model pair `NAME.orig.onnx` / `NAME.posefix.onnx`:

1. ONNX: `onnx.checker.check_model(full_check=True)` and strict, type-checking shape inference
   must accept the rewritten model, and inference alone must give `keypoints` the shape [*, 17, 3].
2. Each runtime loads both models (a failure is recorded with the runtime's own message) and runs
   the rewritten one on every input: seeded noise, zeros (for the synthetic models every heatmap
   is then one repeated value: all cells tie), a checkerboard (ties between distant cells), and for
   the real model photos. The runtimes: onnxruntime (CPU), OpenCV DNN (each engine), OpenVINO's
   CPU plugin at float32 and at its defaults (`openvino`, `openvino-defaults`), MNN after its
   converter (`mnn`), and the legs'.
   The raw heatmaps and offsets of that same run go through a numpy port of
   the reference decoder (`src/reference/single_pose.rs`, contract in `src/contract.rs`); `keypoints` must
   match it: |dx|, |dy| <= 1e-3 and |dscore| <= 1e-5. The heads must also match those of the
   original model on the same runtime (the rewrite must not disturb them).
3. Multi-pose models (manifest entries with a `multi_pose` object: N, T, R, the output names and
   the four heads) also have `poses` [B, N, 17, 3] and `pose_scores` [B, N]. The heatmaps,
   offsets and both displacement heads of each run go to the Rust multi-pose reference itself
   (`src/reference/multi_pose.rs`, through the `decode_multi_pose` example that run.sh builds;
   one process per model and runtime for all its runs; no second port here), and the runtime's
   outputs must match it: the same number of poses, each slot empty (pose score -1, keypoints 0)
   where the reference's is, positions within 1e-3 px (bit-exact ones counted), keypoint scores
   within 1e-5, pose scores within POSE_SCORE_TOL (the decoder sums the 17 scores in the
   runtime's order, so they agree within float error, not bit for bit). Their `keypoints` are
   checked as in 2, and the displacement heads are compared with the original's too.
4. Models that take pixels (`--pixels`; entries with `pixels` and `preprocess`) are fed pixels
   (pixel noise, black, a black and white checkerboard, the real model's photos) as `unit` (v/255)
   or `byte` (v) floats, and their originals those pixels normalized as `--preprocess` does, in
   float32. Everything else is checked as in 2; how many runs give heads bit-identical to the
   original's is reported (the normalization in the graph is meant to be exact).
5. Float16 models (entries with `fp16`, written by conformance/fp16_models.py: originals
   converted by onnxconverter-common's `convert_float_to_float16`): fed their input type (a
   float16 image unless `keep_io_types`), their heads decoded by the same reference after an
   exact conversion to float32 (every float16 is a float32). `keypoints` (and `poses`,
   `pose_scores`) are float32, or with `--output-type float16` (`output_type`) float16: then the
   reference's float32 values are rounded once to float16 (to nearest, ties to even: numpy's
   cast), and each tolerance grows by one float16 spacing of the value (a runtime's float32 within
   the tolerance rounds to within one spacing of it); a runtime that returns them as float32
   arrays of float16 values passes (counted: OpenCV 5's new engine does). A runtime whose profile
   (profiles/NAME.toml, the runtime's `profile`) has a `forbidden_types` rule listing a type the
   ORIGINAL model holds must refuse the rewritten model (fail to load it or its first run): it
   is not run further, and a runtime that loads and runs it fails the suite (the profile's claim
   is then wrong).
6. Runtimes that compute in fp16 at their defaults (a runtime with `fp16_arithmetic = True`, e.g.
   ncnn on Vulkan with ncnn's default options) or in bfloat16 (`narrow = "bfloat16"`: OpenVINO's
   CPU plugin at its defaults on a processor with bfloat16, `openvino-defaults`; float32 rules
   on a processor without): what follows, in that type, with its tolerances in NARROW. The heads
   are rounded to that type, as the decoder received them (OpenVINO returns a Sigmoid head
   computed in float32 while its readers got bfloat16; ncnn's come back in fp16 already), the
   reference decodes them in float32 as everywhere else, and `keypoints`
   must pick the same cells: each position, rounded to fp16, equal to the reference's rounded to
   fp16 (`np.float16(ref) == np.float16(got)`), each score within FP16_SCORE_TOL (or two fp16
   spacings); the heads within FP16_HEADS_TOL of the original's (not compared for a model that
   takes pixels: its normalization runs in fp16 too, the original's ran in check.py in float32). The
   multi-pose decoder is not expected to be exact there: its outputs are compared as in 3, but a
   mismatch is reported as "not exact at narrow defaults (expected)" with the setting that makes it
   exact (the runtime's `exact_setting`), not as a failure; the leg checks that setting exactly
   in another runtime. A runtime with `float16_constants = True` (it stores the model's float
   constants in float16 and computes in float32: onnx2tf's float16 .tflite) is held to the float32
   rules, except that a model that takes pixels has its heads compared with the original's within
   FP16_HEADS_TOL (its in-graph normalization's constants are rounded too; counted in the line on
   bit-identical heads).
7. A table per model and runtime, a list of load failures with their reasons, and
   MODELS_DIR/report.json.

Thin runtimes come as legs (`--legs ort_web,ncnn,wonnx,onnx2tf`): each folder
conformance/legs/LEG/ has a `setup.sh` that installs the runtime (run.sh runs it) and a
`runtime.py` whose `runtimes()` gives objects with the same interface as the classes below (and
optionally `fp16_arithmetic` with `exact_setting`, or `float16_constants`: 6. above), plus
`accepts(entry)` (None, or why the leg
skips a model: a batch it cannot hold, say), optionally `select_inputs(entry, inputs)` (the inputs
it runs: a subset of the photos on a software GPU; a multi-pose entry names its multi-person
photos in `subset_photos` for that) and `close()`. `run` returns every graph output under its
ONNX name (a leg whose runtime renames outputs maps them back).

Exit status 1 when: the ONNX checks reject a rewritten model; a runtime runs a model its profile
says it cannot (5); onnxruntime fails to load or run a
model or gives any mismatch; any runtime loads a model and then gives a mismatch; a leg's runtime
fails to load or run a rewritten model whose original it loads and runs. OpenCV failing to load or
run a model is reported (with the op and the reason when OpenCV names them), not fatal.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

NUM_KEYPOINTS = 17
POS_TOL = 1e-3
SCORE_TOL = 1e-5
HEADS_TOL = 1e-4
# A pose score is the mean of (at most) 17 keypoint scores, each within SCORE_TOL of the
# reference's, summed in an order the runtime chooses: 16 f32 additions of a sum below 17 round
# off at most 16 * 2^-20 (< 1.6e-5), 1e-6 after the division by 17.
POSE_SCORE_TOL = SCORE_TOL + 1e-6
# A runtime that computes in fp16 (its `fp16_arithmetic` attribute; see compare_run): a score
# within FP16_SCORE_TOL, or FP16_SCORE_SPACINGS fp16 spacings of the reference's where that is
# more, passes (on top of SCORE_TOL). A Sigmoid evaluated in fp16 rounds exp(-x), 1 + exp(-x) and
# the quotient: sigmoid(x) (1 - sigmoid(x)) (|x| + 2) 2^-10 at most, under 2^-8 for |x| <= 14;
# numpy's fp16 chain on the real model's fp16 heads at ncnn's defaults was off by 6.4e-4. A
# logit score is a head value: exact up to the rounding of the output. The heads may differ from
# the original model's on the same runtime by FP16_HEADS_TOL relative (the same Convs in fp16,
# maybe fused or ordered differently by the converter: a few fp16 roundings of 2^-11).
FP16_SCORE_TOL = 2.0 ** -8
FP16_SCORE_SPACINGS = 2
FP16_HEADS_TOL = 2.0 ** -7
# The same rules for a runtime that computes in bfloat16 (`narrow = "bfloat16"`: OpenVINO's CPU
# plugin at its defaults on a processor with bfloat16 arithmetic): 8 significant bits where
# float16 has 11, so each tolerance is 8 times float16's.
NARROW = {
    "float16": {"type": np.float16, "score": FP16_SCORE_TOL, "heads": FP16_HEADS_TOL},
    "bfloat16": {"type": ml_dtypes.bfloat16, "score": 2.0 ** -5, "heads": 2.0 ** -4},
}
# Photos with several people (and poses above 0.15 each, from tfjs), which legs that run a subset
# of the photos (software GPUs) run for the multi-pose models.
# In this order: a leg that runs fewer takes the first ones.
MULTI_PERSON_PHOTOS = ("multi_skiing", "tennis_in_crowd", "two_on_bench", "riding_elephant")
MISMATCH_LINES_SHOWN = 4  # per model and runtime; report.json has them all
NOISE_SEED = 20240917
CHECKER_SQUARE = 24  # pixels; not a multiple of any stride, so squares straddle grid cells
REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"
# A manifest entry's `input_type` / `output_type` (ONNX names) as numpy types; "float" when absent.
NUMPY_TYPES = {"float": np.dtype(np.float32), "float16": np.dtype(np.float16)}
DEFAULT_MULTI_POSE_REFERENCE = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "examples" \
    / "decode_multi_pose"


# ---------------------------------------------------------------------------------------------
# Reference decoder (numpy port of src/reference/single_pose.rs)


def decode_reference(heatmaps, offsets, layout, stride, scores):
    """Returns (keypoints float32 [N, 17, 3] as (x, y, score), cells int [N, 17, 2] as (gy, gx)).

    First-occurrence argmax over each heatmap flattened row-major, once clamped to +-FLT_MAX (so
    +inf ties with FLT_MAX); NaN cells never win; an all-NaN map decodes to cell (0, 0) with a NaN
    score. All arithmetic in float32, one addition per
    coordinate, like the Rust reference. Float16 heads are converted to float32 first, which is
    exact (as the decoder's Cast(to=FLOAT) is).
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    off = np.asarray(offsets, dtype=np.float32)
    if layout == "NHWC":
        hm = hm.transpose(0, 3, 1, 2)
        off = off.transpose(0, 3, 1, 2)
    n, c, h, w = hm.shape
    if c != NUM_KEYPOINTS or off.shape != (n, 2 * NUM_KEYPOINTS, h, w):
        raise ValueError(f"cannot decode {layout} heads {hm.shape} and {off.shape}")
    fmax = np.finfo(np.float32).max
    flat = np.clip(hm.reshape(n, c, h * w), -fmax, fmax)
    valid = ~np.isnan(flat)
    any_valid = valid.any(axis=-1)
    mx = np.where(valid, flat, np.float32(-np.inf)).max(axis=-1)
    hit = valid & (flat == mx[..., None])
    idx = np.where(any_valid, hit.argmax(axis=-1), 0)
    mx = np.where(any_valid, mx, np.float32(np.nan)).astype(np.float32)
    gy, gx = idx // w, idx % w
    b = np.arange(n)[:, None]
    k = np.arange(NUM_KEYPOINTS)[None, :]
    y = (gy * stride).astype(np.float32) + off[b, k, gy, gx]
    x = (gx * stride).astype(np.float32) + off[b, k + NUM_KEYPOINTS, gy, gx]
    if scores == "sigmoid":
        one = np.float32(1.0)
        with np.errstate(over="ignore"):
            score = one / (one + np.exp(-mx))
    else:
        score = mx
    kp = np.stack([x, y, score.astype(np.float32)], axis=-1).astype(np.float32)
    ties = int((hit.sum(axis=-1) > 1).sum())
    return kp, np.stack([gy, gx], axis=-1), ties


class MultiPoseReference:
    """The Rust multi-pose reference, run in batch: `decode(entry, heads_list)` writes each run's
    four heads (NCHW, the whole batch) to a raw file and decodes them all in one process."""

    def __init__(self, binary):
        self.binary = Path(binary)
        self.calls = 0
        self.seconds = 0.0

    def decode(self, entry, runs):
        """`runs`: a list of (heatmaps, offsets, fwd, bwd) arrays [B, C, H, W]. Returns per run
        (poses float32 [B, N, 17, 3], pose_scores float32 [B, N], found [B], roots)."""
        if not runs:
            return []
        if not self.binary.is_file():
            raise SystemExit(f"conformance: the multi-pose reference {self.binary} is missing "
                             "(cargo build --example decode_multi_pose)")
        mp = entry["multi_pose"]
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="posefix-multi-pose-") as tmp:
            jobs = []
            for i, heads in enumerate(runs):
                path = Path(tmp) / f"run{i}.bin"
                with open(path, "wb") as f:
                    for head in heads:
                        f.write(np.ascontiguousarray(head, dtype="<f4").tobytes())
                jobs.append({"heads": str(path), "batch": int(heads[0].shape[0]),
                             "grid": [int(heads[0].shape[2]), int(heads[0].shape[3])],
                             "stride": entry["stride"], "scores": entry["scores"],
                             "max_poses": mp["max_poses"], "score_threshold": mp["score_threshold"],
                             "nms_radius": mp["nms_radius"]})
            proc = subprocess.run([str(self.binary)], input=json.dumps({"jobs": jobs}), capture_output=True,
                                  text=True)
        if proc.returncode != 0:
            raise SystemExit(f"conformance: the multi-pose reference failed ({proc.returncode}): "
                             f"{one_line(proc.stderr)}")
        self.calls += 1
        self.seconds += time.monotonic() - started
        out = []
        n = mp["max_poses"]
        for heads, ans in zip(runs, json.loads(proc.stdout)["jobs"]):
            b = heads[0].shape[0]
            as_f32 = lambda v: np.array([np.nan if x is None else x for x in v], dtype=np.float64).astype(np.float32)  # noqa: E731
            out.append((as_f32(ans["poses"]).reshape(b, n, NUM_KEYPOINTS, 3),
                        as_f32(ans["pose_scores"]).reshape(b, n), ans["found"], ans["roots"]))
        return out


def narrow_of(runtime):
    """The NARROW entry of a runtime that computes in a type narrower than float32 at its defaults
    (its `narrow` attribute, or `fp16_arithmetic` for float16), or None."""
    name = getattr(runtime, "narrow", None) or ("float16" if getattr(runtime, "fp16_arithmetic", False) else None)
    return NARROW[name] if name else None


def cells_matching(off_nchw, stride, b, k, x, y, narrow=None):
    """Heatmap cells whose decoded position is (x, y) within tolerance (with `narrow`, a NARROW
    entry: equal once both are rounded to that type): where a mismatching runtime most likely
    pointed."""
    _, _, h, w = off_nchw.shape
    gy, gx = np.mgrid[0:h, 0:w]
    py = (gy * stride).astype(np.float32) + np.asarray(off_nchw[b, k], dtype=np.float32)
    px = (gx * stride).astype(np.float32) + np.asarray(off_nchw[b, k + NUM_KEYPOINTS], dtype=np.float32)
    if narrow:
        t = narrow["type"]
        with np.errstate(over="ignore", invalid="ignore"):
            near = (py.astype(t) == np.float32(y).astype(t)) & (px.astype(t) == np.float32(x).astype(t))
    else:
        near = (np.abs(py - y) <= POS_TOL) & (np.abs(px - x) <= POS_TOL)
    found = np.argwhere(near)
    return [tuple(int(v) for v in cell) for cell in found[:3]]


# ---------------------------------------------------------------------------------------------
# Inputs


def image_dims(shape, layout):
    if layout == "NHWC":
        n, h, w, c = shape
    else:
        n, c, h, w = shape
    return n, c, h, w


def to_layout(nchw, layout):
    return np.ascontiguousarray(nchw.transpose(0, 2, 3, 1) if layout == "NHWC" else nchw)


def generated_inputs(shape, layout):
    """(label, array) pairs of synthetic images in the model's input layout."""
    n, c, h, w = image_dims(shape, layout)
    rng = np.random.default_rng(NOISE_SEED)
    noise = rng.uniform(-1.0, 1.0, size=(n, c, h, w)).astype(np.float32)
    zeros = np.zeros((n, c, h, w), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    # Batch item i is shifted by i squares, so the items of one batch differ.
    board = np.stack(
        [((yy // CHECKER_SQUARE + xx // CHECKER_SQUARE + i) % 2) * 2.0 - 1.0 for i in range(n)]
    )
    board = np.repeat(board[:, None], c, axis=1).astype(np.float32)
    return [(f"noise b{n}", to_layout(noise, layout)), (f"zeros b{n}", to_layout(zeros, layout)),
            (f"checkerboard b{n}", to_layout(board, layout))]


RESNET_MEAN = np.array([-123.15, -115.90, -103.06], dtype=np.float32)


def normalize(pixels_nchw, preprocess):
    """0..255 pixels (NCHW) as `--preprocess` normalizes them, in float32 as the Rust does."""
    x = pixels_nchw.astype(np.float32)
    if preprocess == "mobilenet":
        return (x / np.float32(127.5) - np.float32(1.0)).astype(np.float32)
    if preprocess == "resnet":
        c = x.shape[1]
        mean = RESNET_MEAN if c == 3 else np.full(c, RESNET_MEAN.sum(dtype=np.float32) / np.float32(3), np.float32)
        return (x + mean[None, :, None, None]).astype(np.float32)
    raise ValueError(f"no normalization {preprocess}")


def pixel_inputs(entry, shape, photos):
    """For a model that takes pixels (`--pixels`): (label, (original's input, rewritten's input))
    pairs, the original fed the pixels normalized by `preprocess`, the rewritten one the pixels
    as `unit` (v/255) or `byte` (v) floats: noise, black, a black and white checkerboard, photos."""
    from PIL import Image

    layout, preprocess, unit = entry["input_layout"], entry["preprocess"], entry["pixels"] == "unit"
    n, c, h, w = image_dims(shape, layout)
    rng = np.random.default_rng(NOISE_SEED)
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.stack([((yy // CHECKER_SQUARE + xx // CHECKER_SQUARE + i) % 2) * 255 for i in range(n)])
    images = [(f"pixel noise b{n}", rng.integers(0, 256, size=(n, c, h, w))),
              (f"pixel zeros b{n}", np.zeros((n, c, h, w))),
              (f"pixel checkerboard b{n}", np.repeat(board[:, None], c, axis=1))]
    for path in photos:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((w, h), Image.BILINEAR)
        # The label of photo_inputs: the original's input is the same array.
        images.append((f"photo {path.name}", np.repeat(np.asarray(rgb).transpose(2, 0, 1)[None], n, axis=0)))
    out = []
    for label, pixels in images:
        pixels = pixels.astype(np.uint8).astype(np.float32)
        fed = (pixels / np.float32(255)).astype(np.float32) if unit else pixels
        out.append((label, (to_layout(normalize(pixels, preprocess), layout), to_layout(fed, layout))))
    return out


def photo_inputs(paths, shape, layout):
    """Photos resized to the input (bilinear), scaled x/127.5 - 1, one per batch item."""
    from PIL import Image

    n, _, h, w = image_dims(shape, layout)
    out = []
    for path in paths:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((w, h), Image.BILINEAR)
        chw = (np.asarray(rgb, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)).transpose(2, 0, 1)
        out.append((f"photo {path.name}", to_layout(np.repeat(chw[None], n, axis=0), layout)))
    return out


# ---------------------------------------------------------------------------------------------
# Runtimes


def one_line(exc):
    """A runtime's exception message on one line."""
    text = str(exc).strip() or type(exc).__name__
    return re.sub(r"\s*\n\s*", " | ", text)


class OnnxRuntime:
    name = "onnxruntime"
    fatal_load = True

    def __init__(self):
        import onnxruntime as ort

        self.ort = ort
        self.version = ort.__version__

    def load(self, path):
        opts = self.ort.SessionOptions()
        opts.log_severity_level = 3
        return self.ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def run(self, session, input_name, x):
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {input_name: x})))


class OpenCvDnn:
    """OpenCV DNN through `cv2.dnn.readNetFromONNX`. OpenCV 5 has two ONNX engines (the default,
    ENGINE_AUTO, tries the new one and falls back to the classic one): each is a runtime here.
    OpenCV 4 has one (`engine=None`)."""

    fatal_load = False

    def __init__(self, engine=None):
        import cv2

        self.cv2 = cv2
        self.engine = None if engine is None else getattr(cv2.dnn, f"ENGINE_{engine.upper()}")
        self.name = "opencv" if engine is None else f"opencv-{engine}"
        self.version = cv2.__version__

    @staticmethod
    def all():
        # Failures come back as exceptions; OpenCV would also log each one to stderr. Read once,
        # when cv2 is first imported.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        import cv2

        if hasattr(cv2.dnn, "ENGINE_NEW"):
            return [OpenCvDnn("new"), OpenCvDnn("classic")]
        return [OpenCvDnn()]

    def load(self, path):
        if self.engine is None:
            return self.cv2.dnn.readNetFromONNX(str(path))
        return self.cv2.dnn.readNetFromONNX(str(path), self.engine)

    def run(self, net, input_name, x):
        net.setInput(x, input_name)
        # The new engine insists on being asked for every graph output at once.
        names = list(net.getUnconnectedOutLayersNames())
        outs = net.forward(names)
        return {name: np.array(out, copy=True) for name, out in zip(names, outs)}


class OpenVino:
    """OpenVINO's CPU plugin, reading the ONNX file itself (`Core.read_model`), as its users load
    a model. Two runtimes: `openvino` with `INFERENCE_PRECISION_HINT` at f32, and
    `openvino-defaults`, the plugin's default precision: bfloat16 on a processor with bfloat16
    arithmetic (AMX or AVX-512 BF16), float32 elsewhere; held to check.py's narrow-arithmetic
    rules (6. above) in bfloat16 when that is what the plugin says it computes in (the run's
    header line says which)."""

    fatal_load = False
    exact_setting = 'core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})'

    def __init__(self, defaults):
        import openvino

        self.core = openvino.Core()
        self.version = openvino.__version__.split("-")[0]
        self.config = {} if defaults else {"INFERENCE_PRECISION_HINT": "f32"}
        self.name = "openvino-defaults" if defaults else "openvino"
        # The plugin's default for this processor: "<Type: 'bfloat16'>" or "<Type: 'float32'>".
        precision = str(self.core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
        self.narrow = "bfloat16" if defaults and "bfloat16" in precision else None
        if defaults:
            self.version += f", computing in {'bfloat16' if self.narrow else 'float32'} on this processor"

    @staticmethod
    def accepts(entry):
        if entry.get("fp16"):
            # Measured: the plugin computes a float16 model in float32 (or bfloat16) and the
            # decoder reads the heads unrounded, while the heads it returns are rounded to float16:
            # positions a few thousandths of a pixel off the reference on the returned heads.
            return "float16 models: the plugin computes them wider and the decoder reads the heads unrounded"
        return None

    def load(self, path):
        return self.core.compile_model(self.core.read_model(str(path)), "CPU", self.config)

    def run(self, compiled, input_name, x):
        result = compiled({input_name: x})
        # Every name of each output: the plugin may report another name of the same tensor first.
        return {name: np.array(result[out], copy=True) for out in compiled.outputs for name in out.get_names()}


class Mnn:
    """MNN (Alibaba), as its users take an ONNX model there: its converter with the arguments of
    `mnnconvert -f ONNX --modelFile model.onnx --MNNModel model.mnn --bizCode posefix`, then the
    Module API on the CPU at its defaults (`MNN.nn.load_module_from_file`), fed the ONNX input as
    it is. The converter runs in a subprocess (a crash is a failed load, not check.py's), and as
    the wheel's compiled `_tools.mnnconvert`, not its `mnnconvert` command: that wrapper reports
    each conversion to Aliyun's log service and, when the SDK for that is missing, runs
    `pip install -U aliyun-log-python-sdk` into whatever pip is on PATH (MNN/tools/utils/log.py)."""

    fatal_load = "if_original"
    name = "mnn"

    def __init__(self):
        import MNN

        self.mnn = MNN
        self.version = MNN.version()
        self.tmp = Path(tempfile.mkdtemp(prefix="mnn-"))

    @staticmethod
    def accepts(entry):
        if entry.get("output_type") == "float16":
            # Measured: the outputs come back float32 and are not float16 values.
            return ("--output-type float16: mnnconvert makes a float16 model a float32 one, the decoder's "
                    "final Casts to float16 included")
        return None

    def load(self, path):
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        weights = {t.name for t in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in weights]
        outputs = [o.name for o in graph.output]
        out = self.tmp / (Path(path).stem + ".mnn")
        Mnn.convert(path, out)
        return self.mnn.nn.load_module_from_file(str(out), inputs, outputs), outputs

    @staticmethod
    def convert(path, out):
        """`mnnconvert -f ONNX --modelFile path --MNNModel out --bizCode posefix`, by the wheel's
        compiled converter in a subprocess; RuntimeError with its last words when it fails."""
        argv = ["mnnconvert", "-f", "ONNX", "--modelFile", str(path), "--MNNModel", str(out), "--bizCode", "posefix"]
        out.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-c", "import sys, _tools; _tools.mnnconvert(sys.argv[1:])", *argv],
                              capture_output=True, text=True, cwd=out.parent)  # it leaves a scratch file there
        if done.returncode != 0 or not out.is_file():
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-2:])
            signal = f" (signal {-done.returncode})" if done.returncode < 0 else ""
            raise RuntimeError(f"mnnconvert failed, exit {done.returncode}{signal}: {tail}")

    def run(self, loaded, input_name, x):
        module, names = loaded
        expr = self.mnn.expr
        # A float16 model is converted to a float32 one (mnnconvert's default): its input widened,
        # exactly.
        x = x.astype(np.float32) if x.dtype == np.float16 else x
        outs = module.forward([expr.const(x, list(x.shape), expr.NCHW)])
        result = {}
        for name, out in zip(names, outs):
            if out.data_format == expr.NC4HW4:  # MNN's packed layout: back to the ONNX one
                out = expr.convert(out, expr.NCHW)
            result[name] = np.array(out.read(), copy=True).reshape(out.shape)
        return result


# ---------------------------------------------------------------------------------------------
# Checks


def check_onnx(path, output_name, multi_pose=None, output_type="float"):
    """None when onnx accepts the model, else the reason. With `multi_pose` (a manifest entry's),
    inference must also find `poses` [*, N, 17, 3] and `pose_scores` [*, N]; every one of them of
    `output_type` (an ONNX type name)."""
    import onnx
    from onnx import checker, shape_inference

    try:
        model = onnx.load(str(path))
        checker.check_model(model, full_check=True)
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        # Inference alone, without the declared output shape, must find [*, 17, 3].
        bare = onnx.ModelProto()
        bare.CopyFrom(model)
        want = {output_name: [17, 3]}
        if multi_pose:
            n = multi_pose["max_poses"]
            want.update({multi_pose["poses"]: [n, 17, 3], multi_pose["pose_scores"]: [n]})
        for out in bare.graph.output:
            if out.name in want:
                out.type.tensor_type.ClearField("shape")
        inferred = shape_inference.infer_shapes(bare, check_type=True, strict_mode=True, data_prop=True)
        for name, tail in want.items():
            out = next(o for o in inferred.graph.output if o.name == name)
            t = out.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] \
                if t.HasField("shape") else None
            elem = onnx.TensorProto.FLOAT16 if output_type == "float16" else onnx.TensorProto.FLOAT
            if t.elem_type != elem or dims is None or dims[1:] != tail:
                shape = ", ".join(["*"] + [str(d) for d in tail])
                return f"shape inference gives {name} type {t.elem_type} shape {dims}, not {output_type} [{shape}]"
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return one_line(exc)
    return None


_PROFILE_TYPES = {}
_MODEL_TYPES = {}


def profile_forbidden_types(name):
    """{type: the rule's source} of the `forbidden_types` rules of profiles/NAME.toml ({} for None)."""
    if name is None:
        return {}
    if name not in _PROFILE_TYPES:
        data = tomllib.loads((PROFILES / f"{name}.toml").read_text())
        found = {}
        for rule in data.get("rules", []):
            if rule.get("rule") == "forbidden_types":
                for t in rule.get("types", []):
                    found.setdefault(t, rule.get("source", ""))
        _PROFILE_TYPES[name] = found
    return _PROFILE_TYPES[name]


def model_types(path):
    """The element types (ONNX names, lowercase as in the profiles) a model's main graph holds:
    initializers, graph inputs, outputs and value_info, Cast targets, tensor attributes."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    elems = {t.data_type for t in g.initializer}
    elems |= {v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]
              if v.type.HasField("tensor_type")}
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to":
                elems.add(a.i)
            if a.type == onnx.AttributeProto.TENSOR:
                elems.add(a.t.data_type)
    return {onnx.TensorProto.DataType.Name(e).lower() for e in elems if e}


def refusal_expected(runtime, models_dir, entry):
    """Why the runtime must refuse the entry's models (its profile forbids a type the original
    holds), or None."""
    profile = getattr(runtime, "profile", None)
    forbidden = profile_forbidden_types(profile)
    if not forbidden:
        return None
    key = entry["orig_sha256"]
    if key not in _MODEL_TYPES:
        _MODEL_TYPES[key] = model_types(models_dir / entry["orig"])
    held = sorted(t for t in _MODEL_TYPES[key] if t in forbidden)
    if not held:
        return None
    return f"profiles/{profile}.toml forbids {', '.join(held)}, which the original holds"


def load_legs(names):
    """The runtimes of each leg named, from conformance/legs/LEG/runtime.py."""
    runtimes = []
    for name in names:
        path = REPO / "conformance" / "legs" / name / "runtime.py"
        if not path.is_file():
            raise SystemExit(f"conformance: no leg {name} ({path} is missing)")
        spec = importlib.util.spec_from_file_location(f"posefix_leg_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
        runtimes += module.runtimes()
    return runtimes


@dataclass
class RuntimeResult:
    skipped: str | None = None
    loaded: bool = False
    reason: str | None = None
    orig_loaded: bool = False
    orig_reason: str | None = None
    run_failure: str | None = None
    runs: int = 0
    exact_runs: int = 0
    bit_exact_positions: int = 0
    keypoints_checked: int = 0
    ties: int = 0
    max_dx: float = 0.0
    max_dy: float = 0.0
    max_dscore: float = 0.0
    heads_max_diff: float = 0.0
    # Runs whose heads were compared with the original's, and those where they were bit-identical
    # (for a model that takes pixels: the normalization in its graph is exactly check.py's).
    heads_runs: int = 0
    heads_bit_identical_runs: int = 0
    mismatches: list = field(default_factory=list)
    seconds: float = 0.0  # loading and running both models, and checking
    # Multi-pose models only.
    poses_compared: int = 0
    pose_keypoints_checked: int = 0
    pose_bit_exact_positions: int = 0
    pose_scores_bit_exact: int = 0
    pose_max_dpos: float = 0.0
    pose_max_dscore: float = 0.0
    pose_max_dpose_score: float = 0.0
    # Set when the runtime's profile says it cannot run the model (refusal_expected): then the
    # rewritten model is loaded and run once only, and it must fail.
    expected_refusal: str | None = None
    ran_despite_profile: bool = False
    # Float16 outputs the runtime returned as float32 holding float16 values (see narrowed()).
    widened_outputs: int = 0
    # A runtime computing in fp16 (`fp16_arithmetic`): positions compared rounded to fp16, and
    # the multi-pose runs' mismatches kept here (expected), not in `mismatches`.
    fp16: bool = False
    multi_pose_runs: int = 0
    multi_pose_exact_runs: int = 0
    expected_inexact: list = field(default_factory=list)

    @property
    def refused_as_expected(self):
        return bool(self.expected_refusal) and not self.ran_despite_profile and (not self.loaded or bool(self.run_failure))

    @property
    def exact(self):
        return self.loaded and self.run_failure is None and self.runs > 0 and self.exact_runs == self.runs

    @property
    def multi_pose_inexact(self):
        """Multi-pose runs that were not exact where that is expected (fp16 arithmetic)."""
        return self.multi_pose_runs - self.multi_pose_exact_runs if self.fp16 else 0


def nan_aware_diff(a, b):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d = np.where(np.isnan(a) & np.isnan(b), 0.0, d)
    return np.where(np.isnan(d), np.inf, d)


def bits(a):
    """The raw bits of a float array (uint16 for float16, uint32 for float32), to count bit-exact values."""
    a = np.asarray(a)
    return a.view(f"u{a.itemsize}")


def output_dtype(entry):
    return NUMPY_TYPES[entry.get("output_type") or "float"]


def narrowed(a, want_type, res):
    """A runtime's output in the declared type. A runtime may hand float16 outputs back widened to
    float32 (OpenCV 5's new engine does): when every value is a float16 value it is narrowed (an
    exact conversion) and the run counted in `widened_outputs`; otherwise it is left as it is, and
    the type check reports it."""
    a = np.asarray(a)
    if want_type != np.float16 or a.dtype != np.float32:
        return a
    with np.errstate(over="ignore"):
        back = a.astype(np.float16)
    if not ((back.astype(np.float32) == a) | np.isnan(a)).all():
        return a
    res.widened_outputs += 1
    return back


def as_output_type(ref, want_type):
    """The reference (float32) in the output type, and the slack each comparison gets for it: 0 in
    float32; in float16 the reference rounded once (to nearest, ties to even) and one float16
    spacing of the rounded value (a runtime's float32 within a tolerance of the reference rounds to
    within that tolerance plus one spacing of the rounded reference)."""
    if want_type == np.float32:
        return ref, np.zeros(ref.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = ref.astype(want_type)
        slack = np.abs(np.spacing(rounded)).astype(np.float64)
    return rounded, np.where(np.isfinite(slack), slack, 0.0)


def compare_run(entry, label, outs, orig_outs, res: RuntimeResult, narrow=None, float16_constants=False):
    """Checks one run's keypoints against the reference on its own heads. With `narrow` (a
    NARROW entry: a runtime that computes in fp16 or bfloat16): positions equal once both are
    rounded to that type, scores within its score tolerance or FP16_SCORE_SPACINGS of its
    spacings (plus SCORE_TOL), heads within its heads tolerance. With `float16_constants` (a runtime that stores the model's float constants in
    float16 and computes in float32), a model that takes pixels has its heads compared within
    FP16_HEADS_TOL too: the normalization's constants are rounded like every weight."""
    problems = []
    kp = outs.get(entry["output"])
    hm, off = outs.get(entry["heatmaps"]), outs.get(entry["offsets"])
    if kp is None or hm is None or off is None:
        missing = [n for n in (entry["output"], entry["heatmaps"], entry["offsets"]) if n not in outs]
        return [f"{label}: outputs {missing} missing (got {sorted(outs)})"]
    if narrow:
        # The heads as the decoder received them: a runtime may return a head in float32 (OpenVINO
        # computes a graph output's last op wider) while its own readers got it in the narrow type.
        with np.errstate(over="ignore", invalid="ignore"):
            hm, off = (np.asarray(h, np.float32).astype(narrow["type"]).astype(np.float32) for h in (hm, off))
    try:
        ref, cells, ties = decode_reference(hm, off, entry["layout"], entry["stride"], entry["scores"])
    except ValueError as exc:  # a runtime that returns another tensor under a head's name
        return [f"{label}: {exc}"]
    res.ties += ties
    want_type = output_dtype(entry)
    kp = narrowed(kp, want_type, res)
    if kp.dtype != want_type or kp.shape != ref.shape:
        return [f"{label}: keypoints {kp.dtype} {list(kp.shape)}, expected {want_type} {list(ref.shape)}"]
    ref, slack = as_output_type(ref, want_type)
    d = nan_aware_diff(kp, ref)
    res.max_dx = max(res.max_dx, float(d[..., 0].max()))
    res.max_dy = max(res.max_dy, float(d[..., 1].max()))
    res.max_dscore = max(res.max_dscore, float(d[..., 2].max()))
    res.keypoints_checked += kp.shape[0] * kp.shape[1]
    if narrow:
        # The runtime adds cell * stride and the offset in fp16 (or bfloat16): the reference's
        # float32 sum, rounded to that type, is what it must give (the same cell, the same offset).
        with np.errstate(over="ignore", invalid="ignore"):
            got16, ref16 = kp.astype(narrow["type"]), ref.astype(narrow["type"])
            score_slack = np.nan_to_num(np.abs(np.spacing(ref16[..., 2])).astype(np.float64), nan=0.0, posinf=0.0)
        same = (got16[..., :2] == ref16[..., :2]) | (np.isnan(got16[..., :2]) & np.isnan(ref16[..., :2]))
        res.bit_exact_positions += int(same.all(axis=-1).sum())
        score_tol = np.maximum(narrow["score"], FP16_SCORE_SPACINGS * score_slack)
        bad = ~same.all(axis=-1) | (d[..., 2] > SCORE_TOL + np.maximum(slack[..., 2], score_tol))
    else:
        res.bit_exact_positions += int((bits(kp[..., :2]) == bits(ref[..., :2])).all(axis=-1).sum())
        bad = (d[..., 0] > POS_TOL + slack[..., 0]) | (d[..., 1] > POS_TOL + slack[..., 1]) \
            | (d[..., 2] > SCORE_TOL + slack[..., 2])
    if bad.any():
        off_nchw = off.transpose(0, 3, 1, 2) if entry["layout"] == "NHWC" else off
        for b, k in np.argwhere(bad)[:3]:
            got, want = kp[b, k], ref[b, k]
            cell = tuple(int(v) for v in cells[b, k])
            took = cells_matching(off_nchw, entry["stride"], b, k, got[0], got[1], narrow)
            if narrow:
                w16 = want.astype(narrow["type"])
                want_text = (f"reference rounded to {np.dtype(narrow['type']).name} ({float(w16[0]):.6g}, {float(w16[1]):.6g}, "
                             f"{float(w16[2]):.6g}) (float32 ({want[0]:.6g}, {want[1]:.6g}, {want[2]:.6g}))")
            else:
                want_text = f"reference ({want[0]:.6g}, {want[1]:.6g}, {want[2]:.6g})"
            problems.append(
                f"{label}: item {b} keypoint {k}: got (x, y, score) ({got[0]:.6g}, {got[1]:.6g}, {got[2]:.6g}), "
                f"{want_text} at cell {cell}; runtime's position fits cells {took or 'none'}"
            )
        if bad.sum() > 3:
            problems.append(f"{label}: {int(bad.sum())} keypoints differ in all")
    if orig_outs is not None:
        heads = [entry["heatmaps"], entry["offsets"]]
        if entry.get("multi_pose"):
            heads += [entry["multi_pose"]["displacement_fwd"], entry["multi_pose"]["displacement_bwd"]]
        res.heads_runs += 1
        res.heads_bit_identical_runs += all(
            outs.get(h) is not None and orig_outs.get(h) is not None and outs[h].shape == orig_outs[h].shape
            and outs[h].dtype == orig_outs[h].dtype and np.array_equal(bits(outs[h]), bits(orig_outs[h]))
            for h in heads)
        for head in heads:
            a, b = outs.get(head), orig_outs.get(head)
            if a is None:
                problems.append(f"{label}: head {head} missing (got {sorted(outs)})")
                continue
            if b is None or a.shape != b.shape:
                problems.append(f"{label}: head {head} of the original model missing or of another shape")
                continue
            diff = nan_aware_diff(a, b) / (1.0 + np.abs(b))
            res.heads_max_diff = max(res.heads_max_diff, float(diff.max()))
            if narrow and entry.get("pixels"):
                # The in-graph normalization itself runs in fp16 there, the original's input was
                # normalized by check.py in float32: the heads differ (counted, not compared).
                continue
            tol = narrow["heads"] if narrow else FP16_HEADS_TOL if float16_constants and entry.get("pixels") else HEADS_TOL
            if diff.max() > tol:
                problems.append(f"{label}: head {head} differs from the original model's by {float(diff.max()):.3g}")
    return problems


def multi_pose_outputs(entry, label, outs):
    """(heads, poses, pose_scores) of a multi-pose run, or (None, problem)."""
    mp = entry["multi_pose"]
    names = [mp["heatmaps"], mp["offsets"], mp["displacement_fwd"], mp["displacement_bwd"], mp["poses"],
             mp["pose_scores"]]
    missing = [n for n in names if n not in outs]
    if missing:
        return None, f"{label}: outputs {missing} missing (got {sorted(outs)})"
    if entry["layout"] != "NCHW":
        return None, f"{label}: multi-pose heads in {entry['layout']}: only NCHW is checked"
    heads = [np.asarray(outs[n], dtype=np.float32) for n in names[:4]]
    b, _, h, w = heads[0].shape if heads[0].ndim == 4 else (0, 0, 0, 0)
    want = [(b, c, h, w) for c in (NUM_KEYPOINTS, 2 * NUM_KEYPOINTS, 32, 32)]
    if heads[0].ndim != 4 or [x.shape for x in heads] != want:
        return None, f"{label}: multi-pose heads of shapes {[list(x.shape) for x in heads]}"
    return (heads, outs[mp["poses"]], outs[mp["pose_scores"]]), None


def compare_multi_pose(entry, label, poses, pose_scores, ref, res: RuntimeResult):
    """Checks one run's `poses` and `pose_scores` against the reference's decode of its heads."""
    want_poses, want_scores, found, roots = ref
    want_type = output_dtype(entry)
    poses, pose_scores = narrowed(poses, want_type, res), narrowed(pose_scores, want_type, res)
    if poses.dtype != want_type or poses.shape != want_poses.shape:
        return [f"{label}: poses {poses.dtype} {list(poses.shape)}, expected {want_type} {list(want_poses.shape)}"]
    if pose_scores.dtype != want_type or pose_scores.shape != want_scores.shape:
        return [f"{label}: pose_scores {pose_scores.dtype} {list(pose_scores.shape)}, "
                f"expected {want_type} {list(want_scores.shape)}"]
    want_poses, slack = as_output_type(want_poses, want_type)
    want_scores, slack_scores = as_output_type(want_scores, want_type)
    problems = []
    got_found = (pose_scores != np.float32(-1.0)).sum(axis=1)
    for b in range(poses.shape[0]):
        if int(got_found[b]) != found[b]:
            problems.append(f"{label}: item {b}: {int(got_found[b])} poses, the reference finds {found[b]} "
                            f"(pose scores {np.round(pose_scores[b], 4).tolist()} vs "
                            f"{np.round(want_scores[b], 4).tolist()}; reference roots (k, y, x) {roots[b]})")
    used = want_scores != np.float32(-1.0)  # [B, N]
    # Empty slots must be exactly the fill (keypoints 0, pose score -1).
    empty_bad = (~used) & ((pose_scores != np.float32(-1.0)) | (poses != 0).any(axis=(-1, -2)))
    both = used & (pose_scores != np.float32(-1.0))
    d = nan_aware_diff(poses, want_poses)
    dpos = np.maximum(d[..., 0], d[..., 1])
    ds = nan_aware_diff(pose_scores, want_scores)
    res.poses_compared += int(both.sum())
    res.pose_keypoints_checked += int(both.sum()) * NUM_KEYPOINTS
    bit = (bits(poses[..., :2]) == bits(want_poses[..., :2])).all(axis=-1)
    res.pose_bit_exact_positions += int((bit & both[..., None]).sum())
    res.pose_scores_bit_exact += int(((bits(pose_scores) == bits(want_scores)) & both).sum())
    if both.any():
        res.pose_max_dpos = max(res.pose_max_dpos, float(dpos[both].max()))
        res.pose_max_dscore = max(res.pose_max_dscore, float(d[..., 2][both].max()))
        res.pose_max_dpose_score = max(res.pose_max_dpose_score, float(ds[both].max()))
    bad_kp = both[..., None] & ((dpos > POS_TOL + np.maximum(slack[..., 0], slack[..., 1]))
                                | (d[..., 2] > SCORE_TOL + slack[..., 2]))
    for b, n, k in np.argwhere(bad_kp)[:3]:
        got, want = poses[b, n, k], want_poses[b, n, k]
        problems.append(f"{label}: item {b} pose {n} (root (k, y, x) {roots[b][n]}) keypoint {k}: got (x, y, score) "
                        f"({got[0]:.9g}, {got[1]:.9g}, {got[2]:.9g}), reference ({want[0]:.9g}, {want[1]:.9g}, "
                        f"{want[2]:.9g})")
    if bad_kp.sum() > 3:
        problems.append(f"{label}: {int(bad_kp.sum())} pose keypoints differ in all")
    for b, n in np.argwhere(both & (ds > POSE_SCORE_TOL + slack_scores))[:3]:
        problems.append(f"{label}: item {b} pose {n}: pose score {pose_scores[b, n]:.9g}, "
                        f"reference {want_scores[b, n]:.9g}")
    for b, n in np.argwhere(empty_bad)[:3]:
        problems.append(f"{label}: item {b} slot {n} should be empty: pose score {pose_scores[b, n]:.9g}, "
                        f"keypoints {'nonzero' if (poses[b, n] != 0).any() else 'zero'}")
    return problems


def check_runtime(runtime, models_dir, entry, inputs, res: RuntimeResult, reference=None, orig_cache=None):
    """Loads and runs the entry's models on `runtime`. `orig_cache` (a dict, or None) keeps the
    original model's load result and outputs per runtime and input, for an original that several
    entries share (the real model, under and without the multi-pose decoder): it runs once."""
    accepts = getattr(runtime, "accepts", None)
    res.skipped = accepts(entry) if accepts else None
    if entry.get("runs_on") and runtime.name not in entry["runs_on"]:
        # Built with --target for a profile with richer forms: its runtime proves them.
        res.skipped = f"built for --target {entry['target']} ({', '.join(entry['runs_on'])} only)"
    if res.skipped:
        return
    cached = None if orig_cache is None else orig_cache.setdefault((runtime.name, entry["orig_sha256"]), {})
    orig = None

    def load_orig():
        nonlocal orig
        if cached is not None and "loaded" in cached:
            res.orig_loaded, res.orig_reason = cached["loaded"], cached["load_reason"]
            return
        try:
            orig = runtime.load(models_dir / entry["orig"])
            res.orig_loaded = True
        except Exception as exc:  # noqa: BLE001
            orig, res.orig_reason = None, one_line(exc)
        if cached is not None:
            cached.update(loaded=res.orig_loaded, load_reason=res.orig_reason, outs={})

    load_orig()
    # A leg may run a subset of the inputs (the real model's photos on a slow software GPU).
    inputs = getattr(runtime, "select_inputs", lambda _entry, i: i)(entry, inputs)
    res.expected_refusal = refusal_expected(runtime, models_dir, entry)
    res.fp16 = narrow_of(runtime) is not None
    try:
        net = runtime.load(models_dir / entry["posefix"])
        res.loaded = True
    except Exception as exc:  # noqa: BLE001
        res.reason = one_line(exc)
        return
    if res.expected_refusal:
        # The profile says this runtime cannot run the model: it loaded it, so its first run decides.
        label, x = inputs[0]
        try:
            runtime.run(net, entry["input"], x[1] if isinstance(x, tuple) else x)
            res.ran_despite_profile = True
        except Exception as exc:  # noqa: BLE001
            res.run_failure = f"{label}: {one_line(exc)}"
        return
    multi = []  # (index in `problems`, label, heads, poses, pose_scores) of the multi-pose runs
    problems = []  # per run
    for label, x in inputs:
        # A model that takes pixels gets them; its original the normalized values.
        orig_x, x = x if isinstance(x, tuple) else (x, x)
        orig_outs = None
        if cached is not None and label in cached["outs"]:
            orig_outs, failure = cached["outs"][label]
            res.orig_reason = res.orig_reason or failure
        elif res.orig_loaded:
            failure = None
            try:
                if orig is None:  # loaded before, for another entry: again for the inputs not cached
                    orig = runtime.load(models_dir / entry["orig"])
                orig_outs = runtime.run(orig, entry["input"], orig_x)
            except Exception as exc:  # noqa: BLE001 - the original is context, not under test
                orig_outs = None
                failure = f"{label}: {one_line(exc)}"
                res.orig_reason = res.orig_reason or failure
            if cached is not None:
                cached["outs"][label] = (orig_outs, failure)
        try:
            outs = runtime.run(net, entry["input"], x)
        except Exception as exc:  # noqa: BLE001
            res.run_failure = f"{label}: {one_line(exc)}"
            break
        problems.append(compare_run(entry, label, outs, orig_outs, res, narrow_of(runtime),
                                    bool(getattr(runtime, "float16_constants", False))))
        if entry.get("multi_pose"):
            got, problem = multi_pose_outputs(entry, label, outs)
            if problem:
                problems[-1].append(problem)
            else:
                multi.append((len(problems) - 1, label, *got))
    # The multi-pose reference decodes every run's heads in one call.
    decoded = reference.decode(entry, [heads for _, _, heads, _, _ in multi]) if multi else []
    for (i, label, _, poses, pose_scores), ref in zip(multi, decoded):
        found = compare_multi_pose(entry, label, poses, pose_scores, ref, res)
        res.multi_pose_runs += 1
        res.multi_pose_exact_runs += not found
        if res.fp16:  # not expected to be exact in fp16 (see 6. above): reported, not a failure
            res.expected_inexact += found
        else:
            problems[i] += found
    for run_problems in problems:
        res.runs += 1
        if run_problems:
            res.mismatches.extend(run_problems)
        else:
            res.exact_runs += 1


# ---------------------------------------------------------------------------------------------
# Report


def cell_text(res: RuntimeResult):
    if res.skipped:
        return "skip"
    if res.expected_refusal:
        return "refused (profile)" if res.refused_as_expected else "RAN (profile: cannot)"
    if not res.loaded:
        return "NOT LOADED"
    if res.run_failure:
        return "RUN FAILED"
    extra = ""
    if res.fp16 and res.multi_pose_runs:
        extra = (f" (poses: inexact at narrow defaults {res.multi_pose_inexact}/{res.multi_pose_runs}, expected)"
                 if res.multi_pose_inexact else f" (poses: exact {res.multi_pose_runs}/{res.multi_pose_runs})")
    if res.exact:
        return f"exact {res.exact_runs}/{res.runs}{extra}"
    return f"MISMATCH {res.runs - res.exact_runs}/{res.runs}{extra}"


def print_table(rows, runtimes):
    headers = ["model", "onnx"] + [r.name for r in runtimes]
    body = [[row["name"], "ok" if row["onnx_error"] is None else "REJECTED"]
            + [cell_text(row["results"][r.name]) for r in runtimes] for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    print(line(headers))
    print(line(["-" * w for w in widths]))
    for cells in body:
        print(line(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dir", type=Path, help="folder with manifest.json and the model pairs")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "images",
                        help="folder of photos for the real model (skipped when missing)")
    parser.add_argument("--sample", type=Path, action="append", default=None,
                        help="extra photo for the real model (default: samples/astronaut.png)")
    parser.add_argument("--report", type=Path, default=None, help="JSON report (default: MODELS_DIR/report.json)")
    parser.add_argument("--legs", default="", help="thin-runtime legs to run too, comma-separated (ort_web,ncnn,wonnx,onnx2tf)")
    parser.add_argument("--multi-pose-reference", type=Path, default=DEFAULT_MULTI_POSE_REFERENCE,
                        help="the decode_multi_pose example binary (default: target/debug/examples/decode_multi_pose)")
    parser.add_argument("--models", default=None, metavar="REGEX",
                        help="only the models whose name matches REGEX (re.search), for debugging a leg")
    parser.add_argument("--runtimes", default=None, metavar="NAMES",
                        help="only these runtimes, comma-separated (e.g. ncnn-vulkan-defaults), for debugging a leg")
    args = parser.parse_args()

    started = time.monotonic()
    models_dir = args.models_dir
    manifest = json.loads((models_dir / "manifest.json").read_text())
    if args.models:
        manifest["models"] = [e for e in manifest["models"] if re.search(args.models, e["name"])]
    samples = args.sample if args.sample is not None else [REPO / "samples" / "astronaut.png"]
    photos = sorted(p for p in args.images.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if args.images.is_dir() else []
    photos += [p for p in samples if p.is_file()]

    import onnx

    runtimes = [OnnxRuntime(), *OpenCvDnn.all(), OpenVino(defaults=False), OpenVino(defaults=True), Mnn(),
                *load_legs([n for n in args.legs.split(",") if n])]
    if args.runtimes:
        wanted = set(args.runtimes.split(","))
        if wanted - {r.name for r in runtimes}:
            raise SystemExit(f"conformance: no runtime {sorted(wanted - {r.name for r in runtimes})} "
                             f"(have {[r.name for r in runtimes]})")
        runtimes = [r for r in runtimes if r.name in wanted]
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "onnx": onnx.__version__}
    versions.update({r.name: r.version for r in runtimes})
    print("conformance: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"conformance: {len(manifest['models'])} models, {len(photos)} photos for the real model")

    reference = MultiPoseReference(args.multi_pose_reference)
    for entry in manifest["models"]:
        entry["orig_sha256"] = hashlib.sha256((models_dir / entry["orig"]).read_bytes()).hexdigest()
    shared = [e["orig_sha256"] for e in manifest["models"]]
    orig_cache = {}
    rows = []
    for entry in manifest["models"]:
        if entry.get("multi_pose"):
            # Which photos a leg that runs a subset (select_inputs) takes for this model.
            by_stem = {p.stem: p.name for p in photos}
            entry["subset_photos"] = [by_stem[stem] for stem in MULTI_PERSON_PHOTOS if stem in by_stem]
        model_started = time.monotonic()
        inputs = []
        real_photos = photos if entry["kind"] == "real" else []
        if entry.get("pixels"):
            for i, shape in enumerate(entry["input_shapes"]):
                inputs += pixel_inputs(entry, shape, real_photos if i == 0 else [])
        else:
            for shape in entry["input_shapes"]:
                inputs += generated_inputs(shape, entry["input_layout"])
            if real_photos:
                inputs += photo_inputs(real_photos, entry["input_shapes"][0], entry["input_layout"])
        in_type = NUMPY_TYPES[entry.get("input_type") or "float"]
        if in_type != np.float32:  # a float16 model's image: the same values rounded (to nearest even)
            cast = lambda x: x.astype(in_type)  # noqa: E731
            inputs = [(label, tuple(map(cast, x)) if isinstance(x, tuple) else cast(x)) for label, x in inputs]
        row = {"name": entry["name"], "entry": entry, "inputs": [label for label, _ in inputs],
               "onnx_error": check_onnx(models_dir / entry["posefix"], entry["output"], entry.get("multi_pose"),
                                        entry.get("output_type") or "float"),
               "results": {}}
        for runtime in runtimes:
            res = RuntimeResult()
            runtime_started = time.monotonic()
            check_runtime(runtime, models_dir, entry, inputs, res, reference,
                          orig_cache if shared.count(entry["orig_sha256"]) > 1 else None)
            res.seconds = round(time.monotonic() - runtime_started, 2)
            row["results"][runtime.name] = res
        row["seconds"] = round(time.monotonic() - model_started, 2)
        rows.append(row)

    print()
    print_table(rows, runtimes)

    failures, findings = [], []
    for row in rows:
        if row["onnx_error"]:
            failures.append(f"{row['name']}: onnx rejects the rewritten model: {row['onnx_error']}")
        for runtime in runtimes:
            res = row["results"][runtime.name]
            where = f"{row['name']} on {runtime.name}"
            if res.skipped:
                continue
            if res.expected_refusal:
                if not res.refused_as_expected:
                    failures.append(f"{where}: LOADED AND RAN, but {res.expected_refusal}: the profile's claim "
                                    "no longer holds (measure the runtime again and fix the profile)")
                continue
            # A leg fails only where the original runs: then the decoder is to blame.
            original_runs = res.orig_loaded and res.orig_reason is None
            fatal = original_runs if runtime.fatal_load == "if_original" else runtime.fatal_load
            if not res.loaded:
                blame = ("the original loads, so the decoder is the cause" if res.orig_loaded
                         else f"the original does not load either: {res.orig_reason}")
                msg = f"{where}: NOT LOADED ({blame}): {res.reason}"
                (failures if fatal else findings).append(msg)
            elif res.run_failure:
                blame = "" if original_runs else f" (the original fails too: {res.orig_reason})"
                msg = f"{where}: RUN FAILED{blame}: {res.run_failure}"
                (failures if fatal else findings).append(msg)
            if res.mismatches:
                shown = res.mismatches[:MISMATCH_LINES_SHOWN]
                failures += [f"{where}: MISMATCH {m}" for m in shown]
                if len(res.mismatches) > len(shown):
                    failures.append(f"{where}: ... {len(res.mismatches) - len(shown)} more lines in the report")

    total_runs = sum(r.runs for row in rows for r in row["results"].values())
    keypoints = sum(r.keypoints_checked for row in rows for r in row["results"].values())
    bit_exact = sum(r.bit_exact_positions for row in rows for r in row["results"].values())
    ties = sum(r.ties for row in rows for r in row["results"].values())
    everything = [r for row in rows for r in row["results"].values()]
    poses = sum(r.poses_compared for r in everything)
    pose_kps = sum(r.pose_keypoints_checked for r in everything)
    pose_bit = sum(r.pose_bit_exact_positions for r in everything)
    pose_scores_bit = sum(r.pose_scores_bit_exact for r in everything)
    multi_rows = [row for row in rows if row["entry"].get("multi_pose")]
    multi_runs = sum(r.runs for row in multi_rows for r in row["results"].values())
    multi_seconds = sum(row["seconds"] for row in multi_rows)
    print()
    print(f"{total_runs} runs, {keypoints} keypoints compared ({bit_exact} bit-exact positions), "
          f"{ties} heatmaps with tied maxima")
    print(f"multi-pose: {len(multi_rows)} models, {multi_runs} runs, {poses} poses compared ({pose_kps} keypoints, "
          f"{pose_bit} bit-exact positions, {pose_scores_bit} bit-exact pose scores), {multi_seconds:.1f}s "
          f"(the reference: {reference.calls} calls, {reference.seconds:.1f}s)")
    for runtime in runtimes:
        ran = [row["results"][runtime.name] for row in rows if not row["results"][runtime.name].skipped]
        loaded = sum(r.loaded for r in ran)
        exact = sum(r.exact for r in ran)
        skipped = len(rows) - len(ran)
        mp = [row["results"][runtime.name] for row in multi_rows if not row["results"][runtime.name].skipped]
        mp_text = (f"; multi-pose exact {sum(r.exact for r in mp)}/{len(mp)}, {sum(r.poses_compared for r in mp)} "
                   f"poses, {sum(r.pose_bit_exact_positions for r in mp)}/{sum(r.pose_keypoints_checked for r in mp)} "
                   f"positions bit-exact, max |d pose score| {max([r.pose_max_dpose_score for r in mp] or [0]):.2g}"
                   if multi_rows else "")
        refused = sum(r.refused_as_expected for r in ran)
        mp = [r for r in mp if not r.expected_refusal]
        if narrow_of(runtime) and mp:
            inexact = [r for r in mp if r.multi_pose_inexact]
            mp_text = (f"; multi-pose {len(inexact)}/{len(mp)} models not exact at narrow (fp16 or bfloat16) defaults (expected; setting: "
                       f"{getattr(runtime, 'exact_setting', '?')}), "
                       f"{sum(r.multi_pose_inexact for r in mp)}/{sum(r.multi_pose_runs for r in mp)} runs")
        print(f"{runtime.name} {runtime.version}: loaded {loaded}/{len(ran)}, exact {exact}/{len(ran)}"
              + (f" ({np.dtype(narrow_of(runtime)['type']).name} arithmetic: positions compared rounded to it)" if narrow_of(runtime)
                 else "")
              + (f", {refused} refused as its profile says" if refused else "")
              + (f", {skipped} skipped" if skipped else "") + mp_text
              + f"; {sum(r.seconds for r in ran):.0f}s (loading, converting, running, checking)")
    fp16_rows = [row for row in rows if row["entry"].get("fp16")]
    fp16_summary = {}
    if fp16_rows:
        fp16_seconds = sum(row["seconds"] for row in fp16_rows)
        print(f"float16 models: {len(fp16_rows)} ({sum(r.runs for row in fp16_rows for r in row['results'].values())} "
              f"runs, {fp16_seconds:.1f}s), per runtime:")
        for runtime in runtimes:
            ran = [row["results"][runtime.name] for row in fp16_rows]
            outcome = {
                "exact": sum(r.exact for r in ran),
                "refused_as_profile_says": sum(r.refused_as_expected for r in ran),
                "RAN_though_its_profile_forbids": sum(r.ran_despite_profile for r in ran),
                "not_loaded": sum(not r.loaded and not r.skipped and not r.expected_refusal for r in ran),
                "run_failed": sum(bool(r.run_failure) and not r.expected_refusal for r in ran),
                "mismatch": sum(bool(r.mismatches) for r in ran),
                "skipped": sum(bool(r.skipped) for r in ran),
                "float16_outputs_returned_as_float32": sum(r.widened_outputs for r in ran),
                "bit_exact_positions": sum(r.bit_exact_positions for r in ran),
                "keypoints_checked": sum(r.keypoints_checked for r in ran),
            }
            reasons = sorted({(r.reason or r.run_failure or "") for r in ran
                              if r.refused_as_expected or (not r.exact and not r.skipped)} - {""})
            outcome["reasons"] = reasons
            fp16_summary[runtime.name] = outcome
            text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in outcome.items()
                             if v and k not in ("reasons", "bit_exact_positions", "keypoints_checked"))
            print(f"  {runtime.name}: {text or 'nothing ran'}"
                  + (f"; {outcome['bit_exact_positions']}/{outcome['keypoints_checked']} positions bit-exact"
                     if outcome["keypoints_checked"] else "")
                  + (f"; {reasons[0][:300]}" + (f" (+{len(reasons) - 1} other reasons)" if len(reasons) > 1 else "")
                     if reasons else ""))
    pixel_rows = [row for row in rows if row["entry"].get("pixels")]
    if pixel_rows:
        print("models that take pixels: heads bit-identical to the original's on the normalized input in")
        for runtime in runtimes:
            ran = [row["results"][runtime.name] for row in pixel_rows if not row["results"][runtime.name].skipped]
            print(f"  {runtime.name}: {sum(r.heads_bit_identical_runs for r in ran)} of "
                  f"{sum(r.heads_runs for r in ran)} runs")
    if findings:
        print(f"\n{len(findings)} load/run failures where the original fails too, or on OpenCV (reported, not fatal):")
        by_reason = {}
        for f in findings:
            where, reason = f.split(": ", 1)
            by_reason.setdefault(reason, []).append(where)
        for reason, wheres in by_reason.items():
            print(f"- {reason}\n  on: {', '.join(wheres)}")
    expected = [(row["name"], runtime, row["results"][runtime.name]) for row in rows for runtime in runtimes
                if row["results"][runtime.name].multi_pose_inexact]
    if expected:
        print(f"\n{len(expected)} multi-pose models not exact at narrow (fp16 or bfloat16) defaults (expected, not failures):")
        for name, runtime, res in expected:
            print(f"- {name} on {runtime.name}: {res.multi_pose_inexact}/{res.multi_pose_runs} runs not exact "
                  f"(setting: {getattr(runtime, 'exact_setting', '?')}); first: "
                  f"{res.expected_inexact[0] if res.expected_inexact else '?'}")
    for runtime in runtimes:
        bad = [row["name"] for row in rows if row["results"][runtime.name].fp16 and row["results"][runtime.name].mismatches]
        if bad:
            failures.append(
                f"{runtime.name} computes in fp16 (the runtime's defaults): {len(bad)} models mismatch. Its keypoints must "
                "pick the cells of a first-occurrence argmax of the heads this run computed, positions equal to the "
                "reference's rounded to fp16 (scores within an fp16 tolerance); a decoder with a constant or "
                "intermediate beyond fp16's +-65504 where its arithmetic depends on it (2^100 factors, FLT_MAX clamps) "
                "cannot. Models: " + ", ".join(bad))
    if failures:
        print(f"\n{len(failures)} FAILURES:")
        for f in failures:
            print(f"- {f}")

    elapsed = time.monotonic() - started
    report = {
        "versions": versions,
        "tolerances": {"position": POS_TOL, "score": SCORE_TOL, "heads": HEADS_TOL, "pose_score": POSE_SCORE_TOL,
                       "fp16_arithmetic": {"position": "equal once rounded to fp16", "score": FP16_SCORE_TOL,
                                           "score_spacings": FP16_SCORE_SPACINGS, "heads": FP16_HEADS_TOL}},
        "seconds": round(elapsed, 2),
        "multi_pose": {"models": len(multi_rows), "runs": multi_runs, "poses_compared": poses,
                       "keypoints_checked": pose_kps, "bit_exact_positions": pose_bit,
                       "bit_exact_pose_scores": pose_scores_bit, "seconds": round(multi_seconds, 2),
                       "reference_calls": reference.calls, "reference_seconds": round(reference.seconds, 2)},
        "float16": {"models": len(fp16_rows), "runtimes": fp16_summary},
        "ok": not failures,
        "failures": failures,
        "findings": findings,
        "models": [
            {
                **{k: row["entry"][k] for k in ("name", "kind", "opset", "layout", "scores", "stride", "batch",
                                                "grid", "input_layout", "input_shapes")},
                "multi_pose": row["entry"].get("multi_pose"),
                "pixels": row["entry"].get("pixels"),
                "preprocess": row["entry"].get("preprocess"),
                **{k: row["entry"].get(k) for k in ("fp16", "input_type", "output_type", "flags")},
                "seconds": row["seconds"],
                "inputs": row["inputs"],
                "onnx_ok": row["onnx_error"] is None,
                "onnx_error": row["onnx_error"],
                "runtimes": {
                    name: {
                        "skipped": res.skipped, "loaded": res.loaded, "reason": res.reason,
                        "orig_loaded": res.orig_loaded, "orig_reason": res.orig_reason,
                        "run_failure": res.run_failure, "exact": res.exact, "seconds": res.seconds,
                        "expected_refusal": res.expected_refusal, "refused_as_expected": res.refused_as_expected,
                        "float16_outputs_returned_as_float32": res.widened_outputs,
                        "runs": res.runs, "exact_runs": res.exact_runs,
                        "keypoints_checked": res.keypoints_checked,
                        "bit_exact_positions": res.bit_exact_positions, "tied_heatmaps": res.ties,
                        "max_dx": res.max_dx, "max_dy": res.max_dy, "max_dscore": res.max_dscore,
                        "heads_max_rel_diff": res.heads_max_diff,
                        "heads_runs": res.heads_runs, "heads_bit_identical_runs": res.heads_bit_identical_runs, "mismatches": res.mismatches,
                        **({"fp16_arithmetic": True, "multi_pose_runs": res.multi_pose_runs,
                            "multi_pose_exact_runs": res.multi_pose_exact_runs,
                            "multi_pose_expected_inexact": res.expected_inexact} if res.fp16 else {}),
                        **({"poses_compared": res.poses_compared, "pose_keypoints_checked": res.pose_keypoints_checked,
                            "pose_bit_exact_positions": res.pose_bit_exact_positions,
                            "pose_scores_bit_exact": res.pose_scores_bit_exact, "pose_max_dpos": res.pose_max_dpos,
                            "pose_max_dscore": res.pose_max_dscore, "pose_max_dpose_score": res.pose_max_dpose_score}
                           if row["entry"].get("multi_pose") else {}),
                    }
                    for name, res in row["results"].items()
                },
            }
            for row in rows
        ],
    }
    report_path = args.report or models_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {report_path} ({elapsed:.1f}s)")
    print("conformance: " + ("OK" if not failures else "FAILED"))
    for runtime in runtimes:
        close = getattr(runtime, "close", None)
        if close:
            close()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
