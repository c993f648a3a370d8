#!/usr/bin/env bash
# End to end on a fresh machine: install what is needed, build the plugin in release mode, make
# a test video, raise its frame rate with flavrinterp into a real MP4, and print frames in/out,
# backend and speed.
#
# Settings (environment): FLAVR_MODEL (checkpoint), FLAVR_FACTOR (2), FLAVR_BACKEND (auto),
# FRAMES (50), WIDTH (320), HEIGHT (240), OUT_DIR (out).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup-debian.sh
if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

cargo build --release --lib
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
export GST_PLUGIN_PATH="$target_dir/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"

# FLAVR_MODEL empty: the model built into the plugin (our own trained 2x model, models/README.md).
export FLAVR_MODEL=${FLAVR_MODEL:-}
export FLAVR_FACTOR=${FLAVR_FACTOR:-2}
export FLAVR_BACKEND=${FLAVR_BACKEND:-auto}
out=${OUT_DIR:-out}
mkdir -p "$out"
echo "model: ${FLAVR_MODEL:-the embedded default model}, factor $FLAVR_FACTOR, backend $FLAVR_BACKEND"

gst-inspect-1.0 flavrinterp >/dev/null
pipelines/make-test-video.sh "$out/input.mp4" "${FRAMES:-50}" "${WIDTH:-320}" "${HEIGHT:-240}"
echo "input:  $out/input.mp4: $(pipelines/count-frames.sh "$out/input.mp4")"
pipelines/file-to-file.sh "$out/input.mp4" "$out/output.mp4"
echo "output: $out/output.mp4: $(pipelines/count-frames.sh "$out/output.mp4")"
