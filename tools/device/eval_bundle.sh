#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Packs flavr-eval and a GStreamer runtime that decodes the clip (MP4/H.264) into DIR, for a
# machine without GStreamer (the GPU machine):
#   tools/device/eval_bundle.sh DIR [libav]     # here (Debian 12 with GStreamer); about 42 MB
#   source DIR/env.sh && BACKEND=cuda DIR/eval.sh DIR/bigbuckbunny.mp4   # MODEL=M: other weights
# (the clip, $CLIP or /work/data/bigbuckbunny.mp4, is copied in; there is no ffmpeg there, so
# eval.sh leaves minterpolate out)
#   source DIR/env.sh && DIR/bin/flavr-eval --clip CLIP --method ours --model M --backend cuda
# Besides /work/shared/tools/gst-gpu-bundle.sh's defaults (coreelements, app, videoconvertscale,
# isomp4 for qtdemux, matroska, png, ...) decoding needs decodebin (playback), typefind
# (typefindfunctions), h264parse (videoparsersbad) and an H.264 decoder: openh264dec (openh264,
# 2 MB with libopenh264; on bigbuckbunny.mp4 its frames are bit-identical to avdec_h264's). With
# `libav` the bundle also has gst-libav (avdec_h264, avdec_ffv1 for the FFmpeg output, every
# codec): 226 MB instead of about 40, too much for a device call's 64 MiB carry.
# flavr-eval registers flavrinterp itself: the plugin library is not needed.
set -euo pipefail
out=${1:?usage: tools/device/eval_bundle.sh DIR [libav]}
extra=(openh264)
[ "${2:-}" = libav ] && extra+=(libav)
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
cargo build --release --bin flavr-eval
bash /work/shared/tools/gst-gpu-bundle.sh "$out" playback typefindfunctions videoparsersbad "${extra[@]}"
cp "$CARGO_TARGET_DIR/release/flavr-eval" "$out/bin/"
strip "$out/bin/flavr-eval"
# the libraries flavr-eval itself links (libgstreamer, libgstvideo, ...) and their needs
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread|librt\.so|libresolv)'
ldd "$out/bin/flavr-eval" | awk '/=> \//{print $1" "$3}' | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
done
cp tools/eval/eval.sh "$out/"
clip=${CLIP:-/work/data/bigbuckbunny.mp4}
[ -e "$clip" ] && cp "$clip" "$out/"
du -sh "$out" | cut -f1 | sed 's/^/bundle with flavr-eval: /'
