"""What FP8 (E4M3) convolutions would cost in accuracy (issue 12: ship `precision=fp8` only at
PSNR >= 45 dB against fp32 on real frames), measured before any FP8 engine exists: the reference
network in float32 on real frames, with the inputs and weights of chosen convolutions rounded to
float8 e4m3 (per-tensor scale for the activations, per-output-channel scale for the weights, the
way an FP8 convolution would see them) and everything else in float32. Runs on the CPU or a GPU.

    python3 -m tools.bench.probe_fp8 --model models/flavr2x-default.safetensors \
        --frames FILE.rgb --frame-size WxH [--windows 4] [--device cpu]

FILE.rgb: raw rgb24 frames (e.g. `ffmpeg -i clip.mp4 -frames:v 8 -f rawvideo -pix_fmt rgb24
FILE.rgb`). Prints the PSNR (8-bit rounded output, and float) of each quantisation set against
float32, averaged over the windows.
"""
import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.reference import flavr_ref as fr

E4M3_MAX = 448.0


def q8(x, dims):
    """x rounded to e4m3 with a scale per slice over `dims` (amax maps to the largest value)."""
    amax = x.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) if dims else x.abs().max().clamp_min(1e-12)
    s = E4M3_MAX / amax
    return (x * s).to(torch.float8_e4m3fn).to(x.dtype) / s


class Fp8Conv(nn.Module):
    """A Conv3d / ConvTranspose3d whose input (per tensor) and weights (per output channel) pass
    through e4m3 first."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        xq = q8(x, None)
        if isinstance(c, nn.ConvTranspose3d):
            wq = q8(c.weight, (0, 2, 3, 4))  # [in, out, ...]: per output channel
            return F.conv_transpose3d(xq, wq, c.bias, c.stride, c.padding, c.output_padding)
        wq = q8(c.weight, (1, 2, 3, 4))
        return F.conv3d(xq, wq, c.bias, c.stride, c.padding)


def quantise(model, prefixes):
    """Replaces the 3-D convs whose qualified names start with one of `prefixes` (SE gates'
    1x1x1 convs left alone); returns how many."""
    n = 0
    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            full = f"{name}.{cname}" if name else cname
            if (isinstance(child, (nn.Conv3d, nn.ConvTranspose3d)) and "attn_layer" not in full
                    and any(full.startswith(p) for p in prefixes)):
                setattr(mod, cname, Fp8Conv(child))
                n += 1
    return n


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


SETS = {
    "layer4": ["encoder.layer4"],
    "layer4+d0": ["encoder.layer4", "decoder.0"],
    "layer3+layer4+d0": ["encoder.layer3", "encoder.layer4", "decoder.0"],
    "layer3+layer4+d0+d1": ["encoder.layer3", "encoder.layer4", "decoder.0", "decoder.1"],
    "every 3-D conv": ["encoder", "decoder"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--frame-size", required=True)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    from tools.train.export import model_from_state_dict
    from safetensors.torch import load_file

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    w, h = (int(v) for v in a.frame_size.split("x"))
    raw = np.fromfile(a.frames, dtype=np.uint8)
    n = raw.size // (3 * w * h)
    frames = raw[: n * 3 * w * h].reshape(n, h, w, 3)
    windows = min(a.windows, n - 3)
    if windows < 1:
        raise SystemExit(f"{a.frames}: {n} frames of {w}x{h}, at least 4 are needed")
    names = list(dict.fromkeys(k.split(".", 1)[0] for k in load_file(a.model)))
    print(f"model {a.model} ({', '.join(names)}), {windows} windows of {w}x{h}, {a.device}", flush=True)
    outs = {}
    for label, prefixes in [("fp32", [])] + list(SETS.items()):
        model, _ = model_from_state_dict(load_file(a.model))
        model = model.float().eval()
        k = quantise(model, prefixes)
        model = model.to(a.device)
        res = []
        with torch.no_grad():
            for i in range(windows):
                x = torch.from_numpy(frames[i:i + 4].astype(np.float32) / 255.0)
                x = x.permute(3, 0, 1, 2)[None].to(a.device)
                y = torch.cat(fr.interpolate(model, x), 0).clamp(0, 1).cpu().numpy()
                res.append(y)
        outs[label] = res
        if label == "fp32":
            print(f"{'convs in e4m3':>22} {'n':>3} {'PSNR 8-bit':>11} {'PSNR float':>11}", flush=True)
            continue
        p8 = np.mean([psnr(np.round(r * 255) / 255, np.round(f * 255) / 255)
                      for r, f in zip(res, outs["fp32"])])
        pf = np.mean([psnr(r, f) for r, f in zip(res, outs["fp32"])])
        print(f"{label:>22} {k:>3} {p8:11.2f} {pf:11.2f}", flush=True)


if __name__ == "__main__":
    main()
