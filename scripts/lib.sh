#!/usr/bin/env bash
# Shared helpers for the setup, build and test scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WASM_BINDGEN_VERSION="0.2.130"
WASM_TARGET="wasm32-unknown-unknown"

# Where cargo puts its builds: CARGO_TARGET_DIR, build.target-dir in a cargo config, or
# target/ (asked of cargo itself, so a developer's setting is honoured). Cached per shell.
cargo_target_dir() {
  if [ -z "${EDGETUNE_TARGET_DIR:-}" ]; then
    EDGETUNE_TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
      sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [ -n "$EDGETUNE_TARGET_DIR" ] || EDGETUNE_TARGET_DIR="$ROOT/target"
    export EDGETUNE_TARGET_DIR
  fi
  printf '%s\n' "$EDGETUNE_TARGET_DIR"
}

# say MESSAGE: a step's line; with EDGETUNE_T0 (epoch seconds, set by scripts/test.sh) it also
# says the time since then, so a log shows where the time of a run went.
say() {
  if [ -n "${EDGETUNE_T0:-}" ]; then
    printf '\033[1m[edgetune +%ss]\033[0m %s\n' "$(( $(date +%s) - EDGETUNE_T0 ))" "$*"
  else
    printf '\033[1m[edgetune]\033[0m %s\n' "$*"
  fi
}
die() { printf '\033[1;31m[edgetune] error:\033[0m %s\n' "$*" >&2; exit 1; }

# need CMD "what to install": fails with a clear message when CMD is missing.
need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed. $2"
}

# Runs apt-get as root (directly or through sudo), or returns 1 if neither is possible.
apt_install() {
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    runner=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing Debian packages: $*"
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || return 1
}
