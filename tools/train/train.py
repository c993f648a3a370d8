"""Train FLAVR 2x (tools/reference/flavr_ref.py) on synthetic clips (data.py), resumably.

One call trains for --minutes (or --max-steps), then validates, saves the state (state.py) into
--state and, if given, --out-state ($OUT/state on the device machine), and prints a summary.
A later call with the same --state continues where this one stopped: the step counter, the
learning-rate schedule and the data stream (a pure function of --seed and the step) go on.

    python3 -m tools.train.train --photos PHOTOS --state STATE --minutes 8

from the repository root, on any machine with PyTorch (a CUDA GPU when there is one). PHOTOS is
the output of `python3 -m tools.data.make_photos`; `--videos` (make_videos.py) and the codec
knobs add real material (tools/train/README.md). On the GPU machine, tools/device/train.sh runs
it with the machine's paths and limits.

Model: Flavr(n_out=1, widths=--widths), no encoder bias (as the released 2x model), decoder and
fuse widths as flavr_ref derives them. Default widths 32,64,128,256: 10,525,571 parameters,
21.1 MB as float16 safetensors (limit 25 MB), 0.94 T multiply-adds per 1280x720 frame (a quarter
of the released model's 3.74 T).

Loss: Charbonnier (L1) on the 8-bit target, optionally + --w-census x ternary census loss and
--w-grad x L1 of image gradients. Validation: a fixed set of clips made from the held-out
photos (photos/val), PSNR of the 8-bit-rounded output, overall and by motion between the two
middle inputs; the PSNR of the plain blend of the two middle inputs is logged once as a floor.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from tools.reference.flavr_ref import Flavr
from tools.train import state as st
from tools.train.data import ClipGenerator, PhotoBank, make_validation

VAL_SEED = 77_000_000
BUCKETS = [(0, 4), (4, 16), (16, 32), (32, 1e9)]


def parse_knobs(text):
    """'a=1,b=0.5:0.5' -> {'a': 1.0, 'b': (0.5, 0.5)}; names must be ClipGenerator knobs."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise ValueError(f"{item!r} is not NAME=VALUE")
        k, v = (t.strip() for t in item.split("=", 1))
        if k not in DATA_KNOBS:
            raise ValueError(f"unknown knob {k!r} (known: {', '.join(sorted(DATA_KNOBS))})")
        vals = tuple(float(t) for t in v.split(":"))
        if k in INT_KNOBS:
            vals = tuple(int(t) for t in vals)
        out[k] = vals if len(vals) > 1 or k == "layer_probs" else vals[0]
    return out


# ClipGenerator attributes --data may set (see tools/train/data.py)
DATA_KNOBS = {"p_static", "p_blur", "max_blur_px", "layer_probs", "p_warp", "p_photometric", "p_420",
              "p_420_nearest",
              "p_noise", "max_noise", "p_compress", "p_reverse", "p_dup_first", "p_dup_last",
              # real-video knobs (tools/train/README.md)
              "blur_samples", "p_parallax", "p_layer_warp", "warp_scale", "p_light", "p_small", "small_size",
              "small_scale", "p_codec", "codec_h264", "crf", "mpeg4_q", "p_codec_full", "codec_threads", "p_real"}
# knobs that are integers
INT_KNOBS = {"blur_samples", "codec_threads"}

# Validation sets beside the main one: "clean" = the same scenes without noise or compression on
# the inputs; "still" = a still camera and no layers, i.e. four copies of the target (the
# network must give the frame back).
CLEAN = {"p_noise": 0.0, "p_compress": 0.0}
STILL = {"p_static": 1.0, "layer_probs": (1.0, 0.0, 0.0, 0.0), "p_warp": 0.0, "p_photometric": 0.0,
         "p_noise": 0.0, "p_compress": 0.0, "p_blur": 0.0, "p_dup_first": 0.0, "p_dup_last": 0.0}
# "still420": the still set as a decoded video reaches the element through videoconvert: 4:2:0
# chroma, each sample repeated over its 2x2 pixels (bigbuckbunny in tools/eval has it too).
STILL420 = {**STILL, "p_420": 1.0, "p_420_nearest": 1.0}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", required=True, help="folder with train/ and val/ (make_photos.py)")
    ap.add_argument("--state", required=True, help="state folder: loaded if it holds a state, saved to")
    ap.add_argument("--out-state", default=None, help="also save the state here (e.g. $OUT/state)")
    ap.add_argument("--require-state", action="store_true", help="fail if --state holds no state")
    ap.add_argument("--init", default=None,
                    help="with no state in --state: start from these weights (an export.py file; its "
                         "'step' metadata, if any, continues the schedule); moments start fresh")
    ap.add_argument("--minutes", type=float, default=8.0, help="training time of this call")
    ap.add_argument("--max-steps", type=int, default=None, help="stop this call after this many steps")
    ap.add_argument("--total-steps", type=int, default=20000, help="cosine schedule length (kept in the state)")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--cycle-start", type=int, default=0,
                    help="step where the warm-up and cosine start (restart the schedule for a new phase)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--min-lr", type=float, default=1e-6)
    ap.add_argument("--wd", type=float, default=1e-4, help="AdamW weight decay (conv weights only)")
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--max-motion", type=float, default=48.0, help="px between two input frames")
    ap.add_argument("--reuse", type=int, default=1,
                    help="render a batch every N steps; the steps between re-augment it (flips, time, "
                         "channels, noise, compression): use 2 if the log shows data taking much of a step")
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--loss", choices=["charb", "mse"], default="charb")
    ap.add_argument("--w-census", type=float, default=0.0)
    ap.add_argument("--w-grad", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--val-n", type=int, default=96, help="validation clips")
    ap.add_argument("--val-crop", type=int, default=None, help="validation crop (default: --crop)")
    ap.add_argument("--save-every-min", type=float, default=3.0)
    ap.add_argument("--keep-m", action="store_true", help="also save Adam's first moment")
    ap.add_argument("--max-part-mb", type=float, default=None,
                    help="save the state in parts of at most this many MB (default: one part each)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward (validation runs eager)")
    ap.add_argument("--videos", default=None,
                    help="folder of real-video clips (tools/data/make_videos.py) for the p_real knob")
    ap.add_argument("--data", default="",
                    help="training data knobs, ClipGenerator attributes: 'p_noise=0.15,max_noise=0.008,"
                         "layer_probs=0.45:0.3:0.15:0.1' (validation keeps the defaults)")
    args = ap.parse_args(argv)
    try:
        args.data = parse_knobs(args.data)
    except ValueError as e:
        ap.error(f"--data: {e}")
    args.widths = tuple(int(w) for w in args.widths.split(","))
    if len(args.widths) != 4:
        ap.error("--widths takes four numbers")
    return args


# ---------------------------------------------------------------------------------------------
# Losses and metrics


def charbonnier(a, b, eps=1e-3):
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


_CENSUS_W = {}


def _census(img, patch=7):
    key = (img.device, patch)
    if key not in _CENSUS_W:
        w = torch.eye(patch * patch, device=img.device).reshape(patch * patch, 1, patch, patch)
        _CENSUS_W[key] = w
    g = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]) * 255
    d = F.conv2d(g, _CENSUS_W[key], padding=patch // 2) - g
    return d / torch.sqrt(0.81 + d * d)


def census_loss(a, b):
    """Ternary census distance (as in UnFlow/RIFE), mean over pixels, border excluded."""
    d = (_census(a) - _census(b)) ** 2
    d = (d / (0.1 + d)).sum(1)
    return d[:, 3:-3, 3:-3].mean()


def grad_loss(a, b):
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def psnr_8bit(out, target):
    """Per-clip PSNR of the output clamped and rounded to 8 bits (what the plugin writes)."""
    o = torch.round(out.float().clamp(0, 1) * 255) / 255
    mse = ((o - target) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return 10 * torch.log10(1 / mse)


# ---------------------------------------------------------------------------------------------


def lr_at(step, args):
    """Linear warm-up then cosine to --min-lr at --total-steps; both start at --cycle-start (0:
    the first step; a later step restarts the curve there, e.g. for a fine-tuning phase)."""
    step -= args.cycle_start
    if step < args.warmup:
        return args.lr * (max(step, 0) + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, args.total_steps - args.cycle_start - args.warmup))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * t))


def model_macs(widths, h=720, w=1280):
    """Multiply-adds of one 2x window (convolutions only), as src/model/spec.rs counts them."""
    c1, c2, c3, c4 = widths
    d = (c3, c2, c1, c1, c1)
    px = lambda s: 4 * (h / s) * (w / s)  # noqa: E731  output positions at scale 1/s
    m = px(2) * c1 * 3 * 3 * 7 * 7
    # (input width, width, output scale, stride-2) of the eight encoder blocks
    blocks = [(c1, c1, 2, False), (c1, c1, 2, False), (c1, c2, 4, True), (c2, c2, 4, False),
              (c2, c3, 8, True), (c3, c3, 8, False), (c3, c4, 8, False), (c4, c4, 8, False)]
    for cin, c, s, strided in blocks:
        m += px(s) * (c * cin * 27 + c * c * 27)
        if strided or cin != c:
            m += px(s) * c * cin
    m += px(8) * d[0] * c4 * 27 + px(4) * d[1] * (d[0] + c3) * 12 + px(2) * d[2] * (d[1] + c2) * 12
    m += px(2) * d[3] * (d[2] + c1) * 27 + px(1) * d[4] * (d[3] + c1) * 12
    m += h * w * (c1 * 4 * d[4] + 3 * c1 * 49)
    return m


class Logger:
    def __init__(self, paths):
        self.paths = [p for p in paths if p]
        for p in self.paths:
            os.makedirs(os.path.dirname(p) or ".", exist_ok=True)

    def __call__(self, msg):
        line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
        print(line, flush=True)
        for p in self.paths:
            with open(p, "a") as f:
                f.write(line + "\n")


def build_model(widths):
    return Flavr(n_out=1, widths=widths, bias=False)


def model_tensors(model):
    """fp16 state dict with the released key names (no `module.`)."""
    out = {}
    for k, v in model.state_dict().items():
        if not torch.isfinite(v).all():
            raise FloatingPointError(f"weight {k} is not finite: refusing to save")
        if v.abs().max() > 60000:
            raise OverflowError(f"weight {k} does not fit float16")
        out[k] = v.detach().to(torch.float16)
    return out


def save_state(folders, model, opt, meta, keep_m, log, max_bytes=None):
    weights = model_tensors(model)
    opt_t = {}
    names = {p: n for n, p in model.named_parameters()}
    for p, s in opt.state.items():
        n = names[p]
        if "exp_avg_sq" in s:
            c, sc = st.q8_encode(s["exp_avg_sq"], signed=False)
            opt_t[f"{n}.v.q"], opt_t[f"{n}.v.s"] = c, sc
        if keep_m and "exp_avg" in s:
            c, sc = st.q8_encode(s["exp_avg"], signed=True)
            opt_t[f"{n}.m.q"], opt_t[f"{n}.m.s"] = c, sc
    t0 = time.time()
    for folder in folders:
        if not folder:
            continue
        st.save_split(folder, "model", weights, meta, max_bytes)
        if opt_t:
            st.save_split(folder, "opt", opt_t, {"step": meta["step"], "keep_m": keep_m}, max_bytes)
    log(f"saved step {meta['step']} to {', '.join(f for f in folders if f)} ({time.time() - t0:.1f} s)")


def load_state(folder, model, opt, device, log):
    """Restores weights (and what the state has of the moments); returns (meta, rewarm steps)."""
    w, meta = st.load_split(folder, "model")
    sd = {k: v.float() for k, v in w.items()}
    model.load_state_dict(sd, strict=True)
    step = int(meta["step"])
    rewarm = 200
    if st.exists(folder, "opt"):
        try:
            o, ometa = st.load_split(folder, "opt")
        except ValueError as e:
            log(f"optimizer state unusable ({e}); fresh moments")
            o, ometa = None, None
        if o is not None and int(ometa["step"]) == step:
            fused = any(g.get("fused") for g in opt.param_groups)
            have_m = False
            for n, p in model.named_parameters():
                if f"{n}.v.q" not in o:
                    raise ValueError(f"optimizer state has no second moment for {n}")
                v = st.q8_decode(o[f"{n}.v.q"], o[f"{n}.v.s"], p.shape, False, device)
                if f"{n}.m.q" in o:
                    m = st.q8_decode(o[f"{n}.m.q"], o[f"{n}.m.s"], p.shape, True, device)
                    have_m = True
                else:
                    m = torch.zeros_like(p)
                # empty_like keeps the parameter's layout (channels-last 3D): the fused AdamW
                # kernel wants parameters and moments alike
                opt.state[p] = {
                    "step": torch.tensor(float(step), dtype=torch.float32, device=p.device if fused else "cpu"),
                    "exp_avg": torch.empty_like(p).copy_(m),
                    "exp_avg_sq": torch.empty_like(p).copy_(v),
                }
            rewarm = 0 if have_m else 20
            log(f"restored AdamW moments ({'m and v' if have_m else 'v; m rebuilt'}) at step {step}")
        elif o is not None:
            log(f"optimizer state is for step {ometa['step']}, weights for {step}: fresh moments")
    else:
        log("no optimizer state: fresh moments")
    if rewarm:
        log(f"learning rate re-warmed over {rewarm} steps")
    return meta, rewarm


@torch.no_grad()
def validate(model, val, amp, device):
    model.eval()
    ps, mo = [], []
    for x, y, motion in val:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            out = model(x)[0]
        ps.append(psnr_8bit(out, y).cpu())
        mo.append(motion)
    model.train()
    ps, mo = torch.cat(ps), torch.cat(mo)
    res = {"psnr": ps.mean().item()}
    for lo, hi in BUCKETS:
        m = (mo >= lo) & (mo < hi)
        if m.any():
            res[f"{lo}-{hi if hi < 1e9 else 'inf'}"] = round(ps[m].mean().item(), 3)
    return res


def blend_psnr(val):
    ps, mo = [], []
    for x, y, motion in val:
        ps.append(psnr_8bit((x[:, :, 1] + x[:, :, 2]) / 2, y).cpu())
        mo.append(motion)
    ps, mo = torch.cat(ps), torch.cat(mo)
    res = {"psnr": ps.mean().item()}
    for lo, hi in BUCKETS:
        m = (mo >= lo) & (mo < hi)
        if m.any():
            res[f"{lo}-{hi if hi < 1e9 else 'inf'}"] = f"{ps[m].mean().item():.3f} (n={int(m.sum())})"
    return res


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    max_part = None if args.max_part_mb is None else int(args.max_part_mb * 1e6)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    cuda = dev.startswith("cuda")
    amp = not args.no_amp and cuda
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log = Logger([os.path.join(args.state, "train.log")])

    have_state = st.exists(args.state, "model")
    if args.require_state and not have_state:
        sys.exit(f"--require-state: no state in {args.state}")

    torch.manual_seed(args.seed)  # the initial weights (a resumed call overwrites them)
    model = build_model(args.widths).to(dev)
    if cuda:  # channels-last for the 3D convolutions (the 2D ones and the biases stay as they are)
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
                mod.weight.data = mod.weight.data.contiguous(memory_format=torch.channels_last_3d)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, args.beta2), eps=1e-8, fused=cuda)

    fwd = torch.compile(model, dynamic=False) if args.compile else model
    meta = {"step": 0, "samples": 0, "train_seconds": 0.0, "calls": 0, "history": []}
    rewarm = 0
    if not have_state and args.init:
        from safetensors import safe_open

        with safe_open(args.init, "pt") as f:
            md = f.metadata() or {}
            model.load_state_dict({k: f.get_tensor(k).float() for k in f.keys()}, strict=True)
        if md.get("widths") and tuple(int(w) for w in md["widths"].split(",")) != args.widths:
            sys.exit(f"{args.init} has widths {md['widths']}, --widths says {args.widths}")
        meta["step"] = int(md.get("step") or 0)
        meta["samples"] = int(md.get("samples") or 0)
        meta["widths"] = list(args.widths)
        rewarm = 200
        log(f"initialised from {args.init} (step {meta['step']}); fresh moments, re-warm over {rewarm} steps")
    elif have_state:
        meta, rewarm = load_state(args.state, model, opt, dev, log)
        if tuple(meta["widths"]) != args.widths:
            sys.exit(f"state has widths {meta['widths']}, --widths says {args.widths}")
        if meta.get("total_steps") != args.total_steps:
            log(f"schedule length changed: {meta.get('total_steps')} -> {args.total_steps} steps")
    nparams = sum(p.numel() for p in model.parameters())
    meta.update({"widths": list(args.widths), "n_out": 1, "params": nparams, "total_steps": args.total_steps,
                 "lr": args.lr, "min_lr": args.min_lr, "warmup": args.warmup, "cycle_start": args.cycle_start, "batch": args.batch,
                 "crop": args.crop, "seed": args.seed, "max_motion": args.max_motion, "loss": args.loss,
                 "w_census": args.w_census, "w_grad": args.w_grad, "data": args.data})
    start_step = int(meta["step"])
    base = {"samples": int(meta["samples"]), "train_seconds": float(meta["train_seconds"]), "calls": int(meta["calls"])}

    def update_meta(step):
        meta.update(step=step, samples=base["samples"] + (step - start_step) * args.batch,
                    train_seconds=base["train_seconds"] + time.time() - t_start, calls=base["calls"] + 1)
    dev_name = torch.cuda.get_device_name() if cuda else "cpu"
    log(f"call {meta['calls'] + 1}: step {start_step}, widths {args.widths}, {nparams:,} params "
        f"({nparams * 2 / 1e6:.1f} MB fp16, {model_macs(args.widths) / 1e12:.2f} TMAC/720p window), "
        f"batch {args.batch} x {args.crop}px, device {dev_name}, amp {'bf16' if amp else 'off'}")

    bank = PhotoBank(os.path.join(args.photos, "train"), dev)
    vbank = PhotoBank(os.path.join(args.photos, "val"), dev)
    videos = None
    if args.videos:
        from tools.train.videos import VideoBank

        videos = VideoBank(args.videos, dev)
        log(f"real video: {len(videos)} clips from {args.videos}")
    gen = ClipGenerator(bank, crop=args.crop, max_motion=args.max_motion, videos=videos, **args.data)
    if args.data:
        log(f"training data knobs: {json.dumps(args.data)}")
    vcrop = args.val_crop or args.crop
    # The validation sets keep the generator's defaults (motion up to 48 px too, whatever
    # --max-motion is), so that the numbers logged by every call compare.
    val = make_validation(vbank, args.val_n, vcrop, VAL_SEED)
    val_clean = make_validation(vbank, args.val_n, vcrop, VAL_SEED, **CLEAN)
    val_still = make_validation(vbank, max(16, args.val_n // 3), vcrop, VAL_SEED + 1, **STILL)
    val_still420 = make_validation(vbank, max(16, args.val_n // 3), vcrop, VAL_SEED + 1, **STILL420)

    def validate_all():
        res = validate(model, val, amp, dev)
        res["clean"] = validate(model, val_clean, amp, dev)
        res["still"] = round(validate(model, val_still, amp, dev)["psnr"], 3)
        res["still420"] = round(validate(model, val_still420, amp, dev)["psnr"], 3)
        return res
    log(f"photos: {len(bank)} train, {len(vbank)} val; {args.val_n} validation clips "
        f"(setup {time.time() - t_start:.1f} s)")
    if start_step == 0:
        log(f"validation floor, blend of the middle inputs: {json.dumps(blend_psnr(val))}")

    deadline = t_start + args.minutes * 60
    last_save = time.time()
    step = start_step
    k = 0
    run_loss = torch.zeros((), device=dev)
    run_n = 0
    t_log = time.time()
    samples_log = 0
    data_time = 0.0
    ok = True
    rendered = None
    while True:
        if step >= args.total_steps:
            log(f"reached --total-steps {args.total_steps}")
            break
        if args.max_steps is not None and step - start_step >= args.max_steps:
            break
        if time.time() >= deadline:
            break
        timed = (k % args.log_every) == 0
        if timed and cuda:
            torch.cuda.synchronize()
        t0 = time.time()
        seed = (args.seed * 1_000_003 + step) % (1 << 62)
        if args.reuse <= 1:
            x, y, _ = gen.batch(args.batch, seed=seed)
        else:
            r_step = step - step % args.reuse  # a resumed call re-renders the same scene
            if rendered is None or rendered[0] != r_step:
                rendered = (r_step, gen.render(args.batch, (args.seed * 1_000_003 + r_step) % (1 << 62)))
            x, y, _ = gen.finish(rendered[1], seed)
        if timed:
            if cuda:
                torch.cuda.synchronize()
            data_time += time.time() - t0
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        lr = lr_at(step, args) * (min(1.0, (k + 1) / rewarm) if rewarm else 1.0)
        for gi in opt.param_groups:
            gi["lr"] = lr
        with torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            out = fwd(x)[0]
        out = out.float()
        if args.loss == "mse":
            loss = F.mse_loss(out, y)
        else:
            loss = charbonnier(out, y)
        if args.w_census:
            loss = loss + args.w_census * census_loss(out, y)
        if args.w_grad:
            loss = loss + args.w_grad * grad_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        run_loss += loss.detach()
        run_n += 1
        step += 1
        k += 1
        samples_log += args.batch
        if step % args.log_every == 0:
            l = (run_loss / run_n).item()  # noqa: E741
            if not math.isfinite(l):
                log(f"step {step}: loss is {l}: stopping WITHOUT saving (the last saved state stands)")
                ok = False
                break
            dt = time.time() - t_log
            mem = f", {torch.cuda.max_memory_allocated() / 1e9:.1f} GB" if cuda else ""
            log(f"step {step} loss {l:.5f} lr {lr:.2e} {samples_log / dt:.1f} samples/s "
                f"({dt / run_n * 1000:.0f} ms/step, of which data ~{data_time * 1000:.0f} ms{mem})")
            run_loss.zero_()
            run_n = 0
            t_log = time.time()
            samples_log = 0
            data_time = 0.0
        if step % args.val_every == 0:
            t0 = time.time()
            res = validate_all()
            meta["history"].append({"step": step, "val": res})
            log(f"step {step} val {json.dumps(res)}")
            t_log += time.time() - t0  # keep throughput figures about training alone
        if time.time() - last_save > args.save_every_min * 60:
            t0 = time.time()
            update_meta(step)
            save_state([args.state, args.out_state], model, opt, meta, args.keep_m, log, max_part)
            last_save = time.time()
            t_log += time.time() - t0

    if not ok:
        sys.exit(1)
    steps = step - start_step
    train_s = time.time() - t_start
    if meta["history"] and meta["history"][-1]["step"] == step:
        res = meta["history"][-1]["val"]
    else:
        res = validate_all()
        meta["history"].append({"step": step, "val": res})
        log(f"step {step} val {json.dumps(res)}")
    update_meta(step)
    save_state([args.state, args.out_state], model, opt, meta, args.keep_m, log, max_part)
    log(f"SUMMARY call {meta['calls']}: steps {start_step} -> {step} ({steps} in {train_s:.0f} s, "
        f"{steps * args.batch / max(train_s, 1e-9):.1f} samples/s incl. setup), "
        f"val PSNR {res['psnr']:.3f} dB, total {meta['samples']:,} samples")
    if args.out_state:
        import shutil
        shutil.copy(os.path.join(args.state, "train.log"), os.path.join(args.out_state, "train.log"))


if __name__ == "__main__":
    main()
