#!/usr/bin/env bash
# Sourced by the device call scripts (run from the repository root on the GPU machine) after
# they set D, the staged folder (tools/device/stage.sh): sets OUT, the environment (env.sh, GPU
# required, fixtures and plan cache), prints the GPU, defines `step NAME` (a timed banner) and
# runs the GPU test binaries, each log in $OUT.
: "${D:?set D to the staged folder before sourcing gpu_tests.sh}"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/$D/fixtures
export FLAVR_CUDA_PLAN_CACHE=/tmp/plans.tsv
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
step() { echo "=== $1 ($(( $(date +%s) - t0 )) s)"; }
step tests
# PARITY=0 leaves out cuda_parity (the golden outputs, ~270 s on an H100).
[ "${PARITY:-1}" = 0 ] || $D/cuda_parity --test-threads=1 --nocapture 2>&1 | tee "$OUT/parity.log" | grep -E "max abs|test |result|panicked|skipped"
$D/cuda_pixels --nocapture 2>&1 | tee "$OUT/pixels.log" | grep -E "differ|test |result|panicked"
$D/cuda_cpu_parity --nocapture 2>&1 | tee "$OUT/cpu_parity.log" | grep -E "error|differ|test |result|panicked"
$D/cuda_errors --nocapture 2>&1 | tee "$OUT/errors.log" | grep -E "test |result|panicked"
# Scene-cut sums on the GPU; its element tests need the GStreamer bundle (the CUDA-memory one
# skips without nvcodec's cudaupload, which stage_cudamem.sh's bundle has).
( source $D/gst/env.sh && $D/cuda_scene --nocapture --test-threads=1 2>&1 | tee "$OUT/scene.log" | grep -E "differ|test |result|panicked|skipped" )
