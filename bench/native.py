"""Native CPU benchmark: edgetune against onnxruntime (PyPI) on the same ONNX files, one run.

`npm run bench -- native` runs this with the interop venv's Python (scripts/bench.sh). For
EfficientNet-Lite0 f32 and int8, the engine's models are exported to ONNX (int8 as QDQ)
once; then, in this one process and machine:
  - edgetune: `edgetune import` of that ONNX file, then `edgetune bench --backend cpu`
    (whole network, batch 1, the shared parrot photo);
  - onnxruntime: an InferenceSession of the same file, CPU execution provider, one intra-op
    and one inter-op thread, all graph optimizations, sequential execution.
Each is timed at one thread and at every core (`--threads N` for edgetune, intra-op threads N
for onnxruntime), one row per thread count. Each gets warm-up runs (5 for onnxruntime, 3 inside
`edgetune bench`) then BENCH_RUNS (50) timed runs, taken in BENCH_ROUNDS (5) alternating rounds
(edgetune's tenth, onnxruntime's tenth, ...) so that a slow stretch of a shared machine falls on
both; median and p90 over all of each one's runs are reported.
onnxruntime is fed a fixed pseudo-random NCHW tensor in [-1, 1] (the latency of these CNNs
does not depend on pixel values); edgetune the shared parrot photo. Writes
bench/native-results.json and bench/native-results.md. Figures only: nothing here is asserted.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EDGETUNE_CACHE", Path.home() / ".cache/edgetune"))
ONNX_DIR = CACHE / "bench-onnx"


def cargo_target_dir():
    """Where cargo builds (CARGO_TARGET_DIR, a cargo config's build.target-dir, or target/)."""
    if os.environ.get("EDGETUNE_TARGET_DIR"):
        return Path(os.environ["EDGETUNE_TARGET_DIR"])
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    return Path(json.loads(meta)["target_directory"])


CLI = cargo_target_dir() / "release/edgetune"
RUNS = int(os.environ.get("BENCH_RUNS", "50"))
ROUNDS = max(1, min(RUNS, int(os.environ.get("BENCH_ROUNDS", "5"))))
WARMUP = 5
PHOTO = ROOT.parent / "shared/data/photos/parrot.jpg"


def run(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def simd_flags():
    """Which x86 vector extensions this CPU has (onnxruntime's MLAS picks kernels by them)."""
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in ("sse4_1", "avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def onnx_file(precision):
    """The engine's model exported to ONNX (cached; re-exported when the .etm is newer)."""
    src = ROOT / f"www/models/efficientnet_lite0.{precision}.etm"
    if not src.exists():
        sys.exit(f"{src} is missing: run npm run build first (scripts/models.sh)")
    out = ONNX_DIR / f"lite0.{precision}.onnx"
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        run(CLI, "export", src, out)
    return out


def edgetune_runs(onnx, precision, threads):
    """A function timing `n` whole-network runs of `edgetune bench` (list of ms)."""
    etm = ONNX_DIR / f"lite0.{precision}.from-onnx.etm"
    run(CLI, "import", onnx, etm)
    out = ONNX_DIR / f"edgetune-{precision}.json"

    def timed(n):
        # edgetune bench warms up itself (3 runs) before its timed runs.
        run(CLI, "bench", "--backend", "cpu", "--model", etm, "--image", PHOTO, "--runs", n, "--json", out,
            "--threads", threads)
        return json.loads(out.read_text())["network"]["times_ms"]

    return timed


def onnxruntime_runs(onnx, threads):
    """A function timing `n` runs of an onnxruntime session of `onnx` (list of ms)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(7).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    for _ in range(WARMUP):
        sess.run(None, {inp.name: x})

    def timed(n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            sess.run(None, {inp.name: x})
            times.append((time.perf_counter() - t) * 1000)
        return times

    return timed


def summary(times):
    times = sorted(times)
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "runs": len(times)}


def alternated(engines):
    """RUNS runs of each timing function in `engines`, in ROUNDS alternating rounds."""
    times = [[] for _ in engines]
    for r in range(ROUNDS):
        n = RUNS // ROUNDS + (1 if r < RUNS % ROUNDS else 0)
        for t, timed in zip(times, engines):
            t.extend(timed(n))
    return [summary(t) for t in times]


def main():
    if not CLI.exists():
        sys.exit(f"{CLI} is missing: cargo build --release --bin edgetune")
    if not PHOTO.exists():
        sys.exit(f"{PHOTO} is missing: the shared data belongs in ../shared beside the repository")
    rows = []
    cores = os.cpu_count() or 1
    for precision in ("int8", "f32"):
        onnx = onnx_file(precision)
        for threads in sorted({1, cores}):
            e, o = alternated([edgetune_runs(onnx, precision, threads), onnxruntime_runs(onnx, threads)])
            rows.append({"precision": precision, "onnx": onnx.name, "threads": threads, "edgetune": e, "onnxruntime": o})
            print(f"{precision}, {threads} thread(s): edgetune {e['median_ms']:.1f} ms, onnxruntime {o['median_ms']:.1f} ms")
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "os": platform.platform(), "simd": simd_flags()}
    head = (
        f"EfficientNet-Lite0 224x224, batch 1, {RUNS} timed runs after warm-up in {ROUNDS} alternating rounds, "
        f"native x86-64, {machine['cpu']} ({machine['cores']} cores; {', '.join(machine['simd'])}), onnxruntime {ort.__version__} (PyPI), "
        f"{time.strftime('%Y-%m-%d')}; `npm run bench -- native` (bench/native.py)."
    )
    lines = [head, "", "| model (same ONNX file) | threads | edgetune median ms | p90 | onnxruntime median ms | p90 | edgetune / onnxruntime |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        e, o = r["edgetune"], r["onnxruntime"]
        lines.append(
            f"| {r['onnx']} ({r['precision']}) | {r['threads']} | {e['median_ms']:.1f} | {e['p90_ms']:.1f} | "
            f"{o['median_ms']:.1f} | {o['p90_ms']:.1f} | {e['median_ms'] / o['median_ms']:.2f} |"
        )
    text = "\n".join(lines)
    print("\n" + text)
    (ROOT / "bench/native-results.md").write_text(text + "\n")
    (ROOT / "bench/native-results.json").write_text(
        json.dumps({"machine": machine, "onnxruntime": ort.__version__, "runs": RUNS, "rounds": ROUNDS, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
