"""Probes for the CUDA engine's next rewrites, timed with PyTorch's cuDNN on the GPU machine
(fp16, channels-last, cudnn.benchmark, CUDA events, median of --runs after warm-up). Each probe
times what a rewrite would run against what the engine runs today, on the layer shapes of the
full-width network at 1920x1080 (stem output 540x960, four frames):

- fold: a 3x3x3 convolution over [t=4, h, w, c] with few channels (c = 64) against the same
  layer as a 2-D 3x3 convolution over [h, w, (t c)] with block-banded weights (4c -> 4c', the
  time taps as channel blocks, 16 blocks of which 10 are non-zero): more FLOPs, wider GEMMs.
- batch: a layer at batch 1 against batch 2 and 4 (per window), the gain several windows per
  launch would give.
- fp8: the GEMM of layer4's convolution (M = 4 x 135 x 240, N = 512, K = 512 x 27) in bf16
  against float8 e4m3 (torch._scaled_mm), the ceiling an FP8 convolution could reach.

    python3 -m tools.bench.probe_convs [--runs 30]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F


def timeit(fn, runs, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(runs):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def rand(*shape, fmt=None):
    x = torch.randn(*shape, device="cuda", dtype=torch.float16)
    return x.contiguous(memory_format=fmt) if fmt is not None else x


def conv3d_ms(n, cin, cout, t, h, w, stride, runs):
    x = rand(n, cin, t, h, w, fmt=torch.channels_last_3d)
    wt = rand(cout, cin, 3, 3, 3, fmt=torch.channels_last_3d) * 0.05
    ms = timeit(lambda: F.conv3d(x, wt, None, (1, stride, stride), 1), runs)
    flop = 2 * n * cout * t * (h // stride) * (w // stride) * cin * 27
    return ms, flop


def conv2d_fold_ms(cin, cout, t, h, w, stride, runs):
    x = rand(1, cin * t, h, w, fmt=torch.channels_last)
    wt = rand(cout * t, cin * t, 3, 3, fmt=torch.channels_last) * 0.05
    ms = timeit(lambda: F.conv2d(x, wt, None, stride, 1), runs)
    flop = 2 * (cout * t) * (h // stride) * (w // stride) * (cin * t) * 9
    return ms, flop


def probe_fold(runs):
    print("fold: 3x3x3 conv over [4, h, w, c] vs 2-D 3x3 conv over [h, w, 4c] (fp16)")
    print(f"{'layer':>22} {'3-D ms':>8} {'TFLOP/s':>8} {'2-D ms':>8} {'TFLOP/s':>8} {'gain':>6}")
    for name, cin, cout, h, w, s in [
        ("layer1 conv (64->64)", 64, 64, 540, 960, 1),
        ("layer2.0.conv1 (s2)", 64, 128, 540, 960, 2),
        ("d3 (128->64)", 128, 64, 540, 960, 1),
        ("layer2 conv (128)", 128, 128, 270, 480, 1),
    ]:
        a, fa = conv3d_ms(1, cin, cout, 4, h, w, s, runs)
        b, fb = conv2d_fold_ms(cin, cout, 4, h, w, s, runs)
        print(f"{name:>22} {a:8.3f} {fa / a / 1e9:8.0f} {b:8.3f} {fb / b / 1e9:8.0f} {a / b:6.2f}x")


def probe_batch(runs):
    print("batch: ms per window at batch 1, 2 and 4 (fp16)")
    print(f"{'layer':>22} {'n=1':>8} {'n=2':>8} {'n=4':>8}")
    for name, cin, cout, h, w in [
        ("layer1 conv (64)", 64, 64, 540, 960),
        ("layer3 conv (256)", 256, 256, 135, 240),
        ("layer4 conv (512)", 512, 512, 135, 240),
    ]:
        row = []
        for n in (1, 2, 4):
            ms, _ = conv3d_ms(n, cin, cout, 4, h, w, 1, runs)
            row.append(ms / n)
        print(f"{name:>22} " + " ".join(f"{v:8.3f}" for v in row))


def probe_fp8(runs):
    m, n, k = 4 * 135 * 240, 512, 512 * 27
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    ms16 = timeit(lambda: a @ b.t(), runs)
    flop = 2 * m * n * k
    line = f"fp8: layer4 GEMM {m}x{n}x{k}: bf16 {ms16:.3f} ms ({flop / ms16 / 1e9:.0f} TFLOP/s)"
    try:
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda")
        ms8 = timeit(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one,
                                               out_dtype=torch.bfloat16), runs)
        line += f", e4m3 {ms8:.3f} ms ({flop / ms8 / 1e9:.0f} TFLOP/s, {ms16 / ms8:.2f}x)"
    except Exception as e:  # noqa: BLE001 - report whatever stops it
        line += f", e4m3 failed: {e}"
    print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name()}", flush=True)
    with torch.no_grad():
        probe_fold(a.runs)
        probe_batch(a.runs)
        probe_fp8(a.runs)


if __name__ == "__main__":
    main()
