#!/usr/bin/env bash
# npm start: set everything up, build the wasm engine, serve the page.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build-wasm.sh
bash scripts/models.sh
exec node scripts/serve.mjs "$@"
