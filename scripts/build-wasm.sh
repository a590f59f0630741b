#!/usr/bin/env bash
# Release wasm builds: cargo (wasm32, size profile with the engine at opt-level 3 and
# WebAssembly SIMD, .cargo/config.toml) -> wasm-bindgen (ES module for the web) -> wasm-opt -O3
# (binaryen from npm; Debian's older wasm-opt corrupts wasm-bindgen's externref table, see
# TOOLCHAIN.md). Two modules:
#   pkg/           the engine, without the model importers (what every page load fetches);
#   pkg/importer/  the same plus the ONNX and TFLite readers (`importers` feature), fetched
#                  when someone opens a model file.
#   pkg/threads/   the engine built for threads (shared memory + atomics; `RUSTC_BOOTSTRAP=1
#                  -Z build-std`, since the shipped std is built without atomics), loaded
#                  instead of pkg/ when the page is cross-origin isolated (www/lib/engine-loader.js).
#   pkg/relaxed/, pkg/threads-relaxed/
#                  the same two engines with relaxed SIMD (the int8 dot product of
#                  crate/ops/gemm_wasm_relaxed.rs), loaded where the browser validates a
#                  relaxed-SIMD module; bit-identical results (tests/e2e/threads.test.mjs).
# Prints the shipped sizes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# build_module OUT_DIR CARGO_FEATURE_ARGS... (THREADS=1 in the environment: the threaded build,
# in its own target dir since its std differs; RELAXED=1: relaxed SIMD, its own target dir too)
build_module() {
  local out=$1; shift
  say "building the wasm module $out (release)"
  local base target_dir opt_flags=() rustflags="-C target-feature=+simd128"
  base=$(cargo_target_dir)
  target_dir=$base
  if [ "${THREADS:-0}" = 1 ]; then target_dir=$base/threads; rustflags=$THREADS_RUSTFLAGS; fi
  if [ "${RELAXED:-0}" = 1 ]; then
    if [ "$target_dir" = "$base" ]; then target_dir=$base/relaxed; else target_dir=$target_dir-relaxed; fi
    rustflags="$rustflags -C target-feature=+relaxed-simd"
    opt_flags+=(--enable-relaxed-simd)
  fi
  if [ "${THREADS:-0}" = 1 ]; then
    opt_flags+=(--enable-threads)
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" RUSTFLAGS="$rustflags" \
      cargo build --lib --target "$WASM_TARGET" --profile wasm-release -Z build-std=std,panic_abort "$@"
  elif [ "${RELAXED:-0}" = 1 ]; then
    CARGO_TARGET_DIR="$target_dir" RUSTFLAGS="$rustflags" \
      cargo build --lib --target "$WASM_TARGET" --profile wasm-release "$@"
  else
    cargo build --lib --target "$WASM_TARGET" --profile wasm-release "$@"
  fi
  local raw="$target_dir/$WASM_TARGET/wasm-release/edgetune.wasm"
  [ -f "$raw" ] || die "cargo did not produce $raw"
  # cargo overwrites the same file for both feature sets: compare contents, not times.
  local stamp="$target_dir/$WASM_TARGET/wasm-release/${out//\//_}.source.wasm"
  if [ -f "$out/edgetune_bg.wasm" ] && [ -f "$stamp" ] && cmp -s "$raw" "$stamp" && [ "$out/edgetune_bg.wasm" -nt "$0" ]; then
    say "$out is up to date"
  else
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    wasm-bindgen --target web --out-dir "$out.tmp" --out-name edgetune "$raw"
    node_modules/.bin/wasm-opt -O3 --enable-simd \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-reference-types --enable-multivalue --enable-mutable-globals "${opt_flags[@]}" \
      "$out.tmp/edgetune_bg.wasm" -o "$out.tmp/edgetune_bg.wasm"
    rm -rf "$out" && mkdir -p "$(dirname "$out")" && mv "$out.tmp" "$out"
    cp "$raw" "$stamp"
  fi
  for f in "$out/edgetune_bg.wasm" "$out/edgetune.js"; do
    say "$(printf '%-31s %8d bytes, %8d gzip' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)")"
  done
}

# The importer first: pkg/ is replaced whole by the engine build, so keep it aside.
build_module pkg.importer
build_module pkg.engine --no-default-features
# Shared memory (imported, so every worker instance gets the same one), atomics, and the TLS
# symbols wasm-bindgen needs to give each thread its own thread-locals.
THREADS_RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=1073741824 \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
THREADS=1 build_module pkg.threads --no-default-features
RELAXED=1 build_module pkg.relaxed --no-default-features
THREADS=1 RELAXED=1 build_module pkg.threads-relaxed --no-default-features
rm -rf pkg && cp -r pkg.engine pkg && cp -r pkg.importer pkg/importer && cp -r pkg.threads pkg/threads
cp -r pkg.relaxed pkg/relaxed && cp -r pkg.threads-relaxed pkg/threads-relaxed
