#!/usr/bin/env bash
# Builds the bench program and the GPU test binaries here and stages what a device call needs
# in $DEST (default /work/main/.gpu-cuda, git-ignored), to be named in the call's `carry`.
# usage: tools/device/stage.sh [FRAMES.rgb]    (raw 1280x720 RGB frames of bigbuckbunny.mp4)
# FEATURES="--no-default-features --features cuda" stages the test binaries and the plugin
# without the embedded model (21 MB less in each that links it; the tests needing it skip, and
# the pipeline timing names its model file).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}
DEST=${DEST:-/work/main/.gpu-cuda}
cargo build --release --bin bench
# The GPU tests (cuda_overlap: windows in flight; cuda_scene: scene-cut sums on the GPU), and tests/faults.rs (its GPU fault-injection tests run the element there).
tests=$(cargo test --release ${FEATURES:-} --no-run --test cuda_parity --test cuda_pixels --test cuda_cpu_parity --test cuda_errors --test cuda_dispatch --test cuda_overlap --test cuda_scene --test faults 2>&1 | sed -n 's/.*Executable tests\/\([a-z_]*\)\.rs (\(.*\))/\1 \2/p')
mkdir -p "$DEST/tools" "$DEST/fixtures"
cp "$CARGO_TARGET_DIR/release/bench" "$DEST/bench"
while read -r name path; do cp "$path" "$DEST/$name"; done <<<"$tests"
strip "$DEST"/bench "$DEST"/cuda_* "$DEST"/faults
cp tests/fixtures/*.safetensors "$DEST/fixtures/"
rm -rf "$DEST/tools"
mkdir -p "$DEST/tools"
cp -r tools/__init__.py tools/bench tools/reference tools/train tools/device "$DEST/tools/"
# The element for the pipeline timing: the plugin and a GStreamer runtime (no GStreamer there).
cargo build --release ${FEATURES:-} --lib
mkdir -p "$DEST/plugin"
cp "$CARGO_TARGET_DIR/release/libgstflavrinterp.so" "$DEST/plugin/"
strip "$DEST/plugin/libgstflavrinterp.so"
[ -e "$DEST/gst/env.sh" ] || bash /work/shared/tools/gst-gpu-bundle.sh "$DEST/gst" >/dev/null
if [ -n "${1:-}" ] && [ ! -e "$DEST/frames.rgb.gz" ]; then
  head -c $((8 * 1280 * 720 * 3)) "$1" | gzip -1 > "$DEST/frames.rgb.gz"
fi
du -sh "$DEST"
