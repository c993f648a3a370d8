#!/usr/bin/env bash
# Session 5, device call 1 (run from the repository root on the GPU machine, carry .gpu-c1):
# the GPU tests (with the captured-graph test), the engine with and without CUDA graph replay,
# the per-step profile at 1080p, the embedded model, the PyTorch probes of the next rewrites
# (tools/bench/probe_convs.py) and the official op sequence beside the official code itself
# (transcribed into the git-ignored .gpu-c1/official for this run only), in eager mode.
set -u
D=.gpu-c1
# shellcheck source=gpu_tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_tests.sh"
step bench
FLAVR_BENCH_VERBOSE=1 $D/bench --sizes 1280x720,1920x1080,3840x2160 --precisions fp16 --runs 20 ${SHORT:+--sizes 1280x720,1920x1080} 2>&1 | tee "$OUT/bench.log" | grep -v "^    "
[ -n "${SHORT:-}" ] || FLAVR_BENCH_VERBOSE=1 $D/bench --sizes 1920x1080 --precisions bf16 --runs 20 2>&1 | tee "$OUT/bench_bf16.log" | grep -v "^    "
step "bench without graph replay"
FLAVR_CUDA_CAPTURE=0 $D/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench_nocapture.log" | grep -v "^    "
step profile
$D/bench --sizes 1920x1080 --precisions fp16 --runs 15 --profile 2>&1 | tee "$OUT/profile.log" | grep -v "^    "
step "embedded model"
$D/bench --model models/flavr2x-default.safetensors --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench_model.log" | grep -v "^    "
step probes
python3 -m tools.bench.probe_convs --runs 20 2>&1 | tee "$OUT/probe.log"
step "pytorch: the official op sequence and the official code, eager"
python3 -m tools.bench.torch_bench --sizes 1920x1080 --batch ${BATCH:-1,2} --official-src $D/official --runs 20 2>&1 | tee "$OUT/torch.log" | grep -v "^{"
step done
