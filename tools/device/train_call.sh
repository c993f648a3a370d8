#!/usr/bin/env bash
# One device call: a training call, then optionally the engine's GPU tests and the speed of the
# exported model, from the repository root on the device machine:
#
#   [TESTS=1] [BENCH=1] bash tools/device/train_call.sh MINUTES [train.py options...]
#
# Training: train.sh with STATE=/root/flavr-state (kept while the machine stays warm) and
# INIT=models/flavr2x-default.safetensors (the previous call's export, used when no state is
# there). TESTS=1 runs the GPU test binaries staged here in $CUDA_BIN (default .gpu-train/cuda:
# cuda_parity, cuda_pixels, cuda_cpu_parity, cuda_errors from `cargo test --release --no-run`,
# stripped); BENCH=1 exports the new weights and times them with $CUDA_BIN/bench and
# tools/bench/torch_bench.py in the same call. Logs go to $OUT.
set -u
m=$1; shift
CUDA_BIN=${CUDA_BIN:-.gpu-train/cuda}
STATE=/root/flavr-state INIT=models/flavr2x-default.safetensors bash tools/device/train.sh "$m" "$@" 2>&1 \
  | grep -v "samples/s (" | grep -v "^-rw" | tail -9
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/tests/fixtures
if [ "${TESTS:-0}" = 1 ]; then
  for t in cuda_parity cuda_pixels cuda_cpu_parity cuda_errors; do
    timeout 120 "$CUDA_BIN/$t" --test-threads=1 2>&1 | tee "$OUT/$t.log" | grep -E "test result|panicked|FAILED|skipped" | head -5
  done
fi
if [ "${BENCH:-0}" = 1 ]; then
  python3 -m tools.train.export --state /root/flavr-state --out /tmp/m.safetensors | head -1
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
  timeout 100 "$CUDA_BIN/bench" --model /tmp/m.safetensors --sizes 1920x1080,1280x720 --precisions fp16,fp32 --runs 20 2>&1 \
    | tee "$OUT/bench.log" | grep -v "^    "
  timeout 80 python3 -m tools.bench.torch_bench --model /tmp/m.safetensors --sizes 1920x1080,1280x720 --runs 20 2>&1 \
    | tee "$OUT/torch.log" | tail -6
fi
