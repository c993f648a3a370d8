"""Deterministic synthetic FLAVR weights, bit-identical to src/model/synth.rs.

Tensor `ti` (index in the model's key order: ModelSpec::keys, i.e. Flavr::build's order, in Rust) element i is
(2u - 1) * scale, u = (mix(base + (i + 1) * GOLDEN) >> 40) / 2^24, base = mix((seed << 32) ^ ti),
with wrapping uint64 arithmetic; scale = sqrt(3 / fan_in) for weights (transposed conv:
in * taps / 4; outconv quartered), 0.1 for biases.

    python3 -m tools.bench.synth --check FILE.safetensors   # compares with weights written by `bench --write-synth`
"""
import sys

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def mix(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def scale(name, shape):
    if len(shape) == 1:
        return np.float32(0.1)
    taps = int(np.prod(shape[2:]))
    fan_in = shape[0] * taps // 4 if "upconv.0" in name else shape[1] * taps
    s = np.sqrt(np.float32(3.0) / np.float32(fan_in), dtype=np.float32)
    return np.float32(s * np.float32(0.25)) if name.startswith("outconv") else np.float32(s)


def values(seed, ti, n, sc):
    base = mix(np.uint64((seed << 32) ^ ti))
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = mix(base + i * GOLDEN)
    u = (z >> np.uint64(40)).astype(np.float32) / np.float32(16777216.0)
    return ((u * np.float32(2.0) - np.float32(1.0)) * sc).astype(np.float32)


def keys(model):
    """(name, shape) in ModelSpec::keys order: encoder stem, layers (conv1, conv2, SE, downsample),
    decoder (conv/upconv, SE), feature_fuse, outconv; each weight followed by its bias."""
    sd = model.state_dict()
    order = []

    def conv(prefix):
        order.append(prefix + ".weight")
        if prefix + ".bias" in sd:
            order.append(prefix + ".bias")

    conv("encoder.stem.0")
    for l in range(1, 5):
        for b in range(2):
            p = f"encoder.layer{l}.{b}"
            conv(p + ".conv1.0")
            conv(p + ".conv2.0")
            conv(p + ".fg.attn_layer.0")
            if p + ".downsample.0.weight" in sd:
                conv(p + ".downsample.0")
    for d in range(5):
        op = "upconv" if f"decoder.{d}.upconv.0.weight" in sd else "conv"
        conv(f"decoder.{d}.{op}.0")
        conv(f"decoder.{d}.{op}.1.attn_layer.0")
    conv("feature_fuse.conv.0")
    conv("outconv.1")
    assert sorted(order) == sorted(sd.keys()), "key order does not cover the model"
    return [(k, tuple(sd[k].shape)) for k in order]


def synthesize(model, seed):
    """Fills `model` (a flavr_ref.Flavr) with the synthetic weights in place."""
    import torch
    sd = model.state_dict()
    with torch.no_grad():
        for ti, (name, shape) in enumerate(keys(model)):
            v = values(seed, ti, int(np.prod(shape)), scale(name, shape))
            sd[name].copy_(torch.from_numpy(v.reshape(shape)))
    return model


def check(path, seed=1):
    from safetensors.numpy import load_file
    from tools.reference import flavr_ref as fr
    model = synthesize(fr.Flavr(n_out=1), seed)
    theirs = load_file(path)
    bad = 0
    for name, t in model.state_dict().items():
        if not np.array_equal(t.numpy(), theirs[name]):
            bad += 1
            print("differs:", name)
    print(f"{len(theirs)} tensors, {bad} differ")
    return bad == 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2]) else 1)
    print(__doc__)
