#!/usr/bin/env bash
# What the tests need from Debian: Chromium, Firefox ESR and WebKitGTK (browser tests; Xvfb
# for WebKit's MiniBrowser), an aarch64 cross linker and qemu-user (the NEON kernels' unit
# tests), Mesa's lavapipe Vulkan driver
# (native GPU tests on the CPU), vulkan-tools (vulkaninfo, for diagnosis), the ONNX
# backend node tests, and PyTorch (python3-torch, python3-torchvision) for the importer
# tests; numpy from PyPI; and the interop environment: a venv over Debian's Python with
# onnxruntime, onnx and tflite-runtime from PyPI (the peers the importers are checked against). Installed when missing and possible, otherwise the
# exact command is printed and the tests stop.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The other two browser engines (tests/e2e/engines.test.mjs): Firefox ESR, driven over
# WebDriver BiDi by puppeteer-core (npm), and WebKitGTK's MiniBrowser, driven by its own
# WebKitWebDriver under a virtual X display (Xvfb; xvfb-run needs xauth).
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
[ -x /usr/bin/WebKitWebDriver ] || missing+=(webkit2gtk-driver)
[ -x /usr/bin/xvfb-run ] || missing+=(xvfb)
[ -x /usr/bin/xauth ] || missing+=(xauth)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
command -v vulkaninfo >/dev/null 2>&1 || missing+=(vulkan-tools)
[ -d /usr/share/libonnx-testdata/data/node ] || missing+=(libonnx-testdata)
/usr/bin/python3 -c "import torch" >/dev/null 2>&1 || missing+=(python3-torch)
/usr/bin/python3 -c "import torchvision" >/dev/null 2>&1 || missing+=(python3-torchvision)
/usr/bin/python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)

# The native aarch64 (NEON) kernels: unit tests cross-compiled and run under qemu-user.
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/lib/libc.so.6 ] || missing+=(libc6-dev-arm64-cross)
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  say "adding Rust target aarch64-unknown-linux-gnu (unit tests of the NEON kernels under qemu)"
  rustup target add aarch64-unknown-linux-gnu \
    || die "the aarch64 unit tests need the target: rustup target add aarch64-unknown-linux-gnu"
fi

# The crate's unit tests also run as wasm under Node's WASI (the shipped SIMD kernels).
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  say "adding Rust target wasm32-wasip1 (unit tests of the wasm SIMD kernels under Node)"
  rustup target add wasm32-wasip1 || die "the wasm unit tests need the target: rustup target add wasm32-wasip1"
fi

if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" || die "missing test prerequisites. Install them with:
    sudo apt-get install -y ${missing[*]}"
fi

# numpy for the independent float64 reference of the default model (tests/reference/).
if ! python3 -c "import numpy" >/dev/null 2>&1; then
  say "installing numpy (pip) for the reference checks"
  python3 -m pip install --quiet numpy || die "numpy is required by the tests: python3 -m pip install numpy"
fi

# The interop venv: Debian's Python (which has torch) plus pinned PyPI wheels. numpy stays
# Debian's 1.x, which tflite-runtime 2.14 was built against.
INTEROP="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}/interop-venv"
INTEROP_PINS=(onnxruntime==1.32.0 onnx==1.23.2 tflite-runtime==2.14.0 "numpy<2")
if ! "$INTEROP/bin/python" -c "import onnxruntime, onnx, tflite_runtime, torch, torchvision" >/dev/null 2>&1; then
  say "creating the interop environment in $INTEROP (onnxruntime, onnx, tflite-runtime; once)"
  rm -rf "$INTEROP"
  /usr/bin/python3 -m venv --system-site-packages "$INTEROP" \
    && "$INTEROP/bin/python" -m pip install --quiet "${INTEROP_PINS[@]}" \
    || die "could not create the interop environment: /usr/bin/python3 -m venv --system-site-packages $INTEROP && $INTEROP/bin/python -m pip install ${INTEROP_PINS[*]}"
fi

# The example app that installs the npm package (tests/e2e/package.test.mjs): its own Vite and
# TypeScript, pinned by examples/teach/package-lock.json, installed once per lock file.
stamp=examples/teach/node_modules/.edgetune-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s examples/teach/package-lock.json "$stamp"; then
  say "installing the example app's build tools (Vite, TypeScript)"
  (cd examples/teach && npm ci --no-audit --no-fund) || die "could not install the example app's tools: cd examples/teach && npm ci"
  cp examples/teach/package-lock.json "$stamp"
fi
