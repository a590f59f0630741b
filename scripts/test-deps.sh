#!/usr/bin/env bash
# What the tests need from Debian: Chromium (browser tests), Mesa's lavapipe Vulkan driver
# (native GPU tests on the CPU), vulkan-tools (vulkaninfo, for diagnosis) and the ONNX
# backend node tests; numpy from PyPI. Installed when missing and possible, otherwise the
# exact command is printed and the tests stop.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
command -v vulkaninfo >/dev/null 2>&1 || missing+=(vulkan-tools)
[ -d /usr/share/libonnx-testdata/data/node ] || missing+=(libonnx-testdata)

if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" || die "missing test prerequisites. Install them with:
    sudo apt-get install -y ${missing[*]}"
fi

# numpy for the independent float64 reference of the default model (tests/reference/).
if ! python3 -c "import numpy" >/dev/null 2>&1; then
  say "installing numpy (pip) for the reference checks"
  python3 -m pip install --quiet numpy || die "numpy is required by the tests: python3 -m pip install numpy"
fi
