#!/usr/bin/env bash
# Session 5 training call (device, carry .gpu-train): checks that the codec libraries load on
# the GPU machine (tools/train/README.md: not yet run there), drops what does not load from the
# data mix (and says so), then runs the schedule's stage (tools/train/README.md "Proposed
# schedule") from the committed weights, Adam re-warmed.
#   bash tools/device/session5_train.sh MINUTES CYCLE_START TOTAL_STEPS LR MAX_MOTION DATA
set -u
m=$1 start=$2 total=$3 lr=$4 motion=$5 data=$6
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
avail=$(python3 -c "
from tools.train import codec
print('h264' if codec.available('h264') is None else 'no-h264', 'mpeg4' if codec.available('mpeg4') is None else 'no-mpeg4')
for c in ('h264', 'mpeg4'):
    r = codec.available(c)
    if r is not None:
        print('#', c, 'unavailable:', r)
" 2>&1)
echo "codecs: $avail"
case "$avail" in
  *no-h264*no-mpeg4*) data="$data,p_codec=0"; echo "no codec loads: p_codec=0" ;;
  *no-h264*) data="$data,codec_h264=0"; echo "no H.264: MPEG-4 part 2 only" ;;
esac
STATE=/root/flavr-state INIT=models/flavr2x-default.safetensors bash tools/device/train.sh "$m" \
  --videos .gpu-train/videos --cycle-start "$start" --warmup 100 --lr "$lr" --total-steps "$total" \
  --val-every 800 --max-motion "$motion" --data "$data" 2>&1 | grep -v "samples/s (" | grep -v "^-rw" | tail -25
