#!/usr/bin/env bash
# npm run fuzz: every loader of untrusted bytes under libFuzzer (cargo-fuzz, nightly), each
# for FUZZ_SECONDS (default 60). Seeds come from real files: the default models' and the
# checkpoint's first 64 KiB, ONNX's own node-test models, two small generated classifiers
# (fuzz/seeds/onnx_seeds.py) and the smallest shared TFLite file. Prints the executions per
# target; a crash leaves its input in fuzz/artifacts/<target>/ and fails the run (turn it
# into a regression test in tests/bad_input.rs). npm test runs it bounded (EDGETUNE_FUZZ_SECONDS,
# default 20 s per target).
# FUZZ_TARGETS="onnx_import tflite_import" runs only those.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
secs="${FUZZ_SECONDS:-60}"

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain for cargo-fuzz (once)"
  rustup toolchain install nightly --profile minimal || die "fuzzing needs the nightly toolchain: rustup toolchain install nightly --profile minimal"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (once)"
  cargo install cargo-fuzz
fi
bash scripts/models.sh

corpus=fuzz/corpus
rm -rf "$corpus"
mkdir -p "$corpus/etm_loader" "$corpus/torch_checkpoint" "$corpus/onnx_model" "$corpus/onnx_import" "$corpus/tflite_import"
if [ -d /usr/share/libonnx-testdata/data/node ]; then
  for d in test_conv_with_strides_padding test_gemm_default_no_bias test_qlinearconv test_relu test_add test_softmax_example; do
    f=/usr/share/libonnx-testdata/data/node/$d/model.onnx
    [ -f "$f" ] && cp "$f" "$corpus/onnx_model/seed-$d.onnx"
  done
fi

# Seeds are small valid files, so mutations reach the loaders' deeper paths rather than dying
# at the first check: two small classifiers that import (float and QDQ, written with
# onnx.helper), the same two converted to .etm by the CLI (f32 and int8), and a small legacy
# PyTorch checkpoint (torch.save), made in the interop venv that npm test sets up
# (scripts/test-deps.sh). Each must load, or the run stops: a seed that fails is no seed.
venv="${EDGETUNE_CACHE:-$HOME/.cache/edgetune}/interop-venv"
cli="$(cargo_target_dir)/release/edgetune" # built by scripts/models.sh above
if [ -x "$venv/bin/python" ]; then
  "$venv/bin/python" fuzz/seeds/onnx_seeds.py "$corpus/onnx_import"
  "$venv/bin/python" fuzz/seeds/torch_seed.py "$corpus/torch_checkpoint/seed-small.pth"
  for kind in float qdq; do
    "$cli" import "$corpus/onnx_import/seed-$kind.onnx" "$corpus/etm_loader/seed-$kind.etm" >/dev/null \
      && "$cli" info "$corpus/etm_loader/seed-$kind.etm" >/dev/null \
      || die "the $kind .etm seed does not load"
  done
  say "seeds: $(du -b "$corpus"/etm_loader/* "$corpus"/torch_checkpoint/* | awk '{printf "%s %d B; ", $2, $1}')"
else
  say "no interop venv ($venv): onnx_import starts from the node-test models only and etm_loader and torch_checkpoint from the default model's first 64 KiB (run npm test once to make it)"
  for m in www/models/*.etm; do head -c 65536 "$m" > "$corpus/etm_loader/seed-$(basename "$m")"; done
fi
cp "$corpus"/onnx_model/seed-*.onnx "$corpus/onnx_import/" 2>/dev/null || true

# The smallest shared TFLite model, whole (its weights sit at the end of the flatbuffer).
tfl=../shared/models/mobilenet_v1_0.25_128_quant.tflite
[ -f "$tfl" ] && cp "$tfl" "$corpus/tflite_import/seed-mobilenet.tflite"

status=0
for target in ${FUZZ_TARGETS:-etm_loader torch_checkpoint onnx_model onnx_import tflite_import}; do
  max_len=65536
  [ "$target" = tflite_import ] && max_len=600000
  say "fuzzing $target for ${secs}s"
  log=$(mktemp)
  if cargo +nightly fuzz run "$target" "$corpus/$target" -- -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
    say "$target: ${runs:-finished} (no crash)"
  else
    status=1
    tail -40 "$log"
    say "$target: CRASH, input saved under fuzz/artifacts/$target/"
  fi
  rm -f "$log"
done
exit $status
