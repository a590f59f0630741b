#!/usr/bin/env bash
# Release wasm build into pkg/: cargo (wasm32, size profile with the engine at opt-level 3 and
# WebAssembly SIMD, .cargo/config.toml) -> wasm-bindgen (ES module for
# the web) -> wasm-opt -O3 (binaryen from npm; Debian's older wasm-opt corrupts
# wasm-bindgen's externref table, see TOOLCHAIN.md). Prints the shipped sizes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

say "building the wasm engine (release)"
cargo build --lib --target "$WASM_TARGET" --profile wasm-release
raw="target/$WASM_TARGET/wasm-release/edgetune.wasm"
[ -f "$raw" ] || die "cargo did not produce $raw"

if [ -f pkg/edgetune_bg.wasm ] && [ pkg/edgetune_bg.wasm -nt "$raw" ] && [ pkg/edgetune_bg.wasm -nt "$0" ]; then
  say "pkg/ is up to date"
else
  rm -rf pkg.tmp && mkdir -p pkg.tmp
  wasm-bindgen --target web --out-dir pkg.tmp --out-name edgetune "$raw"
  node_modules/.bin/wasm-opt -O3 --enable-simd \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-reference-types --enable-multivalue --enable-mutable-globals \
    pkg.tmp/edgetune_bg.wasm -o pkg.tmp/edgetune_bg.wasm
  rm -rf pkg && mv pkg.tmp pkg
fi
for f in pkg/edgetune_bg.wasm pkg/edgetune.js; do
  say "$(printf '%-22s %8d bytes, %8d gzip' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)")"
done
