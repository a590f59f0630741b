#!/usr/bin/env python3
"""PyTorch reference trajectories for edgetune's losses and optimizers.

A linear classifier (weight [K, D], bias [K]) on a fixed small problem is trained for
100 steps with every optimizer x every loss; the parameters are recorded every 10 steps.
`tests/train_reference.rs` runs the same problem in Rust and compares.

    /usr/bin/python3 tests/reference/optim_trajectories.py > tests/reference/optim_trajectories.json

Needs PyTorch (Debian: apt-get install python3-torch). The data and initial parameters are
closed-form functions (no random generator), so the problem is identical on both sides;
the Rust test rebuilds it from the same formulas and checks that it matches the JSON.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

N, D, K = 6, 4, 3
STEPS, EVERY = 100, 10


def problem():
    x = [[math.sin(1.3 * i + 0.7 * j + 0.1) for j in range(D)] for i in range(N)]
    labels = [i % K for i in range(N)]
    teacher = [[math.cos(0.9 * i - 0.4 * k) * 2.0 for k in range(K)] for i in range(N)]
    w = [[0.1 * math.cos(0.5 * k + 0.3 * j) for j in range(D)] for k in range(K)]
    b = [0.05 * (k - 1) for k in range(K)]
    return x, labels, teacher, w, b


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.01),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.005, momentum=0.5, weight_decay=0.01),
}
# Hyper-parameters the Rust side must use for the same names (kept next to the code above).
OPTIMIZER_PARAMS = {
    "sgd": {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.01},
    "momentum": {"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001},
    "adam": {"lr": 0.01, "weight_decay": 0.01},
    "adamw": {"lr": 0.01, "weight_decay": 0.1},
    "rmsprop": {"lr": 0.005, "momentum": 0.5, "weight_decay": 0.01},
}
CLASS_WEIGHTS = [0.5, 2.0, 1.0]
MAX_NORM = 0.5  # gradient clipping, used with the "ce_clipped" loss


def loss_fn(name, logits, y, teacher):
    if name in ("ce", "ce_clipped"):
        return F.cross_entropy(logits, y)
    if name == "ce_smooth_weighted":
        return F.cross_entropy(logits, y, weight=torch.tensor(CLASS_WEIGHTS), label_smoothing=0.1)
    if name == "mse":
        return F.mse_loss(logits, F.one_hot(y, K).float())
    if name == "hinge":
        return F.multi_margin_loss(logits, y)
    if name == "distill":
        alpha, t = 0.5, 2.0
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean")
        return alpha * F.cross_entropy(logits, y) + (1 - alpha) * t * t * soft
    raise ValueError(name)


LOSSES = ["ce", "ce_smooth_weighted", "mse", "hinge", "distill", "ce_clipped"]


def main():
    torch.set_num_threads(1)
    x, labels, teacher, w0, b0 = problem()
    xt, yt, tt = torch.tensor(x), torch.tensor(labels), torch.tensor(teacher)
    cases = []
    for opt_name, make in OPTIMIZERS.items():
        for loss_name in LOSSES:
            w = torch.tensor(w0, requires_grad=True)
            b = torch.tensor(b0, requires_grad=True)
            opt = make([w, b])
            checkpoints = []
            for step in range(1, STEPS + 1):
                opt.zero_grad()
                loss = loss_fn(loss_name, xt @ w.T + b, yt, tt)
                loss.backward()
                if loss_name == "ce_clipped":
                    torch.nn.utils.clip_grad_norm_([w, b], MAX_NORM)
                opt.step()
                if step % EVERY == 0:
                    checkpoints.append(
                        {"step": step, "loss": loss.item(), "weight": w.detach().flatten().tolist(), "bias": b.tolist()}
                    )
            cases.append({"optimizer": opt_name, "loss": loss_name, "checkpoints": checkpoints})
    json.dump(
        {
            "generator": "tests/reference/optim_trajectories.py",
            "torch": torch.__version__,
            "problem": {"n": N, "d": D, "k": K, "x": x, "labels": labels, "teacher": teacher, "weight": w0, "bias": b0},
            "optimizers": OPTIMIZER_PARAMS,
            "class_weights": CLASS_WEIGHTS,
            "max_norm": MAX_NORM,
            "cases": cases,
        },
        sys.stdout,
        indent=None,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
