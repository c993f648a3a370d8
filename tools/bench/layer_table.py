"""Per-layer table of the CUDA engine's convolutions from a `FLAVR_BENCH_VERBOSE=1 bench` log.

    python3 -m tools.bench.layer_table LOG [--size 1920x1080] [--precision fp16] [--base LOG2]

Each convolution's time is the one measured when it was chosen at configure (cuDNN's search, or
the graph API's timing of its plan), not inside the whole forward pass; FLOP are the executed
multiply-adds x 2 (zero taps of the folded stem and the block-diagonal fuse included), bytes the
fewest the conv must move (input, weights and output once). With --base, a second log's times
(e.g. before a change) stand beside.
"""
import argparse
import re

NAMES = (["stem"] + [f"layer1.{b}.conv{c}" for b in range(2) for c in (1, 2)]
         + [n for l in (2, 3, 4) for n in (f"layer{l}.0.conv1", f"layer{l}.0.conv2", f"layer{l}.0.ds",
                                           f"layer{l}.1.conv1", f"layer{l}.1.conv2")]
         + ["d0", "d1 (phases)", "d2 (phases)", "d3", "d4 (phases)", "fuse", "outconv"])


def layers(path, size, precision):
    w, h = size.split("x")
    head = re.compile(rf"^{w}x{h} {precision}:")
    rows, on = [], False
    for line in open(path):
        if re.match(r"^\d+x\d+ (fp16|bf16|fp32):", line):
            on = bool(head.match(line))
            continue
        if on and line.startswith("    "):
            dims = [list(map(int, d.split(","))) for d in re.findall(r"\[([\d, ]+)\]", line)[:3]]
            ms = float(re.search(r"\] (?:false|true) -> \S+ ([\d.]+) ms", line).group(1))
            g = re.search(r"graph API: engine (\d+) .*?\) ([\d.]+) ms", line)
            rows.append((dims, float(g.group(2)) if g else ms, f"graph {g.group(1)}" if g else "legacy"))
    return rows


def cost(dims, esz=2):
    x, y, taps = dims
    cin, cout = x[1], y[1]
    out = 1
    for d in y[1:]:
        out *= d
    k = cin * taps[0] * taps[1] * taps[2]
    flop = 2 * out * k
    xe = 1
    for d in x[1:]:
        xe *= d
    return flop, (xe + cout * k + out) * esz


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--base")
    a = ap.parse_args()
    rows = layers(a.log, a.size, a.precision)
    base = layers(a.base, a.size, a.precision) if a.base else None
    total = sum(r[1] for r in rows)
    hdr = "| layer | GFLOP | MB moved | " + ("before ms | " if base else "") + "ms | TFLOP/s | share | kernel |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for i, (dims, ms, how) in enumerate(rows):
        flop, nbytes = cost(dims)
        name = NAMES[i] if len(rows) == len(NAMES) else str(i)
        before = f"{base[i][1]:.3f} | " if base else ""
        print(f"| {name} | {flop / 1e9:.0f} | {nbytes / 1e6:.0f} | {before}{ms:.3f} | "
              f"{flop / ms / 1e9:.0f} | {100 * ms / total:.1f}% | {how} |")
    btot = f"{sum(r[1] for r in base):.2f} | " if base else ""
    print(f"| all convolutions | {sum(cost(d)[0] for d, _, _ in rows) / 1e9:.0f} | "
          f"{sum(cost(d)[1] for d, _, _ in rows) / 1e6:.0f} | {btot}{total:.2f} | | 100% | |")


if __name__ == "__main__":
    main()
