#!/usr/bin/env bash
# Stages the device call of issue 17 (CUDA memory) in $DEST (default .gpu-cm, git-ignored), to
# be named in the call's `carry`: the bench program (network-only time, synthetic weights),
# the GPU tests tests/cuda_memory*.rs and tests/cuda_scene.rs, the plugin without the embedded model, a GStreamer bundle
# with nvcodec (nvh264dec, cudaupload, cudadownload), videoparsersbad (h264parse) and openh264
# (openh264dec: the CPU decoder; libav's avdec_h264 pulls 200 MB of libraries into the bundle,
# past the carry's 64 MiB), the test fixtures, and a 1080p H.264 file made here (~6 MB).
# Run session10_cudamem.sh there.
# usage: tools/device/stage_cudamem.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
DEST=${DEST:-.gpu-cm}
FEATURES=${FEATURES:---no-default-features --features cuda}
# shellcheck disable=SC2086 # FEATURES is a list of words
cargo build --release $FEATURES --bin bench --lib
# shellcheck disable=SC2086
tests=$(cargo test --release $FEATURES --no-run --test cuda_memory --test cuda_memory_caps --test cuda_scene 2>&1 |
  sed -n 's/.*Executable tests\/\([a-z_]*\)\.rs (\(.*\))/\1 \2/p')
mkdir -p "$DEST/fixtures" "$DEST/plugin" "$DEST/tools"
cp "$CARGO_TARGET_DIR/release/bench" "$DEST/bench"
while read -r name path; do cp "$path" "$DEST/$name"; done <<<"$tests"
cp "$CARGO_TARGET_DIR/release/libgstflavrinterp.so" "$DEST/plugin/"
strip "$DEST"/bench "$DEST"/cuda_memory "$DEST"/cuda_memory_caps "$DEST"/cuda_scene "$DEST/plugin/libgstflavrinterp.so"
cp tests/fixtures/flavr2x_w8.safetensors "$DEST/fixtures/"
rm -rf "$DEST/tools/device"
cp -r tools/device "$DEST/tools/"
cp -r pipelines "$DEST/"
[ -e "$DEST/gst/env.sh" ] ||
  bash /work/shared/tools/gst-gpu-bundle.sh "$DEST/gst" nvcodec videoparsersbad openh264 >/dev/null
# 8 s of 1080p30 H.264 at 6 Mbit/s (noise upscaled from 480x270, so every frame changes and
# the decoder works), constrained-baseline profile (what openh264dec decodes).
[ -e "$DEST/in1080.mp4" ] ||
  gst-launch-1.0 -q videotestsrc num-buffers=240 pattern=snow ! \
    video/x-raw,width=480,height=270,framerate=30/1 ! videoscale ! \
    video/x-raw,width=1920,height=1080 ! x264enc speed-preset=faster bitrate=6000 pass=cbr ! \
    video/x-h264,profile=constrained-baseline ! h264parse ! mp4mux ! \
    filesink location="$DEST/in1080.mp4"
du -sh "$DEST" "$DEST"/* | sort -h | tail -8
