#!/usr/bin/env bash
# Session 6, device call 1 (run from the repository root on the GPU machine, carry .gpu-c6, made
# by `DEST=.gpu-c6 tools/device/stage.sh` without the plugin): the GPU tests of main after the
# architecture merge (the captured-graph test with slots 0..5 included), the speed at 720p and
# 1080p fp16 against session 5's 15.05 / 32.88 ms on an H100, the float8 probe of cuDNN's graph
# API at the deep layers' shapes (`bench --probe-fp8`), and compute-sanitizer's memcheck,
# racecheck and synccheck over the small GPU tests (each bounded in time).
set -u
D=.gpu-c6
# shellcheck source=gpu_tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_tests.sh"
step "float8 probe"
$D/bench --probe-fp8 1920x1080 --runs 10 2>&1 | tee "$OUT/probe_fp8.log"
step bench
FLAVR_BENCH_VERBOSE=1 $D/bench --sizes 1280x720,1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench.log" | grep -v "^    "
step sanitizers
for tool in memcheck racecheck synccheck; do
  echo "--- $tool"
  timeout "${SAN_S:-70}" compute-sanitizer --tool "$tool" --error-exitcode 9 $D/cuda_pixels --test-threads=1 2>&1 | tail -4
  echo "rc=${PIPESTATUS[0]}"
done 2>&1 | tee "$OUT/sanitizers.log"
step done
