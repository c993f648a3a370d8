"""FLAVR in PyTorch, written from the description in docs/network.md (not from the original code).

The module tree reproduces the released checkpoints' key names, so `load_state_dict` takes a
released `state_dict` (after stripping `module.`) as it is. Widths are parameters, so narrow test
models keep the same key names.

    model = Flavr(n_out=1)                       # the released 2x architecture
    model = Flavr(n_out=3, bias=True)            # 4x: encoder biases, 3 outputs
    model = Flavr(widths=(8, 16, 32, 64))        # a narrow model (all widths / 8)
    y = model(x)   # x [B, 3, 4, H, W] in [0, 1] -> list of n_out tensors [B, 3, H, W]

`interpolate(model, x)` is the project's contract for any size: pad right/bottom by edge
replication to a multiple of 8, run, crop back.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SEGate(nn.Module):
    """x * sigmoid(conv1x1x1(global_avg_pool(x))); key: attn_layer.0.{weight,bias}."""

    def __init__(self, c):
        super().__init__()
        self.attn_layer = nn.Sequential(nn.Conv3d(c, c, 1, bias=True), nn.Sigmoid())

    def forward(self, x):
        return x * self.attn_layer(x.mean(dim=(2, 3, 4), keepdim=True))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, bias):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=bias), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv3d(cout, cout, 3, stride=1, padding=1, bias=bias))
        self.fg = SEGate(cout)
        s = stride if isinstance(stride, tuple) else (stride,) * 3
        if s != (1, 1, 1) or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False))
        else:
            self.downsample = None

    def forward(self, x):
        y = self.fg(self.conv2(self.conv1(x)))
        y = y + (self.downsample(x) if self.downsample is not None else x)
        return F.relu(y)


class Encoder(nn.Module):
    def __init__(self, widths, bias):
        super().__init__()
        c1, c2, c3, c4 = widths
        self.stem = nn.Sequential(nn.Conv3d(3, c1, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=bias), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(c1, c1, 1, bias), BasicBlock(c1, c1, 1, bias))
        self.layer2 = nn.Sequential(BasicBlock(c1, c2, (1, 2, 2), bias), BasicBlock(c2, c2, 1, bias))
        self.layer3 = nn.Sequential(BasicBlock(c2, c3, (1, 2, 2), bias), BasicBlock(c3, c3, 1, bias))
        self.layer4 = nn.Sequential(BasicBlock(c3, c4, 1, bias), BasicBlock(c4, c4, 1, bias))

    def forward(self, x):
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return x0, x1, x2, x3, x4


class Conv3dSE(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(cin, cout, 3, 1, 1, bias=True), SEGate(cout))

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.2)


class UpConv3dSE(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.upconv = nn.Sequential(
            nn.ConvTranspose3d(cin, cout, (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=True), SEGate(cout))

    def forward(self, x):
        return F.leaky_relu(self.upconv(x), 0.2)


class FeatureFuse(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.2)


class Flavr(nn.Module):
    def __init__(self, n_out=1, widths=(64, 128, 256, 512), bias=None, decoder=None, fuse=None):
        super().__init__()
        if bias is None:
            bias = n_out > 1  # the released 4x/8x models have encoder biases, 2x has none
        c1, c2, c3, c4 = widths
        d = decoder or (c3, c2, c1, c1, c1)
        fuse = fuse or c1
        self.n_out = n_out
        self.encoder = Encoder(widths, bias)
        self.decoder = nn.Sequential(
            Conv3dSE(c4, d[0]),
            UpConv3dSE(d[0] + c3, d[1]),
            UpConv3dSE(d[1] + c2, d[2]),
            Conv3dSE(d[2] + c1, d[3]),
            UpConv3dSE(d[3] + c1, d[4]),
        )
        self.feature_fuse = FeatureFuse(4 * d[4], fuse)
        self.outconv = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(fuse, 3 * n_out, 7, 1, 0, bias=True))

    def forward(self, x):
        """x [B, 3, 4, H, W] in [0, 1], H and W multiples of 8 -> list of n_out [B, 3, H, W]."""
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        x = x - mean
        x0, x1, x2, x3, x4 = self.encoder(x)
        dec = self.decoder
        y = torch.cat([dec[0](x4), x3], 1)
        y = torch.cat([dec[1](y), x2], 1)
        y = torch.cat([dec[2](y), x1], 1)
        y = torch.cat([dec[3](y), x0], 1)
        y = dec[4](y)                                   # [B, C, 4, H, W]
        b, c, t, h, w = y.shape
        y = y.permute(0, 2, 1, 3, 4).reshape(b, t * c, h, w)   # channel 64*t + c
        y = self.feature_fuse(y)
        y = self.outconv(y)                             # [B, 3n, H, W]
        m = mean.squeeze(2)                             # [B, 3, 1, 1]
        return [y[:, 3 * k:3 * k + 3] + m for k in range(self.n_out)]


def interpolate(model, x):
    """Any H, W: replicate-pad right/bottom to a multiple of 8, run, crop back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        b, c, t = x.shape[:3]
        x = F.pad(x.reshape(b, c * t, h, w), (0, pw, 0, ph), mode="replicate").reshape(b, c, t, h + ph, w + pw)
    return [y[..., :h, :w] for y in model(x)]


def released_checkpoint(model, optimizer=None, epoch=0):
    """The released files' layout: {'state_dict' (with module.), 'epoch', 'optimizer', 'best_psnr', 'lr'}."""
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    from collections import OrderedDict
    return {
        "state_dict": OrderedDict(sd),
        "epoch": epoch,
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "best_psnr": 0.0,
        "lr": 2e-4,
    }


def init_random(model, seed):
    """Random weights with a realistic scale (so activations neither vanish nor explode)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel() if "upconv.0" not in name else p.shape[0] * p[0, 0].numel() / 4
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model
