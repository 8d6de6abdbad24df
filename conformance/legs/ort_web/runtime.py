"""onnxruntime-web in headless Chromium, as three conformance runtimes: "ort-web-webgl" (the WebGL
backend, on SwiftShader's software WebGL 2), "ort-web-wasm" (the wasm backend, one thread) and
"ort-web-webgpu" (the WebGPU backend of the package's `ort.webgpu.min.mjs` bundle, onnxruntime's
C++ WebGPU execution provider, on SwiftShader's WebGPU adapter).

All three share ONE long-lived worker: `node driver.mjs` (this folder), which serves harness.html and
onnxruntime-web's dist files on 127.0.0.1, drives /usr/bin/chromium with puppeteer-core and speaks
JSON lines over stdin/stdout. Input tensors go to the page as raw little-endian files the worker
serves (by a one-time token), outputs come back as base64 raw bytes. The worker starts at the first
load() and stops at close() (or when the interpreter exits).

Each session is created with exactly one execution provider (['webgl'], ['wasm'] or ['webgpu']),
so a model WebGL cannot run is reported with ort-web's own message, never quietly run on wasm;
the page also checks that the WebGL backend really holds a WebGL 2 context. On WebGPU the session
also sets `session.disable_cpu_ep_fallback`: onnxruntime would otherwise place the nodes its
WebGPU provider has no kernel for on the CPU without a word; with it such a model fails to load,
naming the node.

Environment: POSEFIX_NODE (node binary, default "node"), POSEFIX_CHROMIUM (default
/usr/bin/chromium), POSEFIX_ORT_WEB_TIMEOUT (seconds per request, default 600),
POSEFIX_ORT_WEB_PHOTOS (photos of the real model on WebGL and WebGPU, default 3, plus
samples/astronaut.png; the real model with the multi-pose decoder runs the multi-person photos
check.py names instead), POSEFIX_ORT_WEB_ALL=1 (every input on WebGL and WebGPU too; see
select_inputs()), POSEFIX_ORT_WEB_BACKENDS (the runtimes to run, comma-separated, default
"webgl,wasm,webgpu").
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
    """The node + Chromium worker, shared by the runtimes."""

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
        # (WebGPU has no profile yet: it would list the C++ WebGPU provider's kernel registrations.)
        self.profile = "ort-web-webgl" if backend == "webgl" else None
        self.version = f"{_ort_web_version()} ({_chromium_version()}" + {
            "webgl": ", SwiftShader WebGL 2)",
            "wasm": ", wasm, 1 thread)",
            "webgpu": ", ort.webgpu bundle, SwiftShader WebGPU)",
        }[backend]
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

# Photos of the real model run on WebGL and WebGPU: 4.7 s per 257x257 MobileNet run in software
# WebGL (x2: the original runs too), so all 27 photos would cost 4+ minutes. The first
# PHOTOS_WEBGL photos plus samples/astronaut.png; wasm runs them all. POSEFIX_ORT_WEB_ALL=1 runs
# every photo.
PHOTOS_WEBGL = int(os.environ.get("POSEFIX_ORT_WEB_PHOTOS", "3"))
# WebGPU on SwiftShader runs the real model in 5 to 15 s (and each new shader's first compilation
# adds seconds): astronaut.png only, and the first multi-person photo.
PHOTOS_WEBGPU = int(os.environ.get("POSEFIX_ORT_WEB_WEBGPU_PHOTOS", "0"))
MULTI_PERSON_WEBGPU = 1
SOFTWARE_GPU = ("webgl", "webgpu")
# The decoder at opsets 9 and 10 clamps with Clip-6 (min and max as attributes), which has no
# kernel in onnxruntime-web 1.30's WebGPU provider (onnxruntime/core/providers/webgpu/
# webgpu_execution_provider.cc registers Clip from opset 11 only; measured: "webgpu kernel not found
# in registries for Op type: Clip", and with the CPU fallback refused the session fails). Such a
# model would run its Clips on the CPU, the data copied down and up around each: not the WebGPU
# path. Skipped, with that reason, until the decoder does without Clip-6 there;
# POSEFIX_ORT_WEB_WEBGPU_OPSET10=1 runs them anyway (to check a decoder that does).
WEBGPU_MIN_OPSET = 11


def _symbolic_batch(entry):
    """The manifest writes the batch as a string: "1", "2", or a symbol ("N")."""
    return not str(entry.get("batch", "1")).isdigit()


def accepts(backend, entry):
    """None to run the entry; otherwise why it is skipped."""
    if (backend == "webgpu" and int(entry.get("opset", WEBGPU_MIN_OPSET)) < WEBGPU_MIN_OPSET
            and os.environ.get("POSEFIX_ORT_WEB_WEBGPU_OPSET10") != "1"):
        return (f"opset {entry.get('opset')}: the decoder's Clip-6 (min, max as attributes) has no kernel in "
                "ort-web 1.30's WebGPU provider (Clip from opset 11 only); the session would run it on the CPU")
    if backend == "webgl" and _symbolic_batch(entry):
        # A limit of the runtime, measured on the originals too: the WebGL (onnx.js) session takes
        # a dim_param dim as a fixed one and refuses every input, then pins the first input's dims.
        return ("symbolic batch: ort-web's WebGL backend refuses inputs of a model whose input dims are "
                "symbolic, originals included (input tensor[0] check failed: expected shape '[,3,257,257]' "
                "but got [1,3,257,257])")
    return None


def select_inputs(backend, entry, inputs):
    """The (label, array) inputs this runtime runs for an entry (a subset of the real model's photos
    on WebGL and WebGPU, for time); every generated input is kept."""
    if backend not in SOFTWARE_GPU or entry.get("kind") != "real" or os.environ.get("POSEFIX_ORT_WEB_ALL") == "1":
        return inputs
    if entry.get("multi_pose"):
        return subset_for_multi_pose(entry, inputs, MULTI_PERSON_WEBGPU if backend == "webgpu" else None)
    photos = [(label, x) for label, x in inputs if label.startswith("photo ")]
    keep = {label for label, _ in photos[:PHOTOS_WEBGPU if backend == "webgpu" else PHOTOS_WEBGL]}
    keep |= {label for label, _ in photos if label.endswith("astronaut.png")}
    return [(label, x) for label, x in inputs if not label.startswith("photo ") or label in keep]


def subset_for_multi_pose(entry, inputs, at_most=None):
    """The real model with the multi-pose decoder on a software GPU: the multi-person photos
    check.py names (`subset_photos`; the first `at_most` of them), nothing else. The generated
    inputs and the other photos run there on the single-pose entry of the same model, and the
    synthetic multi-pose models get the generated inputs."""
    keep = {f"photo {name}" for name in entry.get("subset_photos", [])[:at_most]}
    return [(label, x) for label, x in inputs if label in keep]


_WORKER = None


def runtimes():
    global _WORKER
    if _WORKER is None:
        _WORKER = _Worker()
    backends = [b.strip() for b in os.environ.get("POSEFIX_ORT_WEB_BACKENDS", "webgl,wasm,webgpu").split(",") if b.strip()]
    unknown = set(backends) - {"webgl", "wasm", "webgpu"}
    if unknown:
        raise SystemExit(f"ort_web: POSEFIX_ORT_WEB_BACKENDS names unknown backends {sorted(unknown)}")
    return [OrtWeb(_WORKER, b) for b in backends]
