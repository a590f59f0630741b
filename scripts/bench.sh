#!/usr/bin/env bash
# npm run bench: the browser benchmark against onnxruntime-web (bench/browser.mjs: headless
# Chromium, one run, bench/results.json and bench/results.md) and the native kernel
# benchmarks (figures printed and written to bench/kernels-native.json).
# `npm run bench -- browser` or `-- kernels` runs one of them. Never part of npm test:
# timings are not assertions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
what="${1:-all}"
case "$what" in
  all|browser|kernels) ;;
  *) die "npm run bench -- [browser|kernels]: unknown '$what'" ;;
esac
if [ "$what" != kernels ]; then
  bash scripts/setup.sh
  bash scripts/models.sh
  bash scripts/build-wasm.sh
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || die "the browser benchmark needs Debian's chromium: apt-get install chromium (npm test installs it)"
  say "browser benchmark: edgetune vs onnxruntime-web (headless Chromium)"
  node bench/browser.mjs
fi
if [ "$what" != browser ]; then
  say "native kernel benchmarks"
  cargo bench --bench kernels
fi
