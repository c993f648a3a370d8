#!/usr/bin/env bash
# Session 10, device call (issue 17, GStreamer's CUDA memory), run from the repository root on
# the GPU machine with carry .gpu-cm (made here by `tools/device/stage_cudamem.sh`):
# - what nvcodec registers there (decoders, encoders, cudaupload/cudadownload);
# - tests/cuda_memory_caps.rs and tests/cuda_memory.rs (the device path byte for byte against
#   the host path on one engine; cudaupload ! flavrinterp ! cudadownload against system memory);
# - the network alone at 1080p fp16 (bench, full-width synthetic weights);
# - 1080p H.264 (in1080.mp4, 240 frames) through nvh264dec ! flavrinterp ! cudadownload (CUDA
#   memory end to end) against a CPU decoder ! videoconvert ! flavrinterp (system memory;
#   openh264dec, or avdec_h264 where the bundle has libav), and nvh264dec ! cudadownload !
#   flavrinterp (GPU decode, host path), with the decoders alone: frames/s, host CPU time per
#   frame and PCIe bytes per frame (nvidia-smi dmon). The zero-copy runs set cuda-memory=true
#   (off by default); nvdec_cm_off is the zero-copy pipeline with it off (system memory);
# - one untimed zero-copy run with context debug: one CUDA context in the pipeline.
set -u
# shellcheck source=cudamem_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/cudamem_env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader
t0=$(date +%s)
step() { echo "=== $1 ($(( $(date +%s) - t0 )) s)"; }
step "nvcodec"
gst-inspect-1.0 nvcodec 2>&1 | grep -E "nvh26.(dec|enc)|cuda(upload|download)|features"
gst-inspect-1.0 flavrinterp >/dev/null || { echo "flavrinterp not found"; exit 1; }
step tests
$D/cuda_memory_caps --test-threads=1 2>&1 | tee "$OUT/caps.log" | grep -E "test |result|panicked"
$D/cuda_memory --test-threads=1 --nocapture 2>&1 | tee "$OUT/cuda_memory.log" |
  grep -E "test |result|panicked|differ|skipped|assert"
step "network only"
[ -e /tmp/synth.safetensors ] || $D/bench --write-synth /tmp/synth.safetensors
$D/bench --sizes 1920x1080 --precisions fp16 --runs 20 2>&1 | tee "$OUT/bench.log" | grep -v "^    "
step pipelines
M=/tmp/synth.safetensors
IN=$D/in1080.mp4
src="filesrc location=$IN ! qtdemux ! h264parse"
# Scene-cut detection off everywhere: it reads frames on the host, which the CUDA-memory path
# skips, so the paths are compared on the same work.
flavr="flavrinterp backend=cuda scene-threshold=0 model-location=$M"
# The zero-copy runs ask for CUDA memory (the property is off by default); the host-path runs
# keep the default (system memory, as on main).
flavr_cm="$flavr cuda-memory=true"
# measure NAME PIPELINE...: frames/s out, CPU ms per input frame, PCIe MB per input frame.
measure() {
  local name=$1; shift
  local log=$OUT/pipe_$name.log dmon=$OUT/dmon_$name.log
  nvidia-smi dmon -s t -d 1 >"$dmon" 2>&1 & local mon=$!
  GST_DEBUG=flavrinterp:4 python3 - "$log" "$@" <<'PY'
import resource, subprocess, sys, time
log = sys.argv[1]
t = time.time()
with open(log, "w") as f:
    rc = subprocess.run(["gst-launch-1.0", "-m"] + sys.argv[2:], stdout=f, stderr=subprocess.STDOUT).returncode
wall = time.time() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(log, "a") as f:
    f.write(f"\nRESULT rc={rc} wall={wall:.3f} cpu={r.ru_utime + r.ru_stime:.3f}\n")
PY
  kill $mon 2>/dev/null; wait $mon 2>/dev/null
  python3 - "$name" "$log" "$dmon" <<'PY'
import re, sys
name, log, dmon = sys.argv[1:]
text = open(log).read()
m = re.search(r"RESULT rc=(\d+) wall=([0-9.]+) cpu=([0-9.]+)", text)
rc, wall, cpu = int(m.group(1)), float(m.group(2)), float(m.group(3))
s = re.search(r'(\d+) frames in, (\d+) out', text.replace("\\", ""))
fin, fout = (int(s.group(1)), int(s.group(2))) if s else (240, 240)
rx = tx = 0.0
for line in open(dmon):
    p = line.split()
    if len(p) >= 3 and p[0].isdigit():
        rx += float(p[1]); tx += float(p[2])  # MB/s, one sample per second
errors = [l for l in text.splitlines() if "ERROR" in l or "WARN" in l and "flavrinterp" in l][:5]
print(f"{name}: rc {rc}, {fin} in, {fout} out, {fout / wall:.1f} frames/s out, "
      f"{1000 * cpu / fin:.2f} ms CPU per input frame, wall {wall:.1f} s, "
      f"PCIe rx {rx / fin:.2f} + tx {tx / fin:.2f} MB per input frame")
for l in errors: print("   ", l[:200])
PY
}
cpudec=openh264dec
gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 && cpudec=avdec_h264
echo "CPU decoder: $cpudec"
measure nvdec_only $src ! nvh264dec ! cudadownload ! fakesink sync=false
measure cpudec_only $src ! $cpudec ! fakesink sync=false
measure zero_copy $src ! nvh264dec ! $flavr_cm ! cudadownload ! fakesink sync=false
measure nvdec_host $src ! nvh264dec ! cudadownload ! $flavr ! fakesink sync=false
measure cpudec_host $src ! $cpudec ! videoconvert ! $flavr ! fakesink sync=false
measure zero_copy_again $src ! nvh264dec ! $flavr_cm ! cudadownload ! fakesink sync=false
measure nvdec_cm_off $src ! nvh264dec ! $flavr ! cudadownload ! fakesink sync=false
grep -hE "pipeline's CUDA context|through system memory|scene-cut detection is off" "$OUT"/pipe_zero_copy.log | cut -c1-220 | sort | uniq -c
grep -hoE "in video/x-raw[^,]*, out video/x-raw[^,]*" "$OUT"/pipe_zero_copy.log "$OUT"/pipe_cpudec_host.log | sort | uniq -c
step "one CUDA context (context debug, not timed)"
# Expect one "Created CUDA context" (nvh264dec's or cudadownload's), flavrinterp "found
# context ... in downstream query" and no "Peer access ... is not allowed".
GST_DEBUG=cudacontext:5,GST_CONTEXT:5,flavrinterp:4 gst-launch-1.0 $src ! nvh264dec ! \
  $flavr_cm ! cudadownload ! fakesink sync=false >"$OUT/context_debug.log" 2>&1
echo "rc $?"
grep -E "Created CUDA context|Peer access|found context|posting have context|need context|pipeline's CUDA context" \
  "$OUT/context_debug.log" | sed -E 's/^[^ ]+ +[0-9]+ +0x[0-9a-f]+ //' | cut -c1-200 | head -20
step "zero-copy pipeline script"
FLAVR_MODEL=$M bash $D/pipelines/cuda-zero-copy.sh "$IN" 2>&1 | tail -3
step done
