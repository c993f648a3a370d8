#!/usr/bin/env bash
# Session 10, the element at the network's speed (issue 12): run from the repository root on
# the GPU machine, carry .gpu-ov, made by
#   DEST=/work/wt-overlap/.gpu-ov CARGO_TARGET_DIR=/work/wt-overlap/target \
#     FEATURES="--no-default-features --features cuda" bash tools/device/stage.sh
# (without the embedded model, to stay under the 64 MiB a call carries).
# The GPU tests (PARITY=0: without the golden outputs), the new tests of windows in flight
# (tests/cuda_overlap.rs: submit/collect interleaved with loads, byte for byte against one
# window at a time), the element through the GPU (cuda_dispatch: one engine, now pipelined,
# against two; faults: errors in mid-stream), then in the same call the network alone (bench,
# 1080p fp16) and the element in a pipeline at 1080p fp16, RGB and I420, to compare the two
# rates (the target: the element at >= 0.98 of the network).
set -u
D=.gpu-ov
export PARITY=${PARITY:-0}
# shellcheck source=gpu_tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_tests.sh"
step "windows in flight (cuda_overlap)"
$D/cuda_overlap --test-threads=1 --nocapture 2>&1 | tee "$OUT/overlap.log" | grep -E "differ|test |result|panicked|skipped"
step "the element on the GPU (cuda_dispatch, faults)"
( source $D/gst/env.sh && $D/cuda_dispatch --test-threads=1 --nocapture 2>&1 | tee "$OUT/dispatch.log" | grep -E "factor|test |result|panicked|skipped" )
( source $D/gst/env.sh && $D/faults gpu_ --test-threads=1 2>&1 | tee "$OUT/faults.log" | grep -E "test |result|panicked|skipping" )
step "bench, the network alone, 1080p fp16"
$D/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench.log" | grep -v "^    "
step "element in a pipeline"
bash $D/tools/device/pipeline.sh 240 fp16 RGB,I420 2>&1 | tee "$OUT/pipeline.log"
step "bench again (the network rate after the pipeline, same warm GPU)"
$D/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench2.log" | grep -v "^    "
step done
