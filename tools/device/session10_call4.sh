#!/usr/bin/env bash
# Session 10, device call 4 (carry .gpu-cm, right after call 3 on the warm machine): the failing
# cudaupload ! flavrinterp ! cudadownload test again with caps and context debug output, and the
# zero-copy pipeline's own stats line (call 3's log of it did not come back).
set -u
# shellcheck source=cudamem_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/cudamem_env.sh"
GST_DEBUG=flavrinterp:6,cudaupload:5,cudadownload:5,cudacontext:5,GST_CONTEXT:5 $D/cuda_memory --test-threads=1 --nocapture cudaupload 2>&1 | sed 's/\x1b\[[0-9;]*m//g' > "$OUT/upload_debug.log"
grep -E "test result|panicked" "$OUT/upload_debug.log"
grep -iE "context|caps|transform_caps|memory:CUDA" "$OUT/upload_debug.log" | grep -iE "flavrinterp|cudaupload|context" | cut -c1-300 | head -60
[ -e /tmp/synth.safetensors ] || $D/bench --write-synth /tmp/synth.safetensors
GST_DEBUG=flavrinterp:4 gst-launch-1.0 -m filesrc location=$D/in1080.mp4 ! qtdemux ! h264parse ! nvh264dec ! flavrinterp backend=cuda scene-threshold=0 model-location=/tmp/synth.safetensors ! cudadownload ! fakesink sync=false 2>&1 | sed 's/\x1b\[[0-9;]*m//g' > "$OUT/zero_copy.log"
grep -E "imp.rs:(516|525|676|263)|Got context|ERROR|WARN" "$OUT/zero_copy.log" | cut -c1-400
