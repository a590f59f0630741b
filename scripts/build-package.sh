#!/usr/bin/env bash
# Packs the npm package @edgetune/web (package/) into dist/edgetune-web-<version>.tgz:
#   index.js, index.d.ts            the entry point (createClassifier) and its types
#   engine.d.ts, importer.d.ts      types of the wasm-bindgen modules underneath
#   lib/, workers/                  the page's own engine loader, protocol and workers
#                                   (www/lib, www/workers: one copy of that code)
#   pkg/                            the five wasm engines from scripts/build-wasm.sh (JS glue
#                                   + .wasm; wasm-bindgen's .d.ts files are left out: they
#                                   type results as `any`, engine.d.ts says what they are)
#   models/                         the default model from scripts/models.sh
# The layout keeps www/'s relative paths (lib/ and workers/ name ../pkg/), so the same files
# work served as they are and through a bundler. Prints the packed and unpacked sizes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

MODEL=www/models/efficientnet_lite0.int8.etm
[ -f pkg/threads-relaxed/edgetune_bg.wasm ] && [ -f pkg/importer/edgetune_bg.wasm ] ||
  die "pkg/ has no complete wasm build: run scripts/build-wasm.sh first"
[ -f "$MODEL" ] || die "$MODEL is missing: run scripts/models.sh first"

stage=dist/package
rm -rf "$stage" && mkdir -p "$stage/lib" "$stage/workers" "$stage/models"
cp package/package.json package/README.md LICENSE "$stage/"
cp package/src/index.js package/src/index.d.ts package/src/engine.d.ts package/src/importer.d.ts "$stage/"
cp www/lib/engine-loader.js www/lib/engine-modules.js www/lib/protocol.js "$stage/lib/"
cp www/workers/engine.js www/workers/trainer.js www/workers/pool-helper.js "$stage/workers/"
for d in . relaxed threads threads-relaxed importer; do
  mkdir -p "$stage/pkg/$d"
  cp "pkg/$d/edgetune.js" "pkg/$d/edgetune_bg.wasm" "$stage/pkg/$d/"
done
cp "$MODEL" "$stage/models/"

tgz=$(cd dist && npm pack ./package --pack-destination . --silent)
say "$(printf 'dist/%s: %d bytes packed, %d bytes unpacked' "$tgz" "$(wc -c <"dist/$tgz")" "$(du -sb "$stage" | cut -f1)")"
