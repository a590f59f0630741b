"""ONNX interop reference: models exported by PyTorch, run by onnxruntime.

usage:
  onnx_reference.py export OUTDIR LITE0_CHECKPOINT
      writes OUTDIR/{mobilenet_v2, resnet18, squeezenet1_1, mobilenet_v3_small}.onnx
      (torchvision, random weights, seed 0), OUTDIR/op_zoo.onnx (a small network of the
      remaining ops, written here) and OUTDIR/efficientnet_lite0.onnx (the default model's
      checkpoint in a PyTorch module
      written here: TF-"same" padding as explicit Pad nodes before stride-2 convolutions, whose
      pads PyTorch writes as a subgraph of shape ops that the importer folds)
  onnx_reference.py quantize MODEL.onnx CALIB.f32 COUNT OUT.onnx [qdq|qoperator]
      onnxruntime's quantize_static: QDQ (default) or QOperator (QLinearConv, QLinearAdd, QGemm,
      ...), per-channel int8 weights, uint8 activations, MinMax calibration on COUNT float32
      NCHW images
  onnx_reference.py run MODEL.onnx IMAGES.f32 COUNT OUT.json
      runs onnxruntime (CPU) on COUNT float32 NCHW images, writes the first output per image
"""
import json
import sys

import numpy as np

LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def lite0(checkpoint):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    class SameConv(nn.Conv2d):
        """TF "same" padding: symmetric for stride 1, (k-2)//2 before and the rest after for stride 2."""
        pad = None  # fixed by a dry run (`fix_pads`), so the export holds constants, not shape arithmetic

        def forward(self, x):
            if self.pad is None:
                k, s, n = self.kernel_size[0], self.stride[0], int(x.shape[-1])
                total = max((-(-n // s) - 1) * s + k - n, 0)
                return super().forward(F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2)))
            return super().forward(F.pad(x, self.pad) if any(self.pad) else x)

    class Block(nn.Module):
        def __init__(self, k, s, e, cin, cout):
            super().__init__()
            mid = cin * e
            self.expand = e != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.residual else y

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            blocks = []
            for reps, k, s, e, cin, cout in LITE0_STAGES:
                for r in range(reps):
                    blocks.append(Block(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    m = Lite0()

    def fix_pads(size):
        def record(mod, inputs):
            k, s, n = mod.kernel_size[0], mod.stride[0], int(inputs[0].shape[-1])
            total = max((-(-n // s) - 1) * s + k - n, 0)
            mod.pad = (total // 2, total - total // 2, total // 2, total - total // 2)
        hooks = [mod.register_forward_pre_hook(record) for mod in m.modules() if isinstance(mod, SameConv)]
        with torch.no_grad():
            m(torch.zeros(1, 3, size, size))
        for h in hooks:
            h.remove()
    state = torch.load(checkpoint, map_location="cpu")
    missing, unexpected = m.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if real_missing or unexpected:
        sys.exit(f"checkpoint mismatch: missing {real_missing[:5]}, unexpected {unexpected[:5]}")
    m.eval()
    fix_pads(224)
    return m


def op_zoo():
    """A small network with the ops torchvision's classifiers do not all use: windowed average
    pools with and without padding in the count, a max pool in ceil mode, a channel concat,
    SiLU (Sigmoid then Mul), Hardswish, a squeeze-excitation gate (HardSigmoid, Mul by [N, C]
    factors) and a ReLU that cannot be fused (its input has two readers)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Zoo(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.a = nn.Conv2d(16, 8, 1)
            self.b = nn.Conv2d(16, 8, 3, padding=1)
            self.se1 = nn.Conv2d(16, 4, 1)
            self.se2 = nn.Conv2d(4, 16, 1)
            self.c = nn.Conv2d(16, 24, 3, stride=2, padding=1)
            self.fc = nn.Linear(24, 10)

        def forward(self, x):
            x = F.relu(self.stem(x))
            x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
            y = torch.cat([self.a(x) * torch.sigmoid(self.a(x)), F.hardswish(self.b(x))], 1)
            y = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=True)
            y = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False) + y
            g = F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
            y = g * y
            r = F.relu(y)
            y = self.c(r + r)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))
    return Zoo()


def export(outdir, checkpoint):
    import torch
    import torchvision
    torch.manual_seed(0)
    # Random weights give near-constant outputs; make the batch norms non-trivial too.
    def varied(model):
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.1, 0.1)
                    mod.running_var.uniform_(0.5, 1.5)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.1, 0.1)
        return model.eval()
    models = [
        ("mobilenet_v2", varied(torchvision.models.mobilenet_v2(weights=None)), 13),
        ("efficientnet_lite0", lite0(checkpoint), 13),
        # MaxPool; residual Add + ReLU.
        ("resnet18", varied(torchvision.models.resnet18(weights=None)), 13),
        # MaxPool in ceil mode, Concat; the classifier is a convolution before the pool.
        ("squeezenet1_1", varied(torchvision.models.squeezenet1_1(weights=None)), 13),
        # HardSwish (opset 14), squeeze-excitation with HardSigmoid and Mul.
        ("mobilenet_v3_small", varied(torchvision.models.mobilenet_v3_small(weights=None)), 14),
        ("op_zoo", varied(op_zoo()), 13),
    ]
    for name, model, opset in models:
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), f"{outdir}/{name}.onnx", opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def cpu_has_vnni():
    """True where onnxruntime's x86 int8 kernels use VNNI dot products (exact for 8-bit weights)."""
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags


def run(model, images, count, out, weights="reduced"):
    """onnxruntime's outputs of `count` NCHW f32 images. `weights="full"` says the model's int8
    weights use all 8 bits (edgetune's own exports): on an x86 CPU without VNNI, onnxruntime's
    fused int8 kernels would saturate on them (see `quantize`), so there the QDQ pairs are left
    unfused and run as DequantizeLinear -> float op -> QuantizeLinear, the format's own
    definition in float arithmetic (close to, not bit-equal with, an integer engine)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if weights == "full" and not cpu_has_vnni():
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    h = inp.shape[2]
    x = np.fromfile(images, dtype=np.float32).reshape(count, 3, h, h)
    results = [s.run(None, {inp.name: x[i:i + 1]})[0].reshape(-1).astype(float).tolist() for i in range(count)]
    json.dump({"results": results}, open(out, "w"))


def quantize(model, calib, count, out, fmt="qdq"):
    from onnxruntime import quantization as q
    import onnx
    h = onnx.load(model).graph.input[0].type.tensor_type.shape.dim[2].dim_value
    x = np.fromfile(calib, dtype=np.float32).reshape(count, 3, h, h)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x[i:i + 1]} for i in range(count)])

        def get_next(self):
            return next(self.it, None)

    quant_format = q.QuantFormat.QOperator if fmt == "qoperator" else q.QuantFormat.QDQ
    # The quantizer writes helper models next to its input: a private copy keeps concurrent
    # runs on the same model apart.
    import os
    import shutil
    import tempfile
    private = tempfile.mkdtemp()
    model = shutil.copy(model, os.path.join(private, os.path.basename(model)))
    # reduce_range: 7-bit weights. On x86 CPUs without VNNI, onnxruntime's int8 kernels
    # multiply u8 activations by s8 weights with AVX2 `vpmaddubsw`, whose 16-bit pair sums
    # saturate for 8-bit weights (2 * 255 * 128 > 32767; onnxruntime issue 6004, PR 24220), so
    # the oracle itself would be wrong there; with |w| <= 64 no pair can saturate and its
    # results are exact on every CPU. The same models on every machine.
    q.quantize_static(model, out, Reader(), quant_format=quant_format, per_channel=True, reduce_range=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
    shutil.rmtree(private, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "quantize":
        quantize(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], *sys.argv[6:7])
    else:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], *sys.argv[6:7])
