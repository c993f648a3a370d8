"""Writes the small extra fixtures of the checkpoint-loader tests (tests/checkpoint*.rs).

    /opt/torchenv/bin/python -m tools.reference.make_loader_fixtures tests/fixtures

- tiny_mixed{.pth,.legacy.pth,.p4.pth,.p4.legacy.pth,.p5.pth,.p5.legacy.pth}: a bare state_dict
  (no wrapper dict) of odd tensors in both PyTorch containers and pickle protocols 2, 4 and 5:
  float32/float16/bfloat16 tensors, views that share a storage (with a storage offset, transposed,
  strided, broadcast with stride 0), a scalar, an empty tensor, an nn.Parameter, and float64 and
  int64 tensors (which the loader must name as unreadable dtypes). Protocol 5 holds a plain dict,
  the others an OrderedDict.
- tiny_mixed.expect.safetensors: every float tensor of tiny_mixed, made contiguous and converted
  to float32 by PyTorch: what the loader must read.
- tiny_mixed.deflate.pth: tiny_mixed.pth re-zipped with deflate (PyTorch stores entries; the
  loader reads stored entries only and must say so).
- flavr2x_w32.safetensors: a 2x model with widths (2, 4, 8, 16) (no `module.` prefix).
- flavr2x_w32.bare.pth: the same model's own `model.state_dict()` (with its `_metadata`, which
  pickles as a BUILD), saved bare with pickle protocol 4.
- flavr2x_w32_extra.pth: the released layout with one extra key `module.extra.weight`.
- flavr2x_w32_f64.legacy.pth: the released layout with `module.outconv.1.bias` as float64.
"""
import collections
import os
import sys
import zipfile

import torch
from safetensors.torch import save_file

from tools.reference import flavr_ref as fr


def tiny_mixed():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(5, 6, generator=g)
    sd = collections.OrderedDict()
    sd["a.f32"] = torch.randn(3, 4, generator=g)
    sd["b.base"] = base
    sd["b.view"] = base[1:, 2:]              # storage offset 8, strides (6, 1)
    sd["b.t"] = base.t()                     # strides (1, 6)
    sd["b.step"] = base[::2, ::3]            # strides (12, 3)
    sd["b.row"] = base[3]                    # offset 18, 1-D
    sd["c.f16"] = torch.randn(7, generator=g).half()
    sd["d.bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["d.bf16t"] = sd["d.bf16"].t()
    sd["e.f64"] = torch.randn(2, generator=g, dtype=torch.float64)
    sd["f.i64"] = torch.arange(3)
    sd["g.scalar"] = torch.tensor(2.5)
    sd["h.empty"] = torch.zeros(0, 3)
    sd["i.expand"] = torch.randn(1, 3, generator=g).expand(4, 3)   # strides (0, 1)
    sd["j.param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    return sd


def deflate(src, dst):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    sd = tiny_mixed()
    for proto, suffix in [(2, ""), (4, ".p4"), (5, ".p5")]:
        obj = sd if proto != 5 else dict(sd)
        torch.save(obj, os.path.join(outdir, f"tiny_mixed{suffix}.pth"), pickle_protocol=proto)
        torch.save(obj, os.path.join(outdir, f"tiny_mixed{suffix}.legacy.pth"), pickle_protocol=proto,
                   _use_new_zipfile_serialization=False)
    expect = {k: v.detach().float().contiguous().clone() for k, v in sd.items() if v.is_floating_point()
              and v.dtype != torch.float64}
    save_file(expect, os.path.join(outdir, "tiny_mixed.expect.safetensors"))
    deflate(os.path.join(outdir, "tiny_mixed.pth"), os.path.join(outdir, "tiny_mixed.deflate.pth"))

    m = fr.init_random(fr.Flavr(n_out=1, widths=(2, 4, 8, 16)), seed=32)
    msd = m.state_dict()
    save_file({k: v.contiguous() for k, v in msd.items()}, os.path.join(outdir, "flavr2x_w32.safetensors"))
    torch.save(msd, os.path.join(outdir, "flavr2x_w32.bare.pth"), pickle_protocol=4)

    ckpt = fr.released_checkpoint(m)
    ckpt["state_dict"]["module.extra.weight"] = torch.ones(2)
    torch.save(ckpt, os.path.join(outdir, "flavr2x_w32_extra.pth"))

    ckpt = fr.released_checkpoint(m)
    ckpt["state_dict"]["module.outconv.1.bias"] = ckpt["state_dict"]["module.outconv.1.bias"].double()
    torch.save(ckpt, os.path.join(outdir, "flavr2x_w32_f64.legacy.pth"), _use_new_zipfile_serialization=False)

    for f in sorted(os.listdir(outdir)):
        if f.startswith(("tiny_", "flavr2x_w32")):
            print(f"{os.path.getsize(os.path.join(outdir, f)):>10}  {f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
