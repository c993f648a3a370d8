"""FLAVR with the op sequence of the official implementation, for honest speed baselines.

tools/reference/flavr_ref.py is this project's reference (clear, written from the network's
description); its eager time is not what users of the official code see. This module computes the
same function with the operations the authors' code (tarun005/FLAVR: the UNet_3D_3D model and its
3-D ResNet encoder) issues at inference, in the same order, so that PyTorch timings compare
against what that code does. What it reproduces, in the order the forward pass meets it:

- the input is a list of four [B, 3, H, W] frames, stacked on a new time axis (dim 2) inside the
  forward pass, before anything else;
- the mean is three chained single-axis means with kept dims (time, then height, then width), in
  the input's dtype, and the centred input is a new tensor (out of place);
- the stem's ReLU is out of place (a new tensor); every other encoder ReLU is in place;
- each residual block: conv1, ReLU in place, conv2, SE gate, then the shortcut (the 1x1x1
  downsample conv where there is one, computed after the gate), added in place, ReLU in place;
- the SE gate: an adaptive average pool module to 1x1x1, a 1x1x1 conv with bias, a sigmoid, and
  the product of the input with the gate (out of place);
- the optional batch norms are off in the released models; the modules that stand in for them
  return their input, so they issue no kernel (kept for the same module calls);
- decoder stages: conv or transposed conv (bias on), SE gate, LeakyReLU(0.2) in place, then the
  concatenation [decoder output, skip] on channels;
- time folded into channels by unbinding the time axis and concatenating the four slices;
- the 1x1 fuse conv (no bias), LeakyReLU(0.2) in place, a ReflectionPad2d(3) module and a 7x7
  Conv2d with no padding of its own;
- the output split in groups of 3 channels, and the mean (time axis squeezed) added to each.

The module tree has the released checkpoints' key names, so `load_state_dict` takes the same
state dicts as flavr_ref.Flavr. Written by this project (no code taken from the official one).
"""
import torch
import torch.nn as nn


class _NoNorm(nn.Module):
    """Where the official network can put a batch norm (off in every released model)."""

    def forward(self, x):
        return x


class _Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.attn_layer = nn.Sequential(nn.Conv3d(c, c, 1, bias=True), nn.Sigmoid())

    def forward(self, x):
        return x * self.attn_layer(self.pool(x))


class _Block(nn.Module):
    def __init__(self, cin, cout, stride, bias):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=bias), _NoNorm(),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv3d(cout, cout, 3, 1, 1, bias=bias), _NoNorm())
        self.fg = _Gate(cout)
        self.relu = nn.ReLU(inplace=True)
        needs_ds = stride != 1 or cin != cout
        self.downsample = (nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), _NoNorm())
                           if needs_ds else None)

    def forward(self, x):
        out = self.fg(self.conv2(self.conv1(x)))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class _Encoder(nn.Module):
    def __init__(self, widths, bias):
        super().__init__()
        c1, c2, c3, c4 = widths
        self.stem = nn.Sequential(nn.Conv3d(3, c1, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=bias),
                                  _NoNorm(), nn.ReLU(inplace=False))
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
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
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
        feats = self.encoder(x)
        y = feats[4]
        for k, skip in enumerate((feats[3], feats[2], feats[1], feats[0])):
            y = torch.cat([self.lrelu(self.decoder[k](y)), skip], dim=1)
        y = self.lrelu(self.decoder[4](y))
        y = torch.cat(torch.unbind(y, 2), 1)
        parts = torch.split(self.outconv(self.lrelu(self.feature_fuse(y))), 3, dim=1)
        m = mean.squeeze(2)
        return [o + m for o in parts]


def from_reference(ref):
    """An OfficialOpsFlavr with the architecture and weights of a flavr_ref.Flavr (same keys)."""
    widths = (ref.encoder.stem[0].out_channels, ref.encoder.layer2[0].conv2[0].out_channels,
              ref.encoder.layer3[0].conv2[0].out_channels, ref.encoder.layer4[0].conv2[0].out_channels)
    dec = tuple((s.conv[0] if hasattr(s, "conv") else s.upconv[0]).out_channels for s in ref.decoder)
    bias = ref.encoder.stem[0].bias is not None
    m = OfficialOpsFlavr(ref.n_out, widths, bias, dec, ref.feature_fuse.conv[0].out_channels)
    m.load_state_dict(ref.state_dict(), strict=True)
    return m
