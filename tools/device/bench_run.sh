#!/usr/bin/env bash
# Runs on the GPU machine from the staged folder (tools/device/stage.sh): GPU tests, PSNR on real
# frames (ours and PyTorch's), the bench program and the PyTorch reference timings, in one call.
# usage: bash .gpu-cuda/tools/device/bench_run.sh [STEPS]   STEPS: comma list of
#        tests,psnr,bench,torch,compile,pipeline,bench32 (run in that order; default: all but
#        compile and pipeline)
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
steps=${1:-tests,psnr,bench,bench32,torch}
# shellcheck source=env.sh
source tools/device/env.sh
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/fixtures
has() { [[ ",$steps," == *",$1,"* ]]; }
# torch_bench options from the environment: BATCH (e.g. 1,2,4), LAYOUTS (e.g. cl3d,cl), and
# FLAVR_OFFICIAL_SRC, a checkout of the official FLAVR code to time beside its op sequence.
torch_opts=(${BATCH:+--batch "$BATCH"} ${LAYOUTS:+--layouts "$LAYOUTS"} ${FLAVR_OFFICIAL_SRC:+--official-src "$FLAVR_OFFICIAL_SRC"})
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
if has tests; then
  ./cuda_parity --test-threads=1 --nocapture 2>&1 | tee "$OUT/parity.log" | grep -E "max abs|test |result|panicked|skipped"
  ./cuda_pixels --nocapture 2>&1 | tee "$OUT/pixels.log" | grep -E "differ|test |result|panicked|skipped"
  ./cuda_cpu_parity --nocapture 2>&1 | tee "$OUT/cpu_parity.log" | grep -E "error|differ|test |result|panicked|skipped"
  ./cuda_errors --nocapture 2>&1 | tee "$OUT/errors.log" | grep -v "^$"
fi
if has psnr && [ -e frames.rgb.gz ]; then
  gunzip -c frames.rgb.gz > /tmp/frames.rgb; mkdir -p /tmp/dump
  ./bench --frames /tmp/frames.rgb --frame-size 1280x720 --dump /tmp/dump --runs 0 2>&1 | tee "$OUT/psnr.log"
  python3 -m tools.bench.torch_bench --sizes "" --compare /tmp/dump --frames /tmp/frames.rgb --frame-size 1280x720 2>&1 | tee -a "$OUT/psnr.log"
fi
if has bench; then
  FLAVR_BENCH_VERBOSE=1 ./bench --precisions fp16,bf16 --runs ${RUNS:-20} 2>&1 | tee "$OUT/bench.log"
fi
if has convt; then
  # The transposed convs through cuDNN backward-data instead of sub-pixel phases, for comparison.
  FLAVR_CUDA_CONVT=cudnn ./bench --precisions fp16 --runs ${RUNS:-20} 2>&1 | tee "$OUT/bench_convt_cudnn.log" | grep -v "^    "
fi
if has diag; then
  # Diagnosis of GPU/CPU differences: default, cuDNN transposed convs, no arena reuse, and every
  # forward conv checked against a direct convolution.
  for env in "X=1" "FLAVR_CUDA_CONVT=cudnn" "FLAVR_CUDA_NO_REUSE=1" "FLAVR_CUDA_VERIFY=1"; do
    echo "=== $env"
    env $env ./cuda_cpu_parity --test-threads=1 --nocapture 2>&1 | grep -E "error|differ|bad|^    |MISMATCH|test result"
  done 2>&1 | tee "$OUT/diag.log"
fi
if has allalgos; then
  # Diagnosis: float32 with every cuDNN algorithm allowed (FFT and Winograd too).
  FLAVR_CUDA_ALL_ALGOS=1 ./cuda_cpu_parity narrow --nocapture 2>&1 | tee "$OUT/allalgos.log" | grep -E "error|->|test result"
fi
if has torch; then
  python3 -m tools.bench.torch_bench --runs ${RUNS:-20} "${torch_opts[@]}" 2>&1 | tee "$OUT/torch.log"
fi
if has compile; then
  python3 -m tools.bench.torch_bench --sizes "" --compile 1920x1080 --compile-mode ${MODE:-default} --runs ${RUNS:-20} \
    "${torch_opts[@]}" 2>&1 | tee "$OUT/compile.log"
fi
if has pipeline; then
  bash tools/device/pipeline.sh ${FRAMES:-300} ${PIPE_PRECISIONS:-fp16} ${PIPE_FORMATS:-RGB} 2>&1 | tee "$OUT/pipeline.log"
fi
if has bench32; then
  ./bench --precisions fp32 --runs 8 ${SIZES32:+--sizes $SIZES32} 2>&1 | tee "$OUT/bench32.log"
fi
echo "=== summary"; grep -h -E "^ +[0-9]+x[0-9]+ |^psnr|PyTorch fp32|test result|^pipeline|^fp16 |^bf16 |^official op sequence" "$OUT"/*.log
