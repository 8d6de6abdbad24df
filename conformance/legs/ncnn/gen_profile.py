#!/usr/bin/env python3
"""Writes profiles/ncnn.toml: the ONNX ops (and opset forms) that pnnx converts to ncnn layers
which ncnn then loads, runs and computes right.

Derived by probing the shipped artifacts themselves (the pnnx converter binary of the PyPI pnnx
wheel and the ncnn PyPI wheel, as setup.sh installs them): for every op of opcases.py and every
form of it (each ONNX version of the op whose since_version falls in opsets 1-21, probed at
max(since_version, 9), the oldest opset the conformance matrix uses), a one-node model is
converted with `pnnx model.onnx inputshape=[...]` and run with ncnn on the CPU and on Vulkan (when
a Vulkan device exists), the way runtime.py runs the conformance models. A form counts when pnnx
writes only layers ncnn registers, ncnn loads the files, the run succeeds and the outputs match
onnxruntime's (bit for bit for exact ops such as Max, MatMul of small integers, Reshape; within
1e-5 + 1e-3 relative for transcendental ones such as Sigmoid: GPU-grade accuracy; the decoder
only needs its exact ops to be exact).

Run with check.py's venv (numpy, onnx, onnxruntime), after setup.sh:
    python conformance/legs/ncnn/gen_profile.py [--out profiles/ncnn.toml] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

LEG = Path(__file__).resolve().parent
sys.path.insert(0, str(LEG))
import opcases  # noqa: E402
import runtime as rt  # noqa: E402

REPO = LEG.parent.parent.parent
HOW = "conformance/legs/ncnn/gen_profile.py"
forms, compare = opcases.forms, opcases.matches


def clean(text):
    """An error without terminal colours and onnxruntime's time stamps (the profile is diffable)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ ", "", text)
    return text


def probe(w, backends, model, case, tmp):
    path = tmp / "case.onnx"
    onnx.save(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, case.inputs)
    # A float16 input is declared as such, in pnnx's syntax ("[1,4,6,6]f16").
    shapes = ",".join("[" + ",".join(str(d) for d in a.shape) + "]" + ("f16" if a.dtype == np.float16 else "")
                      for a in case.inputs.values())
    res = {}
    for be in backends:
        r = {"ok": False}
        try:
            ans = w.request(op="load", path=str(path), inputshape=[1], inputshapes=shapes, backend=be,
                            options=rt.OPTIONS[be], fp16=rt.PNNX_FP16)
        except RuntimeError as exc:
            r["stage"] = "load"
            r["error"] = clean(str(exc))
            res[be] = r
            continue
        r["layers"] = ans["pnnx"].get("layers")
        try:
            files = []
            for i, a in enumerate(case.inputs.values()):
                f = w.tmp / f"in{i}.npy"
                np.save(f, a)
                files.append(str(f))
            run = w.request(op="run", handle=ans["handle"], inputs=files, out_dir=str(w.tmp))
            problems = []
            for (name, npy, dims), exp in zip(run["outputs"], want):
                ok, why = compare(np.load(npy), np.asarray(exp), case.exact)
                if not ok:
                    problems.append(f"{name}: {why}")
            if len(run["outputs"]) != len(want):
                problems.append(f"{len(run['outputs'])} outputs for {len(want)}")
            r["ok"] = not problems
            if problems:
                r["stage"] = "compare"
                r["error"] = "; ".join(problems)
        except RuntimeError as exc:
            r["stage"] = "run"
            r["error"] = clean(str(exc))
        finally:
            try:
                w.request(op="free", handle=ans["handle"])
            except RuntimeError:
                pass
        res[be] = r
    return res


def shape_cases():
    """Extra models for the rank rule and other limits: element-wise Add at ranks 2-6 (graph input of
    that rank), an inner rank-5 tensor between two Reshapes, fixed batch 2, two-axis reductions."""
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, shape, inits, opset=13):
        g = helper.make_graph(nodes, "shape", [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape)],
                              [helper.make_value_info("y", helper.make_tensor_type_proto(TensorProto.FLOAT, None))],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        m.graph.ClearField("output")
        m.graph.output.extend(inferred.graph.output)
        return m, opcases.Case([], {"a": opcases.x(*shape)}, {})

    add = lambda: [helper.make_node("Add", ["a", "b"], ["y"])]  # noqa: E731
    models = {}
    for rank in (2, 3, 4, 5, 6):
        shape = [1, 4, 6, 6, 2, 3][:rank]
        models[f"rank{rank}"] = model(add(), shape, {"b": opcases.x(*([1] * (rank - 1) + [shape[-1]]))})
    models["inner_rank5"] = model(
        [helper.make_node("Reshape", ["a", "s5"], ["r"]), helper.make_node("Add", ["r", "b"], ["t"]),
         helper.make_node("Reshape", ["t", "s4"], ["y"])], [1, 4, 6, 6],
        {"s5": opcases.i64(1, 2, 2, 6, 6), "b": opcases.x(1, 2, 1, 1, 6), "s4": opcases.i64(1, 4, 6, 6)})
    models["batch2"] = model(add(), [2, 4, 6, 6], {"b": opcases.x(1, 4, 1, 1)})
    for op in ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"):
        axes_input = op == "ReduceSum"
        nodes = [helper.make_node(op, ["a", "ax"] if axes_input else ["a"], ["y"], keepdims=1,
                                  **({} if axes_input else {"axes": [2, 3]}))]
        models[f"{op}_two_axes"] = model(nodes, [1, 4, 6, 6], {"ax": opcases.i64(2, 3)} if axes_input else {})
    return models


def type_cases():
    """float16 models as GPU users' converters write them (onnxconverter-common's
    convert_float_to_float16): a 1x1 Conv (PoseNet's heads are Convs) with float16 weights, float16
    in and out (keep_io_types=False); the same between a Cast to float16 and a Cast back (float32
    in and out, keep_io_types=True); a Cast of float16 heads to float32 (how the decoder reads
    them); an Add of two float16 tensors (an op pnnx does convert)."""
    from onnx import TensorProto, helper, numpy_helper

    F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT

    def model(nodes, inputs, elem_in, elem_out, inits):
        g = helper.make_graph(nodes, "types", [helper.make_tensor_value_info(k, elem_in, list(v.shape))
                                               for k, v in inputs.items()],
                              [helper.make_tensor_value_info("y", elem_out, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        m.graph.ClearField("output")
        m.graph.output.extend(inferred.graph.output)
        return m, opcases.Case([], inputs, {})

    w = (opcases.x(3, 4, 1, 1) / 4).astype(np.float16)
    b = opcases.x(3).astype(np.float16)
    conv = lambda i, o: helper.make_node("Conv", [i, "w", "b"], [o], kernel_shape=[1, 1])  # noqa: E731
    return {
        "float16_conv": model([conv("a", "y")], {"a": opcases.x(1, 4, 6, 6).astype(np.float16)}, F16, F16,
                              {"w": w, "b": b}),
        "float16_conv_keep_io": model(
            [helper.make_node("Cast", ["a"], ["a16"], to=F16), conv("a16", "y16"),
             helper.make_node("Cast", ["y16"], ["y"], to=F32)], {"a": opcases.x(1, 4, 6, 6)}, F32, F32,
            {"w": w, "b": b}),
        "float16_cast_to_float": model([helper.make_node("Cast", ["a"], ["y"], to=F32)],
                                       {"a": opcases.x(1, 4, 6, 6).astype(np.float16)}, F16, F32, {}),
        "float16_add": model([helper.make_node("Add", ["a", "c"], ["y"])],
                             {"a": opcases.x(1, 4, 6, 6).astype(np.float16)}, F16, F16,
                             {"c": opcases.x(1, 4, 1, 1).astype(np.float16)}),
    }


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def toml_list(items, indent="    ", per_line=8):
    items = [toml_str(i) for i in items]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n" + "".join(f"{indent}{line},\n" for line in lines) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "profiles" / "ncnn.toml")
    ap.add_argument("--json", type=Path, default=LEG / "profile-probes.json",
                    help="every probe's result (the evidence behind the profile)")
    ap.add_argument("--only", default=None, help="comma-separated ops (for a quick look; no profile written)")
    args = ap.parse_args()

    started = time.monotonic()
    w = rt.worker()
    hello = w.request(op="hello")
    backends = ["cpu"] + (["vulkan"] if hello.get("gpu") else [])
    ops = args.only.split(",") if args.only else sorted(opcases.CASES)
    tmp = Path(tempfile.mkdtemp(prefix="ncnn-profile-"))
    results = {}
    for op in ops:
        results[op] = []
        for since, first, last in forms(op):
            model, case = opcases.build(op, first)
            if model is None:
                results[op].append({"since": since, "opset": first, "last": last, "skipped": "no case at this opset"})
                continue
            res = probe(w, backends, model, case, tmp)
            results[op].append({"since": since, "opset": first, "last": last, "note": case.note, "backends": res})
            status = " ".join(f"{be}:{'ok' if r['ok'] else r.get('stage')}" for be, r in res.items())
            err = next((r.get("error") for r in res.values() if not r["ok"]), "")
            print(f"{op}-{since} (opset {first}): {status} {(err or '')[:160]}", flush=True)
    shapes = {}
    for key, (model, case) in shape_cases().items():
        if args.only and not any(o in key for o in ops):
            continue
        shapes[key] = probe(w, backends, model, case, tmp)
        print(f"shape {key}: " + " ".join(f"{be}:{'ok' if r['ok'] else r.get('error', '')[:120]}"
                                           for be, r in shapes[key].items()), flush=True)
    types = {}
    for key, (model, case) in type_cases().items():
        if args.only and "float16" not in ops:
            continue
        types[key] = probe(w, backends, model, case, tmp)
        print(f"type {key}: " + " ".join(f"{be}:{'ok' if r['ok'] else r.get('error', '')[:160]}"
                                          for be, r in types[key].items()), flush=True)
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    evidence = {"ncnn": hello["ncnn"], "pnnx": hello["pnnx"], "gpu": hello.get("gpu"), "backends": backends,
                "options": rt.OPTIONS, "pnnx_fp16": rt.PNNX_FP16, "ops": results, "shapes": shapes, "types": types,
                "seconds": round(time.monotonic() - started, 1)}
    if args.only:
        print(json.dumps(evidence, indent=1)[:20000])
        return 0
    args.json.write_text(json.dumps(evidence, indent=1) + "\n")
    args.out.write_text(render(evidence))
    print(f"wrote {args.out} and {args.json} in {time.monotonic() - started:.0f}s")
    return 0


def first_error(form):
    for be, r in form.get("backends", {}).items():
        if not r["ok"]:
            return be, r
    return None, None


NOTES = {
    "ReduceMax": "One axis only, as an attribute: pnnx converts no two-axis ReduceMax (axes [2, 3]: "
                 "'layer ReduceMax not exists or registered'), see shapes.ReduceMax_two_axes in the evidence.",
    "ReduceMin": "One axis only, as an attribute, as for ReduceMax.",
    "ReduceSum": "ReduceSum-13 (axes as an input) with one axis is computed WRONG, not refused: pnnx writes "
                 "an ncnn Reduction with an empty axes list (-23303=0), so nothing is reduced and the "
                 "output keeps the input's shape. With two axes it happens to be right.",
    "ReduceMean": "ReduceMean-18 (axes as an input) with one axis: wrong like ReduceSum-13.",
}


def render(ev):
    nc, pn = ev["ncnn"], ev["pnnx"]
    where = (f"{HOW}, probing pnnx {pn} (PyPI wheel pnnx-{pn}, its converter binary site-packages/pnnx/pnnx) "
             f"and ncnn {nc} (PyPI wheel ncnn-{nc}) on {' and '.join(ev['backends'])}"
             + (f" ({ev['gpu'][0]})" if ev.get("gpu") and "vulkan" in ev["backends"] else ""))
    short = f"{HOW} (pnnx {pn}, ncnn {nc}, {'+'.join(ev['backends'])})"
    supported, rules, unsupported = [], [], {}
    partial = {}
    bool_ops = []
    for op, fs in sorted(ev["ops"].items()):
        probed = [f for f in fs if "backends" in f]
        if not probed:
            continue
        good = [f for f in probed if all(r["ok"] for r in f["backends"].values())]
        if len(good) == len(probed):
            supported.append(op)
            continue
        if good:
            supported.append(op)
            partial[op] = (good, [f for f in probed if f not in good])
            continue
        be, r = first_error(probed[-1])
        unsupported[op] = f"{short}: {op}-{probed[-1]['since']} at opset {probed[-1]['opset']} on ncnn-{be}: " \
                          f"{r.get('stage')}: {r.get('error', '')[:300]}"
        if op in ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor", "Where"):
            bool_ops.append(op)

    lines = [
        f"# ncnn {nc} with models converted by pnnx {pn}: generated by {HOW}; do not edit by hand.",
        "#",
        "# Every op below was converted, loaded, run and compared with onnxruntime as a one-node model, in",
        "# each ONNX version (form) of the op up to opset 21 (probed at max(since_version, 9)); the evidence",
        "# is conformance/legs/ncnn/profile-probes.json. Format: see barracuda-1.0.4.toml.",
        "",
        'name = "ncnn"',
        'runtime = "ncnn (Tencent), ONNX models converted with pnnx"',
        f'version = "{nc} (pnnx {pn})"',
        f"source = {toml_str(where)}",
        'note = """ncnn reads no ONNX: users convert with pnnx (`pnnx model.onnx inputshape=[1,C,H,W]`), \\',
        "which turns each ONNX op into ncnn layers or, when it cannot, leaves it under its pnnx name \\",
        "(torch.eq, Tensor.to, ...) in the .ncnn.param; ncnn then refuses the whole file (`layer torch.eq not \\",
        "exists or registered`). ncnn blobs have no batch axis: pnnx drops axis 0 (a fixed batch > 1 cannot \\",
        "be run; a symbolic batch is converted at 1 and run one item at a time). ncnn computes in fp32 on \\",
        "the CPU here; on Vulkan its defaults store and compute in fp16: the single-pose decoder's positions \\",
        "then round to fp16, and the multi-pose decoder needs fp16 storage/arithmetic/packing off (see \\",
        '[narrow_default])."""',
        "",
        '[narrow_default]',
        'arithmetic = "float16"',
        'applies = "on a Vulkan device (opt.use_vulkan_compute = True)"',
        'exact_with = "opt.use_fp16_packed, opt.use_fp16_storage and opt.use_fp16_arithmetic to False"',
        'source = "ncnn\'s Option defaults (src/option.cpp: use_fp16_packed, use_fp16_storage and use_fp16_arithmetic are true, used where the Vulkan device supports them); measured by the ncnn leg, which runs Vulkan at its defaults and with the three off (conformance/legs/ncnn)"',
        "",
        "[supported]",
        f"source = {toml_str(where + ': the ops whose every probed form passed, or some forms (see registered_opsets)')}",
        f"ops = {toml_list(supported)}",
        "",
    ]
    if bool_ops:
        ex_op = "Equal" if "Equal" in bool_ops else bool_ops[0]
        be, r = first_error([f for f in ev["ops"][ex_op] if "backends" in f][-1])
        lines += [
            "[[rules]]",
            'rule = "forbidden_types"',
            'types = ["bool"]',
            f"source = {toml_str(short + ': no op that makes or reads a bool tensor converts (' + ', '.join(bool_ops) + '); e.g. ' + ex_op + ': ' + (r.get('error') or '')[:200])}",
            'note = "ncnn blobs are float (or fp16/int8 storage of floats): it has no comparison or logic layer, and pnnx leaves them as torch.* ops."',
            "",
        ]
    # float16: forbidden when neither a float16 Conv (with or without Casts around it) nor a Cast of
    # float16 to float32 (the decoder's read of float16 heads) runs on any backend.
    types = ev.get("types", {})
    decisive = {k: v for k, v in types.items() if k in ("float16_conv", "float16_conv_keep_io", "float16_cast_to_float")}
    if decisive and not any(r["ok"] for v in decisive.values() for r in v.values()):
        why = "; ".join(f"{k}: {next(r for r in v.values() if not r['ok']).get('error', '')[:220]}"
                        for k, v in sorted(decisive.items()))
        add = types.get("float16_add", {})
        why += "; float16_add: " + ("passes" if add and all(r["ok"] for r in add.values()) else "fails too")
        lines += [
            "[[rules]]",
            'rule = "forbidden_types"',
            'types = ["float16"]',
            f"source = {toml_str(short + ': neither a float16 Conv nor a Cast from float16 converts to a net ncnn loads, on any backend (a 1x1 Conv with float16 weights and float16 input, declared inputshape=[...]f16; the same Conv between Casts, float32 in and out; a Cast of a float16 input to float32): ' + why)}",
            'note = "pnnx converts no float16 Conv (it stays an ONNX Conv that ncnn has no layer for) and leaves a Cast to or from float16 as Tensor.to (an element-wise Add of float16 tensors does convert): a model converted to float16 (onnxconverter-common convert_float_to_float16, with or without keep_io_types) cannot be run; convert the float32 model instead (pnnx stores its weights as fp16 by default anyway). The conformance suite asserts that ncnn refuses its float16 models (conformance/check.py)."',
            "",
        ]
    # Ranks: the highest rank whose Add converted and matched.
    ok_ranks = [int(k[4:]) for k, v in ev["shapes"].items() if k.startswith("rank") and all(r["ok"] for r in v.values())]
    bad_ranks = [int(k[4:]) for k, v in ev["shapes"].items() if k.startswith("rank") and not all(r["ok"] for r in v.values())]
    if bad_ranks:
        top = max([r for r in ok_ranks if r < min(bad_ranks)], default=None)
        be, r = next(((b, x) for b, x in ev["shapes"][f"rank{min(bad_ranks)}"].items() if not x["ok"]), (None, {}))
        if top is not None:
            lines += [
                "[[rules]]",
                'rule = "max_rank"',
                f"rank = {top}",
                f"source = {toml_str(short + f': Add on a rank-{min(bad_ranks)} tensor [1,4,6,6,2,3][:{min(bad_ranks)}] fails on ncnn-{be}: ' + (r.get('error') or '')[:200] + f'; ranks {sorted(ok_ranks)} pass')}",
                f'note = "ncnn blobs have at most 4 dims (c, d, h, w); with the batch axis dropped an ONNX tensor may have rank {top}."',
                "",
            ]
    for op, (good, bad) in sorted(partial.items()):
        spans = []  # merged (lo, hi) of consecutive passing forms
        for f in sorted(good, key=lambda f: f["since"]):
            if spans and spans[-1][1] is not None and spans[-1][1] + 1 == f["since"]:
                spans[-1] = (spans[-1][0], f["last"])
            else:
                spans.append((f["since"], f["last"]))
        ranges = [f"{lo}+" if hi is None else (f"{lo}" if hi == lo else f"{lo}-{hi}") for lo, hi in spans]
        be, r = first_error(bad[0])
        why = "; ".join(f"{op}-{f['since']} (opset {f['opset']}): {first_error(f)[1].get('stage')}: "
                        f"{(first_error(f)[1].get('error') or '')[:160]}" for f in bad)
        lines += [
            "[[op_rules]]",
            f"ops = [{toml_str(op)}]",
            'rule = "registered_opsets"',
            f"ranges = [{', '.join(toml_str(x) for x in ranges)}]",
            f"source = {toml_str(short + ': ' + why)}",
        ]
        if op in NOTES:
            lines += [f"note = {toml_str(NOTES[op])}"]
        lines += [""]
    if unsupported:
        lines += ["[unsupported]"]
        lines += [f"{op} = {toml_str(src)}" for op, src in sorted(unsupported.items())]
        lines += [""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
