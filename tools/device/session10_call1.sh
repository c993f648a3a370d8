#!/usr/bin/env bash
# Session 10, device call 1 (carry .gpu-c10, made by `DEST=.gpu-c10 FEATURES="--no-default-features
# --features cuda" tools/device/stage.sh`, the plugin left out): main at b3636e8 after the merges of
# session 9. The GPU tests (10-bit formats bit for bit against the CPU in cuda_pixels and
# cuda_cpu_parity), two engines on one GPU (tests/cuda_dispatch.rs, with a fault in one), the GPU
# fault injection of tests/faults.rs, the bench at 720p and 1080p fp16, and compute-sanitizer's
# memcheck (tools/device/sanitize.sh, each run limited to LIMIT seconds). With $D/pool (the
# branch `pool`: the SE pool reading the four sub-pixel phases in one pass, four loads in flight
# per thread, and se_mean spread over 8 warps per 32 channels): its exactness tests and the bench
# of main and of the branch, alternating, at 1080p fp16.
set -u
D=.gpu-c10
PARITY=${PARITY:-0}
# shellcheck source=gpu_tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_tests.sh"
step "two engines on one GPU"
( source $D/gst/env.sh && $D/cuda_dispatch --nocapture --test-threads=1 2>&1 | tee "$OUT/dispatch.log" | grep -E "test |result|panicked|differ|skipp|warning" | head -40 )
step "faults through the element (GPU)"
( source $D/gst/env.sh && $D/faults gpu_ --test-threads=1 2>&1 | tee "$OUT/faults.log" | grep -E "test |result|panicked|skipp" )
step "bench"
$D/bench --sizes 1280x720,1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench.log" | grep -v "^    "
if [ -d $D/pool ]; then
  step "pool: exactness"
  timeout 200 $D/pool/cuda_parity --test-threads=1 --nocapture narrow half repeated 2>&1 | tee "$OUT/pool_parity.log" | grep -E "max abs|test |result|panicked"
  $D/pool/cuda_cpu_parity --nocapture 2>&1 | tee "$OUT/pool_cpu_parity.log" | grep -E "error|differ|test |result|panicked"
  $D/pool/cuda_pixels 2>&1 | tee "$OUT/pool_pixels.log" | grep -E "differ|result|panicked"
  step "pool: bench, main and branch alternating"
  for i in 1 2; do
    for b in main pool; do
      bin=$D/bench; [ $b = pool ] && bin=$D/pool/bench
      echo "--- $b"
      $bin --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench_${b}_$i.log" | grep -v "^    " | tail -1
    done
  done
  $D/pool/bench --sizes 1920x1080 --precisions fp16 --runs 15 --profile 2>&1 | tee "$OUT/pool_profile.log" | grep -E "SE pool|all conv|everything"
fi
step "memcheck"
LIMIT=${LIMIT:-45} bash $D/tools/device/sanitize.sh memcheck 2>&1 | tail -12
step done
