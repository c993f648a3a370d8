"""PyTorch reference timings for the same network and shapes as the `bench` program, and the
comparison of the CUDA engine's outputs with the PyTorch reference on the same weights.

    python3 -m tools.bench.torch_bench [--sizes 960x544,1280x720,1920x1080] [--runs 20]
        [--batch 1,2,4] [--layouts cl3d,cl,none] [--official-src DIR]
        [--compile 1920x1080] [--compile-mode default] [--tf32 1920x1080]
        [--compare DIR --frames FILE.rgb --frame-size WxH]

Model: the full-width 2x architecture with the synthetic weights of synth.py (seed 1), identical
to the ones `bench` uses; or, with --model FILE.safetensors, the
architecture read off that file's shapes (tools/train/export.py) with its weights (the shipped
model: `bench --model` the same file). --arch official (the default) runs it with the official
FLAVR code's op sequence (official_ops.py), fed as the official interpolate.py feeds it: a list
of four contiguous [N, 3, H, W] frames; --arch ref runs tools/reference/flavr_ref.py on one
channels_last_3d [N, 3, 4, H, W] tensor. --official-src DIR (a checkout of the official code,
kept outside this repository) also times the official model class itself, with the same weights
(checked to give the same outputs in float32), inputs and settings, in the same run, and prints
the ratio of the two.
Weights: fp16, in the memory formats of --layouts (each timed in turn): cl3d (default for
official) puts the 5-D weights in channels_last_3d and leaves the 2-D convs as built, cl also
puts the 2-D convs in channels_last (default for ref), none leaves every weight contiguous.
--batch N runs N windows per forward pass (a file, nobody waiting) and reports ms per window and
frames/s (interpolated frames per second: N x n_out per call) beside ms per call.
Timing: eager (cudnn.benchmark off, the default, and on; and torch.compile with dynamic=False,
and TF32 where asked), no_grad, CUDA events, median over --runs after warm-up; peak memory =
torch.cuda.max_memory_allocated during the timed runs (weights included).
--compare: PSNR of `bench --dump DIR` outputs (ours_<precision>_<i>.f32, [n, 3, H, W] float32)
against the PyTorch reference in float32 (TF32 off) on the same frames.
"""
import argparse
import importlib
import os
import statistics
import sys
import time

import numpy as np
import torch

from tools.bench import official_ops
from tools.bench import synth
from tools.reference import flavr_ref as fr


def size(s):
    w, h = s.split("x")
    return int(w), int(h)


def batches(s):
    out = [int(x) for x in s.split(",") if x]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--batch {s}: positive window counts expected")
    return out


def layouts(s):
    out = [x for x in s.split(",") if x]
    bad = [x for x in out if x not in LAYOUTS]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"--layouts {s}: expected a comma list of {', '.join(LAYOUTS)}")
    return out


def frames_input(w, h, dtype, device, arch="ref", batch=1):
    """The window, `batch` windows at once. ref: one [batch, 3, 4, h, w] channels_last_3d tensor.
    official: a list of four contiguous [batch, 3, h, w] frames, as the official interpolate.py
    hands them to the model (each frame a contiguous CHW tensor moved to the GPU and unsqueezed)."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(batch, 3, 4, h, w, generator=g) * 0.5 + 0.25
    x = x.to(device=device, dtype=dtype)
    if arch == "official":
        return [x[:, :, t].contiguous() for t in range(4)]
    return x.contiguous(memory_format=torch.channels_last_3d)


# Weight memory formats, set on the model before timing (--layouts).
LAYOUTS = {
    "cl3d": "5-D weights (3-D convs, transposed convs, SE convs) channels_last_3d, 2-D convs untouched",
    "cl": "5-D weights channels_last_3d and the 2-D convs' weights channels_last",
    "none": "every weight contiguous, as the official interpolate.py runs the model",
}


def set_layout(model, layout):
    """Puts every conv weight of `model` in the memory format `layout` (a LAYOUTS key) asks for."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            m.to(memory_format=torch.contiguous_format if layout == "none" else torch.channels_last_3d)
        elif isinstance(m, torch.nn.Conv2d):
            m.to(memory_format=torch.channels_last if layout == "cl" else torch.contiguous_format)
    return model


def time_model(fn, x, runs, warmup=3):
    """Median ms of fn(x) over `runs` calls after `warmup`, and the peak GiB allocated meanwhile
    (CUDA events on the GPU; wall clock on the CPU, where the peak is not tracked: 0)."""
    cuda = (x[0] if isinstance(x, list) else x).is_cuda
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        if not cuda:
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn(x)
                times.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(times), 0.0
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(runs):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn(x)
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
    return statistics.median(times), torch.cuda.max_memory_allocated() / 2**30


def conv_flops(model, w, h):
    """2 x multiply-adds of every convolution (the SE gates' 1x1x1 convs included) of one window
    at w x h (multiples of 8), counted with hooks on a forward pass on the CPU."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.ConvTranspose3d):
            taps = mod.weight[0, 0].numel()  # each input position feeds taps outputs
            total[0] += inp[0].numel() * mod.out_channels * taps // mod.groups
        elif isinstance(mod, (torch.nn.Conv3d, torch.nn.Conv2d)):
            total[0] += out.numel() * mod.weight[0].numel()  # in / groups x kernel taps

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 4, h, w))
    finally:
        for x in hs:
            x.remove()
    return 2 * total[0]


def flops_counter(model):
    """FLOPs of one window as a function of (w, h), the same count as ModelSpec::flops: the
    convolutions scale with the area, the SE gates (on pooled vectors) do not, so two small
    forward passes give both parts exactly."""
    f1, f2 = conv_flops(model, 64, 64), conv_flops(model, 128, 64)
    per_px = (f2 - f1) / (64 * 64)
    fixed = f1 - per_px * 64 * 64
    return lambda w, h: per_px * w * h + fixed


def load_model(path):
    """The architecture read off a safetensors file's shapes, with its weights (float32)."""
    from tools.train.export import model_from_state_dict
    from safetensors.torch import load_file

    model, spec = model_from_state_dict(load_file(path))
    n = sum(p.numel() for p in model.parameters())
    print(f"model {path}: widths {spec[0]}, {n:,} parameters", flush=True)
    return model


def check_arch(base, dev="cuda"):
    """The official op sequence computes the same function as flavr_ref (float32, TF32 off)."""
    torch.backends.cudnn.allow_tf32 = False
    ref = base.to(dev).float()
    off = official_ops.from_reference(ref).to(dev).eval()
    x = frames_input(256, 128, torch.float32, "cpu").to(dev)
    with torch.no_grad():
        a = ref(x)
        b = off([x[:, :, t] for t in range(4)])
    err = max(float((p - q).abs().max()) for p, q in zip(a, b))
    print(f"official op sequence vs flavr_ref, float32 256x128: max abs {err:.2e}", flush=True)
    if not err < 1e-4:
        raise SystemExit("the official op sequence does not compute the reference's function")
    torch.backends.cudnn.allow_tf32 = True


def load_official(src, ref):
    """The official model class, imported from a checkout of the official repository at `src`
    (kept outside this repository), built in the configuration of the released checkpoints for
    ref.n_out outputs (unet_18 encoder, 4 inputs, concat joins, transposed convs, no batch norm),
    with ref's weights (the key names are the same)."""
    src = os.path.abspath(src)
    if not os.path.isdir(os.path.join(src, "model")):
        raise SystemExit(f"--official-src {src}: no model/ folder (a checkout of the official FLAVR code is expected)")
    sys.path.insert(0, src)
    module = None
    for name in ("model.FLAVR_arch", "model.Unet_3D_3D_interpolate"):  # newer, older file name
        try:
            module = importlib.import_module(name)
            break
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    if module is None:
        raise SystemExit(f"--official-src {src}: neither model/FLAVR_arch.py nor model/Unet_3D_3D_interpolate.py")
    net = module.UNet_3D_3D("unet_18", n_inputs=4, n_outputs=ref.n_out, joinType="concat", upmode="transpose")
    try:
        net.load_state_dict(ref.state_dict(), strict=True)
    except RuntimeError as e:
        raise SystemExit(f"the official model does not take these weights (it has the released widths only): {e}")
    print(f"official code: {module.__file__}", flush=True)
    return net.eval()


def check_same(ours, theirs, dev="cuda"):
    """official_ops and the official code compute the same function (float32, TF32 off)."""
    torch.backends.cudnn.allow_tf32 = False
    x = frames_input(256, 128, torch.float32, dev, "official")
    with torch.no_grad():
        a, b = ours.to(dev).float()(x), theirs.to(dev).float()(x)
    err = max(float((p - q).abs().max()) for p, q in zip(a, b))
    print(f"official op sequence vs the official code, float32 256x128: max abs {err:.2e}", flush=True)
    if not err < 1e-4:
        raise SystemExit("the official op sequence does not compute the official code's function")
    torch.backends.cudnn.allow_tf32 = True


def print_rows(rows):
    print(f"{'size':>10} {'batch':>5} {'model':>22} {'pytorch':>34} {'layout':>6} {'ms/call':>8} "
          f"{'ms/window':>9} {'frames/s':>8} {'TFLOP/s':>8} {'peak GiB':>8}  note")
    for r in rows:
        print(f"{r['size']:>10} {r['batch']:>5} {r['model']:>22} {r['mode']:>34} {r['layout']:>6} {r['ms']:>8.2f} "
              f"{r['ms'] / r['batch']:>9.2f} {r['fps']:>8.1f} {r['tflops']:>8.1f} {r['mem']:>8.2f}  {r['note']}")
    # The official op sequence against the official code itself, timed in the same run.
    theirs = {(r["size"], r["batch"], r["mode"], r["layout"]): r["ms"] for r in rows if r["model"] == "official code"}
    for r in rows:
        key = (r["size"], r["batch"], r["mode"], r["layout"])
        if r["model"] == "official op sequence" and key in theirs:
            print(f"official op sequence / official code, {r['size']} batch {r['batch']} {r['mode']} "
                  f"{r['layout']}: {r['ms'] / theirs[key]:.3f}")


def bench(args):
    dev = args.device
    if args.model:
        base = load_model(args.model).eval()
    else:
        base = synth.synthesize(fr.Flavr(n_out=1), seed=1).eval()
    flops_of = flops_counter(base)
    n_out = base.n_out
    # (label, model on the CPU in float32, input kind for frames_input)
    entries = []
    if args.arch == "official":
        check_arch(base, dev)
        entries.append(("official op sequence", official_ops.from_reference(base.cpu()).eval(), "official"))
    else:
        entries.append(("flavr_ref", base.cpu(), "ref"))
    if args.official_src:
        theirs = load_official(args.official_src, base.cpu())
        check_same(official_ops.from_reference(base.cpu()).eval(), theirs, dev)
        entries.append(("official code", theirs.cpu(), "official"))
    layouts = args.layouts or (["cl3d"] if args.arch == "official" else ["cl"])
    print(f"architecture: {args.arch} op sequence; layouts: "
          + "; ".join(f"{k}: {LAYOUTS[k]}" for k in layouts), flush=True)
    gpu = torch.cuda.get_device_name() if dev == "cuda" else dev
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {gpu}", flush=True)
    rows = []

    def timed(label, mode, layout, fn, kind, w, h, b, dtype, runs, note=""):
        x = frames_input(w, h, dtype, dev, kind, b)
        ms, mem = time_model(fn, x, runs)
        rows.append(dict(size=f"{w}x{h}", batch=b, model=label, mode=mode, layout=layout, ms=ms,
                         fps=1000.0 * b * n_out / ms, tflops=flops_of(w, h) * b / ms / 1e9, mem=mem, note=note))
        print(rows[-1], flush=True)

    models = [(label, m.to(dev).half(), kind) for label, m, kind in entries]
    for layout in layouts:
        for label, m, kind in models:
            set_layout(m, layout)
        for benchmark in (False, True):
            torch.backends.cudnn.benchmark = benchmark
            mode = "fp16 eager cudnn.benchmark" if benchmark else "fp16 eager"
            for w, h in args.sizes:
                for b in args.batch:
                    for label, m, kind in models:
                        timed(label, mode, layout, m, kind, w, h, b, torch.float16, args.runs)
    for label, m, kind in models:
        set_layout(m, layouts[0])
    for w, h in args.compile:
        for b in args.batch:
            for label, m, kind in models:
                torch._dynamo.reset()
                t0 = time.time()
                mc = torch.compile(m, mode=args.compile_mode, dynamic=False)
                with torch.no_grad():
                    mc(frames_input(w, h, torch.float16, dev, kind, b))
                ct = time.time() - t0
                timed(label, f"fp16 compile({args.compile_mode})", layouts[0], mc, kind, w, h, b,
                      torch.float16, args.runs, f"compiled in {ct:.0f} s")
                del mc
    del models
    if args.tf32:
        torch.backends.cudnn.allow_tf32 = True
        for label, m, kind in entries:
            m32 = set_layout(m.to(dev).float(), layouts[0])
            for w, h in args.tf32:
                for b in args.batch:
                    timed(label, "tf32 eager", layouts[0], m32, kind, w, h, b, torch.float32, max(3, args.runs // 4))
            m.cpu()
    print_rows(rows)


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def compare(args):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    w, h = args.frame_size
    raw = np.fromfile(args.frames, dtype=np.uint8)
    n = raw.size // (3 * w * h)
    frames = raw[: n * 3 * w * h].reshape(n, h, w, 3)
    model = synth.synthesize(fr.Flavr(n_out=1), seed=1).eval().cuda()
    for i in range(2):
        x = torch.from_numpy(frames[i:i + 4].astype(np.float32) / 255.0)  # [4, h, w, 3]
        x = x.permute(3, 0, 1, 2)[None].cuda()  # [1, 3, 4, h, w]
        with torch.no_grad():
            ref = torch.cat(fr.interpolate(model, x), 0).cpu().numpy()  # [n, 3, h, w]
        for p in ("fp32", "fp16", "bf16"):
            path = os.path.join(args.compare, f"ours_{p}_{i}.f32")
            if not os.path.exists(path):
                continue
            ours = np.fromfile(path, dtype=np.float32).reshape(ref.shape)
            print(f"window {i}: ours {p} vs PyTorch fp32: max abs {np.abs(ours - ref).max():.2e}, "
                  f"PSNR {psnr(np.clip(ours, 0, 1), np.clip(ref, 0, 1)):.2f} dB", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=lambda s: [size(x) for x in s.split(",") if x],
                    default=[(960, 544), (1280, 720), (1920, 1080)])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--compile", type=lambda s: [size(x) for x in s.split(",") if x], default=[])
    ap.add_argument("--compile-mode", default="default")
    ap.add_argument("--arch", choices=("official", "ref"), default="official",
                    help="op sequence: the official FLAVR code's (default) or flavr_ref.py's")
    ap.add_argument("--tf32", type=lambda s: [size(x) for x in s.split(",") if x], default=[])
    ap.add_argument("--compare")
    ap.add_argument("--frames")
    ap.add_argument("--frame-size", type=size)
    ap.add_argument("--model", help="a safetensors checkpoint (default: synthetic full-width weights)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a quick check of the script itself")
    ap.add_argument("--batch", type=batches, default=[1],
                    help="windows per forward pass, a comma list (e.g. 1,2,4): each size is timed at each")
    ap.add_argument("--layouts", type=layouts,
                    help="weight memory formats to time, a comma list of " + ", ".join(LAYOUTS)
                    + " (default: cl3d for --arch official, cl for --arch ref)")
    ap.add_argument("--official-src", help="a checkout of the official FLAVR code: its model is timed "
                    "beside the official op sequence, with the same weights, inputs and settings")
    args = ap.parse_args()
    if args.compare:
        compare(args)
    if args.sizes or args.compile or args.tf32:
        bench(args)


if __name__ == "__main__":
    main()
