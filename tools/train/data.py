"""Synthetic 7-frame video clips from photographs, rendered on the GPU in batches.

A clip is what a camera would record of a still scene (a photograph) while it pans, zooms and
rolls along a smooth path with velocity AND acceleration, with up to three foreground layers
(cut-outs of other photographs with soft random shapes) moving on their own paths in front of
it, a slow non-rigid warp (parallax-like local motion), exposure drift, motion blur (several
sub-frame samples averaged over a random shutter time), 4:2:0 chroma, sensor noise and blocky
compression on the input frames, and 8-bit quantisation.

Timing. The clip has frames at t = 0..6 (one unit = one frame interval of the real video).
FLAVR's inputs are frames 0, 2, 4, 6 and its target is frame 3: docs/network.md puts output k of n at
(k+1)/(n+1) between the 2nd and 3rd input, i.e. for 2x exactly halfway between frames 2 and 4.
All motion parameters are in output pixels per time unit, so the displacement between two
inputs is twice the velocity.

Rendering. Each output pixel is the mean of f x f bicubic samples (supersampling, default f=2)
of a 720x720 canvas cut from a photograph, so edges are antialiased the same way in every frame
and sub-pixel motion is exact. The canvas scale s (canvas px per output px) is drawn in about
[0.85, 1.9] and then limited so the whole path stays inside the canvas.

    bank = PhotoBank("photos/train", device)
    gen = ClipGenerator(bank, crop=256)
    inputs, target, info = gen.batch(16, seed=1234)   # [B,3,4,H,W], [B,3,H,W] in [0,1]

Every random choice of a batch comes from `seed` (a CPU generator for the parameters, a device
generator for the noise fields), so a batch is a pure function of (photos, settings, seed): a
resumed run regenerates exactly the clips it would have seen, and the validation set is fixed.
"""
import math
import os

import numpy as np

import torch
import torch.nn.functional as F

from tools.train import codec

# ---------------------------------------------------------------------------------------------
# Photos


def _decode(path):
    """JPEG -> uint8 [3, H, W] (torchvision if present, else Pillow)."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file

        return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except ImportError:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB")).copy()
        return torch.from_numpy(a).permute(2, 0, 1).contiguous()


class PhotoBank:
    """All photos of a folder, decoded once, kept on `device` as uint8 [3, H, W]."""

    def __init__(self, folder, device, canvas=720, images=None):
        """Photos of `folder`, or `images` (a list of uint8 [3,H,W] tensors) if given."""
        if images is None:
            names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))
            if not names:
                raise FileNotFoundError(f"no photos in {folder}")
            images = [_decode(os.path.join(folder, n)) for n in names]
        else:
            names = [f"image{i}" for i in range(len(images))]
        self.names = names
        self.canvas = canvas
        self.images = []
        for im in images:
            h, w = im.shape[1:]
            if min(h, w) < canvas:  # enlarge small ones so a canvas fits (never happens with make_photos)
                s = canvas / min(h, w)
                im = F.interpolate(im[None].float(), size=(math.ceil(h * s), math.ceil(w * s)),
                                   mode="bicubic", align_corners=False).clamp(0, 255).round().byte()[0]
            self.images.append(im.to(device))
        self.device = device

    def __len__(self):
        return len(self.images)

    def canvases(self, idx, oy, ox, rot):
        """Float [n, 3, S, S] in [0,1]: photo idx[i] cut at relative offset (oy, ox) in [0,1],
        rotated by rot[i] quarter turns."""
        S = self.canvas
        out = []
        for i, o_y, o_x, r in zip(idx.tolist(), oy.tolist(), ox.tolist(), rot.tolist()):
            im = self.images[i]
            h, w = im.shape[1:]
            y0 = int(round(o_y * (h - S)))
            x0 = int(round(o_x * (w - S)))
            c = im[:, y0:y0 + S, x0:x0 + S]
            if r:
                c = torch.rot90(c, r, dims=(1, 2))
            out.append(c)
        return torch.stack(out).float().div_(255.0)


# ---------------------------------------------------------------------------------------------
# Small helpers


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster")


def _pair(v):
    """A knob that is a range: (lo, hi), or one number for both."""
    if isinstance(v, (int, float)):
        return float(v), float(v)
    lo, hi = (float(t) for t in v)
    return lo, hi


def _u(g, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _loguniform(g, n, lo, hi):
    return torch.exp(_u(g, n, math.log(lo), math.log(hi)))


def _bern(g, n, p):
    return torch.rand(n, generator=g) < p


def _rand_dir(g, n):
    a = _u(g, n, 0, 2 * math.pi)
    return torch.stack([torch.cos(a), torch.sin(a)], 1)


def _sample_speed(g, n, vmax, p_static, power=2.0):
    """Output-pixel displacement between two INPUT frames: 0 for a share p_static, else
    vmax * u^power (most clips slow, some fast: with power 2, P(d < vmax/4) = 1/2)."""
    d = vmax * torch.rand(n, generator=g) ** power
    return torch.where(_bern(g, n, p_static), torch.zeros(n), d)


RGB2YCC = torch.tensor([[0.2126, 0.7152, 0.0722],
                        [-0.1146, -0.3854, 0.5],
                        [0.5, -0.4542, -0.0458]])  # BT.709, full range, Cb/Cr centred on 0
YCC2RGB = torch.linalg.inv(RGB2YCC)

JPEG_Y = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
JPEG_C = torch.full((8, 8), 99.0)
JPEG_C[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]],
                              dtype=torch.float32)


def _dct_matrix(n=8):
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.float()


DCT8 = _dct_matrix()


def to_ycc(x):
    return torch.einsum("ij,bj...->bi...", RGB2YCC.to(x), x)


def to_rgb(y):
    return torch.einsum("ij,bj...->bi...", YCC2RGB.to(y), y)


def chroma420(x, nearest=False):
    """x [N,3,H,W] RGB: chroma averaged over 2x2 and upsampled again (what a 4:2:0 decode gives):
    bilinearly, or where `nearest` (a bool, or a bool tensor [N] per image) each sample repeated
    over its 2x2 pixels (GStreamer videoconvert's fast I420 -> RGB path, and tools/eval's)."""
    y = to_ycc(x)
    c = F.avg_pool2d(y[:, 1:], 2)
    rep = F.interpolate(c, scale_factor=2, mode="nearest")
    if nearest is True:
        c = rep
    else:
        c = F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=False)
        if torch.is_tensor(nearest):
            c = torch.where(nearest[:, None, None, None], rep, c)
    return to_rgb(torch.cat([y[:, :1], c], 1))


def rgb_to_yuv420(x):
    """x [N,3,H,W] RGB in [0,1] -> 8-bit planes Y [N,H,W], U, V [N,H/2,W/2] (uint8): BT.601
    limited range (what an untagged SD/HD stream is decoded as), chroma averaged over 2x2."""
    r, g, b = x.clamp(0, 1).unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = F.avg_pool2d(((b - y) / 1.772)[:, None], 2)[:, 0]
    cr = F.avg_pool2d(((r - y) / 1.402)[:, None], 2)[:, 0]
    to8 = lambda v: v.round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    return to8(16 + 219 * y), to8(128 + 224 * cb), to8(128 + 224 * cr)


def yuv420_to_rgb(Y, U, V, nearest=True):
    """The inverse (exact formula, as tools/eval and flavr-eval convert): float RGB [N,3,H,W],
    not rounded; chroma repeated over 2x2 (nearest) or upsampled bilinearly."""
    y = (Y.float() - 16) / 219
    c = (torch.stack([U, V], 1).float() - 128) / 224
    c = F.interpolate(c, scale_factor=2, mode="nearest" if nearest else "bilinear",
                      **({} if nearest else {"align_corners": False}))
    cb, cr = c[:, 0], c[:, 1]
    r = y + 1.402 * cr
    b = y + 1.772 * cb
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], 1)


def block_dct_compress(x, quality):
    """JPEG-like 8x8 DCT quantisation of x [N,3,H,W] (H, W multiples of 8) in YCbCr;
    quality [N] in 1..100 (the JPEG quality scale)."""
    n, _, h, w = x.shape
    q = quality.to(x).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q) / 100  # libjpeg's scaling
    tabs = torch.stack([JPEG_Y, JPEG_C, JPEG_C]).to(x)  # [3,8,8]
    qt = (tabs[None] * scale[:, None, None, None]).clamp(min=1) / 255.0  # [N,3,8,8]
    d = DCT8.to(x)
    y = to_ycc(x)
    b = y.reshape(n, 3, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)  # [N,3,hb,wb,8,8]
    c = d @ b @ d.T
    qt = qt[:, :, None, None]
    c = torch.round(c / qt) * qt
    b = d.T @ c @ d
    y = b.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, h, w)
    return to_rgb(y)


def _to(p, dev):
    """The parameter dict with every tensor moved to `dev` (python scalars stay)."""
    if isinstance(p, dict):
        return {k: _to(v, dev) for k, v in p.items()}
    if isinstance(p, list):
        return [_to(v, dev) for v in p]
    return p.to(dev, non_blocking=True) if torch.is_tensor(p) else p


def _smooth_noise(n, ch, grid, size, gen, device):
    """Low-frequency noise [n,ch,H,W] (size: an int for a square, or (H, W)): grid x grid normals
    upsampled bicubically."""
    z = torch.randn(n, ch, grid, grid, generator=gen, device=device)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(z, size=hw, mode="bicubic", align_corners=True)


# ---------------------------------------------------------------------------------------------
# The generator


class ClipGenerator:
    """Renders batches of synthetic clips; see the module docstring. All knobs are attributes;
    keyword arguments set any of them (an unknown name is an error)."""

    def __init__(self, bank, crop=256, supersample=2, max_motion=48.0, **knobs):
        if crop % 8:
            raise ValueError("crop must be a multiple of 8")
        self.bank = bank
        self.crop = crop
        self.ss = supersample
        self.max_motion = max_motion      # output px between two INPUT frames (camera and layers)
        self.p_static = 0.08              # camera does not move (layers still may)
        self.p_blur = 0.35                # share of batches rendered with motion blur
        self.blur_samples = 5             # sub-frame samples in a blurred batch
        self.max_blur_px = 6.0            # cap on blur streak length (output px)
        self.layer_probs = (0.3, 0.35, 0.2, 0.15)  # 0, 1, 2, 3 foreground layers
        self.p_warp = 0.35                # non-rigid low-frequency motion
        self.p_photometric = 0.3          # exposure drift
        self.p_420 = 0.75                 # 4:2:0 chroma on all frames
        self.p_420_nearest = 0.0          # of those, chroma repeated over 2x2 (else bilinear)
        self.p_noise = 0.5                # sensor noise on the inputs
        self.max_noise = 0.02
        self.p_compress = 0.25            # block-DCT compression on the inputs
        self.p_reverse = 0.5
        self.p_dup_first = 0.04           # input 0 := input 1 (a window at a stream's start)
        self.p_dup_last = 0.04            # input 3 := input 2 (a window at a stream's end)
        # Closer to real video (all off by default, so the defaults and validation sets are as before):
        self.p_parallax = 0.0             # clips whose layers are depth planes: screen motion k x the
        #                                   background's (k 1.2..2.5, nearer = faster), layer 0 forced on
        self.p_layer_warp = 0.0           # layers that deform (smooth field attached to the object)
        self.warp_scale = 1.0             # amplitude factor of the background's non-rigid warp
        self.p_light = 0.0                # clips with a spatially varying exposure change over time
        self.p_small = 0.0                # batches rendered at small_size (H, W), e.g. QCIF 144x176
        self.small_size = (144, 176)
        self.small_scale = (1.3, 3.0)     # extra zoom-out there (log-uniform): a downscaled look
        self.p_codec = 0.0                # clips through a real codec (codec.py) instead of chroma420 / DCT
        self.codec_h264 = 0.7             # of those: H.264 (x264), else MPEG-4 part 2
        self.crf = (18.0, 36.0)           # x264 CRF range (uniform)
        self.mpeg4_q = (2.0, 12.0)        # MPEG-4 part 2 quantiser range (log-uniform)
        self.p_codec_full = 0.7           # of codec clips: all 7 frames encoded at the full rate, target =
        #                                   decoded frame 3 (else: the 4 inputs as a half-rate stream)
        self.codec_threads = 0            # threads for the codec (0: every core)
        self.videos = None                # a videos.VideoBank: real-video windows for p_real
        self.p_real = 0.0                 # clips that are windows of real video (used as decoded:
        #                                   no synthetic 4:2:0, noise or codec on them)
        self.fixed = {}                   # parameter overrides (tests, previews): name -> tensor
        for k, v in knobs.items():
            if not hasattr(self, k):
                raise TypeError(f"ClipGenerator has no knob {k!r}")
            setattr(self, k, v)
        if self.p_real > 0 and self.videos is None:
            raise ValueError("p_real needs videos (a videos.VideoBank; train.py --videos DIR)")
        if self.p_codec > 0:  # fail now, with the reason, not in the middle of training
            for name, used in (("h264", self.codec_h264 > 0), ("mpeg4", self.codec_h264 < 1)):
                why = codec.available(name) if used else None
                if why:
                    raise codec.CodecUnavailable(f"p_codec={self.p_codec} needs {name}: {why}")

    # -- parameters -----------------------------------------------------------------------------

    def _params(self, n, g):
        """All per-clip random parameters (CPU tensors)."""
        W = float(self.crop)
        p = {}
        nphotos = len(self.bank)
        p["photo"] = torch.randint(0, nphotos, (n,), generator=g)
        p["oy"], p["ox"] = torch.rand(n, generator=g), torch.rand(n, generator=g)
        p["rot"] = torch.where(_bern(g, n, 0.2), torch.randint(1, 4, (n,), generator=g), torch.zeros(n, dtype=torch.long))
        # Camera: velocity (output px / unit), acceleration, roll, zoom.
        speed = _sample_speed(g, n, self.max_motion, self.p_static) / 2
        v = _rand_dir(g, n) * speed[:, None]
        acc = torch.randn(n, 2, generator=g) * (0.12 * speed[:, None] + 0.15)
        acc = torch.where((speed > 0)[:, None], acc, torch.zeros_like(acc))
        big = _bern(g, n, 0.2)
        omega = torch.randn(n, generator=g) * torch.where(big, 0.012, 0.002)
        alpha = torch.randn(n, generator=g) * torch.where(big, 0.003, 0.0005)
        zeta = torch.randn(n, generator=g) * torch.where(big, 0.012, 0.003)
        zeta2 = torch.randn(n, generator=g) * torch.where(big, 0.003, 0.0008)
        theta0 = torch.randn(n, generator=g) * 0.05
        still = speed == 0
        omega, alpha, zeta, zeta2 = [torch.where(still, 0.0, t) for t in (omega, alpha, zeta, zeta2)]
        p.update(v=v, acc=acc, omega=omega, alpha=alpha, zeta=zeta, zeta2=zeta2, theta0=theta0)
        # Scale: canvas px per output px, limited so the path stays inside the canvas.
        s = _loguniform(g, n, 0.85, 1.9)
        tmax = 3.6  # frames at +-3 plus half a shutter
        ext = (v.norm(dim=1) * tmax + 0.5 * acc.norm(dim=1) * tmax ** 2)  # output px
        zmax = torch.exp((zeta.abs() * tmax + 0.5 * zeta2.abs() * tmax ** 2))
        amax = theta0.abs() + omega.abs() * tmax + 0.5 * alpha.abs() * tmax ** 2
        rf = (torch.cos(amax.clamp(max=math.pi / 4)) + torch.sin(amax.clamp(max=math.pi / 4)))
        s_fit = (self.bank.canvas / 2 - 3) / (W / 2 * rf * zmax + ext + 4)
        p["s"] = torch.minimum(s, s_fit).clamp(min=0.6)
        # Non-rigid warp: amplitude (canvas px per unit) of a smooth field.
        p["warp"] = torch.where(_bern(g, n, self.p_warp), _u(g, n, 0.1, 1.0) * (0.2 + speed / 8), torch.zeros(n))
        p["warp2"] = torch.randn(n, generator=g) * 0.15
        # Foreground layers.
        nl = torch.multinomial(torch.tensor(self.layer_probs), n, replacement=True, generator=g)
        layers = []
        for j in range(len(self.layer_probs) - 1):
            L = {"on": nl > j}
            # layers a little slower (u^3): with several per clip the fastest one sets the
            # clip's motion, and it should not be large in most clips
            lspeed = _sample_speed(g, n, self.max_motion, 0.1, power=3.0) / 2
            L["c0"] = (torch.rand(n, 2, generator=g) - 0.5) * W * 0.9
            L["v"] = _rand_dir(g, n) * lspeed[:, None]
            L["acc"] = torch.randn(n, 2, generator=g) * (0.15 * lspeed[:, None] + 0.2)
            L["phi0"] = _u(g, n, -math.pi, math.pi)
            L["omega"] = torch.randn(n, generator=g) * 0.02
            L["alpha"] = torch.randn(n, generator=g) * 0.004
            L["zeta"] = torch.randn(n, generator=g) * 0.01
            L["size"] = _loguniform(g, n, 14, W * 0.4)  # half-size, output px
            L["aspect"] = _loguniform(g, n, 0.5, 2.0)
            L["edge"] = torch.where(_bern(g, n, 0.75), _u(g, n, 0.7, 1.0), _u(g, n, 0.2, 0.7))
            L["src"] = torch.randint(0, nphotos, (n,), generator=g)
            L["soy"], L["sox"] = torch.rand(n, generator=g), torch.rand(n, generator=g)
            L["tscale"] = _loguniform(g, n, 0.8, 1.6)  # texture canvas px per output px
            L["tpsi"] = _u(g, n, -math.pi, math.pi)
            L["gain"] = _loguniform(g, n, 0.7, 1.3)
            layers.append(L)
        p["layers"] = layers
        # Exposure drift (log gain per unit, and its change).
        ph = _bern(g, n, self.p_photometric)
        p["g1"] = torch.where(ph, torch.randn(n, generator=g) * 0.02, torch.zeros(n))
        p["g2"] = torch.where(ph, torch.randn(n, generator=g) * 0.004, torch.zeros(n))
        # Motion blur: shutter (units), capped by streak length.
        fastest = torch.stack([v.norm(dim=1)] + [L["v"].norm(dim=1) * L["on"] for L in layers], 1).amax(1)
        sh = _u(g, n, 0.2, 1.0)
        p["shutter"] = torch.minimum(sh, self.max_blur_px / (fastest + 1e-3))
        p["blur"] = bool(torch.rand(1, generator=g) < self.p_blur)
        # Motion of the clip in output px between inputs 2 and 3 (frames 2 and 4), for reports.
        lay = torch.stack([2 * L["v"].norm(dim=1) * L["on"] for L in layers], 1).amax(1)
        p["motion"] = torch.maximum(2 * v.norm(dim=1), lay)
        self._real_params(p, n, g, sh)
        return self._override(p)

    def _real_params(self, p, n, g, sh):
        """The parameters of the real-video knobs, drawn after all the others (so that the draws
        above, and the validation sets, are the same whatever these knobs are)."""
        W = float(self.crop)
        layers, v = p["layers"], p["v"]
        # Low-resolution batches: another frame size, zoomed out (more scene per pixel).
        p["small"] = bool(torch.rand(1, generator=g) < self.p_small)
        zoom = _loguniform(g, n, *_pair(self.small_scale))
        # Parallax: layers as nearer planes of the scene, moving k times the background (whose
        # screen velocity is -v) plus a little of their own.
        par = _bern(g, n, self.p_parallax)
        ks = [_u(g, n, 1.2, 2.5) for _ in layers]
        own = [torch.randn(n, 2, generator=g) * 0.4 for _ in layers]
        big = [_loguniform(g, n, W * 0.25, W * 0.7) for _ in layers]
        # Deforming layers: amplitude (output px per unit at the layer's scale) and curvature in time.
        lw = [torch.where(_bern(g, n, self.p_layer_warp), _u(g, n, 0.3, 1.5), torch.zeros(n)) for _ in layers]
        lw2 = [torch.randn(n, generator=g) * 0.2 for _ in layers]
        # Local light: log gain per unit of a smooth spatial field, and its change.
        light = torch.where(_bern(g, n, self.p_light), torch.randn(n, generator=g) * 0.05, torch.zeros(n))
        light2 = torch.randn(n, generator=g) * 0.3
        changed = False
        if bool(par.any()):
            changed = True
            layers[0]["on"] = layers[0]["on"] | par
            for L, k, o, b in zip(layers, ks, own, big):
                m = par[:, None]
                L["v"] = torch.where(m, -k[:, None] * v + o, L["v"])
                L["acc"] = torch.where(m, -k[:, None] * p["acc"], L["acc"])
                L["size"] = torch.where(par, b, L["size"])
        for L, a, a2 in zip(layers, lw, lw2):
            L["warp"] = a * (0.3 + L["v"].norm(dim=1) / 8)
            L["warp2"] = a2
        p["warp"] = p["warp"] * self.warp_scale
        p["light"], p["light2"] = light, light2
        if p["small"]:
            changed = True
            hs, ws = (int(t) for t in self.small_size)
            if hs % 8 or ws % 8:
                raise ValueError(f"small_size {self.small_size} must be multiples of 8")
            r = max(hs, ws) / W
            for L in layers:
                L["c0"] = L["c0"] * torch.tensor([ws / W, hs / W])
                L["size"] = L["size"] * r
            p["s"] = p["s"] * zoom
        # the scale limit for this frame size and these paths (small frames allow more zoom-out)
        p["s"] = torch.minimum(p["s"], self._s_fit(p, float(max(self._size(p)))))
        if changed:  # motion and shutter follow the changed paths
            fastest = torch.stack([v.norm(dim=1)] + [L["v"].norm(dim=1) * L["on"] for L in layers], 1).amax(1)
            p["shutter"] = torch.minimum(sh, self.max_blur_px / (fastest + 1e-3))
            lay = torch.stack([2 * L["v"].norm(dim=1) * L["on"] for L in layers], 1).amax(1)
            p["motion"] = torch.maximum(2 * v.norm(dim=1), lay)

    def _size(self, p):
        """(H, W) of the clips of a batch with parameters p."""
        if p.get("small"):
            return tuple(int(t) for t in self.small_size)
        return (self.crop, self.crop)

    def _s_fit(self, p, extent):
        """Largest canvas scale that keeps the camera path of a frame of `extent` px inside the canvas."""
        tmax = 3.6
        v, acc = p["v"], p["acc"]
        ext = (v.norm(dim=1) * tmax + 0.5 * acc.norm(dim=1) * tmax ** 2)
        zmax = torch.exp((p["zeta"].abs() * tmax + 0.5 * p["zeta2"].abs() * tmax ** 2))
        amax = p["theta0"].abs() + p["omega"].abs() * tmax + 0.5 * p["alpha"].abs() * tmax ** 2
        rf = (torch.cos(amax.clamp(max=math.pi / 4)) + torch.sin(amax.clamp(max=math.pi / 4)))
        return ((self.bank.canvas / 2 - 3) / (extent / 2 * rf * zmax + ext + 4)).clamp(min=0.6)

    def _aug_params(self, n, g):
        """Augmentation and degradation parameters (CPU tensors), drawn apart from the scene so a
        rendered clip can be finished again with other ones (train.py --reuse)."""
        p = {}
        p["c420"] = _bern(g, n, self.p_420)
        p["noise"] = torch.where(_bern(g, n, self.p_noise), _loguniform(g, n, 0.002, self.max_noise), torch.zeros(n))
        p["shot"] = _u(g, n, 0.0, 1.0)
        p["compress"] = _bern(g, n, self.p_compress)
        p["quality"] = _u(g, n, 45, 95)
        p["reverse"] = _bern(g, n, self.p_reverse)
        p["hflip"], p["vflip"] = _bern(g, n, 0.5), _bern(g, n, 0.5)
        p["transpose"] = bool(torch.rand(1, generator=g) < 0.5)
        p["perm"] = torch.stack([torch.randperm(3, generator=g) for _ in range(n)])
        p["dup_first"] = _bern(g, n, self.p_dup_first)
        p["dup_last"] = _bern(g, n, self.p_dup_last)
        # drawn last, so that the draws above (and the validation sets) are as before it existed
        p["c420_nearest"] = _bern(g, n, self.p_420_nearest)
        # the codec's, drawn after those
        p["codec"] = _bern(g, n, self.p_codec)
        p["h264"] = _bern(g, n, self.codec_h264)
        crf, mq = _pair(self.crf), _pair(self.mpeg4_q)
        p["crf"] = _u(g, n, *crf)
        p["mpeg4_q"] = _loguniform(g, n, *mq).round()
        p["codec_full"] = _bern(g, n, self.p_codec_full)
        p["bframes"] = torch.randint(0, 4, (n,), generator=g)
        p["preset"] = torch.randint(0, len(X264_PRESETS), (n,), generator=g)
        p["i_last"] = _bern(g, n, 0.5)  # encode backwards: the I frame is the last input, not the first
        return self._override(p)

    def _override(self, p):
        for k, val in self.fixed.items():
            if k.startswith("layer"):  # "layer0.on" etc.
                j, name = k[5:].split(".")
                if "layers" in p:
                    p["layers"][int(j)][name] = val
            elif k in p:
                p[k] = val
        return p

    # -- rendering ------------------------------------------------------------------------------

    def batch(self, n, seed):
        """n clips from `seed`: inputs [n,3,4,H,W], target [n,3,H,W] (both 8-bit values in
        [0,1]) and info {motion [n] (output px between inputs 2 and 3), layers [n], blur}."""
        return self.finish(self.render(n, seed), seed)

    @torch.no_grad()
    def render(self, n, seed):
        """The expensive part: (clean 7-frame clips [n,7,3,H,W], scene parameters)."""
        dev = self.bank.device
        g = torch.Generator().manual_seed(int(seed))
        gd = torch.Generator(device=dev).manual_seed(int(seed) + 7919)
        pc = self._params(n, g)
        p = _to(pc, dev)
        (Hc, W), f, S = self._size(pc), self.ss, self.bank.canvas
        size = (n, 3, Hc * f, W * f)

        canv = self.bank.canvases(pc["photo"], pc["oy"], pc["ox"], pc["rot"])
        # Each layer is rendered only for the clips that have it.
        layers = []
        for L, Lc in zip(p["layers"], pc["layers"]):
            idx = Lc["on"].nonzero()[:, 0]
            if idx.numel() == 0:
                continue
            m = idx.numel()
            sub = {k: v[idx.to(dev)] for k, v in L.items()}
            src = self.bank.canvases(Lc["src"][idx], Lc["soy"][idx], Lc["sox"][idx], torch.zeros(m, dtype=torch.long))
            layers.append((idx.to(dev), sub, src, _smooth_noise(m, 1, 6, 32, gd, dev)))
        warp = None
        if bool((pc["warp"] > 0).any()):
            # canvas px -> normalised units, channels last like a sampling grid
            warp = (_smooth_noise(n, 2, 5, (Hc * f, W * f), gd, dev) * (p["warp"] * 2 / S)[:, None, None, None]).permute(0, 2, 3, 1)
        # Deforming layers: a smooth displacement field (2 channels, layer units) for each.
        lfield = [_smooth_noise(L["warp"].numel(), 2, 4, 24, gd, dev) if bool((L["warp"] > 0).any()) else None
                  for _, L, _, _ in layers]
        light = None
        if bool((pc["light"] != 0).any()):
            light = _smooth_noise(n, 1, 4, (Hc, W), gd, dev) * p["light"][:, None, None, None]

        # Sampling grids are affine maps of the output's normalised coordinates x_n, y_n in
        # [-1, 1] (affine_grid, align_corners=False: f x f samples per output pixel); output px
        # relative to the crop centre are u = x_n W/2, v = y_n H/2.
        h = W / 2
        hy = Hc / 2
        ry = hy / h  # 1 for square crops (then nothing below is multiplied by it)
        K = self.blur_samples if pc["blur"] else 1
        offs = torch.linspace(-0.5, 0.5, K).tolist() if K > 1 else [0.0]
        frames = []
        for k in range(7):
            acc = 0
            for o in offs:
                tau = (k - 3) + p["shutter"] * o  # [n] time of this sample, 0 = the target
                tau2 = tau * tau
                # Camera: X = S/2 + s0 pos(tau) + s(tau) R(theta(tau)) (u, v), in canvas px.
                sc = p["s"] * torch.exp(p["zeta"] * tau + 0.5 * p["zeta2"] * tau2) * (2 / S) * h
                th = p["theta0"] + p["omega"] * tau + 0.5 * p["alpha"] * tau2
                pos = (p["v"] * tau[:, None] + 0.5 * p["acc"] * tau2[:, None]) * (p["s"] * 2 / S)[:, None]
                c, sn = torch.cos(th) * sc, torch.sin(th) * sc
                if ry != 1:
                    theta = torch.stack([torch.stack([c, -sn * ry, pos[:, 0]], 1), torch.stack([sn, c * ry, pos[:, 1]], 1)], 1)
                else:
                    theta = torch.stack([torch.stack([c, -sn, pos[:, 0]], 1), torch.stack([sn, c, pos[:, 1]], 1)], 1)
                grid = F.affine_grid(theta, size, align_corners=False)
                if warp is not None:
                    grid = grid + warp * (tau + 0.5 * p["warp2"] * tau2)[:, None, None, None]
                img = F.grid_sample(canv, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
                # Foreground layers, back to front.
                for (idx, L, src, sh), lf in zip(layers, lfield):
                    t, t2 = tau[idx], tau2[idx]
                    lc = L["c0"] + L["v"] * t[:, None] + 0.5 * L["acc"] * t2[:, None]
                    phi = L["phi0"] + L["omega"] * t + 0.5 * L["alpha"] * t2
                    size_l = L["size"] * torch.exp(L["zeta"] * t)
                    asp = L["aspect"].sqrt()
                    cp, sp = torch.cos(phi), torch.sin(phi)
                    ax, ay = 1 / (size_l * asp), asp / size_l
                    # layer coords (the shape lives in [-1,1]^2): R(-phi) ((u,v) - lc) / (size asp, size / asp)
                    th_l = torch.stack([
                        torch.stack([cp * h * ax, sp * hy * ax, -(cp * lc[:, 0] + sp * lc[:, 1]) * ax], 1),
                        torch.stack([-sp * h * ay, cp * hy * ay, -(-sp * lc[:, 0] + cp * lc[:, 1]) * ay], 1)], 1)
                    gl = F.affine_grid(th_l, (idx.numel(), 1, Hc * f, W * f), align_corners=False)
                    if lf is not None:
                        # the field lives on the object (sampled at its own coordinates), grows
                        # from 0 at the target's time; amplitude in output px -> layer units
                        amp = L["warp"] / size_l * (t + 0.5 * L["warp2"] * t2)
                        d = F.grid_sample(lf, gl, mode="bilinear", padding_mode="border", align_corners=True)
                        gl = gl + d.permute(0, 2, 3, 1) * amp[:, None, None, None]
                    nz = F.grid_sample(sh, gl, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
                    shape = 1 - (gl * gl).sum(-1) + 0.45 * nz
                    shape = torch.where(gl.abs().amax(-1) > 0.97, -1.0, shape)
                    # |d shape / d output px| is about 2 / size at the rim: edge = 1 gives a
                    # 1-pixel transition, smaller values a defocused one.
                    a = (0.5 + shape * (size_l * L["edge"] / 2)[:, None, None]).clamp_(0, 1)
                    # Texture, rigidly attached to the layer (tscale canvas px per output px):
                    # canvas = tc + tscale size R(psi) (px asp, py / asp), normalised by 2/S.
                    ts = L["tscale"] * size_l * (2 / S)
                    cq, sq = torch.cos(L["tpsi"]) * ts, torch.sin(L["tpsi"]) * ts
                    m2 = torch.stack([torch.stack([cq * asp, -sq / asp], 1), torch.stack([sq * asp, cq / asp], 1)], 1)
                    span = ((S / 2 - 4) - L["tscale"] * L["size"] * 1.5).clamp(min=0)
                    off = torch.stack([(L["sox"] - 0.5), (L["soy"] - 0.5)], 1) * (2 * span * 2 / S)[:, None]
                    if lf is None:
                        th_t = m2 @ th_l
                        th_t[:, :, 2] += off
                        gt = F.affine_grid(th_t, (idx.numel(), 3, Hc * f, W * f), align_corners=False)
                    else:  # the texture follows the deformed layer coordinates
                        gt = torch.einsum("nij,nhwj->nhwi", m2, gl) + off[:, None, None, :]
                    tex = F.grid_sample(src, gt, mode="bicubic", padding_mode="reflection", align_corners=False)
                    sub = img[idx]
                    img = img.index_copy(0, idx, sub + a[:, None] * (tex * L["gain"][:, None, None, None] - sub))
                gain = torch.exp(p["g1"] * tau + 0.5 * p["g2"] * tau2)
                img = img * gain[:, None, None, None]
                img = F.avg_pool2d(img, f) if f > 1 else img
                if light is not None:  # local light: log gain field x (tau + light2 tau^2 / 2)
                    img = img * torch.exp(light * (tau + 0.5 * p["light2"] * tau2)[:, None, None, None])
                acc = acc + img
            frames.append((acc / len(offs)).clamp(0, 1))
        clip = torch.stack(frames, 1)  # [n, 7, 3, H, W]
        pc["real"] = torch.zeros(n, dtype=torch.bool)
        if self.p_real > 0:
            clip = self._real_windows(clip, pc, seed)
        return clip, pc

    def _real_windows(self, clip, pc, seed):
        """Replace a share p_real of the clips by windows of real video (videos.py), chosen with
        their own generator (the scene draws stay as they are)."""
        g = torch.Generator().manual_seed(int(seed) + 31337)
        n, _, _, h, w = clip.shape
        real = _bern(g, n, self.p_real)
        nearest = _bern(g, n, self.p_420_nearest)
        idx = real.nonzero()[:, 0]
        if idx.numel() == 0:
            return clip
        win = self.videos.sample(idx.numel(), h, w, g, nearest[idx])
        if win is None:  # no clip that large (e.g. 256 px crops of 320x240 video): all synthetic
            return clip
        pc["real"] = real
        pc["motion"] = torch.where(real, torch.full((n,), float("nan")), pc["motion"])
        return clip.index_copy(0, idx.to(clip.device), win.to(clip.device, clip.dtype))

    @torch.no_grad()
    def finish(self, rendered, seed):
        """Augment and degrade rendered clips with parameters drawn from `seed` (the same seed
        as the render for a plain batch, another one to reuse a render)."""
        clip, scene = rendered
        dev = clip.device
        n, t, _, h, w = clip.shape
        g = torch.Generator().manual_seed(int(seed) + 104729)
        gd = torch.Generator(device=dev).manual_seed(int(seed) + 15485863)
        pc = self._aug_params(n, g)
        p = _to(pc, dev)
        # Augment: time reversal, flips, transpose, channel order.
        rev = p["reverse"][:, None, None, None, None]
        clip = torch.where(rev, clip.flip(1), clip)
        clip = torch.where(p["hflip"][:, None, None, None, None], clip.flip(4), clip)
        clip = torch.where(p["vflip"][:, None, None, None, None], clip.flip(3), clip)
        if pc["transpose"] and h == w:
            clip = clip.transpose(3, 4)
        perm = p["perm"]
        clip = torch.gather(clip, 2, perm[:, None, :, None, None].expand_as(clip))
        clip_rgb = clip
        # 4:2:0 chroma on every frame (the ground truth of a real video has it too).
        flat = clip.reshape(n * t, 3, h, w)
        c420 = p["c420"].repeat_interleave(t)[:, None, None, None]
        sub = chroma420(flat, p["c420_nearest"].repeat_interleave(t))
        flat = torch.where(c420, sub, flat).clamp(0, 1)
        clip = flat.reshape(n, t, 3, h, w)
        target = clip[:, 3]
        inputs = clip[:, [0, 2, 4, 6]]  # [n, 4, 3, h, w]
        # Input-only degradations: sensor noise (signal-dependent part too), block compression.
        sig = p["noise"][:, None, None, None, None]
        if bool((pc["noise"] > 0).any()):
            shot = p["shot"][:, None, None, None, None]
            std = sig * (1 - shot + shot * 2 * inputs.clamp(min=0).sqrt())
            inputs = inputs + std * torch.randn(inputs.shape, generator=gd, device=dev)
        if bool(pc["compress"].any()):
            fl = inputs.reshape(n * 4, 3, h, w).clamp(0, 1)
            comp = block_dct_compress(fl, p["quality"].repeat_interleave(4))
            m = p["compress"].repeat_interleave(4)[:, None, None, None]
            inputs = torch.where(m, comp, fl).reshape(n, 4, 3, h, w)
        real = scene.get("real", torch.zeros(n, dtype=torch.bool))
        pc["codec"] = pc["codec"] & ~real
        if bool(pc["codec"].any()):
            inputs, target = self._codec(clip_rgb, inputs, target, pc, p, gd)
        if bool(real.any()):  # real video comes decoded: nothing synthetic on it (augmentations only)
            m = real.to(dev)
            inputs = torch.where(m[:, None, None, None, None], clip_rgb[:, [0, 2, 4, 6]], inputs)
            target = torch.where(m[:, None, None, None], clip_rgb[:, 3], target)
        # Windows at a stream's start / end repeat the nearest real frame (after the codec: the
        # element repeats a decoded frame).
        inputs = torch.where(p["dup_first"][:, None, None, None, None],
                             torch.cat([inputs[:, 1:2], inputs[:, 1:]], 1), inputs)
        inputs = torch.where(p["dup_last"][:, None, None, None, None],
                             torch.cat([inputs[:, :3], inputs[:, 2:3]], 1), inputs)
        q = lambda x: torch.round(x.clamp(0, 1) * 255) / 255  # noqa: E731
        inputs = q(inputs).permute(0, 2, 1, 3, 4).contiguous()  # [n, 3, 4, h, w]
        target = q(target)
        info = {"motion": scene["motion"], "layers": sum(L["on"].long() for L in scene["layers"]),
                "blur": scene["blur"], "codec": pc["codec"], "real": real}
        return inputs, target, info

    def _codec(self, clip, inputs, target, pc, p, gd):
        """The clips chosen for a real codec: their inputs (and in full-rate mode their target)
        replaced by what a decoder gives. clip: the augmented clean 7-frame RGB clips.

        Like a camera's video: sensor noise first (on every encoded frame), then RGB -> Y'CbCr
        BT.601 limited range with chroma averaged over 2x2 and rounded to 8 bits, the encoder
        and the decoder (codec.py, on a thread pool), then back to RGB with chroma repeated over
        2x2 (videoconvert's fast path, where c420_nearest) or bilinear. Full-rate mode
        (codec_full) encodes frames 0..6 as one stream, so inputs AND target are decoded frames,
        as in tools/eval, where the truth is the clip's own decoded odd frame; otherwise only the
        inputs 0, 2, 4, 6 are a (half-rate) stream and the target is the clean frame 3 through
        the same colour conversion (4:2:0, 8 bits) without the codec."""
        dev = clip.device
        idx = pc["codec"].nonzero()[:, 0]
        sel = clip[idx.to(dev)]
        m, t, _, h, w = sel.shape
        if h % 2 or w % 2:
            raise ValueError(f"a codec needs an even frame size, got {w}x{h}")
        sig = p["noise"][idx.to(dev)][:, None, None, None, None]
        clean3 = sel[:, 3]
        if bool((pc["noise"][idx] > 0).any()):
            shot = p["shot"][idx.to(dev)][:, None, None, None, None]
            std = sig * (1 - shot + shot * 2 * sel.clamp(min=0).sqrt())
            sel = sel + std * torch.randn(sel.shape, generator=gd, device=dev)
        full = pc["codec_full"][idx]
        frames_idx = [list(range(7)) if bool(f) else [0, 2, 4, 6] for f in full]
        Y, U, V = rgb_to_yuv420(sel.reshape(m * t, 3, h, w))
        Y, U, V = (a.reshape(m, t, *a.shape[1:]).cpu().numpy() for a in (Y, U, V))
        jobs = []
        for j, i in enumerate(idx.tolist()):
            fr = [(Y[j, k], U[j, k], V[j, k]) for k in frames_idx[j]]
            if bool(pc["i_last"][i]):
                fr = fr[::-1]
            if bool(pc["h264"][i]):
                opts = {"crf": float(pc["crf"][i]), "preset": X264_PRESETS[int(pc["preset"][i])],
                        "bframes": int(pc["bframes"][i])}
                jobs.append((fr, "h264", opts))
            else:
                opts = {"qscale": float(pc["mpeg4_q"][i]), "bframes": min(2, int(pc["bframes"][i]))}
                jobs.append((fr, "mpeg4", opts))
        decoded = codec.roundtrip(jobs, threads=self.codec_threads or None)
        nearest = p["c420_nearest"][idx.to(dev)]
        inputs, target = inputs.clone(), target.clone()
        for j, i in enumerate(idx.tolist()):
            dec = decoded[j][::-1] if bool(pc["i_last"][i]) else decoded[j]
            planes = [torch.from_numpy(np.stack([d[c] for d in dec])).to(dev) for c in range(3)]
            rgb = yuv420_to_rgb(*planes, nearest=bool(nearest[j]))  # [frames, 3, h, w]
            if len(dec) == 7:
                inputs[i] = rgb[[0, 2, 4, 6]]
                target[i] = rgb[3]
            else:
                inputs[i] = rgb
                target[i] = yuv420_to_rgb(*rgb_to_yuv420(clean3[j:j + 1]), nearest=bool(nearest[j]))[0]
        return inputs, target


def make_validation(bank, n, crop, seed, chunk=16, **knobs):
    """A fixed list of (inputs, target, motion) chunks from held-out photos."""
    gen = ClipGenerator(bank, crop=crop, **knobs)
    out = []
    for i in range(0, n, chunk):
        x, y, info = gen.batch(min(chunk, n - i), seed + i)
        out.append((x, y, info["motion"]))
    return out
