"""The logistic-regression reference of the few-shot table (docs/training.md): for each N, an
L2-regularised multinomial logistic regression on the pooled features of the first N images
per class of CIFAR-10's train.bin, tested on all of test.bin. The features are the engine's
own (`edgetune embed`), so the reference and the head trainer see the same inputs. The L2
strength is chosen per N on training images 4000-4999 (held out from every N, as the head
trainer's settings were), never on the test file. Features are standardised with the
training samples' mean and deviation.

The fit: mean cross-entropy + lam/2 |W|^2 (bias unpenalised), convex, minimised by Nesterov's
accelerated gradient with step 1/L, L = |X|_2^2 / (2n) + lam (a bound on the Hessian), run
until the gradient norm falls below 1e-5 or 5,000 steps.

usage: python3 bench/fewshot_logreg.py [--backbone www/models/efficientnet_lite0.f32.etm]
       [--cli PATH] [--json bench/fewshot-logreg.json] [--features DIR]   (numpy only)
--features DIR keeps the features there and reuses them on the next run (same backbone)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10")
SHOTS = [5, 10, 20, 50]
LAMBDAS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]
HELD_OUT = (4000, 1000)  # offset, count in train.bin
FIRST = 1000  # the first N per class for N <= 50 lie in the first 1,000 training images


def cli_path():
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return os.path.join(json.loads(out)["target_directory"], "release", "edgetune")


def embed(cli, backbone, data, offset, limit, tmp, tag):
    feats, labels = os.path.join(tmp, f"{tag}.npy"), os.path.join(tmp, f"{tag}-labels.npy")
    if os.path.exists(feats) and os.path.exists(labels):
        return np.load(feats).astype(np.float64), np.load(labels)
    cmd = [cli, "embed", "--model", backbone, "--data", f"cifar10:{data}", "--offset", str(offset),
           "--out", feats, "--labels-out", labels]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return np.load(feats).astype(np.float64), np.load(labels)


def first_per_class(y, n, classes=10):
    count = np.zeros(classes, int)
    keep = []
    for i, c in enumerate(y):
        if count[c] < n:
            keep.append(i)
            count[c] += 1
    if count.min() < n:
        sys.exit(f"only {count.min()} images of some class in the first {len(y)}: raise FIRST")
    return np.array(keep)


def fit(x, y, lam, classes=10, tol=1e-5, steps=5000):
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(classes)[y]
    lip = np.linalg.norm(xb, 2) ** 2 / (2 * n) + lam
    w = np.zeros((d + 1, classes))
    v, t = w.copy(), 1.0
    mask = np.ones((d + 1, 1))
    mask[-1] = 0  # the bias is not penalised

    def grad(w):
        z = xb @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return xb.T @ (p - onehot) / n + lam * mask * w

    for _ in range(steps):
        g = grad(v)
        if np.linalg.norm(g) < tol:
            break
        w_next = v - g / lip
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w


def accuracy(w, x, y):
    xb = np.hstack([x, np.ones((len(x), 1))])
    return float(((xb @ w).argmax(axis=1) == y).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default=os.path.join(ROOT, "www/models/efficientnet_lite0.f32.etm"))
    ap.add_argument("--cli", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--features", default=None)
    a = ap.parse_args()
    cli = a.cli or cli_path()
    with tempfile.TemporaryDirectory() as tmp:
        keep = a.features or tmp
        os.makedirs(keep, exist_ok=True)
        tag = os.path.splitext(os.path.basename(a.backbone))[0]
        train = os.path.join(CIFAR, "train.bin")
        xt, yt = embed(cli, a.backbone, train, 0, FIRST, keep, f"{tag}-train")
        xv, yv = embed(cli, a.backbone, train, HELD_OUT[0], HELD_OUT[1], keep, f"{tag}-held-out")
        xs, ys = embed(cli, a.backbone, os.path.join(CIFAR, "test.bin"), 0, None, keep, f"{tag}-test")
    print(f"{os.path.basename(a.backbone)}: {xt.shape[1]}-d features; L2 strength chosen on train images "
          f"{HELD_OUT[0]}-{HELD_OUT[0] + HELD_OUT[1] - 1}; tested on {len(ys)} test images")
    print(f"{'N':>3} {'lambda':>8} {'held-out':>9} {'test':>7}")
    rows = []
    for n in SHOTS:
        idx = first_per_class(yt, n)
        x, y = xt[idx], yt[idx]
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
        norm = lambda f: (f - mu) / sd  # noqa: E731
        best = max(((accuracy(fit(norm(x), y, lam), norm(xv), yv), lam) for lam in LAMBDAS), key=lambda r: (r[0], r[1]))
        w = fit(norm(x), y, best[1])
        test = accuracy(w, norm(xs), ys)
        rows.append({"per_class": n, "lambda": best[1], "held_out_accuracy": best[0], "test_accuracy": test})
        print(f"{n:>3} {best[1]:>8g} {100 * best[0]:>8.2f}% {100 * test:>6.2f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backbone": os.path.basename(a.backbone), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
