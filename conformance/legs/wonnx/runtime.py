"""wonnx leg of the conformance suite: wonnx (WebGPU ONNX runtime, PyPI `wonnx`) on Mesa's
lavapipe software Vulkan driver, each model simplified by `onnxsim` first as wonnx's README tells
its users.

Imported by conformance/check.py with this folder on sys.path. wonnx, onnxsim and onnx live in the
leg's own venv (setup.sh), so the work happens in a long-lived worker subprocess (worker.py) that
speaks JSON lines over stdin/stdout and passes arrays as .npy files in a temp folder.

wonnx needs static shapes: a model with a symbolic batch is simplified (and loaded) at the batch
of each input it is run with; `load` checks it at batch 1. wonnx returns flat lists; the worker
reshapes them to the simplified model's declared output shapes, under the ONNX output names
(onnxsim keeps graph output names, wonnx keeps them too).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

LEG = Path(__file__).resolve().parent
REPO = LEG.parent.parent.parent
LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
LOAD_TIMEOUT = 600.0  # seconds; the worker is restarted when it does not answer
RUN_TIMEOUT = 600.0

# Models not run, with the reason (a subset for CI time; see README.md). Empty: every synthetic
# model of the matrix runs (about 1 s each).
SKIP: dict[str, str] = {}
# The real model costs about 8 s per run on lavapipe (2 cores), and check.py runs the original and
# the rewritten model on every input: the real model gets the generated inputs and this many photos
# (the first ones in sorted order, plus samples/astronaut.png); with the multi-pose decoder it gets
# the multi-person photos check.py names, nothing else. POSEFIX_WONNX_PHOTOS overrides it (0 = all
# inputs).
MAX_PHOTOS = int(os.environ.get("POSEFIX_WONNX_PHOTOS", "3"))
# The real model with the multi-pose decoder (N = 5) takes about 30 s per run here (the original
# 4 s): two photos, the two most crowded (multi_skiing, tennis_in_crowd: 5 poses each).
# POSEFIX_WONNX_MULTI_POSE_PHOTOS overrides it.
MULTI_POSE_PHOTOS = int(os.environ.get("POSEFIX_WONNX_MULTI_POSE_PHOTOS", "2"))


def venv_python() -> Path:
    venv = os.environ.get("POSEFIX_WONNX_VENV")
    if venv is None:
        target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
        venv = str(Path(target) / "legs" / "wonnx-venv")
    return Path(venv) / "bin" / "python"


class WorkerError(Exception):
    """A failure reported by the worker: the stage and wonnx's (or onnxsim's) own message."""

    def __init__(self, stage, message):
        super().__init__(message)
        self.stage = stage


class Worker:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="posefix-wonnx-"))
        self.proc = None
        self.lock = threading.Lock()
        self.counter = 0
        self.generation = 0  # bumped at each (re)start: sessions of an older worker are gone

    def start(self):
        py = venv_python()
        if not py.is_file():
            raise RuntimeError(f"wonnx leg venv missing: {py} (run conformance/legs/wonnx/setup.sh)")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "0")
        env.setdefault("WGPU_BACKEND", "vulkan")
        if Path(LAVAPIPE_ICD).is_file():
            env.setdefault("VK_ICD_FILENAMES", LAVAPIPE_ICD)
        xdg = self.tmp / "xdg"
        xdg.mkdir(mode=0o700, exist_ok=True)
        env.setdefault("XDG_RUNTIME_DIR", str(xdg))
        self.generation += 1
        self.stderr = open(self.tmp / "worker.stderr", "ab")
        self.proc = subprocess.Popen([str(py), str(LEG / "worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True,
                                     bufsize=1)

    def request(self, req, timeout):
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            answer = {}

            def read():
                line = self.proc.stdout.readline()
                answer["line"] = line

            t = threading.Thread(target=read, daemon=True)
            t.start()
            t.join(timeout)
            line = answer.get("line")
            if not line:
                code = self.kill()
                what = f"no answer within {timeout:.0f} s" if t.is_alive() else f"worker exited ({code})"
                raise WorkerError("worker", f"wonnx worker: {what}; {self.stderr_tail()}")
            ans = json.loads(line)
            if not ans.get("ok"):
                raise WorkerError(ans.get("stage"), ans.get("error", "unknown error"))
            return ans

    def stderr_tail(self):
        try:
            lines = (self.tmp / "worker.stderr").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        keep = [ln for ln in lines if "panicked at" in ln or "rror" in ln][-2:]
        return " | ".join(keep) or " | ".join(lines[-2:])

    def kill(self):
        if self.proc is None:
            return None
        try:
            self.proc.kill()
            code = self.proc.wait(10)
        except Exception:  # noqa: BLE001
            code = None
        self.proc = None
        return code

    def fresh_dir(self):
        self.counter += 1
        d = self.tmp / f"r{self.counter}"
        d.mkdir()
        return d

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(20)
            except Exception:  # noqa: BLE001
                self.kill()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


class Handle:
    def __init__(self, path, symbolic):
        self.path = path
        self.symbolic = symbolic
        self.by_batch = {}  # batch -> (worker generation, session id)
        self.info = {}  # batch -> load answer (ops, timings)


def _symbolic_batch(path: Path) -> bool:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            return True
    return False


class Wonnx:
    name = "wonnx"
    fatal_load = "if_original"
    # check.py holds the runtime to this profile's forbidden_types (it must refuse such models).
    profile = "wonnx"

    def __init__(self, simplify=True):
        self.simplify = simplify
        self.worker = Worker()
        v = self.worker.request({"cmd": "version"}, LOAD_TIMEOUT)
        self.versions = v
        self.version = f"{v['wonnx']} (onnxsim {v['onnxsim']}, Mesa lavapipe)"
        if not simplify:
            self.name = "wonnx-nosim"

    def accepts(self, entry):
        if entry.get("name") in SKIP:
            return SKIP[entry["name"]]
        opset = entry.get("opset")
        if isinstance(opset, int) and opset < 11:
            # wonnx 0.5.1 refuses Clip-6's min/max attributes (profiles/wonnx.toml, portable = false).
            return "the wonnx profile refuses Clip-6 attributes: convert to opset 11+"
        return None

    def select_inputs(self, entry, inputs):
        """The (label, array) inputs this runtime runs for `entry`: all generated ones; for the real
        model at most MAX_PHOTOS shared photos plus the bundled sample (CI time)."""
        if entry.get("kind") != "real" or MAX_PHOTOS <= 0:
            return inputs
        if entry.get("multi_pose"):
            # The real model with the multi-pose decoder: the first MULTI_POSE_PHOTOS of the
            # multi-person photos check.py names (`subset_photos`), nothing else (the generated
            # inputs run on the single-pose entry and on the synthetic multi-pose models).
            keep = {f"photo {name}" for name in entry.get("subset_photos", [])[:MULTI_POSE_PHOTOS]}
            return [(label, x) for label, x in inputs if label in keep]
        photos = [label for label, _ in inputs if label.startswith("photo ")]
        keep = set(photos[:MAX_PHOTOS]) | {label for label in photos if "astronaut" in label}
        return [(label, x) for label, x in inputs if not label.startswith("photo ") or label in keep]

    def _load_at(self, handle, batch):
        work = self.worker.fresh_dir()
        ans = self.worker.request({"cmd": "load", "path": str(handle.path), "batch": batch,
                                   "simplify": self.simplify, "work": str(work)}, LOAD_TIMEOUT)
        handle.by_batch[batch] = (self.worker.generation, ans["id"])
        handle.info[batch] = ans
        return ans["id"]

    def load(self, path):
        path = Path(path)
        handle = Handle(path, _symbolic_batch(path))
        try:
            self._load_at(handle, 1 if handle.symbolic else None)
        except WorkerError as exc:
            raise RuntimeError(str(exc)) from None
        return handle

    def run(self, handle, input_name, x):
        batch = int(x.shape[0]) if handle.symbolic else None
        try:
            gen, sid = handle.by_batch.get(batch, (None, None))
            if sid is None or gen != self.worker.generation:
                sid = self._load_at(handle, batch)
            d = self.worker.fresh_dir()
            xp = d / "x.npy"
            np.save(xp, np.ascontiguousarray(x, dtype=np.float32))
            try:
                ans = self.worker.request({"cmd": "run", "id": sid, "inputs": {input_name: str(xp)}, "out": str(d)},
                                          RUN_TIMEOUT)
            except WorkerError as exc:
                if exc.stage != "evicted":
                    raise
                sid = self._load_at(handle, batch)
                ans = self.worker.request({"cmd": "run", "id": sid, "inputs": {input_name: str(xp)}, "out": str(d)},
                                          RUN_TIMEOUT)
        except WorkerError as exc:
            raise RuntimeError(str(exc)) from None
        outs = {name: np.load(p) for name, p in ans["outputs"].items()}
        shutil.rmtree(d, ignore_errors=True)
        return outs

    def close(self):
        self.worker.close()


def runtimes() -> list:
    return [Wonnx()]
