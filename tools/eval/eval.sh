#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Interpolation quality on a real clip: keep the even frames, rebuild the odd ones, PSNR/SSIM.
#
#   tools/eval/eval.sh [CLIP]              # dup, blend, FFmpeg minterpolate, ours (default model)
#   MODEL=FLAVR_2x.pth tools/eval/eval.sh  # ours with another checkpoint
#
# CLIP defaults to /work/data/bigbuckbunny.mp4. Environment:
#   MODEL      checkpoint for `ours` (.safetensors or .pth); unset: the model built into the
#              plugin; OURS=0: no `ours` row
#   BACKEND    auto | cuda | cpu (auto)        PRECISION  fp16 | fp32 | bf16 (fp16)
#   FRAMES     evaluate only the first N rebuilt frames (all)
#   OUT        output folder (out/eval): results.txt, per-frame.csv, crop.png
#   KEEP       1: keep OUT/tmp (even.rgb, minterpolate.mkv)
#   CROP_FRAME the rebuilt frame of the picture (default: the one blend does worst on)
#   MINTERP    1: run FFmpeg minterpolate (default when ffmpeg is installed); 0: skip
#   FLAVR_EVAL the flavr-eval binary (default: bin/flavr-eval next to this script in a bundle,
#              else built here with cargo)
# minterpolate gets exactly the RGB even frames that `ours` gets (raw rgb24 at half the clip's
# rate) and writes lossless FFV1 (gbrp); one clone of the last even frame is appended (tpad) so
# that it makes the last odd frame too (without it FFmpeg 5.1 stops one output frame early; the
# earlier frames are the same either way). See notes/eval.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
clip=${1:-/work/data/bigbuckbunny.mp4}
[ -e "$clip" ] || { echo "usage: eval.sh CLIP (no clip at $clip)" >&2; exit 2; }
out=${OUT:-out/eval}
mkdir -p "$out"

if [ -n "${FLAVR_EVAL:-}" ]; then
  eval_bin=$FLAVR_EVAL
elif [ -x "$here/bin/flavr-eval" ]; then
  eval_bin=$here/bin/flavr-eval
else
  root=$(cd "$here/../.." && pwd)
  (cd "$root" && cargo build --release --bin flavr-eval)
  eval_bin=${CARGO_TARGET_DIR:-$root/target}/release/flavr-eval
fi

args=(--clip "$clip" --method dup --method blend)
minterp=${MINTERP:-$(command -v ffmpeg >/dev/null && echo 1 || echo 0)}
if [ "$minterp" = 1 ]; then
  # 1. The even frames as raw RGB (flavr-eval prints their size and rate), in a scratch folder
  #    (182 MB for bigbuckbunny; removed at the end unless KEEP=1).
  tmp="$out/tmp"
  mkdir -p "$tmp"
  info=$("$eval_bin" --clip "$clip" --frames 1 --method dup --write-even "$tmp/even.rgb" 2>/dev/null)
  re='s/^wrote .* rgb24 \([0-9]*x[0-9]*\) .*(rate \([0-9/]*\))$/'
  size=$(sed -n "${re}\1/p" <<<"$info")
  rate=$(sed -n "${re}\2/p" <<<"$info")
  [ -n "$size" ] && [ -n "$rate" ] || { echo "cannot read size/rate from: $info" >&2; exit 1; }
  # 2. FFmpeg minterpolate from the even frames, at the clip's rate, lossless.
  mi="$tmp/minterpolate.mkv"
  ffmpeg -nostdin -v error -y -f rawvideo -pix_fmt rgb24 -video_size "$size" -framerate "$rate" \
    -i "$tmp/even.rgb" \
    -vf "tpad=stop_mode=clone:stop=1,minterpolate=fps=$rate*2:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1,format=rgb24" \
    -c:v ffv1 -pix_fmt gbrp "$mi"
  echo "minterpolate: $(ffmpeg -version | head -1)"
  args+=(--method "minterpolate=file:$mi")
else
  echo "minterpolate: skipped (no ffmpeg, or MINTERP=0)"
fi

# 3. Ours through the element.
if [ "${OURS:-1}" = 1 ]; then
  args+=(--method ours --backend "${BACKEND:-auto}" --precision "${PRECISION:-fp16}")
  [ -n "${MODEL:-}" ] && args+=(--model "$MODEL")
fi
[ -n "${FRAMES:-}" ] && args+=(--frames "$FRAMES")
[ -n "${CROP_FRAME:-}" ] && args+=(--crop-frame "$CROP_FRAME")
"$eval_bin" "${args[@]}" --per-frame "$out/per-frame.csv" --png "$out/crop.png" \
  | tee "$out/results.txt"

# 4. The same rows on frames 1..127 only: our FFmpeg-measured baselines (minterpolate without
#    the padding frame) were averaged over those 64 frames.
awk -F, 'NR > 1 && $2 <= 127 { n[$1]++; p[$1] += $3; s[$1] += $4; if (!($1 in o)) o[$1] = ++k }
  END { if (k) printf "\non frames 1..127 only:\n%-16s %6s %10s %8s\n", "method", "frames", "PSNR (dB)", "SSIM";
        for (m in o) r[o[m]] = m;
        for (i = 1; i <= k; i++) printf "%-16s %6d %10.3f %8.4f\n", r[i], n[r[i]], p[r[i]] / n[r[i]], s[r[i]] / n[r[i]] }' \
  "$out/per-frame.csv" | tee -a "$out/results.txt"
[ "${KEEP:-0}" = 1 ] || rm -rf "$out/tmp"
