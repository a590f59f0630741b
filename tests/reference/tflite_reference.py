"""Runs a quantized TFLite classifier with tflite-runtime (the reference the importer is
checked against) on raw uint8 NHWC images and writes its quantized outputs as JSON:
the model output (softmax, uint8) and the tensor the softmax reads (the logits, uint8).

usage: tflite_reference.py MODEL.tflite IMAGES.u8 COUNT OUT.json
"""
import json
import sys

import numpy as np
from tflite_runtime.interpreter import Interpreter

model, images, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
it = Interpreter(model_path=model, experimental_preserve_all_tensors=True)
it.allocate_tensors()
inp, outp = it.get_input_details()[0], it.get_output_details()[0]
softmax = [o for o in it._get_ops_details() if o["op_name"] == "SOFTMAX"][-1]
x = np.fromfile(images, dtype=np.uint8).reshape([count] + list(inp["shape"][1:]))
if inp["dtype"] == np.int8:
    x = (x.astype(np.int16) - 128).astype(np.int8)
results = []
for img in x:
    it.set_tensor(inp["index"], img[None])
    it.invoke()
    results.append({
        "output": it.get_tensor(outp["index"]).reshape(-1).astype(int).tolist(),
        "logits": it.get_tensor(softmax["inputs"][0]).reshape(-1).astype(int).tolist(),
    })
json.dump({"dtype": str(np.dtype(outp["dtype"])), "results": results}, open(out, "w"))
