#!/usr/bin/env bash
# Session 9, device call 1 (run from the repository root on the GPU machine, carry .gpu-c9,
# made by `DEST=.gpu-c9 tools/device/stage.sh`): the GPU tests with the first layer
# time-folded (the default now), the GPU fault-injection tests of tests/faults.rs through the
# element, the engine with the fold on and off (FLAVR_CUDA_FOLD) at 720p and 1080p fp16, the
# per-step profile, the element in a pipeline (the worker thread of src/flavrinterp/net.rs) at
# 1080p RGB and I420, the official op sequence in PyTorch eager, and compute-sanitizer's
# memcheck over the pixel tests.
set -u
D=.gpu-c9
# shellcheck source=gpu_tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_tests.sh"
step "faults through the element (GPU)"
( source $D/gst/env.sh && $D/faults gpu_ --test-threads=1 2>&1 | tee "$OUT/faults.log" | grep -E "test |result|panicked|skipping" )
step "bench, fold on and off"
for f in 1 0; do
  echo "--- FLAVR_CUDA_FOLD=$f"
  FLAVR_CUDA_FOLD=$f FLAVR_BENCH_VERBOSE=1 $D/bench --sizes 1280x720,1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench_fold$f.log" | grep -v "^    "
done
step profile
$D/bench --sizes 1920x1080 --precisions fp16 --runs 15 --profile 2>&1 | tee "$OUT/profile.log" | grep -v "^    "
step "element in a pipeline"
bash $D/tools/device/pipeline.sh 240 fp16 RGB,I420 2>&1 | tee "$OUT/pipeline.log"
step "pytorch: the official op sequence, eager"
timeout 150 python3 -m tools.bench.torch_bench --sizes 1280x720,1920x1080 --runs 20 2>&1 | tee "$OUT/torch.log" | grep -v "^{"
step "memcheck"
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $D/cuda_pixels --test-threads=1 2>&1 | tail -4
step done
