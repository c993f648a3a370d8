#!/usr/bin/env bash
# The element in a real pipeline on the GPU machine (from the staged folder, see stage.sh):
#   videotestsrc ! 1920x1080 RGB ! queue ! flavrinterp backend=cuda ! fakesink
# with the full-width 2x network (synthetic weights written by `bench --write-synth`). Prints the
# element's stats and the rate of new frames, to compare with `bench`'s network-only time.
# usage: pipeline.sh [FRAMES] [PRECISIONS] [FORMATS]
set -u
cd "$(dirname "$0")/../.."
frames=${1:-300}
precisions=${2:-fp16}
formats=${3:-RGB}
# shellcheck disable=SC1091
source gst/env.sh
export GST_PLUGIN_PATH=$PWD/plugin
[ -e /tmp/synth.safetensors ] || ./bench --write-synth /tmp/synth.safetensors
gst-inspect-1.0 flavrinterp >/dev/null || { echo "flavrinterp not found"; exit 1; }
for prec in ${precisions//,/ }; do
  for fmt in ${formats//,/ }; do
    log=/tmp/pipe_${prec}_${fmt}.log
    gst-launch-1.0 -m videotestsrc num-buffers="$frames" ! \
      "video/x-raw,format=$fmt,width=1920,height=1080,framerate=30/1" ! queue max-size-buffers=8 ! \
      flavrinterp backend=cuda precision="$prec" model-location=/tmp/synth.safetensors ! \
      fakesink sync=false >"$log" 2>&1
    summary=$(grep -o 'summary=(string)"[^"]*"' "$log" | head -1)
    [ -n "$summary" ] || { echo "$prec $fmt: no stats"; tail -20 "$log"; continue; }
    echo "$prec $fmt: $summary"
    echo "$summary" | python3 -c '
import re, sys
s = sys.stdin.read().replace(chr(92), "")
fin, fout = map(int, re.search(r"(\d+) frames in, (\d+) out", s).groups())
wall = float(re.search(r"([0-9.]+) s since the first frame", s).group(1))
print(f"pipeline: {fout / wall:.2f} output frames/s, {(fout - fin) / wall:.2f} new frames/s, "
      f"{1000 * wall / (fout - fin):.2f} ms per new frame")'
  done
done
