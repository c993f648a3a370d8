#!/usr/bin/env bash
# Makes a short H.264/MP4 test video (a bouncing ball) to feed the other pipelines.
# Usage: make-test-video.sh OUT.mp4 [FRAMES=90] [WIDTH=320] [HEIGHT=240] [FPS=30]
set -euo pipefail
out=${1:?usage: make-test-video.sh OUT.mp4 [FRAMES] [WIDTH] [HEIGHT] [FPS]}
frames=${2:-90}
width=${3:-320}
height=${4:-240}
fps=${5:-30}
gst-launch-1.0 -q -e videotestsrc pattern=ball num-buffers="$frames" ! \
    "video/x-raw,format=I420,width=$width,height=$height,framerate=$fps/1" ! \
    x264enc speed-preset=veryfast ! mp4mux ! filesink location="$out"
