#!/usr/bin/env bash
# Idempotent setup: the wasm32 Rust target, wasm-bindgen-cli at the exact version the crate
# pins, and the npm dev dependencies (binaryen's wasm-opt, playwright-core). Each step is
# skipped when already satisfied.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need cargo "Install the Rust toolchain (rustup, Rust >= 1.89)."
need rustup "Install the Rust toolchain with rustup (Rust >= 1.89); edgetune needs 'rustup target add'."
need node "Install Node.js >= 18 (Debian: apt-get install nodejs npm)."
need npm "Install npm (Debian: apt-get install npm)."

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node.js >= 18 is required, found $(node --version)."

if ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
  say "adding Rust target $WASM_TARGET"
  rustup target add "$WASM_TARGET"
fi

# The threaded module rebuilds std with atomics (-Z build-std): it needs the standard library's source.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding the rust-src component (the threaded wasm module rebuilds std with atomics)"
  rustup component add rust-src
fi

have_bindgen=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have_bindgen" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (found: ${have_bindgen:-none}; takes about 2 minutes once)"
  # Not --locked: the CLI's own lockfile pins a crate release the registry no longer has.
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi

stamp=node_modules/.edgetune-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm dev dependencies"
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi
