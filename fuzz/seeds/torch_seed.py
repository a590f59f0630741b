"""A small valid legacy (non-zip) PyTorch checkpoint for the torch_checkpoint fuzz target's
seed corpus (run by scripts/fuzz.sh in the interop venv, which sees Debian's torch): a state
dict of a few float tensors, one of them a non-contiguous view, saved with
_use_new_zipfile_serialization=False, the format the reader parses. A few hundred bytes, so
libFuzzer's mutations reach the pickle machine's deeper paths (storages, rebuild calls,
strides) instead of failing at the magic number.

usage: python3 torch_seed.py OUT.pth"""
import sys
from collections import OrderedDict

import torch

torch.manual_seed(3)
state = OrderedDict([
    ("conv.weight", torch.randn(4, 3, 3, 3)),
    ("conv.bias", torch.zeros(4)),
    ("fc.weight", torch.randn(4, 2).t()),  # a transposed view: strides other than row-major
    ("bn.num_batches_tracked", torch.tensor(7)),
])
torch.save(state, sys.argv[1], _use_new_zipfile_serialization=False)
