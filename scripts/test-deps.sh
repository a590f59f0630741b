#!/usr/bin/env bash
# What the tests need from Debian: Chromium, Firefox ESR and WebKitGTK (browser tests; Xvfb
# for WebKit's MiniBrowser), an aarch64 cross linker and qemu-user (the NEON kernels' unit
# tests), Mesa's lavapipe Vulkan driver
# (native GPU tests on the CPU), vulkan-tools (vulkaninfo, for diagnosis), the ONNX
# backend node tests, and PyTorch (python3-torch, python3-torchvision) for the importer
# tests; numpy from PyPI; and the interop environment: a venv over Debian's Python with
# onnxruntime, onnx and tflite-runtime from PyPI (the peers the importers are checked against);
# and the converter environment (TensorFlow's TFLite converter) with the models it makes; and
# the Flower environment (federation). Installed when missing and possible, otherwise the
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

# The AVX-512 VNNI GEMM's unit tests, on a CPU without VNNI, run under Miri (nightly), which
# executes those instructions (scripts/test.sh). The nightly toolchain also serves cargo-fuzz.
if [ "$(uname -m)" = x86_64 ] && ! grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null; then
  if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly toolchain (Miri for the VNNI kernel's tests, cargo-fuzz; once)"
    rustup toolchain install nightly --profile minimal \
      || die "the VNNI kernel's tests need the nightly toolchain: rustup toolchain install nightly --profile minimal"
  fi
  if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^miri'; then
    say "adding Miri to the nightly toolchain (the AVX-512 VNNI kernel's tests on this CPU without VNNI; once)"
    rustup +nightly component add miri rust-src \
      || die "the VNNI kernel's tests need Miri: rustup +nightly component add miri rust-src"
  fi
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

# The converter environment: TensorFlow's own TFLite converter and LiteRT's interpreter
# (tensorflow-cpu, ai-edge-litert and every package they pull, pinned by
# scripts/tf-converter-requirements.txt) in their own venv, since they need numpy 2 and
# tflite-runtime 2.14 needs numpy 1; and TFLite Support's metadata writer
# (tflite-support, without its dependencies: it pins protobuf below 4, which TensorFlow's
# protobuf replaces; the metadata writer does not use protobuf). It makes the TF2 full-integer
# int8 models the importer is checked against (tests/reference/tflite_convert.py, calibrated on
# the shared CIFAR-10 training images), once per version of the script and the pins.
CACHE_DIR="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}"
CONVERTER="$CACHE_DIR/tf-converter-venv"
CONVERTER_LOCK="$ROOT/scripts/tf-converter-requirements.txt"
METADATA_PIN="tflite-support==0.4.4"
converter_pins=$(cat "$CONVERTER_LOCK"; echo "$METADATA_PIN")
if [ ! -f "$CONVERTER/.edgetune-lock-stamp" ] || [ "$(cat "$CONVERTER/.edgetune-lock-stamp")" != "$converter_pins" ]; then
  say "creating the TFLite converter environment in $CONVERTER (tensorflow-cpu, about 1.6 GB; once)"
  rm -rf "$CONVERTER"
  /usr/bin/python3 -m venv "$CONVERTER" \
    && "$CONVERTER/bin/python" -m pip install --quiet -r "$CONVERTER_LOCK" \
    && "$CONVERTER/bin/python" -m pip install --quiet --no-deps "$METADATA_PIN" \
    || die "could not create the converter environment: /usr/bin/python3 -m venv $CONVERTER && $CONVERTER/bin/python -m pip install -r $CONVERTER_LOCK && $CONVERTER/bin/python -m pip install --no-deps $METADATA_PIN"
  printf '%s' "$converter_pins" > "$CONVERTER/.edgetune-lock-stamp"
fi
TF2_MODELS="$CACHE_DIR/tf2-int8"
CIFAR_TRAIN="$ROOT/../shared/data/cifar10/train.bin"
if [ -f "$CIFAR_TRAIN" ]; then
  want=$( (cat "$ROOT/tests/reference/tflite_convert.py"; echo "$converter_pins") | sha256sum | cut -d' ' -f1)
  if [ ! -f "$TF2_MODELS/.stamp" ] || [ "$(cat "$TF2_MODELS/.stamp")" != "$want" ]; then
    say "making the TF2 int8 test models with TensorFlow's converter (about a minute; once)"
    rm -rf "$TF2_MODELS"
    TF_CPP_MIN_LOG_LEVEL=3 "$CONVERTER/bin/python" "$ROOT/tests/reference/tflite_convert.py" "$CIFAR_TRAIN" "$TF2_MODELS" 2>"$CACHE_DIR/tf-convert.log" \
      || die "the TFLite converter failed (its log: $CACHE_DIR/tf-convert.log): $CONVERTER/bin/python tests/reference/tflite_convert.py $CIFAR_TRAIN $TF2_MODELS"
    echo "$want" > "$TF2_MODELS/.stamp"
  fi
fi

# The Flower environment (flwr 1.42 pinned by scripts/flower-requirements.txt: the SuperLink,
# the ServerApp's runtime, the flwr CLI) and the page's Fleet message code generated from its
# descriptors (tests/e2e/federation.test.mjs, flower-objects.test.mjs, fleet-client.test.mjs).
bash "$ROOT/scripts/flower.sh" >/dev/null

# The example app that installs the npm package (tests/e2e/package.test.mjs): its own Vite and
# TypeScript, pinned by examples/teach/package-lock.json, installed once per lock file.
stamp=examples/teach/node_modules/.edgetune-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s examples/teach/package-lock.json "$stamp"; then
  say "installing the example app's build tools (Vite, TypeScript)"
  (cd examples/teach && npm ci --no-audit --no-fund) || die "could not install the example app's tools: cd examples/teach && npm ci"
  cp examples/teach/package-lock.json "$stamp"
fi
