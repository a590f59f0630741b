#!/usr/bin/env bash
# The Flower side of federated fine-tuning (docs/federation.md): a venv with the pinned flwr
# (scripts/flower-requirements.txt) in the cache, made once per pin list, and the Fleet API's
# messages from flwr's own protobuf descriptors as protobuf.js code in pkg.flower/flwr-proto.mjs
# (what the page's Fleet client encodes and decodes with). Prints the venv's path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CACHE_DIR="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}"
FLOWER="$CACHE_DIR/flower-venv"
LOCK="$ROOT/scripts/flower-requirements.txt"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
[ -n "$PY" ] || die "federation needs Python 3.10 or newer: sudo apt-get install -y python3 python3-venv"
"$PY" -c "import venv, ensurepip" >/dev/null 2>&1 || die "federation needs Python's venv module: sudo apt-get install -y python3-venv"
pins=$(grep -v '^#' "$LOCK")
if [ ! -f "$FLOWER/.edgetune-lock-stamp" ] || [ "$(cat "$FLOWER/.edgetune-lock-stamp")" != "$pins" ]; then
  say "creating the Flower environment in $FLOWER (flwr 1.42.0; once)" >&2
  rm -rf "$FLOWER"
  { "$PY" -m venv "$FLOWER" && "$FLOWER/bin/python" -m pip install --quiet -r "$LOCK"; } >&2 \
    || die "could not create the Flower environment: $PY -m venv $FLOWER && $FLOWER/bin/python -m pip install -r $LOCK"
  printf '%s' "$pins" > "$FLOWER/.edgetune-lock-stamp"
fi
# The Fleet API's messages: flwr's descriptors as protobuf.js JSON, then protobuf.js's static
# code for them (pbjs, protobufjs-cli from npm): the page's CSP allows no eval, which the
# reflection API's generated coders need.
OUT="$ROOT/pkg.flower"
want=$( (cat "$ROOT/federation/export_proto.py" "$ROOT/federation/pbjs-wrapper.js"; echo "$pins") | sha256sum | cut -d' ' -f1)
if [ ! -f "$OUT/flwr-proto.mjs" ] || [ "$(cat "$OUT/.stamp" 2>/dev/null)" != "$want" ]; then
  [ -x "$ROOT/node_modules/.bin/pbjs" ] || die "pbjs is missing: run npm ci (npm start and npm test do)"
  mkdir -p "$OUT"
  "$FLOWER/bin/python" "$ROOT/federation/export_proto.py" "$OUT/flwr-proto.json" >&2 || die "could not export flwr's protobuf descriptors"
  "$ROOT/node_modules/.bin/pbjs" -t static-module --keep-case --no-beautify --no-comments --no-delimited --no-service \
    -w "$ROOT/federation/pbjs-wrapper.js" -o "$OUT/flwr-proto.mjs" "$OUT/flwr-proto.json" >&2 || die "pbjs could not generate the Fleet messages' code"
  version=$("$FLOWER/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['flwrVersion'])" "$OUT/flwr-proto.json")
  echo "export const flwrVersion = '$version';" >> "$OUT/flwr-proto.mjs"
  echo "$want" > "$OUT/.stamp"
fi
echo "$FLOWER"
