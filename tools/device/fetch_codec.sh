#!/usr/bin/env bash
# Puts libx264 (H.264 encoder for tools/train/codec.py) into .gpu-train/codec/, to be carried to
# the GPU machine with .gpu-train (2.2 MB; it needs only libc, libm, libpthread, glibc >= 2.17).
#
#   bash tools/device/fetch_codec.sh [DIR]        # DIR defaults to .gpu-train/codec
#
# (env.sh points FLAVR_CODEC_DIR there; on other machines set it, or FLAVR_X264, yourself)
#
# Source: the PyAV wheel for CPython 3.12 manylinux_2_28 x86_64 from PyPI (downloaded with pip,
# not installed), file av.libs/libx264-*.so.165 (x264 core 165, GPL-2.0-or-later; used as a tool
# to make training data, nothing of it goes into the plugin). Both sha256 are checked. The
# decoders (H.264, MPEG-4 part 2) and the MPEG-4 encoder come from the libavcodec that
# opencv-python-headless bundles, already on the GPU machine.
set -euo pipefail
dir=${1:-.gpu-train/codec}
AV_VERSION=19.0.2
WHEEL=av-$AV_VERSION-cp312-abi3-manylinux_2_28_x86_64.whl
WHEEL_SHA=9c1da7aad0fa6c13b4a5c1e7985be0d13f8526a96284573acaf3d55ead6d3fe8
LIB=av.libs/libx264-d6533a8d.so.165
LIB_SHA=d160fece833d838690a21850fb11aa0cc2b63e5b6b99d5f5f7e4dfc7a969a874
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 "av==$AV_VERSION" -d "$tmp"
echo "$WHEEL_SHA  $tmp/$WHEEL" | sha256sum -c --quiet
python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])" \
  "$tmp/$WHEEL" "$LIB" "$tmp/x"
echo "$LIB_SHA  $tmp/x/$LIB" | sha256sum -c --quiet
mkdir -p "$dir"
cp "$tmp/x/$LIB" "$dir/"
echo "$dir/$(basename "$LIB"): $(stat -c %s "$dir/$(basename "$LIB")") bytes, sha256 ok"
