#!/usr/bin/env python3
"""Cross-runtime conformance of the models onnx-posefix writes.

Reads MODELS_DIR/manifest.json (written by `cargo run --example conformance_models`) and, for each
model pair `NAME.orig.onnx` / `NAME.posefix.onnx`:

1. ONNX: `onnx.checker.check_model(full_check=True)` and strict, type-checking shape inference
   must accept the rewritten model, and inference alone must give `keypoints` the shape [*, 17, 3].
2. Each runtime loads both models (a failure is recorded with the runtime's own message) and runs
   the rewritten one on every input: seeded noise, zeros (for the synthetic models every heatmap
   is then one repeated value: all cells tie), a checkerboard (ties between distant cells), and for
   the real model photos. The raw heatmaps and offsets of that same run go through a numpy port of
   the reference decoder (`src/reference/single_pose.rs`, contract in `src/contract.rs`); `keypoints` must
   match it: |dx|, |dy| <= 1e-3 and |dscore| <= 1e-5. The heads must also match those of the
   original model on the same runtime (the rewrite must not disturb them).
3. A table per model and runtime, a list of load failures with their reasons, and
   MODELS_DIR/report.json.

Thin runtimes come as legs (`--legs ort_web,ncnn,wonnx`): each folder conformance/legs/LEG/ has a
`setup.sh` that installs the runtime (run.sh runs it) and a `runtime.py` whose `runtimes()` gives
objects with the same interface as the classes below, plus `accepts(entry)` (None, or why the leg
skips a model: a batch it cannot hold, say), optionally `select_inputs(entry, inputs)` (the inputs
it runs: a subset of the photos on a software GPU) and `close()`.

Exit status 1 when: the ONNX checks reject a rewritten model; onnxruntime fails to load or run a
model or gives any mismatch; any runtime loads a model and then gives a mismatch; a leg's runtime
fails to load or run a rewritten model whose original it loads and runs. OpenCV failing to load or
run a model is reported (with the op and the reason when OpenCV names them), not fatal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NUM_KEYPOINTS = 17
POS_TOL = 1e-3
SCORE_TOL = 1e-5
HEADS_TOL = 1e-4
MISMATCH_LINES_SHOWN = 4  # per model and runtime; report.json has them all
NOISE_SEED = 20240917
CHECKER_SQUARE = 24  # pixels; not a multiple of any stride, so squares straddle grid cells
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# Reference decoder (numpy port of src/reference/single_pose.rs)


def decode_reference(heatmaps, offsets, layout, stride, scores):
    """Returns (keypoints float32 [N, 17, 3] as (x, y, score), cells int [N, 17, 2] as (gy, gx)).

    First-occurrence argmax over each heatmap flattened row-major, once clamped to +-FLT_MAX (so
    +inf ties with FLT_MAX); NaN cells never win; an all-NaN map decodes to cell (0, 0) with a NaN
    score. All arithmetic in float32, one addition per
    coordinate, like the Rust reference.
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


def cells_matching(off_nchw, stride, b, k, x, y):
    """Heatmap cells whose decoded position is (x, y) within tolerance: where a mismatching
    runtime most likely pointed."""
    _, _, h, w = off_nchw.shape
    gy, gx = np.mgrid[0:h, 0:w]
    py = (gy * stride).astype(np.float32) + off_nchw[b, k]
    px = (gx * stride).astype(np.float32) + off_nchw[b, k + NUM_KEYPOINTS]
    found = np.argwhere((np.abs(py - y) <= POS_TOL) & (np.abs(px - x) <= POS_TOL))
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


# ---------------------------------------------------------------------------------------------
# Checks


def check_onnx(path, output_name):
    """None when onnx accepts the model, else the reason."""
    import onnx
    from onnx import checker, shape_inference

    try:
        model = onnx.load(str(path))
        checker.check_model(model, full_check=True)
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        # Inference alone, without the declared output shape, must find [*, 17, 3].
        bare = onnx.ModelProto()
        bare.CopyFrom(model)
        for out in bare.graph.output:
            if out.name == output_name:
                out.type.tensor_type.ClearField("shape")
        inferred = shape_inference.infer_shapes(bare, check_type=True, strict_mode=True, data_prop=True)
        out = next(o for o in inferred.graph.output if o.name == output_name)
        t = out.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else None
        if t.elem_type != onnx.TensorProto.FLOAT or dims is None or len(dims) != 3 or dims[1:] != [17, 3]:
            return f"shape inference gives {output_name} type {t.elem_type} shape {dims}, not float [*, 17, 3]"
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return one_line(exc)
    return None


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
    mismatches: list = field(default_factory=list)

    @property
    def exact(self):
        return self.loaded and self.run_failure is None and self.runs > 0 and self.exact_runs == self.runs


def nan_aware_diff(a, b):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d = np.where(np.isnan(a) & np.isnan(b), 0.0, d)
    return np.where(np.isnan(d), np.inf, d)


def compare_run(entry, label, outs, orig_outs, res: RuntimeResult):
    """Checks one run's keypoints against the reference on its own heads."""
    problems = []
    kp = outs.get(entry["output"])
    hm, off = outs.get(entry["heatmaps"]), outs.get(entry["offsets"])
    if kp is None or hm is None or off is None:
        missing = [n for n in (entry["output"], entry["heatmaps"], entry["offsets"]) if n not in outs]
        return [f"{label}: outputs {missing} missing (got {sorted(outs)})"]
    try:
        ref, cells, ties = decode_reference(hm, off, entry["layout"], entry["stride"], entry["scores"])
    except ValueError as exc:  # a runtime that returns another tensor under a head's name
        return [f"{label}: {exc}"]
    res.ties += ties
    if kp.dtype != np.float32 or kp.shape != ref.shape:
        return [f"{label}: keypoints {kp.dtype} {list(kp.shape)}, expected float32 {list(ref.shape)}"]
    d = nan_aware_diff(kp, ref)
    res.max_dx = max(res.max_dx, float(d[..., 0].max()))
    res.max_dy = max(res.max_dy, float(d[..., 1].max()))
    res.max_dscore = max(res.max_dscore, float(d[..., 2].max()))
    res.keypoints_checked += kp.shape[0] * kp.shape[1]
    res.bit_exact_positions += int((kp[..., :2].view(np.uint32) == ref[..., :2].view(np.uint32)).all(axis=-1).sum())
    bad = (d[..., 0] > POS_TOL) | (d[..., 1] > POS_TOL) | (d[..., 2] > SCORE_TOL)
    if bad.any():
        off_nchw = off.transpose(0, 3, 1, 2) if entry["layout"] == "NHWC" else off
        for b, k in np.argwhere(bad)[:3]:
            got, want = kp[b, k], ref[b, k]
            cell = tuple(int(v) for v in cells[b, k])
            took = cells_matching(off_nchw, entry["stride"], b, k, got[0], got[1])
            problems.append(
                f"{label}: item {b} keypoint {k}: got (x, y, score) ({got[0]:.6g}, {got[1]:.6g}, {got[2]:.6g}), "
                f"reference ({want[0]:.6g}, {want[1]:.6g}, {want[2]:.6g}) at cell {cell}; "
                f"runtime's position fits cells {took or 'none'}"
            )
        if bad.sum() > 3:
            problems.append(f"{label}: {int(bad.sum())} keypoints differ in all")
    if orig_outs is not None:
        for head in (entry["heatmaps"], entry["offsets"]):
            a, b = outs[head], orig_outs.get(head)
            if b is None or a.shape != b.shape:
                problems.append(f"{label}: head {head} of the original model missing or of another shape")
                continue
            diff = nan_aware_diff(a, b) / (1.0 + np.abs(b))
            res.heads_max_diff = max(res.heads_max_diff, float(diff.max()))
            if diff.max() > HEADS_TOL:
                problems.append(f"{label}: head {head} differs from the original model's by {float(diff.max()):.3g}")
    return problems


def check_runtime(runtime, models_dir, entry, inputs, res: RuntimeResult):
    accepts = getattr(runtime, "accepts", None)
    res.skipped = accepts(entry) if accepts else None
    if res.skipped:
        return
    try:
        orig = runtime.load(models_dir / entry["orig"])
        res.orig_loaded = True
    except Exception as exc:  # noqa: BLE001
        orig, res.orig_reason = None, one_line(exc)
    # A leg may run a subset of the inputs (the real model's photos on a slow software GPU).
    inputs = getattr(runtime, "select_inputs", lambda _entry, i: i)(entry, inputs)
    try:
        net = runtime.load(models_dir / entry["posefix"])
        res.loaded = True
    except Exception as exc:  # noqa: BLE001
        res.reason = one_line(exc)
        return
    for label, x in inputs:
        orig_outs = None
        if orig is not None:
            try:
                orig_outs = runtime.run(orig, entry["input"], x)
            except Exception as exc:  # noqa: BLE001 - the original is context, not under test
                orig_outs = None
                res.orig_reason = res.orig_reason or f"{label}: {one_line(exc)}"
        try:
            outs = runtime.run(net, entry["input"], x)
        except Exception as exc:  # noqa: BLE001
            res.run_failure = f"{label}: {one_line(exc)}"
            return
        problems = compare_run(entry, label, outs, orig_outs, res)
        res.runs += 1
        if problems:
            res.mismatches.extend(problems)
        else:
            res.exact_runs += 1


# ---------------------------------------------------------------------------------------------
# Report


def cell_text(res: RuntimeResult):
    if res.skipped:
        return "skip"
    if not res.loaded:
        return "NOT LOADED"
    if res.run_failure:
        return "RUN FAILED"
    if res.exact:
        return f"exact {res.exact_runs}/{res.runs}"
    return f"MISMATCH {res.runs - res.exact_runs}/{res.runs}"


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
    parser.add_argument("--legs", default="", help="thin-runtime legs to run too, comma-separated (ort_web,ncnn,wonnx)")
    args = parser.parse_args()

    started = time.monotonic()
    models_dir = args.models_dir
    manifest = json.loads((models_dir / "manifest.json").read_text())
    samples = args.sample if args.sample is not None else [REPO / "samples" / "astronaut.png"]
    photos = sorted(p for p in args.images.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if args.images.is_dir() else []
    photos += [p for p in samples if p.is_file()]

    import onnx

    runtimes = [OnnxRuntime(), *OpenCvDnn.all(), *load_legs([n for n in args.legs.split(",") if n])]
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "onnx": onnx.__version__}
    versions.update({r.name: r.version for r in runtimes})
    print("conformance: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"conformance: {len(manifest['models'])} models, {len(photos)} photos for the real model")

    rows = []
    for entry in manifest["models"]:
        inputs = []
        for shape in entry["input_shapes"]:
            inputs += generated_inputs(shape, entry["input_layout"])
        if entry["kind"] == "real":
            inputs += photo_inputs(photos, entry["input_shapes"][0], entry["input_layout"])
        row = {"name": entry["name"], "entry": entry, "inputs": [label for label, _ in inputs],
               "onnx_error": check_onnx(models_dir / entry["posefix"], entry["output"]),
               "results": {}}
        for runtime in runtimes:
            res = RuntimeResult()
            check_runtime(runtime, models_dir, entry, inputs, res)
            row["results"][runtime.name] = res
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
    print()
    print(f"{total_runs} runs, {keypoints} keypoints compared ({bit_exact} bit-exact positions), "
          f"{ties} heatmaps with tied maxima")
    for runtime in runtimes:
        ran = [row["results"][runtime.name] for row in rows if not row["results"][runtime.name].skipped]
        loaded = sum(r.loaded for r in ran)
        exact = sum(r.exact for r in ran)
        skipped = len(rows) - len(ran)
        print(f"{runtime.name} {runtime.version}: loaded {loaded}/{len(ran)}, exact {exact}/{len(ran)}"
              + (f", {skipped} skipped" if skipped else ""))
    if findings:
        print(f"\n{len(findings)} load/run failures where the original fails too, or on OpenCV (reported, not fatal):")
        by_reason = {}
        for f in findings:
            where, reason = f.split(": ", 1)
            by_reason.setdefault(reason, []).append(where)
        for reason, wheres in by_reason.items():
            print(f"- {reason}\n  on: {', '.join(wheres)}")
    if failures:
        print(f"\n{len(failures)} FAILURES:")
        for f in failures:
            print(f"- {f}")

    elapsed = time.monotonic() - started
    report = {
        "versions": versions,
        "tolerances": {"position": POS_TOL, "score": SCORE_TOL, "heads": HEADS_TOL},
        "seconds": round(elapsed, 2),
        "ok": not failures,
        "failures": failures,
        "findings": findings,
        "models": [
            {
                **{k: row["entry"][k] for k in ("name", "kind", "opset", "layout", "scores", "stride", "batch",
                                                "grid", "input_layout", "input_shapes")},
                "inputs": row["inputs"],
                "onnx_ok": row["onnx_error"] is None,
                "onnx_error": row["onnx_error"],
                "runtimes": {
                    name: {
                        "skipped": res.skipped, "loaded": res.loaded, "reason": res.reason,
                        "orig_loaded": res.orig_loaded, "orig_reason": res.orig_reason,
                        "run_failure": res.run_failure, "exact": res.exact,
                        "runs": res.runs, "exact_runs": res.exact_runs,
                        "keypoints_checked": res.keypoints_checked,
                        "bit_exact_positions": res.bit_exact_positions, "tied_heatmaps": res.ties,
                        "max_dx": res.max_dx, "max_dy": res.max_dy, "max_dscore": res.max_dscore,
                        "heads_max_rel_diff": res.heads_max_diff, "mismatches": res.mismatches,
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
