#!/usr/bin/env python3
"""Independent float64 reference of EfficientNet-Lite0 in numpy, for checking edgetune's
f32 import and executor. Shares no code with edgetune: it reads the legacy PyTorch checkpoint
with the standard library's pickle (no torch), rebuilds strided tensors with numpy's
as_strided, keeps batch norm unfolded, and runs NCHW convolutions with TF "same" padding.

usage: efficientnet_lite0_numpy.py CHECKPOINT.pth INPUT.f32 OUTPUT.f32
INPUT.f32: the preprocessed image, little-endian float32 NHWC [1, 224, 224, 3].
OUTPUT.f32: the 1000 logits, little-endian float32.
"""
import collections
import pickle
import struct
import sys

import numpy as np

# (repeats, kernel, stride, expand, in, out): EfficientNet-Lite0 (no squeeze-excite).
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
EPS = 1e-3


class CheckpointUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *rest: (storage, offset, size, stride)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    storage_types = {}

    def persistent_load(self, pid):
        # ('storage', class, key, location, numel, view): remember the element type.
        self.storage_types[pid[2]] = pid[1]
        return pid[2]


def load_checkpoint(path):
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        unpickler = CheckpointUnpickler(f)
        state = unpickler.load()
        keys = pickle.load(f)
        dtypes = {"FloatStorage": "<f4", "LongStorage": "<i8"}
        storages = {}
        for key in keys:
            (n,) = struct.unpack("<q", f.read(8))
            dt = np.dtype(dtypes[unpickler.storage_types[key]])
            storages[key] = np.frombuffer(f.read(dt.itemsize * n), dtype=dt)
    params = {}
    for name, (key, offset, size, stride) in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        base = storages[key][offset:]
        view = np.lib.stride_tricks.as_strided(base, shape=size, strides=[base.itemsize * s for s in stride])
        params[name] = np.array(view, dtype=np.float64)
    return params


def conv(x, w, stride, groups):
    """x [C, H, W], w [O, C/groups, k, k], TF SAME padding."""
    _, h, wd = x.shape
    k = w.shape[2]
    oh, ow = -(-h // stride), -(-wd // stride)
    ph = max((oh - 1) * stride + k - h, 0)
    pw = max((ow - 1) * stride + k - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride][:, :oh, :ow]
    if groups == 1:
        return np.einsum("chwij,ocij->ohw", win, w, optimize=True)
    assert groups == x.shape[0] and w.shape[1] == 1
    return np.einsum("chwij,cij->chw", win, w[:, 0], optimize=True)


def bn(x, p, name):
    g, b = p[name + ".weight"], p[name + ".bias"]
    m, v = p[name + ".running_mean"], p[name + ".running_var"]
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS) * g[:, None, None] + b[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def forward(p, x):
    x = relu6(bn(conv(x, p["_conv_stem.weight"], 2, 1), p, "_bn0"))
    idx = 0
    for repeats, _k, s, e, cin, cout in STAGES:
        for r in range(repeats):
            stride, inc = (s, cin) if r == 0 else (1, cout)
            pre = f"_blocks.{idx}."
            y = x
            if e != 1:
                y = relu6(bn(conv(y, p[pre + "_expand_conv.weight"], 1, 1), p, pre + "_bn0"))
            y = relu6(bn(conv(y, p[pre + "_depthwise_conv.weight"], stride, inc * e), p, pre + "_bn1"))
            y = bn(conv(y, p[pre + "_project_conv.weight"], 1, 1), p, pre + "_bn2")
            if stride == 1 and inc == cout:
                y = y + x
            x = y
            idx += 1
    x = relu6(bn(conv(x, p["_conv_head.weight"], 1, 1), p, "_bn1"))
    emb = x.mean(axis=(1, 2))
    return p["_fc.weight"] @ emb + p["_fc.bias"]


def main():
    ckpt, inp, out = sys.argv[1:4]
    x = np.fromfile(inp, dtype="<f4").astype(np.float64).reshape(224, 224, 3).transpose(2, 0, 1)
    logits = forward(load_checkpoint(ckpt), x)
    logits.astype("<f4").tofile(out)


if __name__ == "__main__":
    main()
