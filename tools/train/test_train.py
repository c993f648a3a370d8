"""Checks of the training tools on CPU, with synthetic images (no photos needed).

    /opt/torchenv/bin/python -m tools.train.test_train        (or: pytest tools/train)

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

from tools.train import state as st
from tools.train.data import ClipGenerator, PhotoBank

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
    from tools.train import train

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
    from tools.train.data import chroma420, to_ycc

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
    from tools.train import train
    from tools.train import export

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


# ---------------------------------------------------------------------------------------------
# The real-video knobs (codec.py and data.py's p_codec, p_parallax, p_layer_warp, p_light, p_small)


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean().clamp(min=1e-12)))


def test_yuv420_formula():
    """BT.601 limited range both ways, the formula tools/eval uses: white 235/128/128, black 16;
    a grey with smooth colour comes back within the 8-bit rounding."""
    from tools.train.data import rgb_to_yuv420, yuv420_to_rgb

    Y, U, V = rgb_to_yuv420(torch.ones(1, 3, 4, 4))
    assert int(Y.min()) == int(Y.max()) == 235 and int(U.min()) == int(V.max()) == 128
    Y, U, V = rgb_to_yuv420(torch.zeros(1, 3, 4, 4))
    assert int(Y.max()) == 16 and int(U.max()) == 128
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.1 + 0.45
    x = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), scale_factor=2)  # flat 2x2 chroma
    back = yuv420_to_rgb(*rgb_to_yuv420(x))
    assert (back - x).abs().max() < 2.5 / 255, float((back - x).abs().max())
    red = yuv420_to_rgb(*rgb_to_yuv420(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)))
    assert (red[0, :, 0, 0] - torch.tensor([1.0, 0.0, 0.0])).abs().max() < 3 / 255


def _planes(seed, n=7, h=64, w=96, shift=2):
    import numpy as np

    g = torch.Generator().manual_seed(seed)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, 14, 20, generator=g), size=(h + 40, w + 40 + shift * n),
                                          mode="bicubic", align_corners=False).clamp(0, 1)
    out = []
    for t in range(n):
        f = (big[0, :, 10:10 + h, 10 + shift * t:10 + shift * t + w] * 255).round().byte().numpy()
        out.append((f[0].copy(), np.ascontiguousarray(f[1, ::2, ::2]), np.ascontiguousarray(f[2, ::2, ::2])))
    return out


def test_codec_roundtrip():
    """x264 and FFmpeg's MPEG-4 part 2 through ctypes: every frame comes back, at the right size,
    and a lower quality setting loses more (CRF 16 vs 40, quantiser 2 vs 20)."""
    import numpy as np
    from tools.train import codec

    for name in ("h264", "mpeg4"):
        why = codec.available(name)
        assert why is None, f"{name} is not available here: {why}"
    fr = _planes(3)

    def err(dec):
        return np.mean([np.mean((a[0].astype(float) - b[0]) ** 2) for a, b in zip(fr, dec)])
    hi = codec.roundtrip_one(fr, "h264", crf=16, bframes=2)
    lo = codec.roundtrip_one(fr, "h264", crf=40, preset="ultrafast", bframes=0)
    assert len(hi) == len(lo) == 7 and hi[0][0].shape == (64, 96) and hi[0][1].shape == (32, 48)
    assert 0 < err(hi) < err(lo), (err(hi), err(lo))
    m_hi = codec.roundtrip_one(fr, "mpeg4", qscale=2)
    m_lo = codec.roundtrip_one(fr, "mpeg4", qscale=20, bframes=2)
    assert len(m_hi) == len(m_lo) == 7 and 0 < err(m_hi) < err(m_lo), (err(m_hi), err(m_lo))
    assert 10 * np.log10(255 ** 2 / err(hi)) > 35, "CRF 16 should be close to the source"
    both = codec.roundtrip([(fr, "h264", {"crf": 16, "bframes": 2}), (fr, "mpeg4", {"qscale": 2})], threads=2)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(both[0], hi)), "threaded result differs"
    try:
        codec.roundtrip_one(_planes(1, h=63), "h264")
    except ValueError as e:
        assert "even" in str(e)
    else:
        raise AssertionError("an odd frame size was accepted")


def test_codec_missing_is_a_clear_error():
    from tools.train import codec

    old = os.environ.get("FLAVR_X264")
    saved = dict(codec._LIBS)
    os.environ["FLAVR_X264"] = "/nonexistent/libx264.so"
    codec._LIBS.clear()
    try:
        assert "FLAVR_X264" in (codec.available("h264") or ""), codec.available("h264")
        try:
            ClipGenerator(_bank(), crop=32, p_codec=0.5)
        except codec.CodecUnavailable as e:
            assert "p_codec" in str(e) and "FLAVR_X264" in str(e), str(e)
        else:
            raise AssertionError("p_codec without libx264 was accepted")
        ClipGenerator(_bank(), crop=32, p_codec=0.5, codec_h264=0.0).batch(2, seed=1)  # MPEG-4 needs no x264
    finally:
        if old is None:
            del os.environ["FLAVR_X264"]
        else:
            os.environ["FLAVR_X264"] = old
        codec._LIBS.clear()
        codec._LIBS.update(saved)


def test_new_knobs_off_change_nothing_and_codec_only_its_clips():
    """The real-video knobs at 0 give the default batch; p_codec changes only the clips it picks
    (same scenes, the others bit-identical) and they stay close to the clean clip."""
    base = ClipGenerator(_bank(), crop=32).batch(6, seed=9)
    off = ClipGenerator(_bank(), crop=32, p_parallax=0, p_layer_warp=0, p_light=0, p_small=0, p_codec=0,
                        warp_scale=1.0).batch(6, seed=9)
    assert torch.equal(base[0], off[0]) and torch.equal(base[1], off[1])
    kn = dict(p_noise=0.0, p_420=1.0, p_compress=0.0)  # so that only the codec differs
    base = ClipGenerator(_bank(), crop=32, **kn).batch(6, seed=9)
    cod = ClipGenerator(_bank(), crop=32, p_codec=0.5, crf=(14, 14), mpeg4_q=(2, 2), **kn).batch(6, seed=9)
    picked = cod[2]["codec"]
    assert 0 < int(picked.sum()) < 6, picked
    assert torch.equal(cod[2]["motion"], base[2]["motion"])
    for i in range(6):
        same = torch.equal(cod[0][i], base[0][i]) and torch.equal(cod[1][i], base[1][i])
        assert same != bool(picked[i]), f"clip {i}: codec {bool(picked[i])}, unchanged {same}"
        if picked[i]:  # (32 px crops of noise-like texture: a codec at high quality is ~34-48 dB)
            assert _psnr(cod[1][i], base[1][i]) > 30, _psnr(cod[1][i], base[1][i])
            assert _psnr(cod[0][i], base[0][i]) > 25, _psnr(cod[0][i], base[0][i])


def test_codec_clip_timing():
    """A pure pan through H.264 at high quality, full-rate mode: the decoded target is still
    input 1 moved by v (the codec keeps the geometry), and far from input 1 unmoved."""
    for h264 in (1.0, 0.0):
        gen = ClipGenerator(_bank(), crop=64, p_codec=1.0, codec_h264=h264, p_codec_full=1.0, crf=(12, 12),
                            mpeg4_q=(2, 2))
        _plain(gen, 2, v=torch.tensor([[2.0, 0.0], [2.0, 0.0]]), codec=torch.ones(2, dtype=torch.bool),
               noise=torch.zeros(2), c420_nearest=torch.zeros(2, dtype=torch.bool))
        x, y, _ = gen.batch(2, seed=5)
        m = 8
        moved = (y[..., m:-m] - x[:, :, 1, :, m + 2:-m + 2]).abs().mean().item()
        still = (y[..., m:-m] - x[:, :, 1, :, m:-m]).abs().mean().item()
        assert moved < 2.5 / 255 and still > 3 * moved, (h264, moved, still)


def test_small_batches_geometry():
    """p_small: 144x176 clips; a horizontal and a vertical pan keep the timing on both axes."""
    gen = ClipGenerator(_bank(), crop=64, p_small=1.0)
    for v in ([2.0, 0.0], [0.0, 2.0]):
        _plain(gen, 1, v=torch.tensor([v]))
        x, y, _ = gen.batch(1, seed=4)
        assert x.shape == (1, 3, 4, 144, 176) and y.shape == (1, 3, 144, 176)
        m = 8
        if v[0]:
            _close(y[..., m:-m, m:-m], x[:, :, 1, m:-m, m + 2:-m + 2], "small, horizontal pan")
        else:
            _close(y[..., m:-m, m:-m], x[:, :, 1, m + 2:-m + 2, m:-m], "small, vertical pan")


def test_parallax_layers_follow_the_camera():
    gen = ClipGenerator(_bank(), crop=64, p_parallax=1.0, p_static=0.0)
    p = gen._params(32, torch.Generator().manual_seed(3))
    L = p["layers"][0]
    assert bool(L["on"].all()), "parallax clips need layer 0"
    fast = p["v"].norm(dim=1) > 2
    ratio = -(L["v"] * p["v"]).sum(1) / p["v"].norm(dim=1) ** 2  # ~ k in 1.2..2.5 (plus own motion)
    assert bool(((ratio > 0.9) & (ratio < 2.9))[fast].all()), ratio[fast]
    assert bool((p["motion"] >= 2 * L["v"].norm(dim=1) - 1e-4).all()), "motion must include the layer"


def test_warp_and_light_leave_the_target():
    """Layer deformation and local light grow from zero at the target's time: the target is the
    clip without them, the inputs are not."""
    kn = dict(layer_probs=(0.0, 0.0, 0.0, 1.0), p_blur=0.0)
    base = ClipGenerator(_bank(), crop=48, **kn).batch(3, seed=13)
    for extra in ({"p_layer_warp": 1.0}, {"p_light": 1.0}):
        alt = ClipGenerator(_bank(), crop=48, **kn, **extra).batch(3, seed=13)
        assert (alt[1] - base[1]).abs().max() < 1.5 / 255, (extra, float((alt[1] - base[1]).abs().max()))
        assert (alt[0] - base[0]).abs().mean() > 1e-3, f"{extra} did not change the inputs"


def test_real_video_windows():
    """videos.VideoBank: windows never span a scene cut; with p_real = 1 a clip is 7 decoded
    frames of the video (a 2 px/frame pan: the target is input 1 moved by 2 px), untouched by
    the synthetic degradations; a clip smaller than the batch is never used."""
    import json
    from tools.train import codec
    from tools.train.videos import VideoBank

    with tempfile.TemporaryDirectory() as tmp:
        fr = _planes(5, n=20, h=80, w=96, shift=2)
        for k in range(10, 20):  # a scene cut at frame 10: another, brighter scene
            fr[k] = tuple((q // 2 + 120).astype(q.dtype) for q in fr[k])
        with open(os.path.join(tmp, "pan.h264"), "wb") as f:
            f.write(b"".join(codec.encode_h264(fr, crf=10, aud=True)))
        small = _planes(6, n=8, h=40, w=48)
        with open(os.path.join(tmp, "small.h264"), "wb") as f:
            f.write(b"".join(codec.encode_h264(small, crf=20, aud=True)))
        clips = {"pan": {"file": "pan.h264", "width": 96, "height": 80, "frames": 20, "cuts": [10]},
                 "small": {"file": "small.h264", "width": 48, "height": 40, "frames": 8, "cuts": []}}
        with open(os.path.join(tmp, "videos.json"), "w") as f:
            json.dump({"clips": clips}, f)
        bank = VideoBank(tmp, "cpu")
        assert bank.windows[bank.names.index("pan")] == [0, 1, 2, 3, 10, 11, 12, 13], bank.windows
        assert bank.fits(64, 64) == [bank.names.index("pan")]
        g = torch.Generator().manual_seed(1)
        w = bank.sample(12, 64, 64, g, torch.zeros(12, dtype=torch.bool))
        bright = w.mean(dim=(2, 3, 4))  # [12, 7]: a window is all dark or all bright
        assert bool(((bright.max(1).values - bright.min(1).values) < 0.1).all()), bright
        gen = ClipGenerator(_bank(), crop=64, p_real=1.0, videos=bank, p_noise=1.0, p_compress=1.0)
        _plain(gen, 3, noise=torch.full((3,), 0.02), compress=torch.ones(3, dtype=torch.bool))
        x, y, info = gen.batch(3, seed=8)
        assert bool(info["real"].all()) and bool(torch.isnan(info["motion"]).all())
        m = 8
        moved = (y[..., m:-m] - x[:, :, 1, :, m + 2:-m + 2]).abs().mean().item()
        still = (y[..., m:-m] - x[:, :, 1, :, m:-m]).abs().mean().item()
        assert moved < 2 / 255 and still > 3 * moved, (moved, still)
        try:
            ClipGenerator(_bank(), crop=64, p_real=0.5)
        except ValueError as e:
            assert "videos" in str(e)
        else:
            raise AssertionError("p_real without videos was accepted")


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
