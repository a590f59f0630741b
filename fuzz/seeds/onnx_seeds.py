"""Small valid ONNX classifiers for the onnx_import fuzz target's seed corpus, written with
onnx.helper (run by scripts/fuzz.sh in the interop venv): a float net (Conv with padding ->
BatchNormalization -> Clip(0,6) -> depthwise Conv -> Relu -> Add -> GlobalAveragePool ->
Flatten -> Gemm -> Softmax) and the same net with QuantizeLinear/DequantizeLinear around
its values and int8 weights (a QDQ graph). 16x16 RGB input, 4 classes: small enough for
libFuzzer to mutate, complete enough to reach every importer path.

usage: python3 onnx_seeds.py OUTDIR"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(3)


def const(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def float_net():
    inits = [
        const("w1", rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)),
        const("b1", rng.normal(0, 0.1, 8).astype(np.float32)),
        const("g", np.ones(8, np.float32)), const("be", np.zeros(8, np.float32)),
        const("mu", rng.normal(0, 0.1, 8).astype(np.float32)), const("var", np.ones(8, np.float32)),
        const("lo", np.float32(0)), const("hi", np.float32(6)),
        const("w2", rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32)),
        const("fc", rng.normal(0, 0.3, (4, 8)).astype(np.float32)),
        const("fb", np.zeros(4, np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["n1"], name="bn1"),
        helper.make_node("Clip", ["n1", "lo", "hi"], ["a1"], name="relu6"),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=8, name="dw"),
        helper.make_node("Relu", ["c2"], ["a2"], name="relu"),
        helper.make_node("Add", ["a1", "a2"], ["s"], name="residual"),
        helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], transB=1, name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1, name="softmax"),
    ]
    return nodes, inits


def qdq(nodes, inits):
    """Q->DQ on the input and after every activation and int8 weights behind DequantizeLinear."""
    out_nodes, out_inits = [], []
    weights = {"w1", "w2", "fc"}
    for t in inits:
        if t.name in weights:
            a = numpy_helper.to_array(t)
            s = np.float32(np.abs(a).max() / 127)
            out_inits += [const(t.name + "_q", np.round(a / s).astype(np.int8)), const(t.name + "_s", s),
                          const(t.name + "_z", np.int8(0))]
            out_nodes.append(helper.make_node("DequantizeLinear", [t.name + "_q", t.name + "_s", t.name + "_z"], [t.name]))
        else:
            out_inits.append(t)
    out_inits += [const("as", np.float32(0.05)), const("az", np.uint8(128))]
    out_nodes += [helper.make_node("QuantizeLinear", ["x", "as", "az"], ["x_q"]),
                  helper.make_node("DequantizeLinear", ["x_q", "as", "az"], ["x_dq"])]
    nodes[0].input[0] = "x_dq"
    for n in nodes:
        out_nodes.append(n)
        if n.op_type in ("Clip", "Relu", "Add", "GlobalAveragePool", "Gemm"):
            v = n.output[0]
            n.output[0] = v + "_f"
            out_nodes += [helper.make_node("QuantizeLinear", [v + "_f", "as", "az"], [v + "_q"]),
                          helper.make_node("DequantizeLinear", [v + "_q", "as", "az"], [v])]
    return out_nodes, out_inits


def save(nodes, inits, path):
    g = helper.make_graph(nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, path)


if __name__ == "__main__":
    out = sys.argv[1]
    nodes, inits = float_net()
    save(nodes, inits, f"{out}/seed-float.onnx")
    save(*qdq(*float_net()), f"{out}/seed-qdq.onnx")
