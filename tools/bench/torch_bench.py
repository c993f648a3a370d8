"""PyTorch reference timings for the same network and shapes as the `bench` program, and the
comparison of the CUDA engine's outputs with the PyTorch reference on the same weights.

    python3 tools/bench/torch_bench.py [--sizes 960x544,1280x720,1920x1080] [--runs 20]
        [--compile 1920x1080] [--compile-mode default] [--tf32 1920x1080]
        [--compare DIR --frames FILE.rgb --frame-size WxH]

Model: the full-width 2x architecture with the synthetic weights of synth.py (seed 1), identical
to the ones `bench` uses; or, with --model FILE.safetensors, the
architecture read off that file's shapes (tools/train/export.py) with its weights (the shipped
model: `bench --model` the same file). --arch official (the default) runs it with the official
FLAVR code's op sequence (official_ops.py: frames stacked inside, in-place activations, adaptive
pooling), which is what users of that code get; --arch ref runs tools/reference/flavr_ref.py.
Timing: fp16 channels-last eager (cudnn.benchmark off, the default, and on; and
torch.compile, and TF32 where asked), no_grad, CUDA events, median over --runs after warm-up;
peak memory = torch.cuda.max_memory_allocated during the timed runs (weights included).
--compare: PSNR of `bench --dump DIR` outputs (ours_<precision>_<i>.f32, [n, 3, H, W] float32)
against the PyTorch reference in float32 (TF32 off) on the same frames.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
sys.path.insert(0, here)
import flavr_ref as fr  # noqa: E402
import official_ops  # noqa: E402
import synth  # noqa: E402


def size(s):
    w, h = s.split("x")
    return int(w), int(h)


def frames_input(w, h, dtype, device, arch="ref"):
    """The window: [1, 3, 4, h, w] channels-last (ref), or a list of four [1, 3, h, w]
    channels-last frames (official: the official code takes the frames as a list)."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 4, h, w, generator=g) * 0.5 + 0.25
    x = x.to(device=device, dtype=dtype)
    if arch == "official":
        return [x[:, :, t].contiguous(memory_format=torch.channels_last) for t in range(4)]
    return x.contiguous(memory_format=torch.channels_last_3d)


def channels_last(model):
    """Channels-last weights: 3-D convs as channels_last_3d, 2-D ones as channels_last."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            m.to(memory_format=torch.channels_last_3d)
        elif isinstance(m, torch.nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    return model


def time_model(fn, x, runs, warmup=3):
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
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
    sys.path.insert(0, os.path.join(here, "..", "train"))
    from export import model_from_state_dict
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


def bench(args):
    dev = "cuda"
    if args.model:
        base = load_model(args.model).eval()
    else:
        base = synth.synthesize(fr.Flavr(n_out=1), seed=1).eval()
    flops_of = flops_counter(base)
    if args.arch == "official":
        check_arch(base, dev)
        base = official_ops.from_reference(base.cpu()).eval()
    print(f"architecture: {args.arch} op sequence", flush=True)
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}",
          flush=True)
    rows = []
    m16 = channels_last(base.to(dev).half())
    for w, h in args.sizes:
        x = frames_input(w, h, torch.float16, dev, args.arch)
        ms, mem = time_model(m16, x, args.runs)
        rows.append((f"{w}x{h}", "fp16 eager", ms, flops_of(w, h) / ms / 1e9, mem))
        print(rows[-1], flush=True)
    torch.backends.cudnn.benchmark = True
    for w, h in args.sizes:
        x = frames_input(w, h, torch.float16, dev, args.arch)
        ms, mem = time_model(m16, x, args.runs)
        rows.append((f"{w}x{h}", "fp16 eager cudnn.benchmark", ms, flops_of(w, h) / ms / 1e9, mem))
        print(rows[-1], flush=True)
    for w, h in args.compile:
        t0 = time.time()
        mc = torch.compile(m16, mode=args.compile_mode)
        x = frames_input(w, h, torch.float16, dev, args.arch)
        with torch.no_grad():
            mc(x)
        ct = time.time() - t0
        ms, mem = time_model(mc, x, args.runs)
        rows.append((f"{w}x{h}", f"fp16 compile({args.compile_mode}, {ct:.0f}s)", ms, flops_of(w, h) / ms / 1e9, mem))
        print(rows[-1], flush=True)
    del m16
    if args.tf32:
        torch.backends.cudnn.allow_tf32 = True
        m32 = channels_last(base.to(dev).float())
        for w, h in args.tf32:
            x = frames_input(w, h, torch.float32, dev, args.arch)
            ms, mem = time_model(m32, x, max(3, args.runs // 4))
            rows.append((f"{w}x{h}", "tf32 eager", ms, flops_of(w, h) / ms / 1e9, mem))
            print(rows[-1], flush=True)
        del m32
    print(f"{'size':>10} {'pytorch':>34} {'ms/frame':>9} {'TFLOP/s':>8} {'peak GiB':>9}")
    for r in rows:
        print(f"{r[0]:>10} {r[1]:>34} {r[2]:>9.2f} {r[3]:>8.1f} {r[4]:>9.2f}")


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
    args = ap.parse_args()
    if args.compare:
        compare(args)
    if args.sizes or args.compile or args.tf32:
        bench(args)


if __name__ == "__main__":
    main()
