"""Real-video training windows: the clips of tools/data/make_videos.py, decoded once into memory.

    bank = VideoBank(".gpu-train/videos", device)
    clips = bank.sample(n, h, w, generator, nearest)   # [n, 7, 3, h, w] RGB in [0, 1] or None

A window is 7 consecutive decoded frames (FLAVR's inputs are frames 0, 2, 4, 6 and the target is
frame 3, as for the synthetic clips) that span no scene cut; the crop is random, on even
coordinates (so the 4:2:0 chroma grid stays aligned), and the frames are converted with the
exact BT.601 limited-range formula, chroma repeated over 2x2 (videoconvert's fast path) where
`nearest`, else bilinear. Only clips at least h x w take part (320x240 ones only in 144x176
batches). Decoding uses codec.py (cv2's libavcodec), nothing else.
"""
import json
import os

import numpy as np
import torch

from tools.train import codec
from tools.train.data import yuv420_to_rgb


class VideoBank:
    def __init__(self, folder, device):
        path = os.path.join(folder, "videos.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} missing: make the clips with tools/data/make_videos.py")
        with open(path) as f:
            clips = json.load(f)["clips"]
        self.names, self.planes, self.windows = [], [], []
        for name, c in sorted(clips.items()):
            with open(os.path.join(folder, c["file"]), "rb") as f:
                data = f.read()
            frames = codec.decode_annexb(data, c["width"], c["height"])
            if len(frames) != c["frames"]:
                raise ValueError(f"{name}: {len(frames)} frames decoded, videos.json says {c['frames']}")
            planes = [torch.from_numpy(np.stack([fr[i] for fr in frames])).to(device) for i in range(3)]
            cuts = set(c["cuts"])
            starts = [k for k in range(len(frames) - 6) if not any(k < j <= k + 6 for j in cuts)]
            if not starts:
                continue
            self.names.append(name)
            self.planes.append(planes)
            self.windows.append(starts)
        if not self.names:
            raise ValueError(f"no usable clip in {folder}")
        self.device = device

    def __len__(self):
        return len(self.names)

    def fits(self, h, w):
        return [i for i, p in enumerate(self.planes) if p[0].shape[1] >= h and p[0].shape[2] >= w]

    def sample(self, n, h, w, g, nearest):
        """n windows of h x w (both even) chosen with the CPU generator g: [n, 7, 3, h, w] float,
        or None if no clip is that large. nearest: bool tensor [n]."""
        ok = self.fits(h, w)
        if not ok:
            return None
        out = []
        for j in range(n):
            i = ok[int(torch.randint(0, len(ok), (1,), generator=g))]
            Y, U, V = self.planes[i]
            starts = self.windows[i]
            k = starts[int(torch.randint(0, len(starts), (1,), generator=g))]
            y0 = 2 * int(torch.randint(0, (Y.shape[1] - h) // 2 + 1, (1,), generator=g))
            x0 = 2 * int(torch.randint(0, (Y.shape[2] - w) // 2 + 1, (1,), generator=g))
            sl = slice(k, k + 7)
            out.append(yuv420_to_rgb(Y[sl, y0:y0 + h, x0:x0 + w], U[sl, y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2],
                                     V[sl, y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2],
                                     nearest=bool(nearest[j])).clamp(0, 1))
        return torch.stack(out)
