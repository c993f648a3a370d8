"""Golden outputs of the full-width 2x architecture with the synthetic weights (seed 1) of
synth.py / src/model/synth.rs, computed in float64 by the PyTorch reference, for the GPU parity
test (tests/cuda_parity.rs) at small sizes, one of them not a multiple of 8.

    python3 -m tools.bench.make_full_golden tests/fixtures/golden_full2x.safetensors
"""
import os
import sys

import torch
from safetensors.torch import save_file

from tools.bench import synth
from tools.reference import flavr_ref as fr
from tools.reference import make_fixtures as mf


def main(path):
    model = synth.synthesize(fr.Flavr(n_out=1), seed=1).double().eval()
    g = torch.Generator().manual_seed(77)
    out = {}
    with torch.no_grad():
        for k, (h, w) in enumerate([(37, 50), (48, 64)]):
            x = mf.smooth_frames(g, h, w)
            y = fr.interpolate(model, x.double())
            out[f"case{k}.input"] = x.contiguous()
            out[f"case{k}.output"] = torch.cat(y, 0).float().contiguous()
            print(f"case{k} {h}x{w}: output mean {y[0].mean():.4f} std {y[0].std():.4f} "
                  f"min {y[0].min():.4f} max {y[0].max():.4f}")
    save_file(out, path)
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/golden_full2x.safetensors")
