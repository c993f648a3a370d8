#!/usr/bin/env bash
# Decodes H.264 on the GPU and interpolates with no copy through the host: the frames stay in
# CUDA memory from nvh264dec through flavrinterp (which runs in the pipeline's CUDA context),
# and cudadownload brings the result back to system memory (for fakesink, or x264enc).
# Needs gst-plugins-bad's nvcodec (nvh264dec, cudadownload), the CUDA backend, and device-id
# on the GPU nvh264dec decodes on (GPU 0 by default for both). The element's `cuda-memory`
# property (off by default while the path is experimental) is set here.
# Usage: [FLAVR_MODEL=...] [FLAVR_FACTOR=2] cuda-zero-copy.sh IN.mp4 [OUT.mp4]
#   without OUT the frames go to fakesink and only the element's summary is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
FLAVR_BACKEND=${FLAVR_BACKEND:-cuda}
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
in=${1:?usage: cuda-zero-copy.sh IN.mp4 [OUT.mp4]}
out=${2:-}
# No capsfilter around flavrinterp: its caps offer CUDA memory once its engine is open in the
# pipeline's context, after gst-launch links the elements (a CUDA capsfilter would not link).
# With cuda-memory=true and nvcodec's neighbours, CUDA memory is negotiated on both pads.
if [ -z "$out" ]; then
    # shellcheck disable=SC2046 # the element words are meant to split
    launch filesrc location="$in" ! qtdemux ! h264parse ! nvh264dec ! \
        $(flavr_element) cuda-memory=true ! cudadownload ! fakesink sync=false
else
    # shellcheck disable=SC2046
    launch filesrc location="$in" ! qtdemux ! h264parse ! nvh264dec ! \
        $(flavr_element) cuda-memory=true ! cudadownload ! videoconvert ! \
        x264enc speed-preset=veryfast ! mp4mux ! filesink location="$out"
fi
