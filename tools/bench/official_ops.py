"""FLAVR with the op sequence of the official implementation, for honest speed baselines.

tools/reference/flavr_ref.py is this project's reference (clear, written from the network's
description); its eager time is not what users of the official code see. This module computes the
same function with the operations the official code (tarun005/FLAVR, model/FLAVR_arch.py and
model/resnet_3D.py) issues, in the same order, so that PyTorch timings compare against what that
code does:

- the input is a list of four frames, stacked on a time axis inside the forward pass;
- the input mean is three chained single-axis means (time, then height, then width);
- SE gating pools with an adaptive average pool to 1x1x1, then a 1x1x1 conv and a sigmoid;
- ReLU and LeakyReLU(0.2) run in place, and the residual is added in place;
- the decoder output is concatenated with the skip (decoder first), after the LeakyReLU;
- time is folded into channels by unbinding the time axis and concatenating on channels;
- the output is split into RGB frames, and the mean is added to each.

The module tree has the released checkpoints' key names, so `load_state_dict` takes the same
state dicts as flavr_ref.Flavr (written by this project's own code, not copied).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class _Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attn_layer = nn.Sequential(nn.Conv3d(c, c, 1, bias=True), nn.Sigmoid())

    def forward(self, x):
        return x * self.attn_layer(F.adaptive_avg_pool3d(x, 1))


class _Block(nn.Module):
    def __init__(self, cin, cout, stride, bias):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=bias), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv3d(cout, cout, 3, 1, 1, bias=bias))
        self.fg = _Gate(cout)
        needs_ds = stride != 1 or cin != cout
        self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False)) if needs_ds else None

    def forward(self, x):
        out = self.fg(self.conv2(self.conv1(x)))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


class _Encoder(nn.Module):
    def __init__(self, widths, bias):
        super().__init__()
        c1, c2, c3, c4 = widths
        self.stem = nn.Sequential(nn.Conv3d(3, c1, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=bias),
                                  nn.ReLU(inplace=True))
        s2 = (1, 2, 2)
        self.layer1 = nn.Sequential(_Block(c1, c1, 1, bias), _Block(c1, c1, 1, bias))
        self.layer2 = nn.Sequential(_Block(c1, c2, s2, bias), _Block(c2, c2, 1, bias))
        self.layer3 = nn.Sequential(_Block(c2, c3, s2, bias), _Block(c3, c3, 1, bias))
        self.layer4 = nn.Sequential(_Block(c3, c4, 1, bias), _Block(c4, c4, 1, bias))

    def forward(self, x):
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        return x0, x1, x2, x3, self.layer4(x3)


class _Conv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(cin, cout, 3, 1, 1, bias=True), _Gate(cout))

    def forward(self, x):
        return self.conv(x)


class _UpConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.upconv = nn.Sequential(nn.ConvTranspose3d(cin, cout, (3, 4, 4), (1, 2, 2), (1, 1, 1)),
                                    _Gate(cout))

    def forward(self, x):
        return self.upconv(x)


class _Fuse(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        return self.conv(x)


class OfficialOpsFlavr(nn.Module):
    """forward(frames): frames is a list of 4 tensors [B, 3, H, W] -> list of n_out [B, 3, H, W]."""

    def __init__(self, n_out=1, widths=(64, 128, 256, 512), bias=None, decoder=None, fuse=None):
        super().__init__()
        if bias is None:
            bias = n_out > 1
        c1, c2, c3, c4 = widths
        d = decoder or (c3, c2, c1, c1, c1)
        fuse = fuse or c1
        self.n_out = n_out
        self.encoder = _Encoder(widths, bias)
        self.decoder = nn.Sequential(
            _Conv(c4, d[0]), _UpConv(d[0] + c3, d[1]), _UpConv(d[1] + c2, d[2]),
            _Conv(d[2] + c1, d[3]), _UpConv(d[3] + c1, d[4]))
        self.feature_fuse = _Fuse(4 * d[4], fuse)
        self.outconv = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(fuse, 3 * n_out, 7, 1, 0, bias=True))

    def forward(self, frames):
        x = torch.stack(frames, dim=2)
        mean = x.mean(2, keepdim=True).mean(3, keepdim=True).mean(4, keepdim=True)
        x = x - mean
        x0, x1, x2, x3, x4 = self.encoder(x)
        y = x4
        for stage, skip in zip(self.decoder[:4], (x3, x2, x1, x0)):
            y = torch.cat([F.leaky_relu(stage(y), 0.2, inplace=True), skip], dim=1)
        y = F.leaky_relu(self.decoder[4](y), 0.2, inplace=True)
        y = torch.cat(torch.unbind(y, 2), 1)
        y = F.leaky_relu(self.feature_fuse(y), 0.2, inplace=True)
        y = self.outconv(y)
        m = mean.squeeze(2)
        return [o + m for o in torch.split(y, 3, dim=1)]


def from_reference(ref):
    """An OfficialOpsFlavr with the architecture and weights of a flavr_ref.Flavr (same keys)."""
    widths = (ref.encoder.stem[0].out_channels, ref.encoder.layer2[0].conv2[0].out_channels,
              ref.encoder.layer3[0].conv2[0].out_channels, ref.encoder.layer4[0].conv2[0].out_channels)
    dec = tuple((s.conv[0] if hasattr(s, "conv") else s.upconv[0]).out_channels for s in ref.decoder)
    bias = ref.encoder.stem[0].bias is not None
    m = OfficialOpsFlavr(ref.n_out, widths, bias, dec, ref.feature_fuse.conv[0].out_channels)
    m.load_state_dict(ref.state_dict(), strict=True)
    return m
