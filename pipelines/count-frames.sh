#!/usr/bin/env bash
# Decodes a video file and prints "FRAMES frames, framerate N/D, WxH".
# Usage: count-frames.sh FILE
set -euo pipefail
file=${1:?usage: count-frames.sh FILE}
log=$(mktemp)
gst-launch-1.0 -v filesrc location="$file" ! decodebin ! fakesink silent=false >"$log" 2>&1
frames=$(grep -c 'last-message = chain' "$log" || true)
caps=$(grep -o 'fakesink0.GstPad:sink: caps = video/x-raw[^;]*' "$log" | head -n1 || true)
fps=$(echo "$caps" | grep -o 'framerate=(fraction)[0-9/]*' | sed 's/.*)//')
w=$(echo "$caps" | grep -o 'width=(int)[0-9]*' | sed 's/.*)//')
h=$(echo "$caps" | grep -o 'height=(int)[0-9]*' | sed 's/.*)//')
rm -f "$log"
echo "$frames frames, framerate $fps, ${w}x${h}"
