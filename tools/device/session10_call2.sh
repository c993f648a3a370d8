#!/usr/bin/env bash
# Session 10, device call 2. Carry .gpu-c11 (the branch `outconv`'s bench and GPU tests in
# .gpu-c11/oc, the branch `pool`'s bench in .gpu-c11/pool, copied from their target folders) and
# .gpu-ov (the branch `overlap`, staged by its tools/device/stage.sh with FEATURES="--no-default-
# features --features cuda"). Part 1: our outconv kernel (kernels/outconv.cu) against cuDNN's
# conv (FLAVR_CUDA_OUTCONV=0, same binary) and against the branch before it, its exactness
# tests, 720p and 4K. Part 2: the element with two windows in flight (tools/device/
# session10_overlap.sh of the branch `overlap`).
set -u
D=.gpu-c11
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/.gpu-ov/fixtures FLAVR_CUDA_PLAN_CACHE=/tmp/plans.tsv
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
step() { echo "=== $1 ($(( $(date +%s) - t0 )) s)"; }
step "outconv: exactness"
timeout 150 $D/oc/cuda_parity --test-threads=1 --nocapture own_outconv narrow half repeated captured 2>&1 | tee "$OUT/oc_parity.log" | grep -E "max abs|outconv|launches|test |result|panicked"
$D/oc/cuda_cpu_parity 2>&1 | tee "$OUT/oc_cpu_parity.log" | grep -E "test |result|panicked"
$D/oc/cuda_pixels 2>&1 | tee "$OUT/oc_pixels.log" | grep -E "result|panicked"
step "outconv: 1080p fp16, alternating (pool = before; oc; oc with FLAVR_CUDA_OUTCONV=0)"
for i in 1 2; do
  echo "--- pool"; $D/pool/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tail -1
  echo "--- oc"; $D/oc/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tail -1
  echo "--- oc, FLAVR_CUDA_OUTCONV=0"; FLAVR_CUDA_OUTCONV=0 $D/oc/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tail -1
done 2>&1 | tee "$OUT/oc_bench.log"
step "outconv: profile, bf16, 720p and 4K"
$D/oc/bench --sizes 1920x1080 --precisions fp16 --runs 15 --profile 2>&1 | tee "$OUT/oc_profile.log" | grep -E "outconv|pad after|all conv|everything|fp16:"
$D/oc/bench --sizes 1920x1080 --precisions bf16 --runs 20 2>&1 | tail -1
$D/oc/bench --sizes 1280x720,3840x2160 --precisions fp16 --runs 10 2>&1 | tee "$OUT/oc_sizes.log" | grep -v "^    "
if [ -d .gpu-ov ]; then
  step "overlap (the branch's own script)"
  OUT=$OUT/ov bash .gpu-ov/tools/device/session10_overlap.sh 2>&1 | tail -60
fi
step done
