#!/usr/bin/env python3
"""Writes profiles/ort-web-webgl.toml from the onnxruntime-web package this leg
installs (node_modules/onnxruntime-web, pinned in package.json).

What it reads, all in the package's shipped, unminified dist/ort.webgl.mjs:
- the WebGL kernel registration list, `WEBGL_OP_RESOLVE_RULES` (from the package's
  web/lib/onnxjs/backends/webgl/op-resolve-rules.ts): entries [opType, domain, versionSelector,
  impl], which `resolveOperator` matches against the model's opset ("7+", "1-12", "10"); an op or
  opset outside them fails at session creation with "cannot resolve operator 'X' with opsets: ...".
  Every ai.onnx op in it is `supported`; each op whose ranges do not cover every opset from 1 gets
  a `registered_opsets` rule (ops with the same ranges share one rule).
- the Reduce kernels' input check ("Reduce op requires 1 input."): an `axes_attribute` rule.
- the element types the engine reads a model's tensors in, `ProtoUtil.tensorDataTypeFromProto`
  (web/lib/onnxjs/util.ts; every value type, initializer and Cast target goes through it when the
  session is created): every other type of the bundled `onnx.TensorProto.DataType` enum fails
  with "unsupported data type: NAME", a `forbidden_types` rule (float16 among them, measured on
  the conformance suite's float16 models, which check.py holds to this rule).
- the code behind the two known-wrong patterns, which this leg's probes measured (see
  conformance/legs/ort_web/README.md); the generator refuses to write them when that code is no
  longer in the file, so a version bump makes someone re-run the probes.

Usage: gen_profile.py [--check] [--out PATH]. --check compares with the committed file instead of
writing it (exit 1 when it differs).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
PKG = HERE / "node_modules" / "onnxruntime-web"
DIST_FILE = "dist/ort.webgl.mjs"
MAX_OPSET = 30  # "covers every opset" is checked over 1..MAX_OPSET

# Ops worth naming as missing (candidates for an argmax decoder), each checked against the list.
NOTABLE_MISSING = ["ArgMax", "ArgMin", "TopK", "Max", "Min", "Where", "Expand", "ConstantOfShape",
                   "Range", "CumSum", "GatherElements", "GatherND", "OneHot", "ReduceL1", "ReduceL2",
                   "Mod", "Round", "Reciprocal", "Sign", "Einsum", "HardSigmoid", "Softplus", "Trilu",
                   "NonZero", "ScatterElements"]

# Evidence that must still be in the shipped file for the known-wrong rules to stand.
RESHAPE_EVIDENCE = [
    "reshapeUnpacked(input, reshapedDims) {",        # keeps the input's texture, new logical shape
    "vec4 v1 = ${glsl.texture2D}(A, TexCoords);",    # binary ops without broadcast
    "vec4 v = ${glsl.texture2D}(A, TexCoords);",     # unary element-wise ops
]
OUTPUT_EVIDENCE = [
    "fuseConvActivationNodes() {",
    "removeAllIdentityNodes() {",
    "if (this._allData[i].to.length === 0) {",        # only unread values get their output index fixed
    "required output [${outputIndex}] does not have value",
]
REDUCE_EVIDENCE = 'throw new Error("Reduce op requires 1 input.");'


def q(s: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(s, ensure_ascii=False)


def qlist(items) -> str:
    return "[" + ", ".join(q(i) for i in items) + "]"


def wrap_ops(ops, indent="    ", width=100):
    lines, line = [], indent
    for op in ops:
        piece = q(op) + ", "
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = indent
        line += piece
    lines.append(line.rstrip())
    return "\n".join(lines)


def covers(selector: str, v: int) -> bool:
    if selector.endswith("+"):
        return int(selector[:-1]) <= v
    if "-" in selector:
        lo, hi = selector.split("-")
        return int(lo) <= v <= int(hi)
    return int(selector) == v


def sort_key(selector: str):
    return int(re.match(r"\d+", selector).group())


def parse(js: str):
    m = re.search(r"WEBGL_OP_RESOLVE_RULES = \[(.*?)\n\s*\];", js, re.S)
    if not m:
        sys.exit(f"gen_profile: WEBGL_OP_RESOLVE_RULES not found in {DIST_FILE}")
    rules = re.findall(r'\[\s*"(\w+)",\s*"([^"]*)",\s*"([^"]+)",\s*\w+', m.group(1))
    if len(rules) < 50:
        sys.exit(f"gen_profile: only {len(rules)} entries parsed from WEBGL_OP_RESOLVE_RULES")
    ops: dict[str, list[str]] = {}
    for op, domain, selector in rules:
        if domain not in ("", "ai.onnx"):
            continue
        ops.setdefault(op, []).append(selector)
    line = js[: m.start()].count("\n") + 1
    return ops, line


def parse_types(js: str):
    """(types the WebGL engine reads, every type of the bundled TensorProto.DataType enum, line of
    tensorDataTypeFromProto), names as in the profiles (lowercase ONNX names)."""
    m = re.search(r"static tensorDataTypeFromProto\(typeProto\) \{(.*?)default:", js, re.S)
    if not m:
        sys.exit("gen_profile: ProtoUtil.tensorDataTypeFromProto not found in the dist file")
    read = re.findall(r"case import_onnx\.onnx\.TensorProto\.DataType\.(\w+):", m.group(1))
    e = re.search(r"TensorProto\.DataType = \(function\(\) \{(.*?)return values;", js, re.S)
    if not e or not read:
        sys.exit("gen_profile: the TensorProto.DataType enum or its cases were not found")
    enum = [name for _, name in sorted((int(v), n) for v, n in re.findall(r'valuesById\[(\d+)\] = "(\w+)"', e.group(1)))]
    line = js[: m.start()].count("\n") + 1
    return [t.lower() for t in read], [t.lower() for t in enum if t != "UNDEFINED"], line


def render(version: str, ops: dict[str, list[str]], line: int, types=None) -> str:
    src = f"npm onnxruntime-web@{version}: node_modules/onnxruntime-web/{DIST_FILE}"
    src_rules = f"{src}, WEBGL_OP_RESOLVE_RULES (line {line}; web/lib/onnxjs/backends/webgl/op-resolve-rules.ts)"
    major_minor = ".".join(version.split(".")[:2])
    out = []
    out.append(f"""# onnxruntime-web {version}, WebGL backend (executionProviders: ['webgl']).
#
# GENERATED by conformance/legs/ort_web/gen_profile.py from the package's shipped JavaScript
# ({DIST_FILE}): do not edit by hand, re-run the generator after changing the pin in
# conformance/legs/ort_web/package.json. Format: see profiles/barracuda-1.0.4.toml.
#
# The known-wrong rules and the Reduce input rule were measured by the ort_web conformance leg
# (headless Chromium 156, SwiftShader WebGL 2) and traced to the code named in their sources.

name = "ort-web-webgl"
runtime = "onnxruntime-web (WebGL backend)"
version = {q(version)}
source = {q(src_rules)}
note = {q("The WebGL backend is the old onnx.js engine: it resolves each node against its own kernel list "
          "(no ONNX Runtime kernels, no fallback to wasm when only 'webgl' is asked for), keeps tensors in "
          "float32 RGBA textures (unpacked by default) and flushes subnormal floats to zero (GLSL ES highp; "
          "measured on SwiftShader: a 2^-149 gap reads as 0, so 1 - Clip(d * 2^100 * 2^100, 0, 1) makes "
          "every cell within a subnormal of the maximum a maximum too).")}
""")
    supported = list(ops) + ["Constant"]
    out.append("[supported]")
    out.append(f"source = {q(src_rules + '; Constant: folded into an initializer when the graph loads (Graph.buildGraphFromOnnxFormat)')}")
    out.append("ops = [\n" + wrap_ops(supported) + "\n]\n")

    # registered_opsets, grouped by identical ranges.
    groups: dict[tuple, list[str]] = {}
    for op, sels in ops.items():
        if all(any(covers(s, v) for s in sels) for v in range(1, MAX_OPSET + 1)):
            continue
        key = tuple(sorted(set(sels), key=sort_key))
        groups.setdefault(key, []).append(op)
    for ranges, names in sorted(groups.items(), key=lambda kv: (sort_key(kv[0][0]), kv[0])):
        out.append("[[op_rules]]")
        out.append(f"ops = {qlist(names)}")
        out.append('rule = "registered_opsets"')
        out.append(f"ranges = {qlist(ranges)}")
        entries = "; ".join('["%s", "", "%s"]' % (n, s) for n in names for s in sorted(set(ops[n]), key=sort_key))
        out.append(f"source = {q(src_rules + ': ' + entries)}")
        out.append("")

    reduce_ops = [o for o in ("ReduceLogSum", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
                              "ReduceSumSquare") if o in ops]
    out.append("[[op_rules]]")
    out.append(f"ops = {qlist(reduce_ops)}")
    out.append('rule = "axes_attribute"')
    out.append(f"note = {q('The WebGL Reduce kernels read axes and keepdims from the attributes and take exactly one input, so the opset-18 form with axes as input 1 loads and then fails at run time with ' + json.dumps('Reduce op requires 1 input.') + ' (measured: ReduceMax-18 with axes [2, 3] as input; ReduceMax-18 without axes and ReduceMax-13 with the axes attribute are exact; ReduceSum is not registered after opset 12 at all).')}")
    out.append(f"source = {q(src + ': web/lib/onnxjs/backends/webgl/ops/reduce.ts validateInputs: ' + REDUCE_EVIDENCE)}")
    out.append("")

    out.append("[[rules]]")
    out.append('rule = "known_wrong"')
    out.append('pattern = "reshape_then_elementwise"')
    out.append("note = " + q(
        "Reshape, Flatten, Squeeze and Unsqueeze keep their input's texture and only relabel its shape "
        "(reshapeUnpacked). Element-wise kernels whose inputs all have the output's dims sample each input "
        "at the output's texture coordinate (texture2D(A, TexCoords)): every unary element-wise op (Abs, "
        "Ceil, Clip, Cos, Elu, Exp, Floor, LeakyRelu, Log, Neg, Not, Relu, Sigmoid, Sin, Sqrt, Tan, Tanh, "
        "...), Sum, and Add/Sub/Mul/Div/Pow/PRelu/And/Or/Xor/Equal/Greater/Less without broadcasting. "
        "They read the wrong cells when the reshaped tensor's texture (that of its real producer, through "
        "any chain of Reshape/Flatten/Squeeze/Unsqueeze) is not the texture the output shape gets. "
        "Texture of a shape S (PreferLogicalStrategy, unpacked; M = MAX_TEXTURE_SIZE, 8192 on SwiftShader, "
        "16384 on most desktop GPUs, 4096 on some phones): unless rank(S) = 2 drop the 1s; rank <= 1: "
        "[1, n]; rank 2: S; rank 3 [a,b,c]: [a*b, c]; rank 4 [a,b,c,d]: [a*b*c, d]; when that does not fit "
        "in M: [a, b*c] / [a, b*c*d]; otherwise (rank 5+ or too big) [w, ceil(n/w)] with w = ceil(sqrt(n)). "
        "Measured from [1,34,17,17] (texture [578,17]): to [1,2,17,289], [2,17,289], [34,289], [1,34,289], "
        "[17,578], [1,9826] then Add of same-shape zeros, Neg, Relu, Sigmoid, Clip, Mul, Sum: wrong (up to "
        "14 off); to [1,578,17], [578,17], [34,17,17], [1,1,34,17,17], [1,17,2,17,17]: exact; broadcasting "
        "Add/Mul (zeros[1], [1,2,1,289]), MatMul, Transpose and a Reshape back: exact; [1,289] -> [289,1] "
        "then Add: wrong (rank-2 shapes keep their unit dims). Safe forms: broadcast the element-wise op, "
        "move data in between (Transpose, MatMul, Concat, a pool), or reshape only between shapes of one "
        "texture (keep the last dim, merge leading dims)."))
    out.append(f"source = {q(src + ': WebGLInferenceHandler.reshapeUnpacked, unary-op.ts createElementwiseProgramInfo, binary-op.ts createBinaryProgramInfo (no-broadcast branch), sum.ts, texture-layout-strategy.ts PreferLogicalStrategy.computeTexture; measured by conformance/legs/ort_web (probes rs_*)')}")
    out.append("")

    out.append("[[rules]]")
    out.append('rule = "known_wrong"')
    out.append('pattern = "deleted_node_output_read"')
    # The decoder recomputes fused activations (src/reroute.rs), so what is left of this pattern
    # is the model's own structure (Identity-written outputs), which the rewrite cannot choose.
    out.append("portable = false")
    out.append("note = " + q(
        "Left out of portable: once the decoder recomputes a fused head activation (src/reroute.rs), what "
        "breaks is the model's own structure (a graph output an Identity or Dropout writes, listed before a "
        "head), which the rewrite cannot change; target ort-web-webgl to check it. "
        "At load the WebGL engine deletes every Identity and Dropout node and fuses a Relu, Sigmoid or Clip "
        "(Clip with constant bounds) into the Conv before it when that Conv's output has no other reader. "
        "When such a deleted node writes a graph output, the graph-output index list is re-numbered only for "
        "values no node reads (Graph.finalizeGraph), so the Conv output that replaces it, if read, and every "
        "graph output listed after it that a node reads, keep stale indices: the run fails with 'required "
        "output [N] does not have value' or returns another tensor under that output's name (measured: "
        "offsets came back as a [1,34,1,1] pool result). Measured: Conv -> Sigmoid = heatmaps read by "
        "GlobalMaxPool fails (also Relu); a second Sigmoid on the Conv's logits feeding the decoder (the graph "
        "output left untouched) works and is bit-identical to the graph output and to the fused original's; "
        "reading the logits (Sigmoid of their max) works and is bit-identical to max(heatmaps); a fused "
        "Sigmoid head that nothing reads breaks the offsets output listed after it if the decoder reads the "
        "offsets. So a decoder must keep the heatmap Conv at two readers (recompute, do not reuse, the "
        "Sigmoid) and read no graph output listed after a deleted node's output."))
    out.append(f"source = {q(src + ': web/lib/onnxjs/graph.ts (fuseConvActivationNodes, removeAllIdentityNodes, removeAllDropoutNodes, deleteNode, finalizeGraph), execution-plan.ts; measured by conformance/legs/ort_web (probes sig_*, identity_*)')}")
    out.append("")

    if types is not None:
        read, enum, type_line = types
        forbidden = [t for t in enum if t not in read]
        out.append("[[rules]]")
        out.append('rule = "forbidden_types"')
        out.append(f"types = {qlist(forbidden)}")
        out.append("note = " + q(
            "The WebGL engine (onnx.js) reads every value type, initializer and Cast target of a model through one "
            "type map when the session is created; any type outside it fails InferenceSession.create with "
            "'unsupported data type: NAME', so a float16 model (onnxconverter-common's convert_float_to_float16, with "
            "or without keep_io_types) does not load at all; int64 is read as int32. The wasm backend (ONNX "
            "Runtime's kernels) runs float16 models. conformance/check.py asserts that WebGL refuses its float16 "
            "models."))
        out.append(f"source = {q(src + f': ProtoUtil.tensorDataTypeFromProto (line {type_line}; web/lib/onnxjs/util.ts) maps ' + ', '.join(t.upper() for t in read) + ' and throws `unsupported data type: ${TensorProto.DataType[type]}` for any other; measured by conformance/legs/ort_web (headless Chromium 156, SwiftShader WebGL 2): the real PoseNet and a synthetic one converted by onnxconverter-common 1.16.0 convert_float_to_float16, keep_io_types False and True, fail with ' + json.dumps('unsupported data type: FLOAT16'))}")
        out.append("")

    out.append("[unsupported]")
    for op in NOTABLE_MISSING:
        if op not in ops:
            out.append(f"{op} = {q(src_rules + ': not registered (fails to load: ' + json.dumps(f'cannot resolve operator {chr(39)}{op}{chr(39)} with opsets: ai.onnx vN') + ')')}")
    return major_minor, "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    version = json.loads((PKG / "package.json").read_text())["version"]
    js = (PKG / DIST_FILE).read_text()
    for needle in RESHAPE_EVIDENCE + OUTPUT_EVIDENCE + [REDUCE_EVIDENCE]:
        if needle not in js:
            sys.exit(f"gen_profile: {DIST_FILE} of {version} no longer contains {needle!r}: re-run the leg's probes "
                     "and update the known-wrong rules before generating")
    ops, line = parse(js)
    major_minor, text = render(version, ops, line, parse_types(js))
    out = args.out or REPO / "profiles" / "ort-web-webgl.toml"
    if args.check:
        same = out.is_file() and out.read_text() == text
        print(f"{out}: {'up to date' if same else 'DIFFERS from the generator output'}")
        return 0 if same else 1
    out.write_text(text)
    print(f"wrote {out} ({len(ops)} ops from {DIST_FILE} of onnxruntime-web {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
