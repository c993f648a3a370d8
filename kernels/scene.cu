// Box sums of a frame's first plane for scene-cut detection (src/scene.rs `Plane::box_sums`,
// which this matches exactly: integer sums, so the order of additions does not matter).
//
// One block per box of the grid (gridDim = (gw, gh), blockDim.x = THREADS). The box edges come
// from the host (SceneParams.xe / ye, src/scene.rs `box_edges`): box (bx, by) covers pixels
// xe[bx] <= x < xe[bx + 1], ye[by] <= y < ye[by + 1]. A pixel's value is its sample (8 or
// 16-bit little-endian) for a luma plane, or 77 R + 150 G + 29 B for packed RGB (channels at
// byte offsets r, g, b of the pixel). Each thread sums pixels tid, tid + THREADS, ... of the
// box (row-major, so neighbouring threads read neighbouring pixels) into 64 bits, then the
// block adds the threads' sums in shared memory and writes sums[by * gw + bx].

#include "common.cuh"

__device__ __forceinline__ unsigned long long scene_sample(const u8 *px, int sample_bytes) {
    return sample_bytes == 2 ? (unsigned long long)(px[0] | ((unsigned)px[1] << 8))
                             : (unsigned long long)px[0];
}

extern "C" __global__ void scene_sums(const u8 *src, const SceneParams p,
                                      unsigned long long *sums) {
    __shared__ unsigned long long sm[THREADS];
    const int bx = blockIdx.x, by = blockIdx.y;
    const int x0 = p.xe[bx], bw = p.xe[bx + 1] - x0;
    const int y0 = p.ye[by], bh = p.ye[by + 1] - y0;
    // At most ceil(16384 / 64) x ceil(16384 / 36) pixels (sides up to MAX_SIDE, checked on
    // the host), so 32-bit indices (and divisions) suffice.
    const int n = bw * bh;
    unsigned long long acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int y = y0 + i / bw, x = x0 + i % bw;
        const u8 *px = src + p.off + (i64)y * p.stride + (i64)x * p.bpp;
        if (p.packed) {
            acc += 77ull * scene_sample(px + p.r, p.sample_bytes) +
                   150ull * scene_sample(px + p.g, p.sample_bytes) +
                   29ull * scene_sample(px + p.b, p.sample_bytes);
        } else {
            acc += scene_sample(px, p.sample_bytes);
        }
    }
    sm[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) sm[threadIdx.x] += sm[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[by * p.gw + bx] = sm[0];
}
