"""Writes the committed test fixtures of tests/fixtures/ with the PyTorch reference.

    python3 -m tools.reference.make_fixtures tests/fixtures

- flavr2x_w8.{pth,legacy.pth,safetensors}: a 2x model with all widths / 8, the released key names
  (with `module.`), in the zip container, the legacy (pre-1.6) container and safetensors.
- flavr4x_w16.{pth,legacy.pth,safetensors}: a 4x-style model (encoder biases, 3 outputs), widths
  / 16, saved with a full Adam optimizer state like the released files (twice the weights' size,
  which the loader must skip); plus its weights as float16 and bfloat16 safetensors.
- golden2x.safetensors, golden4x.safetensors: `caseK.input` [1, 3, 4, H, W] in [0, 1] and
  `caseK.output` [n, 3, H, W] from `flavr_ref.interpolate`, in float64-accurate float32
  (computed in float64, stored as float32), at sizes that are and are not multiples of 8.
"""
import os
import sys

import torch
from safetensors.torch import save_file

from tools.reference import flavr_ref as fr


def smooth_frames(g, h, w, shift=(1.5, 0.7)):
    """Four frames of a smooth random pattern moving by `shift` pixels per frame, plus noise."""
    ys = torch.arange(h, dtype=torch.float64)[:, None]
    xs = torch.arange(w, dtype=torch.float64)[None, :]
    freq = torch.rand(3, 4, 2, generator=g, dtype=torch.float64) * 0.4 + 0.05
    phase = torch.rand(3, 4, generator=g, dtype=torch.float64) * 6.28
    frames = []
    for t in range(4):
        img = torch.zeros(3, h, w, dtype=torch.float64)
        for c in range(3):
            for k in range(4):
                fy, fx = freq[c, k]
                img[c] += torch.sin(fy * (ys - shift[1] * t) + fx * (xs - shift[0] * t) + phase[c, k])
        img = 0.5 + 0.12 * img + 0.03 * torch.randn(3, h, w, generator=g, dtype=torch.float64)
        frames.append(img.clamp(0, 1))
    return torch.stack(frames, 1)[None].to(torch.float32)  # [1, 3, 4, H, W]


def golden(model, sizes, seed):
    g = torch.Generator().manual_seed(seed)
    m64 = model.double().eval()
    out = {}
    with torch.no_grad():
        for k, (h, w) in enumerate(sizes):
            x = smooth_frames(g, h, w)
            ys = fr.interpolate(m64, x.double())
            out[f"case{k}.input"] = x.contiguous()
            out[f"case{k}.output"] = torch.cat(ys, 0).float().contiguous()  # [n, 3, H, W]
    model.float()
    return out


def save_all(model, stem, optimizer=None):
    ckpt = fr.released_checkpoint(model, optimizer, epoch=3)
    torch.save(ckpt, f"{stem}.pth")
    torch.save(ckpt, f"{stem}.legacy.pth", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{stem}.safetensors",
              metadata={"format": "pt", "arch": "flavr"})


def adam_state(model, seed):
    """A real Adam state (exp_avg, exp_avg_sq per parameter) from two training steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(seed)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        x = torch.rand(1, 3, 4, 16, 16, generator=g)
        loss = sum(y.abs().mean() for y in model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.load_state_dict(saved)  # keep the weights the golden outputs were made with
    return opt


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(0)

    m2 = fr.init_random(fr.Flavr(n_out=1, widths=(8, 16, 32, 64)), seed=2)
    save_all(m2, os.path.join(outdir, "flavr2x_w8"))
    save_file(golden(m2, [(48, 64), (37, 50), (8, 8), (5, 3)], seed=20), os.path.join(outdir, "golden2x.safetensors"))

    m4 = fr.init_random(fr.Flavr(n_out=3, widths=(4, 8, 16, 32)), seed=4)
    save_all(m4, os.path.join(outdir, "flavr4x_w16"), optimizer=adam_state(m4, seed=40))
    sd = m4.state_dict()
    for dt, name in [(torch.float16, "f16"), (torch.bfloat16, "bf16")]:
        save_file({k: v.to(dt).contiguous() for k, v in sd.items()}, os.path.join(outdir, f"flavr4x_w16.{name}.safetensors"))
    save_file(golden(m4, [(24, 40), (30, 21)], seed=40), os.path.join(outdir, "golden4x.safetensors"))

    for f in sorted(os.listdir(outdir)):
        print(f"{os.path.getsize(os.path.join(outdir, f)):>10}  {f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
