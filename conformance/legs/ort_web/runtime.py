"""onnxruntime-web in headless Chromium, as two conformance runtimes: "ort-web-webgl" (the WebGL
backend, on SwiftShader's software WebGL 2) and "ort-web-wasm" (the wasm backend, one thread).

Both share ONE long-lived worker: `node driver.mjs` (this folder), which serves harness.html and
onnxruntime-web's dist files on 127.0.0.1, drives /usr/bin/chromium with puppeteer-core and speaks
JSON lines over stdin/stdout. Input tensors go to the page as raw little-endian files the worker
serves (by a one-time token), outputs come back as base64 raw bytes. The worker starts at the first
load() and stops at close() (or when the interpreter exits).

Each session is created with exactly one execution provider (['webgl'] or ['wasm']), so a model
WebGL cannot run is reported with ort-web's own message, never quietly run on wasm; the page also
checks that the WebGL backend really holds a WebGL 2 context.

Environment: POSEFIX_NODE (node binary, default "node"), POSEFIX_CHROMIUM (default
/usr/bin/chromium), POSEFIX_ORT_WEB_TIMEOUT (seconds per request, default 600),
POSEFIX_ORT_WEB_PHOTOS (photos of the real model on WebGL, default 3, plus
samples/astronaut.png; the real model with the multi-pose decoder runs the multi-person photos
check.py names instead), POSEFIX_ORT_WEB_ALL=1 (every input on WebGL too; see select_inputs()).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
LIVE_SESSIONS = 6  # per backend; older sessions are released and re-created on demand
DTYPES = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8", "uint8": "u1",
          "int8": "i1", "bool": "?", "float16": "<f2"}
NP_TO_ORT = {np.dtype("float32"): "float32", np.dtype("int64"): "int64", np.dtype("int32"): "int32",
             np.dtype("uint8"): "uint8", np.dtype("bool"): "bool", np.dtype("float64"): "float64",
             np.dtype("float16"): "float16"}


def _ort_web_version():
    pkg = HERE / "node_modules" / "onnxruntime-web" / "package.json"
    try:
        return json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "not installed"


def _chromium_version():
    exe = os.environ.get("POSEFIX_CHROMIUM", "/usr/bin/chromium")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "chromium missing"
    words = [w for w in out.split() if w[:1].isdigit()]
    return f"Chromium {words[0]}" if words else out.strip()


class _Worker:
    """The node + Chromium worker, shared by both runtimes."""

    def __init__(self):
        self.proc = None
        self.lines = None
        self.generation = 0
        self.next_id = 1
        self.lock = threading.Lock()
        self.tmp = None
        self.info = None
        self.timeout = float(os.environ.get("POSEFIX_ORT_WEB_TIMEOUT", "600"))
        atexit.register(self.close)

    def _start(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="posefix-ort-web-")
        self.stderr = open(Path(self.tmp.name) / "driver.log", "w+")
        self.proc = subprocess.Popen(
            [os.environ.get("POSEFIX_NODE", "node"), str(DRIVER)], cwd=HERE, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)
        self.lines = queue.Queue()
        proc, lines = self.proc, self.lines

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self.generation += 1
        self.info = self._read(0, 180)

    def _log_tail(self):
        try:
            self.stderr.flush()
            self.stderr.seek(0)
            text = self.stderr.read().strip().splitlines()
            return " | ".join(text[-5:])
        except (OSError, ValueError):
            return ""

    def _read(self, want_id, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                tail = self._log_tail()
                self._kill()
                raise RuntimeError(f"ort-web worker gave no answer in {timeout:.0f}s (killed){': ' + tail if tail else ''}")
            if line is None:
                tail = self._log_tail()
                self._kill()
                raise RuntimeError(f"ort-web worker exited{': ' + tail if tail else ''}")
            reply = json.loads(line)
            if reply.get("id") == want_id:
                return reply

    def _kill(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.SubprocessError):
                pass
        self.proc = None

    def call(self, req, timeout=None):
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            req = {**req, "id": self.next_id}
            self.next_id += 1
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            return self._read(req["id"], timeout or self.timeout)

    def scratch(self):
        if self.tmp is None:
            with self.lock:
                if self.proc is None:
                    self._start()
        return Path(self.tmp.name)

    def close(self):
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.proc.stdin.write('{"id": -1, "cmd": "quit"}\n')
                    self.proc.stdin.flush()
                    self.proc.wait(timeout=60)
                except (OSError, subprocess.SubprocessError, ValueError):
                    pass
            self._kill()
            if self.tmp is not None:
                self.stderr.close()
                self.tmp.cleanup()
                self.tmp = None


class _Handle:
    def __init__(self, path):
        self.path = Path(path).resolve()
        self.session = None
        self.generation = None
        self.outputs = None


class OrtWeb:
    fatal_load = "if_original"

    def __init__(self, worker, backend):
        self.worker = worker
        self.backend = backend
        self.name = f"ort-web-{backend}"
        # check.py holds the runtime to its profile's forbidden_types (it must refuse such models);
        # the wasm backend (ONNX Runtime's own kernels) has no profile.
        self.profile = "ort-web-webgl" if backend == "webgl" else None
        self.version = f"{_ort_web_version()} ({_chromium_version()}" + (
            ", SwiftShader WebGL 2)" if backend == "webgl" else ", wasm, 1 thread)")
        self.live = OrderedDict()  # id(handle) -> handle, least recently used first

    # --- check.py's interface -------------------------------------------------------------

    def accepts(self, entry):
        return accepts(self.backend, entry)

    def select_inputs(self, entry, inputs):
        return select_inputs(self.backend, entry, inputs)

    def load(self, path):
        handle = _Handle(path)
        self._open(handle)
        return handle

    def run(self, handle, input_name, x):
        return self.run_feeds(handle, {input_name: x})

    def run_feeds(self, handle, inputs):
        """Runs with several named inputs; returns every graph output by its ONNX name."""
        if handle.session is None or handle.generation != self.worker.generation:
            self._open(handle)
        self._touch(handle)
        feeds, files = [], []
        for i, (name, x) in enumerate(inputs.items()):
            x = np.ascontiguousarray(x)
            f = self.worker.scratch() / f"in-{os.getpid()}-{id(handle)}-{i}.bin"
            x.astype(x.dtype.newbyteorder("<"), copy=False).tofile(f)
            files.append(f)
            feeds.append({"name": name, "path": str(f), "dims": list(x.shape), "type": NP_TO_ORT[x.dtype]})
        try:
            reply = self.worker.call({"cmd": "run", "session": handle.session, "feeds": feeds})
        finally:
            for f in files:
                f.unlink(missing_ok=True)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "run failed"))
        outs = {}
        for o in reply["outputs"]:
            raw = base64.b64decode(o["b64"])
            outs[o["name"]] = np.frombuffer(raw, dtype=DTYPES[o["type"]]).reshape(o["dims"]).astype(
                DTYPES[o["type"]].lstrip("<"), copy=True)
        return outs

    def close(self):
        self.live.clear()
        self.worker.close()

    # --- sessions -------------------------------------------------------------------------

    def _open(self, handle):
        reply = self.worker.call({"cmd": "load", "backend": self.backend, "path": str(handle.path)})
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "load failed"))
        handle.session, handle.generation, handle.outputs = reply["session"], self.worker.generation, reply["outputs"]
        self._touch(handle)

    def _touch(self, handle):
        self.live.pop(id(handle), None)
        self.live[id(handle)] = handle
        while len(self.live) > LIVE_SESSIONS:
            _, old = self.live.popitem(last=False)
            if old.session is not None and old.generation == self.worker.generation:
                try:
                    self.worker.call({"cmd": "release", "session": old.session}, timeout=120)
                except RuntimeError:
                    pass
            old.session = None


# --- which manifest entries and inputs CI runs ---------------------------------------------

# Photos of the real model run on WebGL: 4.7 s per 257x257 MobileNet run in software WebGL (x2:
# the original runs too), so all 27 photos would cost 4+ minutes. The first PHOTOS_WEBGL photos
# plus samples/astronaut.png; wasm runs them all. POSEFIX_ORT_WEB_ALL=1 runs every photo.
PHOTOS_WEBGL = int(os.environ.get("POSEFIX_ORT_WEB_PHOTOS", "3"))


def _symbolic_batch(entry):
    """The manifest writes the batch as a string: "1", "2", or a symbol ("N")."""
    return not str(entry.get("batch", "1")).isdigit()


def accepts(backend, entry):
    """None to run the entry; otherwise why it is skipped."""
    if backend == "webgl" and _symbolic_batch(entry):
        # A limit of the runtime, measured on the originals too: the WebGL (onnx.js) session takes
        # a dim_param dim as a fixed one and refuses every input, then pins the first input's dims.
        return ("symbolic batch: ort-web's WebGL backend refuses inputs of a model whose input dims are "
                "symbolic, originals included (input tensor[0] check failed: expected shape '[,3,257,257]' "
                "but got [1,3,257,257])")
    return None


def select_inputs(backend, entry, inputs):
    """The (label, array) inputs this runtime runs for an entry (a subset of the real model's photos
    on WebGL, for time); every generated input is kept."""
    if backend != "webgl" or entry.get("kind") != "real" or os.environ.get("POSEFIX_ORT_WEB_ALL") == "1":
        return inputs
    if entry.get("multi_pose"):
        return subset_for_multi_pose(entry, inputs)
    photos = [(label, x) for label, x in inputs if label.startswith("photo ")]
    keep = {label for label, _ in photos[:PHOTOS_WEBGL]}
    keep |= {label for label, _ in photos if label.endswith("astronaut.png")}
    return [(label, x) for label, x in inputs if not label.startswith("photo ") or label in keep]


def subset_for_multi_pose(entry, inputs):
    """The real model with the multi-pose decoder on a software GPU: the multi-person photos
    check.py names (`subset_photos`), nothing else. The generated inputs and the other photos run
    there on the single-pose entry of the same model, and the synthetic multi-pose models get the
    generated inputs."""
    keep = {f"photo {name}" for name in entry.get("subset_photos", [])}
    return [(label, x) for label, x in inputs if label in keep]


_WORKER = None


def runtimes():
    global _WORKER
    if _WORKER is None:
        _WORKER = _Worker()
    return [OrtWeb(_WORKER, "webgl"), OrtWeb(_WORKER, "wasm")]
