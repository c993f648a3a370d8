"""Export trained weights as the model the plugin ships: one float16 safetensors file with the
released key names (no `module.`), the architecture readable from the shapes alone.

    python3 -m tools.train.export --state .gpu-train/state --out flavr2x-small.safetensors
    python3 -m tools.train.export --weights some.safetensors|some.pt --out model.safetensors

It derives the widths from the shapes the way src/model/spec.rs does (stem, layer1..4,
decoder d0..d4, fuse, n_out, encoder bias), rebuilds tools/reference/flavr_ref.Flavr with them,
loads the file back strictly, runs one window through the float32 and the float16 weights and
prints the difference, the parameter count and the file size (it fails above --max-mb).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

from tools.reference.flavr_ref import Flavr
from tools.train import state as st


def spec_from_shapes(sd):
    """(widths, decoder, fuse, n_out, bias) read off a state dict, like ModelSpec::from_index."""
    def dim(key, axis):
        if key not in sd:
            raise KeyError(f"missing {key}")
        return int(sd[key].shape[axis])

    stem = dim("encoder.stem.0.weight", 0)
    widths = tuple(dim(f"encoder.layer{l}.0.conv1.0.weight", 0) for l in range(1, 5))  # noqa: E741
    if stem != widths[0]:
        raise ValueError(f"stem width {stem} != layer1 width {widths[0]} (flavr_ref ties them)")
    decoder = (dim("decoder.0.conv.0.weight", 0), dim("decoder.1.upconv.0.weight", 1),
               dim("decoder.2.upconv.0.weight", 1), dim("decoder.3.conv.0.weight", 0),
               dim("decoder.4.upconv.0.weight", 1))
    fuse = dim("feature_fuse.conv.0.weight", 0)
    n3 = dim("outconv.1.weight", 0)
    if n3 % 3:
        raise ValueError(f"outconv has {n3} outputs, not a multiple of 3")
    return widths, decoder, fuse, n3 // 3, "encoder.stem.0.bias" in sd


def model_from_state_dict(sd):
    """(model, spec): flavr_ref.Flavr with the architecture read off `sd`'s shapes and `sd`
    loaded strictly (float32; a `module.` prefix is dropped); spec as spec_from_shapes gives it."""
    sd = {k.removeprefix("module."): v.float() for k, v in sd.items()}
    widths, decoder, fuse, n_out, bias = spec_from_shapes(sd)
    model = Flavr(n_out=n_out, widths=widths, bias=bias, decoder=decoder, fuse=fuse)
    model.load_state_dict(sd, strict=True)
    return model, (widths, decoder, fuse, n_out, bias)


def load_weights(args):
    if args.state:
        w, meta = st.load_split(args.state, "model")
        return w, meta
    if args.weights.endswith(".safetensors"):
        return load_file(args.weights), {}
    obj = torch.load(args.weights, map_location="cpu", weights_only=True)
    sd = obj.get("state_dict", obj)
    return {k.removeprefix("module."): v for k, v in sd.items()}, {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--state", help="a training state folder (state.py)")
    src.add_argument("--weights", help="a .safetensors or .pt state dict")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-mb", type=float, default=25.0, help="fail above this many MB (10^6 bytes)")
    ap.add_argument("--check-size", type=int, default=64, help="H=W of the check window")
    args = ap.parse_args(argv)

    w, meta = load_weights(args)
    model, (widths, decoder, fuse, n_out, bias) = model_from_state_dict(w)
    ref = model.state_dict()
    half = {k: v.detach().to(torch.float16).contiguous() for k, v in ref.items()}
    for k, v in half.items():
        if not torch.isfinite(v).all():
            raise ValueError(f"{k} is not finite in float16")
    md = {"format": "pt", "model": "flavr", "n_out": str(n_out), "widths": ",".join(map(str, widths)),
          "decoder": ",".join(map(str, decoder)), "fuse": str(fuse), "encoder_bias": str(bias).lower(),
          "source": "gst-flavr tools/train (synthetic clips from Debian wallpaper photos)"}
    if meta:
        md["step"] = str(meta.get("step"))
        md["samples"] = str(meta.get("samples"))
        hist = meta.get("history") or []
        if hist:
            md["val"] = json.dumps(hist[-1])
    save_file(half, args.out, metadata=md)
    size = os.path.getsize(args.out)

    # Check: the file loads back strictly, and float16 weights change the output very little.
    back = load_file(args.out)
    if sorted(back) != sorted(ref):
        raise ValueError("the written file has other keys than the model")
    m16, _ = model_from_state_dict(back)
    g = torch.Generator().manual_seed(0)
    s = args.check_size
    x = torch.rand(1, 3, 1, s // 4, s // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(4, s, s), mode="trilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(1, 3, 4, s, s, generator=g)).clamp(0, 1)
    with torch.no_grad():
        a = model(x)[0]
        b = m16(x)[0]
    diff = (a - b).abs().max().item()
    n = sum(v.numel() for v in half.values())
    print(f"wrote {args.out}: {size:,} bytes ({size / 1e6:.2f} MB), {len(half)} tensors, {n:,} parameters")
    print(f"architecture: widths {widths}, decoder {decoder}, fuse {fuse}, n_out {n_out}, encoder bias {bias}")
    print(f"float16 vs source weights on a {s}x{s} window: max |diff| {diff:.2e}")
    if size > args.max_mb * 1e6:
        sys.exit(f"{args.out} is {size / 1e6:.2f} MB, over the {args.max_mb} MB limit")


if __name__ == "__main__":
    main()
