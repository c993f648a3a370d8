#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# The check set: every clip of tools/eval/clips.tsv through tools/eval/eval.sh (dup, blend,
# FFmpeg minterpolate, ours), the first 30 rebuilt frames each, and one table of all of them.
#
#   python3 -m tools.eval.make_clips --out out/clips     # once: fetch, verify, cut (63 frames)
#   BACKEND=cpu tools/eval/eval_set.sh [CLIPS_DIR]        # ours = the embedded model
#   MODEL=m.safetensors BACKEND=cpu tools/eval/eval_set.sh
#
# CLIPS_DIR defaults to out/clips (NAME.mkv for each clips.tsv row). Environment as eval.sh
# (MODEL, BACKEND, PRECISION, MINTERP, OURS, FLAVR_EVAL), plus:
#   OUT     output folder (out/evalset): NAME/{results.txt,per-frame.csv,crop.png} per clip,
#           table.md (markdown) and table.tsv (every number)
#   FRAMES  rebuilt frames per clip (30: frames 1..59)
#   ONLY    space-separated clip names to run (default: all)
# Evaluation only: these clips must never be used for training (issue 11).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
clips=${1:-out/clips}
out=${OUT:-out/evalset}
frames=${FRAMES:-30}
mkdir -p "$out"
if [ -z "${FLAVR_EVAL:-}" ] && [ ! -x "$here/bin/flavr-eval" ]; then
  root=$(cd "$here/../.." && pwd)
  (cd "$root" && cargo build --release --bin flavr-eval)
  export FLAVR_EVAL=${CARGO_TARGET_DIR:-$root/target}/release/flavr-eval
fi
names=$(awk -F'\t' 'NR > 1 { print $1 }' "$here/clips.tsv")
for name in ${ONLY:-$names}; do
  grep -q "^$name	" "$here/clips.tsv" || { echo "$name is not in clips.tsv" >&2; exit 1; }
  clip="$clips/$name.mkv"
  [ -f "$clip" ] || { echo "$clip missing: run tools/eval/make_clips.py --out $clips" >&2; exit 1; }
  echo "== $name"
  t0=$(date +%s)
  OUT="$out/$name" FRAMES=$frames "$here/eval.sh" "$clip" >"$out/$name.log" 2>&1 \
    || { echo "eval.sh failed on $name, see $out/$name.log" >&2; tail -5 "$out/$name.log" >&2; exit 1; }
  awk '/^on frames/ { exit } /^(dup|blend|minterpolate|ours) /' "$out/$name/results.txt"
  echo "   ($(($(date +%s) - t0)) s)"
done
# One table: a row per clip, PSNR and SSIM per method, ours - minterpolate.
python3 - "$here/clips.tsv" "$out" ${ONLY:-$names} <<'EOF'
import csv, os, sys
table, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
meta = {r["name"]: r for r in csv.DictReader(open(table), delimiter="\t")}
methods = ["dup", "blend", "minterpolate", "ours"]
rows = []
for n in names:
    res = {}
    path = os.path.join(out, n, "results.txt")
    for line in open(path):
        f = line.split()
        if len(f) == 4 and f[0] in methods and f[1].isdigit():
            res.setdefault(f[0], (int(f[1]), float(f[2]), float(f[3])))
        if line.startswith("on frames"):
            break
    rows.append((n, res))
with open(os.path.join(out, "table.tsv"), "w") as t:
    t.write("clip\tsize\tframes\t" + "\t".join(f"{m}_psnr\t{m}_ssim" for m in methods) + "\tours_minus_minterpolate\n")
    for n, res in rows:
        fr = next(iter(res.values()))[0] if res else 0
        cells = [f"{res[m][1]:.3f}\t{res[m][2]:.4f}" if m in res else "\t" for m in methods]
        d = f"{res['ours'][1] - res['minterpolate'][1]:+.3f}" if "ours" in res and "minterpolate" in res else ""
        t.write(f"{n}\t{meta[n]['size']}\t{fr}\t" + "\t".join(cells) + f"\t{d}\n")
lines = ["| clip | size | kind | frames | " + " | ".join(methods) + " | ours - minterpolate |",
         "|---" * (len(methods) + 5) + "|"]
for n, res in rows:
    fr = next(iter(res.values()))[0] if res else 0
    cells = [f"{res[m][1]:.2f} / {res[m][2]:.4f}" if m in res else "" for m in methods]
    d = f"**{res['ours'][1] - res['minterpolate'][1]:+.2f}**" if "ours" in res and "minterpolate" in res else ""
    lines.append(f"| {n} | {meta[n]['size']} | {meta[n]['kind']} | {fr} | " + " | ".join(cells) + f" | {d} |")
lines.append("")
lines.append("PSNR (dB) / SSIM, mean over the rebuilt frames 1, 3, ... of each clip.")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text, end="")
EOF
