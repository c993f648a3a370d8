#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# On the GPU machine: the check clips of an eval bundle (tools/device/eval_bundle.sh, clips in
# DIR/clips/*.mp4, H.264 only: openh264dec is the bundle's decoder) through `flavr-eval` with the
# CUDA backend in float32 (the CPU backend's numbers to within its 93-96 dB agreement), for the
# embedded model and each MODEL file given (a .gz is unpacked first), the first FRAMES (30)
# rebuilt frames each, plus bigbuckbunny's 65:
#   bash tools/device/eval_models.sh DIR [MODEL...]
set -uo pipefail
dir=${1:?usage: eval_models.sh BUNDLE_DIR [MODEL...]}
shift
# shellcheck disable=SC1091
source "$dir/env.sh"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/lib64:$LD_LIBRARY_PATH
OUT=${OUT:-/tmp/out}
models=(embedded)
for m in "$@"; do
  case $m in
    *.gz) gunzip -c "$m" > "/tmp/$(basename "${m%.gz}")"; models+=("/tmp/$(basename "${m%.gz}")") ;;
    *) models+=("$m") ;;
  esac
done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for m in "${models[@]}"; do
  [ "$m" = embedded ] || sha256sum "$m"
  margs=(); [ "$m" = embedded ] || margs=(--model "$m")
  tag=$(basename "$m" .safetensors)
  for clip in "$dir"/clips/*.mp4; do
    name=$(basename "$clip" .mp4)
    for frames in ${FRAMES:-30} $([ "$name" = bigbuckbunny ] && echo 65); do
      t0=$(date +%s)
      echo "== $tag $name frames=$frames"
      flavr-eval --clip "$clip" --method dup --method blend --method ours --backend cuda \
        --precision fp32 --frames "$frames" "${margs[@]}" \
        --per-frame "$OUT/$tag-$name-$frames.csv" 2>&1 | grep -v "^$" | tail -6
      echo "   ($(( $(date +%s) - t0 )) s)"
    done
  done
done
