#!/usr/bin/env bash
# Session 9, device call 2 (carry .gpu-c9, right after call 1 on the same warm machine): the
# official op sequence under torch.compile(mode="max-autotune") at 1080p fp16 beside eager,
# and the engine again (fold on and off), so that the three are from one machine.
set -u
D=.gpu-c9
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export FLAVR_CUDA_PLAN_CACHE=/tmp/plans.tsv
nvidia-smi --query-gpu=name --format=csv,noheader
for f in 1 0; do
  echo "--- FLAVR_CUDA_FOLD=$f"
  FLAVR_CUDA_FOLD=$f $D/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench2_fold$f.log" | grep -v "^    "
done
timeout 480 python3 -m tools.bench.torch_bench --sizes 1920x1080 --compile 1920x1080 --compile-mode max-autotune --runs 20 2>&1 | tee "$OUT/torch_compile.log" | grep -v "^{"
