#!/usr/bin/env bash
# npm test: every test. Native Rust tests (unit, integration, ONNX conformance, property
# tests, benches in test mode, GPU probe on lavapipe), the AVX-512 VNNI GEMM's tests (natively
# where the CPU has VNNI, else under Miri), the unit tests again as wasm32-wasip1
# under Node (the wasm SIMD kernels) and with relaxed SIMD in Chromium, as aarch64 under qemu-user
# (the NEON kernels), the release wasm builds, then the
# browser end-to-end tests (headless Chromium; Firefox ESR and WebKitGTK for the app's journey
# in the other two engines), then every fuzz target for a bounded time.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
start=$(date +%s)
# Every step's line says how long the run has taken so far (scripts/lib.sh `say`).
export EDGETUNE_T0=$start

export EDGETUNE_CACHE="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}"
bash scripts/setup.sh
bash scripts/test-deps.sh

# Test prerequisites installed above are required, not optional, from here on.
export EDGETUNE_REQUIRE_TEST_DATA=1 EDGETUNE_REQUIRE_GPU=1
export WGPU_BACKEND=vulkan
tmp_home=$(mktemp -d)
trap 'rm -rf "$tmp_home"' EXIT
export XDG_RUNTIME_DIR="$tmp_home/run" XDG_CONFIG_HOME="$tmp_home/config" XDG_CACHE_HOME="$tmp_home/cache"
export MESA_SHADER_CACHE_DIR="$tmp_home/mesa"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

say "default models (import + quantize, cached)"
bash scripts/models.sh

say "native tests (cargo test)"
cargo test --all-targets

say "native unit tests again on the portable kernels (EDGETUNE_CPU_KERNELS=portable: no AVX2 GEMM)"
EDGETUNE_CPU_KERNELS=portable cargo test --lib

# The int8 GEMM's AVX-512 VNNI kernel (crate/ops/gemm_vnni.rs): where this CPU has VNNI, the
# native runs above took it, and the AVX2 kernel runs once more; elsewhere Miri executes it.
if [ "$(uname -m)" = x86_64 ]; then
  if grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null && grep -qw avx512f /proc/cpuinfo; then
    say "native unit tests again on the AVX2 kernels (EDGETUNE_CPU_KERNELS=avx2: this CPU runs the VNNI GEMM by default)"
    EDGETUNE_CPU_KERNELS=avx2 cargo test --lib
  else
    say "the AVX-512 VNNI GEMM's unit tests under Miri (this CPU has no VNNI; Miri executes the instructions, bit-exact)"
    RUSTFLAGS="-C target-feature=+avx2,+avx512f,+avx512vnni" cargo +nightly miri test --lib gemm_vnni
  fi
fi

say "unit tests as wasm with SIMD, under Node's WASI (the kernels the page runs)"
# --nocapture: a failing test aborts the wasm instance, and captured output would be lost.
cargo test --lib --target wasm32-wasip1 -- --nocapture

say "unit tests as wasm with relaxed SIMD, in headless Chromium (Node 20's relaxed dot is wrong)"
RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" CARGO_TARGET_DIR="$(cargo_target_dir)/relaxed" \
  CARGO_TARGET_WASM32_WASIP1_RUNNER="node scripts/wasi-run-chromium.mjs" \
  cargo test --lib --target wasm32-wasip1 -- --nocapture

say "unit tests as aarch64 under qemu-user (the NEON kernels, bit-exact; correctness only)"
# No GPU under emulation: the GPU tests are the native run's.
EDGETUNE_REQUIRE_GPU= cargo test --lib --target aarch64-unknown-linux-gnu

say "wasm build"
bash scripts/build-wasm.sh

say "browser end-to-end tests (headless Chromium; the app's journey also in Firefox ESR and WebKitGTK)"
node --test tests/e2e/

say "fuzzing every loader of untrusted bytes, bounded (${EDGETUNE_FUZZ_SECONDS:-20} s per target)"
FUZZ_SECONDS="${EDGETUNE_FUZZ_SECONDS:-20}" bash scripts/fuzz.sh

say "all tests passed in $(( $(date +%s) - start )) s"
