"""Writes profiles/RUNTIME.toml for a runtime check.py runs in its own venv (OpenVINO's CPU plugin,
MNN): the ONNX ops (and their opset forms) that the runtime reads, runs and computes right. Run
with the conformance venv's Python after changing the runtime's pin in conformance/requirements.txt:

    target/conformance-venv/bin/python conformance/gen_probed_profile.py openvino
    target/conformance-venv/bin/python conformance/gen_probed_profile.py mnn

Derived by probing, as ncnn's profile is: every op of conformance/legs/ncnn/opcases.py, in every
ONNX version (form) of it up to opset 21 (probed at max(since_version, 9)), as a one-node model
loaded the way check.py loads a model on that runtime (OpenVINO: `Core.read_model` of the ONNX
file, compiled for the CPU at float32, `INFERENCE_PRECISION_HINT` f32, since its bfloat16 default
leaves no exact op exact and is the profile's [narrow_default]; MNN: its converter, then its CPU
runtime); a form counts when the outputs match onnxruntime's (bit for bit for exact ops, within
1e-5 + 1e-3 relative for transcendental ones). The evidence goes to conformance/probes-RUNTIME.json.

Each profile is proven by check.py's runtime of that name (run by .ci/run) on every model of the
suite.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "legs" / "ncnn"))
import check  # noqa: E402  (conformance/check.py: how it runs each runtime)
import opcases  # noqa: E402

HOW = "conformance/gen_probed_profile.py"


def one_line(text):
    """A message on one line, without the converter's time stamps (the profile is diffable)."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] ", "", str(text))
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


class OpenVino:
    name = "openvino"
    config = {"INFERENCE_PRECISION_HINT": "f32"}

    def __init__(self):
        import openvino

        self.core = openvino.Core()
        self.version = openvino.__version__.split("-")[0]
        self.probed = (f"PyPI openvino=={self.version} (its ONNX frontend and CPU plugin at "
                       "INFERENCE_PRECISION_HINT f32)")
        self.short = f"openvino {self.version}, CPU, f32"

    def outputs(self, path, inputs):
        compiled = self.core.compile_model(self.core.read_model(str(path)), "CPU", self.config)
        result = compiled(inputs)
        return [(out.get_any_name(), np.asarray(result[out])) for out in compiled.outputs]

    def rules(self):
        return []

    def header(self):
        return {
            "runtime": "OpenVINO (Intel), CPU plugin; ONNX read by its ONNX frontend",
            "loaded": "read, compiled and run at float32",
            "note": [
                "OpenVINO reads the ONNX file itself (`core.compile_model(core.read_model(path), \\",
                '"CPU")`). Its CPU plugin computes in bfloat16 by default on a processor with bfloat16 arithmetic \\',
                "(AMX or AVX-512 BF16) and in float32 elsewhere: at bfloat16 the single-pose decoder picks the \\",
                "cells of the run's own heads and its positions are the reference's at bfloat16, the multi-pose \\",
                "decoder needs float32 (see [narrow_default]).",
            ],
            "narrow_default": [
                'arithmetic = "bfloat16"',
                'applies = "on a processor with bfloat16 arithmetic (AMX or AVX-512 BF16)"',
                'exact_with = "INFERENCE_PRECISION_HINT to f32 (core.compile_model(model, \\"CPU\\", {\\"INFERENCE_PRECISION_HINT\\": \\"f32\\"}))"',
                'source = "the CPU plugin\'s INFERENCE_PRECISION_HINT, which reads bf16 on such a processor (conformance/check.py prints it in the openvino-defaults header); measured by check.py\'s runtimes openvino-defaults (the defaults: bfloat16 on the CI machine) and openvino (f32)"',
            ],
            "proof": [
                f'runtime_version = "OpenVINO {self.version} (PyPI), CPU plugin, at INFERENCE_PRECISION_HINT f32 and at its defaults (bfloat16 on the CI machine)"',
                'how = "conformance/check.py, runtimes openvino (f32) and openvino-defaults (run by .ci/run), on every float32 model of the suite"',
                "in_ci = true",
                "single_pose = true",
                "multi_pose = true",
                'note = "At f32 both decoders are exact. At the defaults (bfloat16) the single-pose decoder picks the cells of the run\'s own heads, positions equal to the reference\'s rounded to bfloat16, and the multi-pose decoder is not exact (see [narrow_default]). The float16 models of the suite are not run: the plugin computes them wider and the decoder reads the heads unrounded, while the heads it returns are rounded to float16, so the run cannot be checked against them."',
            ],
        }


class Mnn:
    """As check.py's Mnn: its converter (`check.Mnn.convert`), then the Module API on the CPU at
    its defaults."""

    name = "mnn"

    def __init__(self):
        import MNN

        self.mnn = MNN
        self.version = MNN.version()
        self.probed = f"PyPI MNN=={self.version} (its converter, the wheel's _tools.mnnconvert, and its CPU runtime)"
        self.short = f"MNN {self.version}, CPU"

    def outputs(self, path, inputs):
        graph = onnx.load(str(path)).graph
        out = Path(path).with_suffix(".mnn")
        check.Mnn.convert(path, out)
        names = [o.name for o in graph.output]
        module = self.mnn.nn.load_module_from_file(str(out), list(inputs), names)
        expr = self.mnn.expr
        outs = module.forward([expr.const(x, list(x.shape), expr.NCHW) for x in inputs.values()])
        result = []
        for name, o in zip(names, outs):
            if o.data_format == expr.NC4HW4:
                o = expr.convert(o, expr.NCHW)
            result.append((name, np.array(o.read(), copy=True).reshape(o.shape)))
        return result

    def rules(self):
        """The pool whose strides are left to ONNX's default: measured, as a known_wrong rule."""
        from onnx import TensorProto, helper, numpy_helper

        def pool_then_clip(strides):
            pool = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], **({"strides": strides} if strides else {})}
            nodes = [helper.make_node("MaxPool", ["x"], ["m"], **pool), helper.make_node("Sub", ["m", "x"], ["g"]),
                     helper.make_node("Clip", ["g", "lo", "hi"], ["y"])]
            bounds = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", -1.0), ("hi", 1.0))]
            graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], bounds)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
            model.ir_version = 6
            return model, opcases.Case([], {"x": opcases.x(1, 4, 6, 6)})

        tmp = Path(tempfile.mkdtemp(prefix="mnn-strides-")) / "case.onnx"
        implicit = probe(self, *pool_then_clip(None), tmp)
        explicit = probe(self, *pool_then_clip([1, 1]), tmp)
        if implicit["ok"] or not explicit["ok"]:
            return []
        found = (f"{HOW} ({self.short}): MaxPool kernel_shape [3, 3] without strides, then Sub and Clip (opset 11): "
                 f"{implicit['stage']}: {implicit['error'][:200]}; the same with strides [1, 1] passes")
        return [
            "[[op_rules]]",
            'ops = ["MaxPool", "AveragePool"]',
            'rule = "known_wrong"',
            'pattern = "implicit_pool_strides"',
            'note = """The converter sets a pool\'s strides only from a strides attribute, and its default is 0, not \\',
            "ONNX's 1: the shape inference that a later op's import runs divides by it (the compiled converter \\",
            "traps: SIGILL), and a model that converts anyway stores stride 0 and stops its runtime (SIGFPE at \\",
            'resize). The decoders write their pools\' unit strides out."""',
            f"source = {toml_str(found + '; MNN source: tools/converter/source/optimizer/onnxextra/OnnxPooling.cpp (strideX/strideY set only when the node has strides) and source/shape/ShapePool.cpp (divides by strideX)')}",
            "",
        ]

    def header(self):
        return {
            "runtime": "MNN (Alibaba), CPU; ONNX models converted by its converter",
            "loaded": "converted by MNN's converter, loaded and run on its CPU backend",
            "note": [
                "MNN reads no ONNX: users convert with `mnnconvert -f ONNX --modelFile model.onnx --MNNModel \\",
                "model.mnn --bizCode NAME` (check.py runs the wheel's compiled converter with those arguments), \\",
                "then run the .mnn file (here its Module API on the CPU, at its defaults). The converter takes a \\",
                "pool's missing strides attribute for 0, not ONNX's 1, and crashes (the decoders write theirs \\",
                "out). A float16 model is converted to a float32 one, its final Casts to float16 included.",
            ],
            "narrow_default": None,
            "proof": [
                f'runtime_version = "MNN {self.version} (PyPI), its converter and its CPU backend at the defaults"',
                'how = "conformance/check.py, runtime mnn (run by .ci/run), on every model of the suite"',
                "in_ci = true",
                "single_pose = true",
                "multi_pose = true",
                'note = "The --output-type float16 model is skipped: the converter makes a float16 model a float32 one, and its outputs come back float32, unrounded. The --target onnxruntime models are not run."',
            ],
        }


RUNTIMES = {"openvino": OpenVino, "mnn": Mnn}


def probe(runtime, model, case, path):
    """The form's result: {"ok": True} or {"ok": False, "stage": ..., "error": ...}."""
    onnx.save(model, path)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, case.inputs)
    try:
        got = runtime.outputs(path, case.inputs)
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types
        return {"ok": False, "stage": "run", "error": one_line(exc)[:300]}
    problems = [f"{name}: {why}" for (name, g), w in zip(got, want)
                for ok, why in [opcases.matches(g, np.asarray(w), case.exact)] if not ok]
    if len(got) != len(want):
        problems.append(f"{len(got)} outputs for {len(want)}")
    return {"ok": True} if not problems else {"ok": False, "stage": "compare", "error": "; ".join(problems)}


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def toml_list(items, per_line=8):
    items = [toml_str(i) for i in items]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n" + "".join(f"    {line},\n" for line in lines) + "]"


def ranges_of(good):
    """The opset ranges ("11-12", "13+") the passing forms cover, merged where consecutive."""
    spans = []
    for f in sorted(good, key=lambda f: f["since"]):
        if spans and spans[-1][1] is not None and spans[-1][1] + 1 == f["since"]:
            spans[-1] = (spans[-1][0], f["last"])
        else:
            spans.append((f["since"], f["last"]))
    return [f"{lo}+" if hi is None else (f"{lo}" if hi == lo else f"{lo}-{hi}") for lo, hi in spans]


def render(runtime, ev):
    head = runtime.header()
    where = f"{HOW} {runtime.name}, probing {runtime.probed} with the one-node models of conformance/legs/ncnn/opcases.py"
    short = f"{HOW} ({runtime.short})"
    supported, unsupported, partial = [], {}, {}
    for op, fs in sorted(ev["ops"].items()):
        probed = [f for f in fs if "result" in f]
        good = [f for f in probed if f["result"]["ok"]]
        if good:
            supported.append(op)
            if len(good) < len(probed):
                partial[op] = (good, [f for f in probed if f not in good])
        elif probed:
            last = probed[-1]
            unsupported[op] = (f"{short}: {op}-{last['since']} at opset {last['opset']}: "
                               f"{last['result']['stage']}: {last['result']['error'][:300]}")
    lines = [
        f"# {head['runtime']}, version {ev['version']}.",
        "#",
        f"# GENERATED by {HOW} {runtime.name} from the installed wheel: do not edit by hand;",
        "# re-run the generator (with the conformance venv) after changing the pin in",
        "# conformance/requirements.txt. Every op below was, as a one-node model in each ONNX version",
        "# (form) of the op up to opset 21,",
        f"# {head['loaded']},",
        "# and compared with onnxruntime; the evidence is",
        f"# conformance/probes-{runtime.name}.json. Format: see barracuda-1.0.4.toml.",
        "",
        f'name = "{runtime.name}"',
        f"runtime = {toml_str(head['runtime'])}",
        f'version = "{ev["version"]}"',
        f"source = {toml_str(where)}",
        'note = """' + "\n".join(head["note"]) + '"""',
        "",
    ]
    if head["narrow_default"]:
        lines += ["[narrow_default]", *head["narrow_default"], ""]
    lines += [
        f"# What backs this profile (read by src/profiles/schema.rs, Proof): check.py's runtime {runtime.name}, in CI.",
        "[proof]",
        'status = "proven"',
        *head["proof"],
        "",
        "[supported]",
        f"source = {toml_str(where + ': the ops with a passing form (see registered_opsets where only some pass)')}",
        f"ops = {toml_list(supported)}",
        "",
    ]
    for op, (good, bad) in sorted(partial.items()):
        why = "; ".join(f"{op}-{f['since']} (opset {f['opset']}): {f['result']['stage']}: {f['result']['error'][:160]}"
                        for f in bad)
        lines += [
            "[[op_rules]]",
            f"ops = [{toml_str(op)}]",
            'rule = "registered_opsets"',
            f"ranges = [{', '.join(toml_str(r) for r in ranges_of(good))}]",
            f"source = {toml_str(short + ': ' + why)}",
            "",
        ]
    lines += runtime.rules()
    if unsupported:
        lines += ["[unsupported]"] + [f"{op} = {toml_str(src)}" for op, src in sorted(unsupported.items())] + [""]
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in RUNTIMES:
        sys.exit(f"usage: gen_probed_profile.py {'|'.join(RUNTIMES)}")
    runtime = RUNTIMES[sys.argv[1]]()
    started = time.monotonic()
    path = Path(tempfile.mkdtemp(prefix=f"{runtime.name}-profile-")) / "case.onnx"
    results = {}
    for op in sorted(opcases.CASES):
        results[op] = []
        for since, first, last in opcases.forms(op):
            model, case = opcases.build(op, first)
            form = {"since": since, "opset": first, "last": last}
            if model is None:
                results[op].append(dict(form, skipped="no case at this opset"))
                continue
            form["result"] = probe(runtime, model, case, path)
            results[op].append(form)
            r = form["result"]
            print(f"{op}-{since} (opset {first}): {'ok' if r['ok'] else r['stage'] + ': ' + r['error'][:160]}",
                  flush=True)
    evidence = {"runtime": runtime.name, "version": runtime.version, "ops": results,
                "seconds": round(time.monotonic() - started, 1)}
    (HERE / f"probes-{runtime.name}.json").write_text(json.dumps(evidence, indent=1) + "\n")
    out = REPO / "profiles" / f"{runtime.name}.toml"
    out.write_text(render(runtime, evidence))
    print(f"wrote {out} in {time.monotonic() - started:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
