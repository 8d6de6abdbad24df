#!/usr/bin/env python3
"""wonnx worker: runs in the leg's own venv (wonnx + onnxsim + onnx + numpy), driven by runtime.py.

Protocol: one JSON request per line on stdin, one JSON answer per line on the ORIGINAL stdout
(fd 1 is pointed at stderr at start, so that anything wonnx, wgpu or Mesa print cannot corrupt
the protocol). Arrays travel as .npy files in a temp folder the caller names.

Requests:
  {"cmd": "load", "path": P, "batch": B | null, "simplify": true, "work": DIR}
      -> {"ok": true, "id": ID, "seconds": S, "outputs": [[name, shape, elem_type], ...],
          "ops": [op types of the simplified model], "input": name, "input_shape": [...]}
      The model is simplified by onnxsim (as wonnx's README tells users) with the batch of a
      symbolic-batch input fixed to B (default 1), then loaded by wonnx.Session.from_path.
      With "simplify": false only onnx shape inference is run (wonnx needs value_info shapes).
  {"cmd": "run", "id": ID, "inputs": {name: npy path}, "out": DIR}
      -> {"ok": true, "seconds": S, "outputs": {name: npy path}}
      (stage "evicted" when the session was dropped: at most MAX_SESSIONS are kept; load again)
  {"cmd": "free", "id": ID}  {"cmd": "version"}
Failures -> {"ok": false, "error": one line, "stage": "onnxsim" | "wonnx-load" | "wonnx-run" | ...}
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback

PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import shape_inference  # noqa: E402

NP_OF_ONNX = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.UINT8: np.uint8,
}


def one_line(exc) -> str:
    text = str(exc).strip() or type(exc).__name__
    # pyo3 turns wonnx's `.unwrap()` panics into PanicException; keep wonnx's own error.
    text = re.sub(r"^called `Result::unwrap\(\)` on an `Err` value: ", "", text)
    return re.sub(r"\s*\n\s*", " | ", text)


def graph_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def dims_of(vi):
    t = vi.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


MAX_SESSIONS = 6  # older sessions are dropped (GPU memory); the caller reloads on "evicted"


class Worker:
    def __init__(self):
        self.sessions = {}
        self.next_id = 1
        import wonnx

        self.wonnx = wonnx

    def prepare(self, path, batch, simplify, work):
        model = onnx.load(path)
        overwrite = {}
        for vi in graph_inputs(model):
            dims = dims_of(vi)
            if any(not isinstance(d, int) or d <= 0 for d in dims):
                fixed = [d if isinstance(d, int) and d > 0 else None for d in dims]
                if fixed.count(None) and fixed[0] is None:
                    fixed[0] = batch or 1
                if None in fixed:
                    raise ValueError(f"input {vi.name} has free dims {dims} besides the batch")
                overwrite[vi.name] = fixed
        if simplify:
            import onnxsim

            stage = "onnxsim"
            try:
                model, ok = onnxsim.simplify(model, overwrite_input_shapes=overwrite or None)
            except Exception as exc:  # noqa: BLE001
                raise StageError(stage, f"onnxsim: {one_line(exc)}") from exc
            if not ok:
                raise StageError(stage, "onnxsim: the simplified model failed its check")
        else:
            for vi in graph_inputs(model):
                if vi.name in overwrite:
                    for d, v in zip(vi.type.tensor_type.shape.dim, overwrite[vi.name]):
                        d.Clear()
                        d.dim_value = v
            # wonnx reads every tensor's shape from value_info: infer them (what onnxsim also does).
            for out in model.graph.output:
                out.type.tensor_type.ClearField("shape")
            model = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        tag = f"{self.next_id}"
        sim_path = os.path.join(work, f"m{tag}.{'sim' if simplify else 'inf'}.onnx")
        onnx.save(model, sim_path)
        return model, sim_path

    def load(self, req):
        t0 = time.monotonic()
        try:
            model, sim_path = self.prepare(req["path"], req.get("batch"), req.get("simplify", True), req["work"])
        except StageError as exc:
            return {"ok": False, "stage": exc.stage, "error": exc.msg}
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "stage": "prepare", "error": one_line(exc)}
        t1 = time.monotonic()
        try:
            session = self.wonnx.Session.from_path(sim_path)
        except BaseException as exc:  # noqa: BLE001 - pyo3 PanicException derives from BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return {"ok": False, "stage": "wonnx-load", "error": one_line(exc)}
        outputs = []
        for vi in model.graph.output:
            t = vi.type.tensor_type
            outputs.append([vi.name, dims_of(vi), t.elem_type])
        ins = graph_inputs(model)
        sid = self.next_id
        self.next_id += 1
        self.sessions[sid] = (session, outputs, {i.name: dims_of(i) for i in ins})
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        return {"ok": True, "id": sid, "outputs": outputs, "ops": sorted({n.op_type for n in model.graph.node}),
                "nodes": len(model.graph.node), "inputs": {i.name: dims_of(i) for i in ins},
                "simplified": sim_path, "simplify_seconds": round(t1 - t0, 3),
                "load_seconds": round(time.monotonic() - t1, 3)}

    def run(self, req):
        if req["id"] not in self.sessions:
            return {"ok": False, "stage": "evicted", "error": f"session {req['id']} was dropped"}
        session, outputs, ins = self.sessions[req["id"]]
        feed = {}
        for name, p in req["inputs"].items():
            x = np.load(p)
            want = ins.get(name)
            if want is not None and list(x.shape) != want:
                return {"ok": False, "stage": "wonnx-run",
                        "error": f"input {name} of shape {list(x.shape)}, the simplified model has {want}"}
            feed[name] = np.ascontiguousarray(x, dtype=np.float32).ravel()
        t0 = time.monotonic()
        try:
            res = session.run(feed)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return {"ok": False, "stage": "wonnx-run", "error": one_line(exc)}
        secs = time.monotonic() - t0
        paths = {}
        for k, (name, shape, elem) in enumerate(outputs):
            if name not in res:
                return {"ok": False, "stage": "wonnx-run", "error": f"wonnx returned no output {name} (got {sorted(res)})"}
            arr = np.asarray(res[name], dtype=NP_OF_ONNX.get(elem, np.float32))
            if all(isinstance(d, int) for d in shape) and int(np.prod(shape)) == arr.size:
                arr = arr.reshape(shape)
            else:
                return {"ok": False, "stage": "wonnx-run",
                        "error": f"output {name}: {arr.size} values for declared shape {shape}"}
            p = os.path.join(req["out"], f"out{k}.npy")
            np.save(p, arr)
            paths[name] = p
        return {"ok": True, "seconds": round(secs, 4), "outputs": paths}


class StageError(Exception):
    def __init__(self, stage, msg):
        super().__init__(msg)
        self.stage, self.msg = stage, msg


def main():
    w = Worker()
    from importlib.metadata import version

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            cmd = req["cmd"]
            if cmd == "load":
                ans = w.load(req)
            elif cmd == "run":
                ans = w.run(req)
            elif cmd == "free":
                w.sessions.pop(req["id"], None)
                ans = {"ok": True}
            elif cmd == "version":
                ans = {"ok": True, "wonnx": version("wonnx"), "onnxsim": version("onnxsim"),
                       "onnx": onnx.__version__, "numpy": np.__version__}
            else:
                ans = {"ok": False, "error": f"unknown command {cmd}"}
        except Exception as exc:  # noqa: BLE001
            ans = {"ok": False, "stage": "worker", "error": one_line(exc), "trace": traceback.format_exc()}
        PROTO.write(json.dumps(ans) + "\n")
        PROTO.flush()


if __name__ == "__main__":
    main()
