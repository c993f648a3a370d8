"""Full-width check of the Rust CPU backend against the PyTorch reference (run on the GPU machine).

    python3 -m tools.reference.check_full --cli PATH/flavr-cli --frames FRAMES.rgb --size 1280x720 \
        [--n-out 1] [--out DIR]

Builds the released 2x architecture (42,061,571 parameters) with random weights, saves it as a
released-style checkpoint (zip container, `module.` keys, optimizer entry), takes four consecutive
real frames (raw RGB24, `--size` each, resized to the test sizes), and compares, at each size:
the Rust CPU backend (`flavr-cli run`), PyTorch float32 on the GPU (TF32 off), against PyTorch
float64 on the GPU. Prints max absolute error on the [0, 1] scale.
"""
import argparse
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from tools.reference import flavr_ref as fr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--n-out", type=int, default=1)
    ap.add_argument("--sizes", default="448x256,250x131")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    w, h = map(int, a.size.split("x"))
    raw = torch.frombuffer(bytearray(open(a.frames, "rb").read()), dtype=torch.uint8)
    frames = raw[: 4 * h * w * 3].reshape(4, h, w, 3).permute(3, 0, 1, 2).float() / 255  # [3,4,H,W]

    model = fr.init_random(fr.Flavr(n_out=a.n_out), seed=123)
    nparams = sum(p.numel() for p in model.parameters())
    ckpt = os.path.join("/tmp", f"full{a.n_out + 1}x.pth")
    torch.save(fr.released_checkpoint(model, epoch=1), ckpt)
    m64 = fr.Flavr(n_out=a.n_out).to(dev).double().eval()
    m64.load_state_dict(model.state_dict())
    m32 = fr.Flavr(n_out=a.n_out).to(dev).eval()
    m32.load_state_dict(model.state_dict())
    print(f"model: {nparams} parameters, checkpoint {os.path.getsize(ckpt) / 1e6:.1f} MB, device {dev}")

    rows = []
    for size in a.sizes.split(","):
        tw, th = map(int, size.split("x"))
        x = F.interpolate(frames, size=(th, tw), mode="area")[None].clamp(0, 1).contiguous()  # [1,3,4,h,w]
        with torch.no_grad():
            ref = torch.cat(fr.interpolate(m64, x.to(dev).double()), 0).cpu()
            y32 = torch.cat(fr.interpolate(m32, x.to(dev)), 0).cpu().double()
        inp = os.path.join("/tmp", f"in_{size}.safetensors")
        outp = os.path.join("/tmp", f"out_{size}.safetensors")
        save_file({"input": x}, inp)
        t0 = time.time()
        r = subprocess.run([a.cli, "run", "--model", ckpt, "--input", inp, "--output", outp],
                           capture_output=True, text=True)
        dt = time.time() - t0
        print(r.stdout.strip())
        if r.returncode != 0:
            print(r.stderr)
            sys.exit(1)
        rust = load_file(outp)["output"].double()
        e_rust = (rust - ref).abs().max().item()
        e_t32 = (y32 - ref).abs().max().item()
        rows.append((size, e_rust, e_t32, dt))
    print(f"{'size':>10} {'rust cpu fp32':>14} {'torch fp32':>12} {'cli s':>7}   (max abs error vs torch float64, [0,1] scale)")
    for size, e1, e2, dt in rows:
        print(f"{size:>10} {e1:14.3e} {e2:12.3e} {dt:7.1f}")
    ok = all(e1 < 1e-4 for _, e1, _, _ in rows)
    print("PASS" if ok else "FAIL", "(bound 1e-4)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
