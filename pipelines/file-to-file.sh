#!/usr/bin/env bash
# Raises the frame rate of a video file: decode, interpolate, encode to H.264/MP4.
# Usage: [FLAVR_MODEL=...] [FLAVR_FACTOR=2] [FLAVR_BACKEND=auto] file-to-file.sh IN OUT.mp4
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pipelines/common.sh
. "$here/common.sh"
in=${1:?usage: file-to-file.sh IN OUT.mp4}
out=${2:?usage: file-to-file.sh IN OUT.mp4}
# shellcheck disable=SC2046 # the element words are meant to split
launch filesrc location="$in" ! decodebin ! videoconvert ! \
    $(flavr_element) ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! \
    filesink location="$out"
