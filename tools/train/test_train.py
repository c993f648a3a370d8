"""Checks of the training tools on CPU, with synthetic images (no photos needed).

    /opt/torchenv/bin/python tools/train/test_train.py        (or: pytest tools/train)

- the clip timing: with a pure pan of v px per unit, the target (frame 3) is input 1 (frame 2)
  moved by v and input 2 (frame 4) moved by -v, input 0 by 3v; with a pure acceleration the
  path is symmetric (frames 2 and 4 equal, 0 and 6 equal); time reversal swaps the inputs;
- a batch is a pure function of its seed;
- 8-bit moment quantisation bounds; split save/load round trip and a corrupted part refused;
- export: the file has the released key names, the shapes give the widths back, size printed;
- resume: 3 + 3 steps from a saved state land close to 6 steps in one go.
"""
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import state as st  # noqa: E402
from data import ClipGenerator, PhotoBank  # noqa: E402

torch.set_num_threads(1)


def _image(seed, h=720, w=900):
    g = torch.Generator().manual_seed(seed)
    lo = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 15, generator=g), size=(h, w), mode="bicubic",
                                         align_corners=False)
    hi = torch.rand(1, 3, h, w, generator=g) * 0.3
    return ((lo * 0.7 + hi).clamp(0, 1) * 255).round().byte()[0]


def _bank():
    return PhotoBank(None, "cpu", images=[_image(1), _image(2), _image(3)])


def _plain(gen, n, **over):
    """Fix every random choice to 'off'; `over` sets the rest."""
    f = {"s": torch.ones(n), "theta0": torch.zeros(n), "omega": torch.zeros(n), "alpha": torch.zeros(n),
         "zeta": torch.zeros(n), "zeta2": torch.zeros(n), "v": torch.zeros(n, 2), "acc": torch.zeros(n, 2),
         "warp": torch.zeros(n), "g1": torch.zeros(n), "g2": torch.zeros(n), "c420": torch.zeros(n, dtype=torch.bool),
         "noise": torch.zeros(n), "compress": torch.zeros(n, dtype=torch.bool), "reverse": torch.zeros(n, dtype=torch.bool),
         "hflip": torch.zeros(n, dtype=torch.bool), "vflip": torch.zeros(n, dtype=torch.bool), "transpose": False,
         "perm": torch.arange(3).repeat(n, 1), "dup_first": torch.zeros(n, dtype=torch.bool),
         "dup_last": torch.zeros(n, dtype=torch.bool), "blur": False, "rot": torch.zeros(n, dtype=torch.long)}
    for j in range(3):
        f[f"layer{j}.on"] = torch.zeros(n, dtype=torch.bool)
    f.update(over)
    gen.fixed = f


def _close(a, b, what):
    d = (a - b).abs()
    assert d.max().item() <= 1.5 / 255 and d.mean().item() < 2e-3, f"{what}: max {d.max().item()}, mean {d.mean().item()}"


def test_timing_pan():
    gen = ClipGenerator(_bank(), crop=64)
    _plain(gen, 2, v=torch.tensor([[2.0, 0.0], [2.0, 0.0]]))
    x, y, _ = gen.batch(2, seed=5)  # x [2,3,4,64,64]
    m = 8
    # target[x] = frame2[x + 2] = frame4[x - 2] = frame0[x + 6]
    _close(y[..., m:-m], x[:, :, 1, :, m + 2:-m + 2], "target vs input 1")
    _close(y[..., m:-m], x[:, :, 2, :, m - 2:-m - 2], "target vs input 2")
    _close(y[..., m:-m], x[:, :, 0, :, m + 6:-m + 6], "target vs input 0")
    _close(y[..., m:-m], x[:, :, 3, :, m - 6:-m - 6], "target vs input 3")
    # reversed: input 0 is frame 6
    _plain(gen, 2, v=torch.tensor([[2.0, 0.0], [2.0, 0.0]]), reverse=torch.tensor([True, False]))
    xr, yr, _ = gen.batch(2, seed=5)
    _close(xr[0, :, 0], x[0, :, 3], "reversed input 0")
    _close(xr[0, :, 1], x[0, :, 2], "reversed input 1")
    _close(yr, y, "reversed target")


def test_timing_acceleration():
    gen = ClipGenerator(_bank(), crop=64)
    _plain(gen, 1, acc=torch.tensor([[1.0, 0.5]]))
    x, y, _ = gen.batch(1, seed=6)
    _close(x[:, :, 1], x[:, :, 2], "frames 2 and 4 under pure acceleration")
    _close(x[:, :, 0], x[:, :, 3], "frames 0 and 6 under pure acceleration")
    assert (x[:, :, 1] - y).abs().mean() > 1e-3, "the path did not move"


def test_deterministic():
    gen = ClipGenerator(_bank(), crop=32)
    gen.p_blur = 1.0
    a = gen.batch(3, seed=11)
    b = gen.batch(3, seed=11)
    c = gen.batch(3, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 3, 4, 32, 32) and a[1].shape == (3, 3, 32, 32)
    assert a[0].min() >= 0 and a[0].max() <= 1


def test_still_validation_and_knobs():
    import train

    gen = ClipGenerator(_bank(), crop=32, **train.STILL)
    x, y, info = gen.batch(4, seed=3)
    for i in range(4):  # four copies of the target: the network must give the frame back
        assert torch.equal(x[:, :, i], y), f"still clip input {i} differs from the target"
    assert float(info["motion"].abs().max()) == 0.0
    assert train.parse_knobs("p_noise=0.1, layer_probs=0.5:0.5:0:0") == {"p_noise": 0.1,
                                                                         "layer_probs": (0.5, 0.5, 0.0, 0.0)}
    for bad in ("p_nose=0.1", "p_noise", "p_noise=x"):
        try:
            train.parse_knobs(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_chroma420_nearest():
    """4:2:0 as videoconvert decodes it: luma kept, chroma one value per 2x2 block (its mean);
    the knob at 0 leaves every batch as it was, at 1 all 4:2:0 clips get it."""
    from data import chroma420, to_ycc

    x = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(5))
    for nearest in (False, True):
        y, yx = to_ycc(chroma420(x, nearest)), to_ycc(x)
        assert torch.allclose(y[:, 0], yx[:, 0], atol=1e-5)
        pooled = torch.nn.functional.avg_pool2d
        if nearest:  # each block's chroma is the block's mean (bilinear spreads it over neighbours)
            assert torch.allclose(pooled(y[:, 1:], 2), pooled(yx[:, 1:], 2), atol=1e-5)
        blocks = y[:, 1:].reshape(2, 2, 4, 2, 5, 2)
        flat_blocks = torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks), atol=1e-5)
        assert flat_blocks == nearest
    base = ClipGenerator(_bank(), crop=32, p_420=1.0).batch(3, seed=21)
    same = ClipGenerator(_bank(), crop=32, p_420=1.0, p_420_nearest=0.0).batch(3, seed=21)
    near = ClipGenerator(_bank(), crop=32, p_420=1.0, p_420_nearest=1.0).batch(3, seed=21)
    assert torch.equal(base[0], same[0]) and torch.equal(base[1], same[1])
    assert not torch.equal(base[1], near[1])
    assert torch.equal(base[2]["motion"], near[2]["motion"])


def test_q8():
    torch.manual_seed(0)
    v = torch.rand(5000) ** 6 * 1e-5
    c, s = st.q8_encode(v, False)
    d = st.q8_decode(c, s, v.shape, False)
    assert (d / v).min() > 0.95
    big = v > v.max() * 1e-6
    assert ((d / v)[big]).max() < 1.05
    m = torch.randn(7, 300) * 1e-3
    c, s = st.q8_encode(m, True)
    d = st.q8_decode(c, s, m.shape, True)
    big = m.abs() > m.abs().max() * 1e-3
    assert (((d - m).abs() / m.abs())[big]).max() < 0.05 and bool(((d * m) >= 0).all())


def test_split_roundtrip():
    with tempfile.TemporaryDirectory() as tmp:
        t = {f"t{i}": torch.randn(1000 + i) for i in range(10)}
        files = st.save_split(tmp, "x", t, {"step": 3}, max_bytes=10_000)
        assert len(files) > 3
        back, meta = st.load_split(tmp, "x")
        assert meta["step"] == 3 and all(torch.equal(back[k], t[k]) for k in t)
        # fewer parts next time: stale ones are removed
        st.save_split(tmp, "x", {"a": torch.zeros(3)}, {"step": 4})
        assert sorted(os.listdir(tmp)) == ["x-00.safetensors", "x.json"]
        with open(os.path.join(tmp, "x-00.safetensors"), "r+b") as f:
            f.seek(-1, 2)
            f.write(b"\x01")
        try:
            st.load_split(tmp, "x")
        except ValueError:
            pass
        else:
            raise AssertionError("a corrupted part was accepted")


def _photos(folder):
    from PIL import Image

    for split, seeds in (("train", (1, 2)), ("val", (3,))):
        os.makedirs(os.path.join(folder, split))
        for s in seeds:
            a = _image(s).permute(1, 2, 0).numpy()
            Image.fromarray(a).save(os.path.join(folder, split, f"p{s}.jpg"), quality=95)


def test_resume_and_export():
    import train
    import export

    with tempfile.TemporaryDirectory() as tmp:
        _photos(os.path.join(tmp, "photos"))
        common = ["--photos", os.path.join(tmp, "photos"), "--crop", "32", "--batch", "1", "--widths", "8,16,32,64",
                  "--val-n", "2", "--val-every", "1000", "--log-every", "3", "--warmup", "2", "--total-steps", "100",
                  "--keep-m", "--device", "cpu", "--lr", "1e-3", "--data", "p_noise=0.2,p_static=0.5"]
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        train.main(common + ["--state", a, "--max-steps", "3"])
        w3, _ = st.load_split(a, "model")
        train.main(common + ["--state", a, "--max-steps", "3", "--require-state"])
        train.main(common + ["--state", b, "--max-steps", "6"])
        wa, ma = st.load_split(a, "model")
        wb, mb = st.load_split(b, "model")
        assert ma["step"] == mb["step"] == 6 and ma["samples"] == 6 and ma["calls"] == 2
        moved = max((wb[k].float() - w3[k].float()).abs().max().item() for k in wb)
        gap = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wb)
        print(f"resume: max weight gap to the straight run {gap:.2e}, steps 3..6 moved weights by {moved:.2e}")
        assert gap < 0.2 * moved, f"resumed run is {gap} away from the straight one (steps 3..6 moved {moved})"
        out = os.path.join(tmp, "m.safetensors")
        export.main(["--state", a, "--out", out, "--check-size", "32"])
        from safetensors.torch import load_file

        sd = load_file(out)
        assert len(sd) == 59 and all(v.dtype == torch.float16 for v in sd.values())
        assert not any(k.startswith("module.") for k in sd)
        assert export.spec_from_shapes(sd)[:3] == ((8, 16, 32, 64), (32, 16, 8, 8, 8), 8)


if __name__ == "__main__":
    fails = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print(f"ok   {name}")
            except Exception as e:  # noqa: BLE001
                fails += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
    n = sum(1 for k in globals() if k.startswith("test_"))
    print(f"{n - fails} passed, {fails} failed")
    sys.exit(1 if fails else 0)
