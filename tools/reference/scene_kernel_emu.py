# SPDX-License-Identifier: MIT OR Apache-2.0
# Emulates the index math of kernels/scene.cu (one block per box, each of THREADS threads summing
# pixels tid, tid + THREADS, ... of the box, then the shared-memory tree) against the original
# CPU definition of the grid (pixel x in box x * gw // w, row y in box y * gh // h), for every
# format layout, odd sizes, row padding and plane offsets. No GPU needed.
# usage: python3 tools/reference/scene_kernel_emu.py
import numpy as np
rng = np.random.default_rng(1)
# format: (bpp, sample_bytes, packed offsets or None)
FORMATS = {
 'Rgb': (3,1,(0,1,2)), 'Rgba': (4,1,(0,1,2)), 'Bgra': (4,1,(2,1,0)), 'Rgbx': (4,1,(0,1,2)),
 'Bgrx': (4,1,(2,1,0)), 'I420': (1,1,None), 'Nv12': (1,1,None), 'P010': (2,2,None),
 'I420P10': (2,2,None), 'I422P10': (2,2,None), 'Y444P10': (2,2,None), 'Rgba64': (8,2,(0,2,4)),
}
THREADS = 256
def edges(n, g):
    return [-(-(b*n)//g) for b in range(g+1)]  # ceil(b*n/g)
def sample(buf, a, sb):
    return int(buf[a]) | (int(buf[a+1]) << 8 if sb == 2 else 0)
def cpu(buf, w, h, stride, bpp, sb, packed):
    gw, gh = min(w,64), min(h,36)
    s = [0]*(gw*gh)
    for y in range(h):
        for x in range(w):
            a = y*stride + x*bpp
            v = sample(buf,a,sb) if packed is None else 77*sample(buf,a+packed[0],sb)+150*sample(buf,a+packed[1],sb)+29*sample(buf,a+packed[2],sb)
            s[(y*gh//h)*gw + x*gw//w] += v
    return s
def kernel(buf, off, w, h, stride, bpp, sb, packed):
    gw, gh = min(w,64), min(h,36)
    xe, ye = edges(w,gw), edges(h,gh)
    sums = [None]*(gw*gh)
    for by in range(gh):
        for bx in range(gw):
            x0, bw = xe[bx], xe[bx+1]-xe[bx]
            y0, bh = ye[by], ye[by+1]-ye[by]
            n = bw*bh
            sm = []
            for tid in range(THREADS):
                acc = 0
                for i in range(tid, n, THREADS):
                    y, x = y0 + i//bw, x0 + i % bw
                    a = off + y*stride + x*bpp
                    assert a + bpp <= len(buf)
                    if packed is not None:
                        acc += 77*sample(buf,a+packed[0],sb)+150*sample(buf,a+packed[1],sb)+29*sample(buf,a+packed[2],sb)
                    else:
                        acc += sample(buf,a,sb)
                sm.append(acc)
            s = THREADS//2
            while s > 0:
                for t in range(s): sm[t] += sm[t+s]
                s //= 2
            sums[by*gw+bx] = sm[0]
    return sums
n = 0
for name,(bpp,sb,packed) in FORMATS.items():
    for (w,h) in [(101,57),(7,5),(65,37),(3,40),(130,73)]:
        for pad,off in [(0,0),(13,40)]:
            stride = w*bpp+pad
            span = (h-1)*stride + w*bpp
            plane = rng.integers(0,256,span,dtype=np.uint8)
            buf = np.concatenate([np.zeros(off,np.uint8), plane])
            c = cpu(plane, w, h, stride, bpp, sb, packed)
            k = kernel(buf, off, w, h, stride, bpp, sb, packed)
            assert c == k, (name,w,h,pad)
            n += 1
# edges agree with x*g//n on every size up to 2000 (the kernel takes the host's edges)
for L in range(1,2000):
    for g in {min(L,64), min(L,36)}:
        e = edges(L,g)
        for b in range(g):
            assert all(x*g//L == b for x in (e[b], e[b+1]-1)) and e[b] < e[b+1]
print("ok", n, "cases")
