#!/usr/bin/env bash
# A live source at 30 fps interpolated to 30 x factor fps and shown.
# Usage: [NUM_BUFFERS=300] [WIDTH=320] [HEIGHT=240] [VIDEO_SINK=autovideosink]
#        [FLAVR_MODEL=...] [FLAVR_FACTOR=2] live-testsrc.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
sink=${VIDEO_SINK:-autovideosink}
# shellcheck disable=SC2046,SC2086 # the element and sink words are meant to split
launch videotestsrc is-live=true pattern=ball num-buffers="${NUM_BUFFERS:-300}" ! \
    "video/x-raw,format=I420,width=${WIDTH:-320},height=${HEIGHT:-240},framerate=30/1" ! \
    $(flavr_element) ! videoconvert ! $sink
