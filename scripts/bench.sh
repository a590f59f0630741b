#!/usr/bin/env bash
# npm run bench: the browser benchmark against onnxruntime-web (bench/browser.mjs: headless
# Chromium, one run, bench/results.json and bench/results.md) and the native kernel
# benchmarks (figures printed and written to bench/kernels-native.json), and the native
# whole-network benchmark against onnxruntime from PyPI (bench/native.py: bench/native-results.*).
# `npm run bench -- browser`, `-- kernels` or `-- native` runs one of them. `npm run bench --
# compress` (not part of `all`: about 45 minutes on 2 cores) makes the compression table on
# CIFAR-10 (bench/compress.mjs: bench/compress.json and bench/compress.md). Never part of npm
# test: timings are not assertions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
what="${1:-all}"
case "$what" in
  all|browser|kernels|native|compress) ;;
  *) die "npm run bench -- [browser|kernels|native|compress]: unknown '$what'" ;;
esac
if [ "$what" = all ] || [ "$what" = browser ]; then
  bash scripts/setup.sh
  bash scripts/models.sh
  bash scripts/build-wasm.sh
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || die "the browser benchmark needs Debian's chromium: apt-get install chromium (npm test installs it)"
  say "browser benchmark: edgetune vs onnxruntime-web (headless Chromium)"
  node bench/browser.mjs
fi
if [ "$what" = all ] || [ "$what" = kernels ]; then
  say "native kernel benchmarks"
  cargo bench --bench kernels
fi
if [ "$what" = all ] || [ "$what" = native ]; then
  bash scripts/setup.sh
  bash scripts/models.sh
  cargo build --release --bin edgetune
  interop="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}/interop-venv/bin/python"
  # The interop venv (onnxruntime from PyPI) is made by the test prerequisites step.
  [ -x "$interop" ] || bash scripts/test-deps.sh
  say "native benchmark: edgetune vs onnxruntime (PyPI), same ONNX files"
  "$interop" bench/native.py
fi
if [ "$what" = compress ]; then
  bash scripts/setup.sh
  bash scripts/models.sh
  bash scripts/build-wasm.sh
  cargo build --release --bin edgetune
  say "compression table on CIFAR-10 (bench/compress.mjs)"
  node bench/compress.mjs
fi
