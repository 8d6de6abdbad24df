#!/usr/bin/env python3
"""Writes profiles/wonnx.toml from the installed wonnx wheel itself.

Run with the leg's venv (setup.sh makes it): it needs wonnx, onnx and numpy, and Mesa's lavapipe
(or any Vulkan device) for wonnx to start:

    "$VENV/bin/python" conformance/legs/wonnx/gen_profile.py [--out profiles/wonnx.toml]

How each part is derived:
- `supported.ops`: every op of the default ONNX domain (onnx.defs, the onnx pinned in
  requirements.txt) is put into a one-node model with float inputs and loaded by
  `wonnx.Session.from_bytes`. wonnx compiles every node into a WGSL shader while loading; an op it
  does not know ends in its own error `UnimplementedOp("<op>")` (compiler.rs, the fall-through arm
  of `compile()`). Every other outcome (loads, or fails on the made-up shapes or attributes) means
  wonnx has code for the op. Constant, Shape and Size are folded by wonnx's optimizer, and
  Reshape/Identity/Flatten/Squeeze/Unsqueeze/Dropout become buffer aliases (gpu.rs): all count.
- `registered_opsets`: each supported op is loaded again at every opset 7..21; an op refused with
  `UnsupportedOpsetVersion` at some opsets gets the ranges where it is not.
- `forbidden_types`: an Identity model of every ONNX element type; wonnx refuses a type it has no
  scalar type for with `IrError(Type(NotSupported(<TYPE>)))` (utils.rs `ScalarType::from`).
- The remaining rules (constant inputs, attribute forms, MatMul and Concat forms, the MaxPool
  floor) were measured by the leg's probes (see
  README.md) and traced to wonnx 0.5.1's source (github.com/webonnx/wonnx, tag v0.5.1); they are
  kept in CURATED below with those sources.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

LEG = Path(__file__).resolve().parent
REPO = LEG.parent.parent.parent
SRC = "https://github.com/webonnx/wonnx/blob/v0.5.1"
OPSETS = range(7, 22)

# ------------------------------------------------------------------------------------------------
# Child: loads models into wonnx, one per stdin line, answers one JSON line each. Run as its own
# process so that a crash inside wgpu cannot take the generator down (it is restarted).


def child():
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import wonnx

    for line in sys.stdin:
        path = line.strip()
        try:
            wonnx.Session.from_path(path)
            ans = {"ok": True}
        except BaseException as exc:  # noqa: BLE001 - pyo3 panics derive from BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            text = re.sub(r"^called `Result::unwrap\(\)` on an `Err` value: ", "", str(exc).strip())
            ans = {"ok": False, "error": re.sub(r"\s*\n\s*", " | ", text)}
        out.write(json.dumps(ans) + "\n")


class Loader:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.proc = None
        self.n = 0

    def load(self, model) -> dict:
        import onnx

        self.n += 1
        path = self.tmp / f"m{self.n}.onnx"
        onnx.save(model, path)
        for _ in range(2):
            if self.proc is None or self.proc.poll() is not None:
                env = dict(os.environ, RUST_BACKTRACE="0")
                lvp = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
                if Path(lvp).is_file():
                    env.setdefault("VK_ICD_FILENAMES", lvp)
                xdg = self.tmp / "xdg"
                xdg.mkdir(mode=0o700, exist_ok=True)
                env.setdefault("XDG_RUNTIME_DIR", str(xdg))
                self.proc = subprocess.Popen([sys.executable, __file__, "--child"], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if line:
                return json.loads(line)
            self.proc = None
        return {"ok": False, "error": "crash"}

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()


# ------------------------------------------------------------------------------------------------
# Model makers


def one_node(op, n_in, n_out, opset, elem=None, attrs=None, inits=None):
    import onnx
    from onnx import TensorProto, helper

    elem = elem or TensorProto.FLOAT
    shape = [1, 4, 4, 4]
    ins = [f"x{i}" for i in range(n_in)]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, ins, outs, **(attrs or {}))
    graph = helper.make_graph(
        [node], "probe",
        [helper.make_tensor_value_info(n, elem, shape) for n in ins if not inits or n not in inits],
        [helper.make_tensor_value_info(n, elem, shape) for n in outs],
        initializer=list((inits or {}).values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def constant_model(opset):
    """Constant has no inputs: x + Constant(value) is the smallest graph that uses one."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 4, 4, 4]
    value = numpy_helper.from_array(np.zeros(shape, np.float32), "c")
    nodes = [helper.make_node("Constant", [], ["c"], value=value), helper.make_node("Add", ["x", "c"], ["y"])]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def model_for(name, schema, opset):
    if name == "Constant":
        return constant_model(opset)
    n_in, n_out = arity(schema)
    return one_node(name, n_in, n_out, opset)


def schemas():
    from onnx import defs

    latest = {}
    for s in defs.get_all_schemas_with_history():
        if s.domain not in ("", "ai.onnx") or s.deprecated:
            continue
        if s.name not in latest or s.since_version > latest[s.name].since_version:
            latest[s.name] = s
    return latest


def arity(schema):
    n_in = max(1, schema.min_input)
    n_out = max(1, schema.min_output)
    return n_in, n_out


def scan_ops(loader):
    """op -> error text of the load at opset 13 (None when it loaded)."""
    result = {}
    for name, s in sorted(schemas().items()):
        opset = max(13, min(s.since_version, 21))
        ans = loader.load(model_for(name, s, opset))
        result[name] = None if ans["ok"] else ans["error"]
    return result


def unimplemented(op, error):
    return error is not None and f'UnimplementedOp("{op}")' in error


def scan_opsets(loader, ops):
    sch = schemas()
    refused = {}
    for op in ops:
        bad = []
        for opset in OPSETS:
            ans = loader.load(model_for(op, sch[op], opset))
            if not ans["ok"] and "UnsupportedOpsetVersion" in ans["error"]:
                bad.append(opset)
        if bad:
            refused[op] = bad
    return refused


def scan_types(loader):
    from onnx import TensorProto

    forbidden, allowed = [], []
    for name, value in sorted(TensorProto.DataType.items(), key=lambda kv: kv[1]):
        if value == TensorProto.UNDEFINED:
            continue
        ans = loader.load(one_node("Identity", 1, 1, 13, elem=value))
        # NotSupported: a type wonnx's protobuf knows but has no scalar type for; NotRecognized: a
        # type newer than the ONNX protobuf compiled into wonnx (float8 and later).
        if not ans["ok"] and ("NotSupported(" in ans["error"] or "NotRecognized(" in ans["error"]):
            forbidden.append(name.lower())
        else:
            allowed.append(name.lower())
    return forbidden, allowed


def ranges_without(bad):
    good = [o for o in OPSETS if o not in bad]
    out, start, prev = [], None, None
    for o in good:
        if start is None:
            start = prev = o
        elif o == prev + 1:
            prev = o
        else:
            out.append((start, prev))
            start = prev = o
    if start is not None:
        out.append((start, prev))
    text = []
    for lo, hi in out:
        lo = 1 if lo == OPSETS[0] else lo
        text.append(f"{lo}+" if hi == OPSETS[-1] else (f"{lo}" if lo == hi else f"{lo}-{hi}"))
    return text


# ------------------------------------------------------------------------------------------------
# Rules measured by the probes, with their sources.

PROBES = "measured by the wonnx leg's probes (conformance/legs/wonnx/README.md)"

CLIP6_NOTE = (
    "Clip before opset 11 (Clip-6) carries min/max as float attributes; wonnx 0.5.1 reads them as float "
    "lists (get_attribute_value::<Vec<f32>>), finds none and refuses the model: InvalidAttributeValue { "
    "attribute: \"min\", value: \"[]\", opset_version: 9 }. wonnx has no Min or Max either. Left out of "
    "`portable` because it depends on the model's opset: the decoder writes Clip in the model's own opset, "
    "so below opset 11 it must use the attribute form, which wonnx cannot read; convert the model to opset "
    "11+ for wonnx (the conformance leg skips opset 9/10 models for this reason).")

CURATED = [
    # Optional inputs that wonnx's optimizer must turn into attributes.
    dict(ops=["Reshape"], rule="constant_input", input=1,
         source=f"{SRC}/wonnx/src/optimizer.rs: Clip/Pad/Split/Resize/Reshape/Reduce* inputs after the first are moved into attributes; a computed one fails with OptimizerError(Unsupported(\"Reshape operation with dynamic input for shape\"))"),
    dict(ops=["Clip"], rule="constant_input", input=1,
         source=f"{SRC}/wonnx/src/optimizer.rs: OptimizerError(Unsupported(\"Clip operation with dynamic input for min\")); {PROBES}: clip_dynamic_min"),
    dict(ops=["Clip"], rule="constant_input", input=2,
         source=f"{SRC}/wonnx/src/optimizer.rs: OptimizerError(Unsupported(\"Clip operation with dynamic input for max\"))"),
    dict(ops=["ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"], rule="constant_input", input=1,
         source=f"{SRC}/wonnx/src/optimizer.rs: the axes input is moved into the axes attribute; a computed one fails with OptimizerError(Unsupported(\"... operation with dynamic input for axes\"))"),
    # Clip-6 attributes: read as float lists, so a float attribute looks empty.
    dict(ops=["Clip"], rule="attribute_default", name="min", portable=False,
         note=CLIP6_NOTE,
         source=f"{SRC}/wonnx/src/compiler.rs (Relu/Sigmoid/.../Clip arm: `node.get_attribute_value(\"min\", Some(vec![f32::NEG_INFINITY]))`, `if min.len() != 1`); {PROBES}: clip_clamp.op9, clip_quarter.op9"),
    dict(ops=["Clip"], rule="attribute_default", name="max", portable=False,
         note=CLIP6_NOTE,
         source=f"{SRC}/wonnx/src/compiler.rs: as for min, `if max.len() != 1` -> InvalidAttributeValue {{ attribute: \"max\" }}"),
    # Rank-4-only pools and convolutions.
    dict(ops=["MaxPool", "AveragePool", "GlobalAveragePool", "Conv"], rule="input_rank", input=0, ranks=[4],
         source=f"{SRC}/wonnx/src/compiler.rs: 'TODO: Conv only support NxCxHxW for the moment.' `if input_shapes[0].rank() != 4` -> InvalidInputShape"),
    dict(ops=["Gather"], rule="attribute_default", name="axis", default=0,
         source=f"{SRC}/wonnx/src/compiler.rs: Gather `if axis != 0` -> UnimplementedVariant {{ variant: \"axis=..\" }}"),
    dict(ops=["OneHot"], rule="attribute_default", name="axis", default=-1,
         source=f"{SRC}/wonnx/src/compiler.rs: 'Currently only OneHot on the last axis is supported'"),
    dict(ops=["Gemm"], rule="attribute_default", name="transA", default=0,
         source=f"{SRC}/wonnx/src/compiler.rs: Gemm `if transpose_a != 0 || transpose_b != 0 || broadcast != 0` -> UnimplementedVariant"),
    dict(ops=["Gemm"], rule="attribute_default", name="transB", default=0,
         source=f"{SRC}/wonnx/src/compiler.rs: Gemm `if transpose_a != 0 || transpose_b != 0 || broadcast != 0` -> UnimplementedVariant"),
    dict(ops=["Pad"], rule="attribute_default", name="mode", default="constant",
         source=f"{SRC}/wonnx/src/compiler.rs: Pad, any other mode -> UnimplementedVariant"),
    # Known-wrong patterns (silently wrong results).
    dict(ops=["MatMul"], rule="known_wrong", pattern="matmul_block_shapes",
         note="wonnx 0.5.1 MatMul: no broadcasting between ranks or stack dims (refused: 'broadcasting for two stacks of matrixes'); with M == 1 the gemm_1 shader runs k over K/4 vec4 steps, so the last K % 4 terms are silently dropped ([1,51] x [51,51] gives 0 in 3 outputs, [1,81] x ones[81,1] a wrong sum); with M > 1 the block size is gcd(M, K, N) clamped to 4, refused when it is 1 and silently wrong when the gcd is not 2, 3 or a multiple of 4 ([6,6] x [6,6] all wrong). Exact (up to summation order) only when both operands have the same rank and leading dims and either M == 1 and K % 4 == 0, or gcd(M, K, N) is 2, 3 or a multiple of 4 dividing all three. A sum over an odd heatmap grid by MatMul against ones is therefore wrong or refused.",
         source=f"{SRC}/wonnx/src/compiler.rs (Gemm/MatMul arm: stacking checks, `gcd(dim_m, gcd(dim_k, dim_n)).clamp(1, 4)`), {SRC}/wonnx/templates/matrix/gemm_1.wgsl (`k < left_shape[1] / 4`); {PROBES}: reshape_51_matmul_*, matmul_sum_*, mm_1x81_ones, mm_1x51_51, mm_6x6_6, mm_stack_17x1x81"),
    dict(ops=["Concat"], rule="known_wrong", pattern="concat_after_non_unit_dims",
         note="wonnx 0.5.1 concatenates the inputs' flat buffers one after the other, which is the ONNX result only when every dim before the axis is 1 (axis 0, or axis 1 at batch 1). Concat on axis 1 at batch 2, axis 2 or axis 3 is silently wrong.",
         source=f"{SRC}/wonnx/templates/matrix/concat.wgsl (output index = cumulative input length); {PROBES}: concat3_mul, concat_n2_axis1, concat_n1_axis2, concat_n1_axis3"),
    dict(ops=["Clip"], rule="known_wrong", pattern="clip_bounds_rounded",
         note="wonnx 0.5.1 writes Clip's bounds into the WGSL source with format!(\"{:.1}\"): bounds that are not exact with one decimal are rounded (Clip(x, 0.25, 0.75) clamps to 0.2 and 0.8), and tiny ones become 0.0. Integers and +-FLT_MAX are exact.",
         source=f"{SRC}/wonnx/src/compiler.rs: `context.insert(\"min\", &format!(\"{{:.1}}\", min[0]))`; {PROBES}: clip_quarter"),
]

# Missing ops named in [unsupported] (the full list is in --json): those a keypoint decoder might reach for.
WORTH_NAMING = ["ArgMax", "ArgMin", "TopK", "GlobalMaxPool", "GlobalLpPool", "Min", "Max", "Sum", "Mean", "Where",
                "Not", "Expand", "Tile", "Slice", "ConstantOfShape", "Range", "CumSum", "GatherElements",
                "GatherND", "ScatterElements", "NonZero", "Einsum", "IsNaN", "IsInf", "Hardmax", "LpPool",
                "DepthToSpace", "SpaceToDepth", "Trilu", "Upsample"]

NOTE = (
    "wonnx runs every node as a WGSL compute shader through wgpu (Vulkan here: Mesa's lavapipe). "
    "It needs static shapes for every tensor (value_info), so models go through onnxsim first, as "
    "its README says; the leg simplifies a symbolic batch at each batch it runs. Measured on "
    "lavapipe: float32 arithmetic is IEEE without flushing subnormals (2^-149 * 2^100 * 2^100 = 2^51), "
    "Sigmoid is 1/(1+exp(-x)) within 1.2e-7 of numpy, Relu(NaN) = 0. Not expressible as a rule: "
    "MaxPool starts its maximum at -3.40282347e37, not -inf (templates/pool/aggregate.wgsl), so a "
    "window whose values are all below -3.4e37 (a heatmap clipped to -FLT_MAX, all -inf, all NaN) "
    "gives -3.4028235e37; ReduceMax has no such floor. GlobalMaxPool, Min, Max, Sum, ArgMax and "
    "Where are not implemented; comparisons compile but produce bool tensors, which wonnx cannot "
    "hold. onnxsim 0.8.1 (not wonnx) folds Mul(Mul(x, 2^100), 2^100) into Mul(x, inf) "
    "(onnxsim/passes/fuse_consecutive_mul.h): keep a non-Mul op between two constant scalings."
)


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def toml_value(v):
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def wrap_list(items, indent="    ", width=100):
    lines, cur = [], indent
    for it in items:
        piece = toml_str(it) + ", "
        if len(cur) + len(piece) > width and cur.strip():
            lines.append(cur.rstrip())
            cur = indent
        cur += piece
    if cur.strip():
        lines.append(cur.rstrip())
    return "\n".join(lines)


def main():
    if "--child" in sys.argv:
        child()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "profiles" / "wonnx.toml")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw scan here")
    args = ap.parse_args()

    import tempfile

    import onnx

    wv = version("wonnx")
    with tempfile.TemporaryDirectory(prefix="wonnx-profile-") as tmp:
        loader = Loader(Path(tmp))
        scan = scan_ops(loader)
        supported = sorted(op for op, err in scan.items() if not unimplemented(op, err) and err != "crash")
        missing = sorted(op for op, err in scan.items() if unimplemented(op, err))
        opset_refusals = scan_opsets(loader, supported)
        forbidden, allowed = scan_types(loader)
        loader.close()
    if args.json:
        args.json.write_text(json.dumps({"scan": scan, "opset_refusals": opset_refusals,
                                         "forbidden_types": forbidden, "allowed_types": allowed}, indent=1))

    wheel = f"PyPI wonnx=={wv} (wonnx/wonnx.abi3.so)"
    out = []
    out.append(f"# wonnx {wv} (WebGPU ONNX runtime, PyPI `wonnx`), run on Mesa's lavapipe Vulkan driver.")
    out.append("#")
    out.append("# GENERATED by conformance/legs/wonnx/gen_profile.py from the installed wheel: do not edit by")
    out.append("# hand, re-run the generator (with the leg's venv) after changing the pin in")
    out.append("# conformance/legs/wonnx/requirements.txt. Format: see profiles/barracuda-1.0.4.toml.")
    out.append(f"# Op list: one-node models of all {len(scan)} default-domain ops of onnx {onnx.__version__}")
    out.append("# loaded by the wheel; an op counts as supported unless wonnx answers UnimplementedOp(op).")
    out.append("# Rules: measured by the leg's probes and traced to the wonnx v0.5.1 source named in each.")
    out.append("")
    out.append('name = "wonnx"')
    out.append('runtime = "wonnx (WebGPU, wgpu; Python package)"')
    out.append(f"version = {toml_str(wv)}")
    out.append(f"source = {toml_str(wheel + ': one-node model per ONNX op, see conformance/legs/wonnx/gen_profile.py; source ' + SRC + '/wonnx/src/compiler.rs')}")
    out.append(f"note = {toml_str(NOTE)}")
    out.append("")
    out.append("[supported]")
    out.append(f"source = {toml_str(wheel + ': every default-domain op whose one-node model wonnx does not refuse with UnimplementedOp (compiler.rs compile(), optimizer.rs folding, gpu.rs aliases)')}")
    out.append("ops = [")
    out.append(wrap_list(supported))
    out.append("]")
    out.append("")
    out.append("[[rules]]")
    out.append('rule = "forbidden_types"')
    out.append(f"types = {toml_value(forbidden)}")
    out.append(f"source = {toml_str(wheel + ': an Identity model of each ONNX element type; refused ones fail with IrError(Type(NotSupported(TYPE))) (' + SRC + '/wonnx/src/utils.rs ScalarType::from: FLOAT, INT64, INT32, UINT8 only); the issue saw IrError(Type(NotSupported(BOOL))) at the first Equal')}")
    out.append(f"note = {toml_str('wonnx holds ' + ', '.join(allowed) + ' tensors (int64 computed as int32 on the GPU). Comparisons (Equal, Greater, Less, ...), And and Or compile, but their bool outputs cannot be declared (Not is not implemented).')}")
    for op, bad in sorted(opset_refusals.items()):
        out.append("")
        out.append("[[op_rules]]")
        out.append(f"ops = [{toml_str(op)}]")
        out.append('rule = "registered_opsets"')
        out.append(f"ranges = {toml_value(ranges_without(bad))}")
        why = wheel + ': ' + op + ' refused with UnsupportedOpsetVersion at opsets ' + str(bad) + ' (' + SRC + '/wonnx/src/compiler.rs)'
        out.append(f"source = {toml_str(why)}")
    for r in CURATED:
        ops = [o for o in r["ops"] if o in supported]
        if not ops:
            continue
        out.append("")
        out.append("[[op_rules]]")
        out.append(f"ops = {toml_value(ops)}")
        for k in ("rule", "input", "ranks", "name", "default", "pattern", "portable"):
            if k in r:
                out.append(f"{k} = {toml_value(r[k])}")
        if "note" in r:
            out.append(f"note = {toml_str(r['note'])}")
        out.append(f"source = {toml_str(r['source'])}")
    out.append("")
    out.append("[unsupported]")
    for op in [o for o in WORTH_NAMING if o in missing]:
        why = wheel + ': UnimplementedOp("' + op + '") when a one-node model is loaded'
        out.append(f"{op} = {toml_str(why)}")
    args.out.write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}: {len(supported)} supported, {len(missing)} unsupported, "
          f"{len(opset_refusals)} opset rules, forbidden types {forbidden}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
