"""One-node ONNX models, one per op, for gen_profile.py.

Each case is `CASES[op](opset) -> Case` or None when the op has no form at that opset. A case is a
single node (plus constant initializers) on float inputs of batch 1, the shapes a PoseNet decoder
uses (N=1, C=4, H=W=6 unless the op needs others). Values are seeded random floats, with a few
ties and exact integers so that exact ops can be compared bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(20261020)
F = TensorProto.FLOAT


@dataclass
class Case:
    nodes: list
    inputs: dict  # name -> np.ndarray (run-time inputs)
    inits: dict = field(default_factory=dict)  # name -> np.ndarray (initializers)
    outputs: dict = field(default_factory=lambda: {"y": F})  # name -> elem type
    exact: bool = True  # compare bit for bit (else within 1e-5 relative)
    note: str = ""


def x(*shape, lo=-4.0, hi=4.0):
    a = RNG.uniform(lo, hi, size=shape).astype(np.float32)
    return np.round(a * 8) / 8  # multiples of 1/8: exact sums, some ties


def pos(*shape):
    return x(*shape, lo=0.25, hi=4.0).clip(0.125, None)


def node(op, ins, outs=("y",), **attrs):
    return helper.make_node(op, list(ins), list(outs), **attrs)


def i64(*v):
    return np.array(v, dtype=np.int64)


def unary(op, data=None, exact=False, **attrs):
    return lambda o: Case([node(op, ["x"], **attrs)], {"x": x(1, 4, 6, 6) if data is None else data()},
                          exact=exact)


def binary(op, exact=True, b_shape=(1, 4, 1, 1), data=None):
    def make(o):
        a = x(1, 4, 6, 6) if data is None else data(1, 4, 6, 6)
        b = x(*b_shape) if data is None else data(*b_shape)
        return Case([node(op, ["a", "b"])], {"a": a}, {"b": b}, exact=exact)
    return make


def variadic(op, exact=True):
    return lambda o: Case([node(op, ["a", "b"])], {"a": x(1, 4, 6, 6)}, {"b": x(1, 4, 6, 6)}, exact=exact)


def compare(op):
    # Equal takes no float inputs before opset 11: none of those forms here.
    return lambda o: None if (op == "Equal" and o < 11) else Case([node(op, ["a", "b"], ["c"]), node("Cast", ["c"], to=F)], {"a": x(1, 4, 6, 6)},
                          {"b": x(1, 4, 1, 1)}, note="followed by Cast to float")


def logical(op):
    def make(o):
        nodes = [node("Greater", ["a", "z"], ["p"]), node("Less", ["a", "z"], ["q"])]
        nodes += [node(op, ["p", "q"], ["r"])] if op != "Not" else [node("Not", ["p"], ["r"])]
        nodes += [node("Cast", ["r"], to=F)]
        return Case(nodes, {"a": x(1, 4, 6, 6)}, {"z": np.zeros((1, 4, 1, 1), np.float32)},
                    note="on Greater/Less, followed by Cast to float")
    return make


def reduce(op, exact=True, axes=(3,)):
    """A reduction over `axes` (one axis, the last: pnnx converts no multi-axis ReduceMax/Min)."""
    def make(o):
        axes_input = (op == "ReduceSum" and o >= 13) or o >= 18
        if axes_input:
            return Case([node(op, ["x", "axes"], keepdims=1)], {"x": pos(1, 4, 6, 6)}, {"axes": i64(*axes)},
                        exact=exact, note=f"axes {list(axes)} as an input")
        return Case([node(op, ["x"], axes=list(axes), keepdims=1)], {"x": pos(1, 4, 6, 6)}, exact=exact,
                    note=f"axes {list(axes)} as an attribute")
    return make


def conv(o):
    return Case([node("Conv", ["x", "w", "b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], {"x": x(1, 4, 6, 6)},
                {"w": x(8, 4, 3, 3), "b": x(8)}, exact=False)


def matmul_const(o):
    return Case([node("MatMul", ["x", "w"])], {"x": x(1, 4, 6, 6)}, {"w": x(6, 5)}, exact=False,
                note="[1,4,6,6] x const [6,5]")


def gemm(o):
    return Case([node("Gemm", ["x", "w", "b"], transB=1)], {"x": x(1, 24)}, {"w": x(5, 24), "b": x(5)},
                exact=False)


def reshape(o):
    return Case([node("Reshape", ["x", "s"])], {"x": x(1, 4, 6, 6)}, {"s": i64(1, 4, 36)})


def flatten(o):
    return Case([node("Flatten", ["x"], axis=1)], {"x": x(1, 4, 6, 6)})


def squeeze(o):
    if o >= 13:
        return Case([node("Squeeze", ["x", "axes"])], {"x": x(1, 4, 1, 6)}, {"axes": i64(2)})
    return Case([node("Squeeze", ["x"], axes=[2])], {"x": x(1, 4, 1, 6)})


def unsqueeze(o):
    if o >= 13:
        return Case([node("Unsqueeze", ["x", "axes"])], {"x": x(1, 4, 6)}, {"axes": i64(2)})
    return Case([node("Unsqueeze", ["x"], axes=[2])], {"x": x(1, 4, 6)})


def concat(o):
    return Case([node("Concat", ["a", "b"], axis=1)], {"a": x(1, 4, 6, 6)}, {"b": x(1, 2, 6, 6)})


def transpose(o):
    return Case([node("Transpose", ["x"], perm=[0, 2, 3, 1])], {"x": x(1, 4, 6, 6)})


def slice_(o):
    if o >= 10:
        return Case([node("Slice", ["x", "s", "e", "a"])], {"x": x(1, 4, 6, 6)},
                    {"s": i64(1), "e": i64(3), "a": i64(1)})
    return Case([node("Slice", ["x"], starts=[1], ends=[3], axes=[1])], {"x": x(1, 4, 6, 6)})


def split(o):
    outs = ["y", "z"]
    if o >= 13:
        return Case([node("Split", ["x", "s"], outs, axis=1)], {"x": x(1, 4, 6, 6)}, {"s": i64(1, 3)},
                    outputs={"y": F, "z": F})
    return Case([node("Split", ["x"], outs, axis=1, split=[1, 3])], {"x": x(1, 4, 6, 6)},
                outputs={"y": F, "z": F})


def gather(o):
    return Case([node("Gather", ["x", "i"], axis=1)], {"x": x(1, 4, 6, 6)}, {"i": i64(2, 0)})


def gather_elements(o):
    if o < 11:
        return None
    idx = RNG.integers(0, 6, size=(1, 4, 6, 1)).astype(np.int64)
    return Case([node("GatherElements", ["x", "i"], axis=3)], {"x": x(1, 4, 6, 6)}, {"i": idx})


def pad(o):
    if o >= 11:
        return Case([node("Pad", ["x", "p"])], {"x": x(1, 4, 6, 6)}, {"p": i64(0, 0, 1, 1, 0, 0, 1, 1)})
    return Case([node("Pad", ["x"], pads=[0, 0, 1, 1, 0, 0, 1, 1])], {"x": x(1, 4, 6, 6)})


def clip(o):
    if o >= 11:
        return Case([node("Clip", ["x", "lo", "hi"])], {"x": x(1, 4, 6, 6)},
                    {"lo": np.array(-1.0, np.float32), "hi": np.array(1.5, np.float32)})
    return Case([node("Clip", ["x"], min=-1.0, max=1.5)], {"x": x(1, 4, 6, 6)})


def maxpool(o):
    return Case([node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])],
                {"x": x(1, 4, 6, 6)})


def avgpool(o):
    return Case([node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], {"x": x(1, 4, 6, 6)},
                exact=False)


def argmax(o):
    return Case([node("ArgMax", ["x"], ["i"], axis=3, keepdims=1), node("Cast", ["i"], to=F)],
                {"x": x(1, 4, 6, 6)}, note="followed by Cast to float")


def topk(o):
    if o >= 10:
        return Case([node("TopK", ["x", "k"], ["y", "i"], axis=3)], {"x": x(1, 4, 6, 6)}, {"k": i64(1)},
                    outputs={"y": F, "i": TensorProto.INT64})
    return Case([node("TopK", ["x"], ["y", "i"], axis=3, k=1)], {"x": x(1, 4, 6, 6)},
                outputs={"y": F, "i": TensorProto.INT64})


def cast(o):
    return Case([node("Cast", ["x"], ["t"], to=TensorProto.INT64), node("Cast", ["t"], to=F)],
                {"x": x(1, 4, 6, 6)}, note="float -> int64 -> float")


def where(o):
    return Case([node("Greater", ["a", "z"], ["c"]), node("Where", ["c", "a", "z2"])], {"a": x(1, 4, 6, 6)},
                {"z": np.zeros((1, 4, 1, 1), np.float32), "z2": np.zeros((1, 4, 6, 6), np.float32)},
                note="on a Greater")


def softmax(o):
    return Case([node("Softmax", ["x"], axis=-1)], {"x": x(1, 4, 6, 6)}, exact=False)


def batchnorm(o):
    return Case([node("BatchNormalization", ["x", "s", "b", "m", "v"])], {"x": x(1, 4, 6, 6)},
                {"s": pos(4), "b": x(4), "m": x(4), "v": pos(4)}, exact=False)


def resize(o):
    if o < 11:
        return None
    return Case([node("Resize", ["x", "roi", "sc"], mode="nearest")], {"x": x(1, 4, 6, 6)},
                {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 2], np.float32)})


def upsample(o):
    if o >= 10:
        return None
    return Case([node("Upsample", ["x", "sc"], mode="nearest")], {"x": x(1, 4, 6, 6)},
                {"sc": np.array([1, 1, 2, 2], np.float32)})


def expand(o):
    return Case([node("Expand", ["x", "s"])], {"x": x(1, 4, 1, 6)}, {"s": i64(1, 4, 6, 6)})


def tile(o):
    return Case([node("Tile", ["x", "r"])], {"x": x(1, 4, 6, 6)}, {"r": i64(1, 1, 2, 1)})


def shape(o):
    return Case([node("Flatten", ["x"], ["f"], axis=1), node("Shape", ["x"], ["s"]), node("Reshape", ["f", "s"])],
                {"x": x(1, 4, 6, 6)}, note="Reshape(Flatten(x), Shape(x))")


def constant_of_shape(o):
    return Case([node("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
                 node("Mul", ["x", "c"])], {"x": x(1, 4, 6, 6)}, {"s": i64(1, 4, 6, 6)})


def constant(o):
    return Case([node("Constant", [], ["c"], value=numpy_helper.from_array(x(1, 4, 1, 1))), node("Add", ["x", "c"])],
                {"x": x(1, 4, 6, 6)})


def cumsum(o):
    if o < 11:
        return None
    return Case([node("CumSum", ["x", "a"])], {"x": x(1, 4, 6, 6)}, {"a": np.array(3, np.int64)})


def onehot(o):
    return Case([node("OneHot", ["i", "d", "v"], ["h"], axis=-1), node("Mul", ["x", "h"])],
                {"x": x(1, 4, 6, 6)},
                {"i": RNG.integers(0, 6, size=(1, 4, 6)).astype(np.int64), "d": i64(6),
                 "v": np.array([0.0, 1.0], np.float32)})


def einsum(o):
    if o < 12:
        return None
    return Case([node("Einsum", ["a", "b"], equation="nchw,w->nch")], {"a": x(1, 4, 6, 6)}, {"b": x(6)},
                exact=False)


def range_(o):
    if o < 11:
        return None
    return Case([node("Range", ["s", "l", "d"], ["r"]), node("Add", ["x", "r"])], {"x": x(1, 4, 6, 6)},
                {"s": np.array(0.0, np.float32), "l": np.array(6.0, np.float32), "d": np.array(1.0, np.float32)})


def prelu(o):
    return Case([node("PRelu", ["x", "s"])], {"x": x(1, 4, 6, 6)}, {"s": x(4, 1, 1)}, exact=True)


def depth_to_space(o):
    return Case([node("DepthToSpace", ["x"], blocksize=2)], {"x": x(1, 4, 6, 6)})


def space_to_depth(o):
    return Case([node("SpaceToDepth", ["x"], blocksize=2)], {"x": x(1, 4, 6, 6)})


def conv_transpose(o):
    return Case([node("ConvTranspose", ["x", "w"], kernel_shape=[2, 2], strides=[2, 2])], {"x": x(1, 4, 6, 6)},
                {"w": x(4, 3, 2, 2)}, exact=False)


def instance_norm(o):
    return Case([node("InstanceNormalization", ["x", "s", "b"])], {"x": x(1, 4, 6, 6)},
                {"s": pos(4), "b": x(4)}, exact=False)


def layer_norm(o):
    if o < 17:
        return None
    return Case([node("LayerNormalization", ["x", "s", "b"], axis=-1)], {"x": x(1, 4, 6, 6)},
                {"s": pos(6), "b": x(6)}, exact=False)


def lrn(o):
    return Case([node("LRN", ["x"], size=3)], {"x": x(1, 4, 6, 6)}, exact=False)


def hardmax(o):
    return Case([node("Hardmax", ["x"], axis=-1)], {"x": x(1, 4, 6, 6)})


def mid(op, **attrs):
    """op between two Adds (pnnx removes it; alone between input and output it crashes pnnx)."""
    return lambda o: Case([node("Add", ["x", "b"], ["t"]), node(op, ["t"], ["u"], **attrs), node("Add", ["u", "b"])],
                          {"x": x(1, 4, 6, 6)}, {"b": x(1, 4, 1, 1)}, note="between two Adds")


def global_pool(op, exact=True):
    return lambda o: Case([node(op, ["x"])], {"x": x(1, 4, 6, 6)}, exact=exact)


def nonzero(o):
    return Case([node("NonZero", ["x"], ["n"]), node("Cast", ["n"], to=F)], {"x": x(1, 4, 6, 6)})


def mod(o):
    if o < 10:
        return None
    return Case([node("Mod", ["a", "b"], fmod=1)], {"a": x(1, 4, 6, 6)}, {"b": np.array([1.5], np.float32)})


def hardswish(o):
    return None if o < 14 else unary("HardSwish")(o)


def mish(o):
    return None if o < 18 else unary("Mish")(o)


def gelu(o):
    return None if o < 20 else unary("Gelu")(o)


def celu(o):
    return None if o < 12 else unary("Celu")(o)


def trilu(o):
    return None if o < 14 else Case([node("Trilu", ["x"], upper=1)], {"x": x(1, 4, 6, 6)})


def grid_sample(o):
    if o < 16:
        return None
    return Case([node("GridSample", ["x", "g"])], {"x": x(1, 4, 6, 6)}, {"g": x(1, 6, 6, 2, lo=-1, hi=1)},
                exact=False)


CASES = {
    # element-wise arithmetic (the decoder's)
    "Add": binary("Add"), "Sub": binary("Sub"), "Mul": binary("Mul"),
    "Div": binary("Div", exact=False, data=lambda *s: pos(*s)),
    "Pow": binary("Pow", exact=False, data=lambda *s: pos(*s)),
    "Max": variadic("Max"), "Min": variadic("Min"), "Sum": variadic("Sum"), "Mean": variadic("Mean"),
    "Mod": mod,
    "Neg": unary("Neg", exact=True), "Abs": unary("Abs", exact=True), "Relu": unary("Relu", exact=True),
    "Floor": unary("Floor", exact=True), "Ceil": unary("Ceil", exact=True), "Round": unary("Round", exact=True),
    "Sign": unary("Sign", exact=True), "Identity": mid("Identity"),
    "Sigmoid": unary("Sigmoid"), "Tanh": unary("Tanh"), "Exp": unary("Exp"),
    "Log": unary("Log", data=lambda: pos(1, 4, 6, 6)), "Sqrt": unary("Sqrt", data=lambda: pos(1, 4, 6, 6)),
    "Reciprocal": unary("Reciprocal", data=lambda: pos(1, 4, 6, 6)), "Erf": unary("Erf"),
    "Sin": unary("Sin"), "Cos": unary("Cos"), "Tan": unary("Tan"), "Atan": unary("Atan"),
    "Asin": unary("Asin", data=lambda: x(1, 4, 6, 6, lo=-0.9, hi=0.9)),
    "Acos": unary("Acos", data=lambda: x(1, 4, 6, 6, lo=-0.9, hi=0.9)),
    "Softplus": unary("Softplus"), "Softsign": unary("Softsign"), "Elu": unary("Elu"), "Selu": unary("Selu"),
    "LeakyRelu": unary("LeakyRelu", alpha=0.125), "HardSigmoid": unary("HardSigmoid"),
    "HardSwish": hardswish, "Mish": mish, "Gelu": gelu, "Celu": celu, "PRelu": prelu,
    "Clip": clip, "Dropout": mid("Dropout"),
    # comparisons and logic (bool tensors)
    "Equal": compare("Equal"), "Greater": compare("Greater"), "Less": compare("Less"),
    "GreaterOrEqual": lambda o: None if o < 12 else compare("GreaterOrEqual")(o),
    "LessOrEqual": lambda o: None if o < 12 else compare("LessOrEqual")(o),
    "Not": logical("Not"), "And": logical("And"), "Or": logical("Or"), "Xor": logical("Xor"),
    "Where": where, "Cast": cast, "NonZero": nonzero,
    # reductions and selections
    "ReduceMax": reduce("ReduceMax"), "ReduceMin": reduce("ReduceMin"), "ReduceSum": reduce("ReduceSum"),
    "ReduceMean": reduce("ReduceMean", exact=False), "ReduceProd": reduce("ReduceProd", exact=False),
    "ReduceL2": reduce("ReduceL2", exact=False), "ReduceSumSquare": reduce("ReduceSumSquare", exact=False),
    "ReduceLogSumExp": reduce("ReduceLogSumExp", exact=False),
    "ArgMax": argmax, "ArgMin": lambda o: Case([node("ArgMin", ["x"], ["i"], axis=3, keepdims=1),
                                                node("Cast", ["i"], to=F)], {"x": x(1, 4, 6, 6)}),
    "TopK": topk, "Hardmax": hardmax, "CumSum": cumsum, "OneHot": onehot, "Einsum": einsum,
    "GlobalMaxPool": global_pool("GlobalMaxPool"), "GlobalAveragePool": global_pool("GlobalAveragePool", False),
    "MaxPool": maxpool, "AveragePool": avgpool, "LRN": lrn,
    "MatMul": matmul_const, "Gemm": gemm, "Conv": conv, "ConvTranspose": conv_transpose,
    "BatchNormalization": batchnorm, "InstanceNormalization": instance_norm, "LayerNormalization": layer_norm,
    "Softmax": softmax, "LogSoftmax": lambda o: Case([node("LogSoftmax", ["x"], axis=-1)], {"x": x(1, 4, 6, 6)},
                                                     exact=False),
    # shapes and data movement
    "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Concat": concat,
    "Transpose": transpose, "Slice": slice_, "Split": split, "Gather": gather, "GatherElements": gather_elements,
    "Pad": pad, "Resize": resize, "Upsample": upsample, "Expand": expand, "Tile": tile,
    "DepthToSpace": depth_to_space, "SpaceToDepth": space_to_depth, "Trilu": trilu, "GridSample": grid_sample,
    "Shape": shape, "ConstantOfShape": constant_of_shape, "Constant": constant, "Range": range_,
}
CASES = {k: v for k, v in CASES.items() if v is not None}


def build(op, opset):
    """The ONNX ModelProto of op's case at opset, or None."""
    import onnx

    import onnx.defs

    try:
        onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return None, None
    case = CASES[op](opset)
    if case is None:
        return None, None
    graph = helper.make_graph(
        case.nodes, f"{op}_{opset}",
        [helper.make_tensor_value_info(n, F, list(a.shape)) for n, a in case.inputs.items()],
        [helper.make_value_info(n, helper.make_tensor_type_proto(t, None)) for n, t in case.outputs.items()],
        [numpy_helper.from_array(a, n) for n, a in case.inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="gen_profile")
    model.ir_version = min(model.ir_version, 8 if opset < 19 else 9 if opset < 21 else 10)
    # The outputs' shapes, from ONNX shape inference.
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    outs = list(inferred.graph.output)
    if any(not o.type.tensor_type.HasField("shape") for o in outs):  # data-dependent: ask onnxruntime
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, case.inputs)
        outs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, list(g.shape))
                for o, g in zip(outs, got)]
    model.graph.ClearField("output")
    model.graph.output.extend(outs)
    onnx.checker.check_model(model, full_check=True)
    return model, case
