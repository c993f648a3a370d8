"""How fast the data knobs are: the codec's CPU time per clip, and whole batches per second.

    python -m tools.train.bench_data [--crop 256] [--n 24] [--device cpu|cuda] [--batches 3]

1. Codec: CPU seconds (thread time, so other load on the machine does not count) per clip for
   each codec setting the generator draws, full-rate (7 frames) and half-rate (4 frames), on
   natural-looking content (a smooth random image panning 3 px per frame plus fine texture).
   The rate a machine keeps up is about cores / (CPU seconds per clip).
2. Batches: ClipGenerator.batch samples/s with the default knobs and with the proposed ones
   (synthetic photos; on the GPU machine pass --photos for the real ones).
"""
import argparse
import os
import time

import numpy as np
import torch

from tools.train import codec
from tools.train.data import X264_PRESETS, ClipGenerator, PhotoBank


def content(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24, generator=g), size=(size + 40, size + 40 + 3 * n),
                                          mode="bicubic", align_corners=False)
    big = (big + 0.08 * torch.rand(big.shape, generator=g)).clamp(0, 1)
    out = []
    for t in range(n):
        f = (big[0, :, 20:20 + size, 20 + 3 * t:20 + 3 * t + size] * 255).round().byte().numpy()
        out.append((f[0].copy(), np.ascontiguousarray(f[1, ::2, ::2]), np.ascontiguousarray(f[2, ::2, ::2])))
    return out


def codec_cost(size, reps):
    rows = []
    for frames in (7, 4):
        fr = content(frames, size)
        settings = [("h264", {"crf": 27.0, "preset": p, "bframes": 2}) for p in X264_PRESETS]
        settings += [("mpeg4", {"qscale": 5.0, "bframes": 1})]
        for name, opts in settings:
            codec.roundtrip_one(fr, name, **opts)  # warm
            t0 = time.thread_time()
            for _ in range(reps):
                codec.roundtrip_one(fr, name, **opts)
            dt = (time.thread_time() - t0) / reps
            rows.append((frames, name, opts.get("preset", ""), dt))
            print(f"codec {name:5s} {opts.get('preset', ''):9s} {frames} frames {size}px: {dt * 1000:6.1f} ms CPU per clip",
                  flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--photos", default=None, help="a photo folder (default: synthetic images)")
    ap.add_argument("--skip-batches", action="store_true")
    args = ap.parse_args()
    rows = codec_cost(args.crop, args.reps)
    h264 = [r[3] for r in rows if r[1] == "h264" and r[0] == 7]
    mp4 = [r[3] for r in rows if r[1] == "mpeg4" and r[0] == 7]
    mix = 0.7 * (0.7 * np.mean(h264) + 0.3 * np.mean(mp4)) + 0.3 * np.mean(
        [0.7 * np.mean([r[3] for r in rows if r[1] == "h264" and r[0] == 4]) + 0.3 * [r[3] for r in rows if r[1] == "mpeg4" and r[0] == 4][0]])
    print(f"mean over the drawn mix (70% H.264 over 4 presets, 30% MPEG-4; 70% full-rate): {mix * 1000:.1f} ms CPU "
          f"per codec clip -> {1 / mix:.0f} codec clips/s per core")
    if args.skip_batches:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    if args.photos:
        bank = PhotoBank(args.photos, args.device)
    else:
        g = torch.Generator().manual_seed(0)
        ims = [(torch.rand(3, 720, 960, generator=g) * 255).byte() for _ in range(4)]
        bank = PhotoBank(None, args.device, images=ims)
    for label, knobs in (("defaults", {}),
                         ("proposed", dict(p_codec=0.5, p_parallax=0.3, p_layer_warp=0.3, p_light=0.2, p_small=0.15,
                                           p_compress=0.0, p_noise=0.2, max_noise=0.01))):
        gen = ClipGenerator(bank, crop=args.crop, **knobs)
        gen.batch(args.n, seed=0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.time()
        for s in range(1, args.batches + 1):
            gen.batch(args.n, seed=s)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.time() - t0
        print(f"batches {label}: {args.n * args.batches / dt:.1f} samples/s on {args.device} "
              f"({dt / args.batches:.2f} s per batch of {args.n})", flush=True)


if __name__ == "__main__":
    main()
