"""Reference implementation of the ort-web 1.30 WebGL known-wrong rules of
profiles/ort-web-webgl.toml (reshape_then_elementwise, deleted_node_output_read), for porting
to src/profiles/check.rs and for checking a model by hand:

    python webgl_patterns.py MODEL.onnx...

Needs the onnx package (check.py's venv has it). On this leg's 84 pattern probes it predicts every
WebGL result (0 misses at MAX_TEXTURE_SIZE 8192); it flags today's decoder (HEAD e0a7fdb) exactly
where WebGL mismatched or failed and none of the new decoder's (v2) models.
"""
import math
import sys

import onnx
from onnx import shape_inference


# --- texture shapes: PreferLogicalStrategy.computeTexture (unpacked, no breakAxis) --------------

def _squeeze(shape):
    return [d for d in shape if d != 1]


def tex(shape, max_size=8192):
    """[width-ish, height-ish] of the unpacked WebGL texture ort-web gives a tensor of `shape`."""
    if len(shape) == 0:
        return [1, 1]
    log = list(shape)
    if len(log) != 2:
        log = _squeeze(log)
    size = math.prod(log) if log else 1
    if len(log) <= 1 and size <= max_size:
        return [1, size]
    if len(log) == 2 and log[0] <= max_size and log[1] <= max_size:
        return log
    if len(log) == 3 and log[0] * log[1] <= max_size and log[2] <= max_size:
        return [log[0] * log[1], log[2]]
    if len(log) == 3 and log[0] <= max_size and log[1] * log[2] <= max_size:
        return [log[0], log[1] * log[2]]
    if len(log) == 4 and log[0] * log[1] * log[2] <= max_size and log[3] <= max_size:
        return [log[0] * log[1] * log[2], log[3]]
    if len(log) == 4 and log[0] <= max_size and log[1] * log[2] * log[3] <= max_size:
        return [log[0], log[1] * log[2] * log[3]]
    w = math.ceil(math.sqrt(size))
    return [w, math.ceil(size / w)]


UNARY = {"Abs", "Acos", "Asin", "Atan", "Ceil", "Clip", "Cos", "Elu", "Exp", "Floor", "LeakyRelu", "Log", "Neg",
         "Not", "Relu", "Sigmoid", "Sin", "Sqrt", "Tan", "Tanh"}
BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "PRelu", "And", "Or", "Xor", "Equal", "Greater", "Less"}
RELABEL = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}
REMOVED = {"Identity", "Dropout"}
MAX_SIZES = (4096, 8192, 16384)


def dims_map(model):
    m = shape_inference.infer_shapes(model, data_prop=True)
    out = {}
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            d = [x.dim_value if x.HasField("dim_value") else None for x in t.shape.dim]
            out[vi.name] = d
    for init in m.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def reshape_violations(model):
    dims = dims_map(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for n in model.graph.node:
        ins = [i for i in n.input if i]
        if n.op_type in UNARY or n.op_type == "Sum":
            data = ins[:1] if n.op_type in UNARY else ins
        elif n.op_type in BINARY:
            if len(ins) != 2 or dims.get(ins[0]) != dims.get(ins[1]):
                continue  # broadcasting: sampled by index, right
            data = ins
        else:
            continue
        out = dims.get(n.output[0])
        if out is None or None in out:
            continue
        for i in data:
            src, relabeled = i, False
            while src in producer and producer[src].op_type in RELABEL | REMOVED:
                relabeled |= producer[src].op_type in RELABEL
                src = producer[src].input[0]
            if not relabeled:
                continue
            sd = dims.get(src)
            if sd is None or None in sd:
                found.append(f"{n.op_type} {n.name}: reads {i}, relabeled from {src} of unknown dims")
                continue
            bad = [m for m in MAX_SIZES if tex(sd, m) != tex(out, m)]
            if bad:
                found.append(f"{n.op_type} {n.name}: reads {i} relabeled from {src} {sd} (texture {tex(sd, bad[0])}) "
                             f"but samples it as {out} (texture {tex(out, bad[0])}) at MAX_TEXTURE_SIZE {bad}")
    return found


def output_violations(model):
    g = model.graph
    consumers = {}
    for idx, n in enumerate(g.node):
        for i in n.input:
            consumers.setdefault(i, []).append(idx)
    producer = {o: idx for idx, n in enumerate(g.node) for o in n.output}
    inits = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    deleted = set()
    # Identity / Dropout: consumers move to the input.
    for idx, n in enumerate(g.node):
        if n.op_type in REMOVED:
            deleted.add(idx)
            src, out = n.input[0], n.output[0]
            consumers[src] = [c for c in consumers.get(src, []) if c != idx] + consumers.get(out, [])
            consumers[out] = []
    # Conv + single-reader Relu/Sigmoid/Clip fusion.
    for idx, n in enumerate(g.node):
        if n.op_type != "Conv" or idx in deleted:
            continue
        nxt = consumers.get(n.output[0], [])
        if len(nxt) == 1 and g.node[nxt[0]].op_type in ("Relu", "Sigmoid", "Clip"):
            a = g.node[nxt[0]]
            if a.op_type == "Clip" and len([i for i in a.input if i]) > 1 and not all(i in inits for i in a.input[1:3] if i):
                continue
            deleted.add(nxt[0])
            consumers[n.output[0]] = consumers.get(a.output[0], [])
            consumers[a.output[0]] = []
    outs = [o.name for o in g.output]
    found = []
    for p, name in enumerate(outs):
        if producer.get(name) not in deleted:
            continue
        node = g.node[producer[name]]
        repl = node.input[0]
        low = repl in inits or repl in {i.name for i in g.input}  # numbered before the outputs: not shifted
        if consumers.get(repl) and not low:
            found.append(f"graph output {name} (written by {node.op_type}, deleted at load) is read by other nodes")
        for later in outs[p + 1:]:
            if consumers.get(later):
                found.append(f"graph output {later}, listed after {name} (written by deleted {node.op_type}), is read by a node")
    return found


if __name__ == "__main__":
    for path in sys.argv[1:]:
        m = onnx.load(path)
        v = reshape_violations(m) + output_violations(m)
        print(f"{path}: {'ok' if not v else str(len(v)) + ' violations'}")
        for x in v[:4]:
            print("   ", x)
