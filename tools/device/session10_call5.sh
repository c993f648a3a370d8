#!/usr/bin/env bash
# Session 10, device call 5 (carry .gpu-cm from the branch cudamem2's tools/device/stage_cudamem.sh,
# the state merged into main): the CUDA-memory GPU tests after the context fix (one context, and
# cudaupload ! flavrinterp cuda-memory=true ! cudadownload negotiating CUDA memory), then the
# zero-copy pipeline's own stats line. Prepared in session 10 and not run (too little device
# time was left to start a machine): the quick check for the next session.
set -u
D=.gpu-cm
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source $D/gst/env.sh
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/$D/fixtures FLAVR_CUDA_PLAN_CACHE=/tmp/plans.tsv
export GST_PLUGIN_PATH=$PWD/$D/plugin
$D/cuda_memory --test-threads=1 --nocapture 2>&1 | tee "$OUT/cuda_memory.log" | grep -E "test |result|panicked|context|negotiat" | cut -c1-300
[ -e /tmp/synth.safetensors ] || $D/bench --write-synth /tmp/synth.safetensors
GST_DEBUG=flavrinterp:4 gst-launch-1.0 -m filesrc location=$D/in1080.mp4 ! qtdemux ! h264parse ! nvh264dec ! flavrinterp backend=cuda cuda-memory=true scene-threshold=0 model-location=/tmp/synth.safetensors ! cudadownload ! fakesink sync=false 2>&1 | sed 's/\x1b\[[0-9;]*m//g' > "$OUT/zero_copy.log"
grep -E "imp.rs:[0-9]+:.*(start|set_caps|post_stats)|Got context|ERROR" "$OUT/zero_copy.log" | sed 's/.*<flavrinterp0> //' | cut -c1-250
