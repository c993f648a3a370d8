"""Look at synthetic clips: a PNG sheet, one clip per row (inputs 0..3 with the target between
inputs 1 and 2, then |target - mean(inputs 1, 2)| x4), and the motion of each clip.

    python -m tools.train.preview --photos .gpu-train/photos/train --out /tmp/clips.png --n 6
"""
import argparse

import torch

from tools.train.data import ClipGenerator, PhotoBank


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--blur", action="store_true", help="force a motion-blurred batch")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from PIL import Image

    bank = PhotoBank(args.photos, "cpu")
    gen = ClipGenerator(bank, crop=args.crop)
    if args.blur:
        gen.p_blur = 1.0
    x, y, info = gen.batch(args.n, args.seed)
    rows = []
    for i in range(args.n):
        f = [x[i, :, k] for k in range(4)]
        blend = (f[1] + f[2]) / 2
        err = ((y[i] - blend).abs() * 4).clamp(0, 1)
        rows.append(torch.cat([f[0], f[1], y[i], f[2], f[3], err], 2))
        mse = ((y[i] - blend) ** 2).mean().item()
        print(f"clip {i}: motion {info['motion'][i]:.1f} px, layers {int(info['layers'][i])}, "
              f"blend PSNR {10 * torch.log10(torch.tensor(1 / max(mse, 1e-10))).item():.2f} dB")
    sheet = torch.cat(rows, 1)
    a = (sheet.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(a).save(args.out)
    print(f"blur batch: {info['blur']}; wrote {args.out}")


if __name__ == "__main__":
    main()
