"""The training state: a folder that train.py saves to and resumes from.

  model-NN.safetensors + model.json   the weights, float16, released key names (this IS the
                                      shipped model, in parts); model.json holds the training
                                      meta (step, schedule, seeds, history) and each part's sha256
  opt-NN.safetensors + opt.json       AdamW's second moment (and, with --keep-m, its first),
                                      8-bit log-quantised per block of 256 (see q8_encode)
  train.log                           the log, appended to by every call

Each of model and opt is one part unless a size is given (`train.py --max-part-mb`): the GPU
machine's transfers take files of at most 16 MiB, so tools/device/train.sh asks for 15 MB parts.

Float16 weights: the master weights are float32 during a call and rounded to float16 between
calls (relative error 2^-11, far below one step's update at any learning rate used here).
10.5M parameters take 21 MB as float16 instead of 42 MB as float32 (what lets photos + state +
repository fit in one device call's 64 MiB carry). Moments: the second moment is kept (it is what
sets Adam's step size); the first one (a 10-step memory at beta1 = 0.9) is rebuilt by default.

    save_split(dir, "model", {name: tensor}, meta[, max_bytes])   -> list of files written
    load_split(dir, "model") -> (tensors, meta)       (checks every part's sha256)

CLI (no torch needed):  python3 -m tools.train.state verify DIR   |   info DIR
"""
import json
import math
import os
import sys

from tools.files import sha256

BLOCK = 256


def save_split(folder, name, tensors, meta, max_bytes=None):
    """Write `tensors` as name-00.safetensors, name-01, ... (each at most max_bytes of data, a
    tensor never split; one part when max_bytes is None) and name.json (meta + parts + sha256). Writes go to temporary names
    first; name.json is written last, so a reader sees either the old state or the new one
    (a mix fails the sha256 check). Returns the file names written."""
    import torch
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    groups, cur, size = [], {}, 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        nb = t.numel() * t.element_size()
        if max_bytes is not None and nb > max_bytes:
            raise ValueError(f"tensor {k} ({nb} bytes) is larger than a part ({max_bytes})")
        if cur and max_bytes is not None and size + nb > max_bytes:
            groups.append(cur)
            cur, size = {}, 0
        cur[k] = t
        size += nb
    if cur or not groups:
        groups.append(cur)
    parts = []
    for i, g in enumerate(groups):
        fn = f"{name}-{i:02d}.safetensors"
        tmp = os.path.join(folder, fn + ".tmp")
        save_file(g, tmp, metadata={"part": str(i), "of": str(len(groups))})
        parts.append({"file": fn, "bytes": os.path.getsize(tmp), "sha256": sha256(tmp), "keys": sorted(g)})
    for p in parts:
        os.replace(os.path.join(folder, p["file"] + ".tmp"), os.path.join(folder, p["file"]))
    manifest = {"name": name, "parts": parts, "meta": meta}
    tmp = os.path.join(folder, f"{name}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(folder, f"{name}.json"))
    # Parts left from an earlier save with more parts.
    keep = {p["file"] for p in parts}
    for fn in os.listdir(folder):
        if fn.startswith(f"{name}-") and fn.endswith(".safetensors") and fn not in keep:
            os.remove(os.path.join(folder, fn))
    return [p["file"] for p in parts] + [f"{name}.json"]


def verify_split(folder, name):
    """The manifest of `name` in `folder` after checking every part; raises ValueError."""
    path = os.path.join(folder, f"{name}.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {name}.json in {folder}")
    with open(path) as f:
        manifest = json.load(f)
    for p in manifest["parts"]:
        fp = os.path.join(folder, p["file"])
        if not os.path.isfile(fp):
            raise ValueError(f"{folder}: part {p['file']} is missing")
        if os.path.getsize(fp) != p["bytes"] or sha256(fp) != p["sha256"]:
            raise ValueError(f"{folder}: part {p['file']} does not match {name}.json (an interrupted save?)")
    return manifest


def load_split(folder, name, device="cpu"):
    """(tensors, meta) of a split state; every part is checked against the manifest."""
    from safetensors.torch import load_file

    manifest = verify_split(folder, name)
    tensors = {}
    for p in manifest["parts"]:
        part = load_file(os.path.join(folder, p["file"]), device=device)
        if sorted(part) != p["keys"]:
            raise ValueError(f"{folder}: {p['file']} holds other tensors than {name}.json says")
        tensors.update(part)
    return tensors, manifest["meta"]


def exists(folder, name):
    return os.path.isfile(os.path.join(folder, f"{name}.json"))


# ---------------------------------------------------------------------------------------------
# 8-bit log quantisation of optimizer moments (per block of BLOCK values, 1/8-octave steps).


def q8_encode(x, signed):
    """x (any shape, float) -> (codes uint8 [nblocks*BLOCK], scales float32 [nblocks]).
    Unsigned (x >= 0, Adam's v): code = round(-8 log2(x / blockmax)), 255 for anything below
    2^-31.9 of the block max (decoded a little too LARGE: smaller, safe steps). A decoded value
    is never below 0.958 of the true one. Signed (Adam's m): bit 7 = sign, bits 0..6 the same
    code of |x| over 126 steps, 127 = zero."""
    import torch

    flat = x.detach().float().reshape(-1)
    n = flat.numel()
    nb = max(1, math.ceil(n / BLOCK))
    pad = torch.zeros(nb * BLOCK, device=flat.device)
    pad[:n] = flat
    blocks = pad.view(nb, BLOCK)
    mag = blocks.abs()
    scale = mag.amax(1).clamp(min=1e-38)
    r = mag / scale[:, None]
    top = 126 if signed else 255
    code = torch.round(-8 * torch.log2(r.clamp(min=1e-38))).clamp(0, top)
    if signed:
        code = torch.where(r < 2.0 ** (-126 / 8 - 1 / 16), torch.full_like(code, 127), code)
        code = code + 128 * (blocks < 0).float()
    return code.to(torch.uint8).reshape(-1).cpu(), scale.cpu()


def q8_decode(codes, scales, shape, signed, device="cpu"):
    import torch

    c = codes.to(device).long().view(-1, BLOCK)
    s = scales.to(device).float()
    if signed:
        neg = c >= 128
        c = c % 128
        v = s[:, None] * torch.pow(2.0, -c.float() / 8)
        v = torch.where(c == 127, torch.zeros_like(v), v)
        v = torch.where(neg, -v, v)
    else:
        v = s[:, None] * torch.pow(2.0, -c.float() / 8)
    n = math.prod(shape)
    return v.reshape(-1)[:n].reshape(shape)


# ---------------------------------------------------------------------------------------------


def main(argv):
    if len(argv) != 3 or argv[1] not in ("verify", "info"):
        sys.exit("usage: state.py verify|info DIR")
    folder = argv[2]
    ok = True
    for name in ("model", "opt"):
        if not exists(folder, name):
            print(f"{name}: absent")
            ok = ok and name == "opt"
            continue
        try:
            m = verify_split(folder, name)
        except ValueError as e:
            print(f"{name}: BAD: {e}")
            ok = False
            continue
        total = sum(p["bytes"] for p in m["parts"])
        print(f"{name}: {len(m['parts'])} parts, {total / 1e6:.1f} MB, step {m['meta'].get('step')}")
        if argv[1] == "info" and name == "model":
            meta = dict(m["meta"])
            hist = meta.pop("history", [])
            print(json.dumps(meta, indent=1))
            for h in hist[-10:]:
                print(json.dumps(h))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv)
