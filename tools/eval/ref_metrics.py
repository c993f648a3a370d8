#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Independent reference for flavr-eval's protocol (FFmpeg + numpy + torch, no GStreamer).

Decodes the clip with FFmpeg, makes RGB either with FFmpeg's own conversion (--rgb ffmpeg:
`-pix_fmt rgb24`, swscale defaults) or with the exact BT.601 limited-range formula from the
decoded yuv420p planes (--rgb exact: what flavr-eval does for untagged 4:2:0 video), and
computes per rebuilt odd frame PSNR (RGB, peak 255) and SSIM (11x11 Gaussian, sigma 1.5,
valid positions, mean over R, G, B) for dup, blend and optional raw rgb24 files.

  /opt/torchenv/bin/python -m tools.eval.ref_metrics CLIP [--rgb exact|ffmpeg]
      [--file LABEL=PATH.rgb]... [--frames N] [--per-frame OUT.csv] [--write-even OUT.rgb]
      [--no-ssim]

Reproducing our FFmpeg-measured baselines (FFmpeg's RGB, minterpolate fed raw rgb24):
  ref_metrics.py CLIP --rgb ffmpeg --write-even even-ff.rgb --no-ssim
  ffmpeg -f rawvideo -pix_fmt rgb24 -video_size 1280x720 -framerate 25/2 -i even-ff.rgb \
    -vf minterpolate=fps=25:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1 \
    -f rawvideo -pix_fmt rgb24 mi-ff.rgb
  ref_metrics.py CLIP --rgb ffmpeg --file minterpolate=mi-ff.rgb --no-ssim
"""
import argparse
import json
import subprocess

import numpy as np
import torch
import torch.nn.functional as F


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "json", path],
        check=True, capture_output=True).stdout
    s = json.loads(out)["streams"][0]
    return s["width"], s["height"]


def decode(path, w, h, rgb):
    fmt = "rgb24" if rgb == "ffmpeg" else "yuv420p"
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", fmt, "-"],
        check=True, capture_output=True).stdout
    if rgb == "ffmpeg":
        return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    a = np.frombuffer(raw, np.uint8).reshape(-1, h * w * 3 // 2)
    n = a.shape[0]
    y = a[:, :h * w].reshape(n, h, w).astype(np.float64)
    u = a[:, h * w:h * w * 5 // 4].reshape(n, h // 2, w // 2).astype(np.float64)
    v = a[:, h * w * 5 // 4:].reshape(n, h // 2, w // 2).astype(np.float64)
    u = u.repeat(2, 1).repeat(2, 2)
    v = v.repeat(2, 1).repeat(2, 2)
    kr, kb = 0.299, 0.114
    y = (y - 16) * 255 / 219
    u = (u - 128) * 255 / 224
    v = (v - 128) * 255 / 224
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.floor(np.stack([r, g, b], -1) + 0.5), 0, 255).astype(np.uint8)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


_g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
_g = _g / _g.sum()
_gh = _g.view(1, 1, 1, 11).expand(3, 1, 1, 11).contiguous()
_gv = _g.view(1, 1, 11, 1).expand(3, 1, 11, 1).contiguous()


def ssim(a, b):
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[None]
    # the 11x11 Gaussian as two separable passes, valid positions only
    f = lambda t: F.conv2d(F.conv2d(t, _gh, groups=3), _gv, groups=3)
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return m.mean(dim=(2, 3)).mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("--rgb", choices=["exact", "ffmpeg"], default="exact")
    ap.add_argument("--file", action="append", default=[], help="LABEL=PATH (raw rgb24)")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--per-frame")
    ap.add_argument("--write-even")
    ap.add_argument("--no-ssim", action="store_true", help="PSNR only (SSIM here is slow)")
    args = ap.parse_args()
    w, h = probe(args.clip)
    t = decode(args.clip, w, h, args.rgb)
    n = len(t)
    m_all = (n - 1) // 2
    m = min(args.frames or m_all, m_all)
    if args.write_even:
        t[0:2 * m_all + 1:2].tofile(args.write_even)
    methods = {
        "dup": lambda k: t[k - 1],
        "blend": lambda k: ((t[k - 1].astype(np.uint16) + t[k + 1] + 1) >> 1).astype(np.uint8),
    }
    for spec in args.file:
        label, path = spec.split("=", 1)
        f = np.fromfile(path, np.uint8).reshape(-1, h, w, 3)
        methods[label] = lambda k, f=f: f[k] if k < len(f) else None
    rows = []
    print(f"{n} frames {w}x{h}, rgb {args.rgb}, rebuilt {m}")
    for label, get in methods.items():
        per = []
        for j in range(m):
            k = 2 * j + 1
            r = get(k)
            if r is not None:
                per.append((k, psnr(r, t[k]), float("nan") if args.no_ssim else ssim(r, t[k])))
        rows += [(label, *p) for p in per]
        print(f"{label:<16} {len(per):>6} {np.mean([p[1] for p in per]):>10.3f} "
              f"{np.mean([p[2] for p in per]):>8.4f}")
    if args.per_frame:
        with open(args.per_frame, "w") as fh:
            fh.write("method,frame,psnr,ssim\n")
            for r in rows:
                fh.write(f"{r[0]},{r[1]},{r[2]:.4f},{r[3]:.6f}\n")


if __name__ == "__main__":
    main()
