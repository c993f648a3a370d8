#!/usr/bin/env bash
# Plays a file through playbin with flavrinterp as its video filter.
# Usage: [VIDEO_SINK=autovideosink] [FLAVR_MODEL=...] [FLAVR_FACTOR=2] playbin-filter.sh FILE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
file=${1:?usage: playbin-filter.sh FILE}
uri="file://$(realpath "$file")"
sink=${VIDEO_SINK:-autovideosink}
launch playbin uri="$uri" video-filter="videoconvert ! $(flavr_element)" \
    video-sink="videoconvert ! $sink" audio-sink=fakesink
