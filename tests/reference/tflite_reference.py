"""Runs a quantized TFLite classifier with TFLite's own interpreter (the reference the importer
is checked against) on quantized NHWC images and writes, per image, the tensor the final
SOFTMAX reads (the logits) and the one it writes (the probabilities), as integers in the
uint8 domain (int8 tensors shifted by 128).

usage: tflite_reference.py MODEL.tflite IMAGES.u8 COUNT OUT.json

IMAGES.u8 holds the model's quantized input values in the uint8 domain. A float-input model
(TF2's, which QUANTIZE on entry) is fed those values dequantized with the grid of its
QUANTIZE: `x = s * (q - z)` quantizes back to `q` exactly, so both engines see one input.

The interpreter is tflite-runtime where installed (the interop environment: 2.14, for the
uint8 files), else ai-edge-litert (LiteRT, the converter environment: for the TF2 int8 files,
whose int8 kernels changed since 2.14; LiteRT 2.3.0 gives exactly what TensorFlow 2.20's own
`tf.lite.Interpreter` gives on them). Either runs TFLite's built-in kernels only: no XNNPACK
delegate, which rounds int8 arithmetic its own way.
"""
import json
import sys

import numpy as np

try:
    from tflite_runtime.interpreter import Interpreter, OpResolverType
except ImportError:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

model, images, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
it = Interpreter(
    model_path=model,
    experimental_preserve_all_tensors=True,
    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
)
it.allocate_tensors()
inp = it.get_input_details()[0]
ops = it._get_ops_details()
tensors = {t["index"]: t for t in it.get_tensor_details()}
softmax = [o for o in ops if o["op_name"] == "SOFTMAX"][-1]
x = np.fromfile(images, dtype=np.uint8).reshape([count] + list(inp["shape"][1:]))
if inp["dtype"] == np.int8:
    x = (x.astype(np.int16) - 128).astype(np.int8)
elif inp["dtype"] == np.float32:
    quantize = [o for o in ops if o["op_name"] == "QUANTIZE" and o["inputs"][0] == inp["index"]][0]
    scale, zero = tensors[quantize["outputs"][0]]["quantization"]
    if tensors[quantize["outputs"][0]]["dtype"] == np.int8:
        zero += 128
    x = (np.float32(scale) * (x.astype(np.float32) - np.float32(zero))).astype(np.float32)


def uint8_domain(t):
    v = it.get_tensor(t).reshape(-1).astype(int)
    return (v + 128 if tensors[t]["dtype"] == np.int8 else v).tolist()


results = []
for img in x:
    it.set_tensor(inp["index"], img[None])
    it.invoke()
    results.append({"output": uint8_domain(softmax["outputs"][0]), "logits": uint8_domain(softmax["inputs"][0])})
json.dump({"results": results}, open(out, "w"))
