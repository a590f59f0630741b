#!/usr/bin/env bash
# npm run bench: the native kernel benchmarks (figures printed and written to
# bench/kernels-native.json). Never part of npm test: timings are not assertions.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
cargo bench --bench kernels
