// Pixel formats in and out of the network.
//
// A frame slot is float32 [ph, pw, 4] (R, G, B, 0) in [0, 1], the input frame replicate-padded
// right/bottom to (ph, pw), multiples of 8. Per slot we keep the sum of each colour channel over
// the padded frame, so a window's mean (over its four padded frames) costs 12 additions.
//
// The arithmetic is the CPU reference's, operation for operation (src/backend/pixels.rs; the
// program is compiled without FMA contraction, so results are bit-identical):
// - 8-bit RGB in: v / 255; out: floor(clamp(v, 0, 1) * 255 + 0.5). 16-bit RGB (RGBA64) the
//   same with 65535.
// - Y'CbCr (I420, NV12, P010, I420/I422/Y444 10-bit; chroma replicated over its block of
//   pixels: 2x2, 2x1 or 1x1) with the constants of `YuvCoeffs` on the codes (10-bit codes are
//   little-endian 16-bit samples, P010's in the top 10 bits): y = (Y - y_off) * y_scale,
//   cb = (U - c_off) * c_scale, cr = (V - c_off) * c_scale,
//   R = y + r_cr cr, G = y + g_cb cb + g_cr cr, B = y + b_cb cb, each clamped to [0, 1].
//   Out (R, G, B clamped first): y = kr R + kg G + kb B, Y = floor(y_off + y y_range + 0.5);
//   chroma from the mean R, G, B of the block's pixels summed in row-major order:
//   cb = (B - y) cb_scale, U = floor(c_off + cb c_range + 0.5) (V likewise with cr, R);
//   codes clamped to [0, max] (255 or 1023).

//
// The formats (FMT_*), `FrameParams` and `YuvCoeffs` are in params.cuh.

#include "common.cuh"

__device__ __forceinline__ float clamp01(float v) { return fminf(fmaxf(v, 0.f), 1.f); }
__device__ __forceinline__ u8 unit_to_u8(float v) { return (u8)floorf(clamp01(v) * 255.f + 0.5f); }
// floor(v + 0.5) clamped to [0, max]; NaN gives 0.
__device__ __forceinline__ u16 to_code(float v, float max) {
    return (u16)fminf(fmaxf(floorf(v + 0.5f), 0.f), max);
}
__device__ __forceinline__ u16 unit_to_u16(float v) {
    return (u16)floorf(clamp01(v) * 65535.f + 0.5f);
}
// Little-endian 16-bit sample at p (any alignment).
__device__ __forceinline__ unsigned ld16(const u8 *p) { return p[0] | ((unsigned)p[1] << 8); }
__device__ __forceinline__ void st16(u8 *p, unsigned v) {
    p[0] = (u8)v;
    p[1] = (u8)(v >> 8);
}
__device__ __forceinline__ bool is_deep_yuv(int f) {
    return f == FMT_P010 || f == FMT_I420_10 || f == FMT_I422_10 || f == FMT_Y444_10;
}
// Pixels per chroma sample across (log2) and down (log2) of a Y'CbCr format.
__device__ __forceinline__ int chroma_sx(int f) { return f == FMT_Y444_10 ? 0 : 1; }
__device__ __forceinline__ int chroma_sy(int f) {
    return f == FMT_I422_10 || f == FMT_Y444_10 ? 0 : 1;
}

__device__ float3 yuv_to_rgb(float Y, float U, float V, const YuvCoeffs &k) {
    const float y = (Y - k.y_off) * k.y_scale;
    const float cb = (U - k.c_off) * k.c_scale;
    const float cr = (V - k.c_off) * k.c_scale;
    const float r = y + k.r_cr * cr;
    const float g = y + k.g_cb * cb + k.g_cr * cr;
    const float b = y + k.b_cb * cb;
    return make_float3(clamp01(r), clamp01(g), clamp01(b));
}

// Reads pixel (x, y) (inside the frame) as RGB in [0, 1].
__device__ float3 read_pixel(const u8 *src, const FrameParams &p, int x, int y) {
    switch (p.format) {
    case FMT_I420: {
        const float Y = src[p.off[0] + (i64)y * p.stride[0] + x];
        const float U = src[p.off[1] + (i64)(y / 2) * p.stride[1] + x / 2];
        const float V = src[p.off[2] + (i64)(y / 2) * p.stride[2] + x / 2];
        return yuv_to_rgb(Y, U, V, p.yuv);
    }
    case FMT_NV12: {
        const float Y = src[p.off[0] + (i64)y * p.stride[0] + x];
        const u8 *uv = src + p.off[1] + (i64)(y / 2) * p.stride[1] + (x / 2) * 2;
        return yuv_to_rgb(Y, uv[0], uv[1], p.yuv);
    }
    case FMT_P010: {
        const float Y = ld16(src + p.off[0] + (i64)y * p.stride[0] + 2 * x) >> 6;
        const u8 *uv = src + p.off[1] + (i64)(y / 2) * p.stride[1] + (x / 2) * 4;
        return yuv_to_rgb(Y, ld16(uv) >> 6, ld16(uv + 2) >> 6, p.yuv);
    }
    case FMT_I420_10:
    case FMT_I422_10:
    case FMT_Y444_10: {
        const int cx = x >> chroma_sx(p.format), cy = y >> chroma_sy(p.format);
        const float Y = ld16(src + p.off[0] + (i64)y * p.stride[0] + 2 * x);
        const float U = ld16(src + p.off[1] + (i64)cy * p.stride[1] + 2 * cx);
        const float V = ld16(src + p.off[2] + (i64)cy * p.stride[2] + 2 * cx);
        return yuv_to_rgb(Y, U, V, p.yuv);
    }
    case FMT_RGBA64: {
        const u8 *px = src + p.off[0] + (i64)y * p.stride[0] + (i64)x * 8;
        const float r = ld16(px), g = ld16(px + 2), b = ld16(px + 4);
        return make_float3(r / 65535.f, g / 65535.f, b / 65535.f);
    }
    default: {
        const int bpp = p.format == FMT_RGB ? 3 : 4;
        const u8 *px = src + p.off[0] + (i64)y * p.stride[0] + (i64)x * bpp;
        const bool bgr = p.format == FMT_BGRA || p.format == FMT_BGRX;
        const float r = px[bgr ? 2 : 0], g = px[1], b = px[bgr ? 0 : 2];
        return make_float3(r / 255.f, g / 255.f, b / 255.f);
    }
    }
}

// One thread per padded pixel: slot[y * pw + x] = pixel(min(x, w-1), min(y, h-1)).
extern "C" __global__ void frame_to_slot(const u8 *src, const FrameParams p, float4 *slot) {
    const int n = p.pw * p.ph;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int y = i / p.pw, x = i - y * p.pw;
        const float3 c = read_pixel(src, p, min(x, p.width - 1), min(y, p.height - 1));
        slot[i] = make_float4(c.x, c.y, c.z, 0.f);
    }
}

// The same from planar float [3, h, w] (tests and tools feed exact float frames this way).
extern "C" __global__ void f32_to_slot(const float *src, const FrameParams p, float4 *slot) {
    const int n = p.pw * p.ph;
    const i64 plane = (i64)p.width * p.height;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int y = i / p.pw, x = i - y * p.pw;
        const i64 s = (i64)min(y, p.height - 1) * p.width + min(x, p.width - 1);
        slot[i] = make_float4(src[s], src[plane + s], src[2 * plane + s], 0.f);
    }
}

// Per-block partial channel sums of a slot: partial[blockIdx.x * 3 + c]. blockDim.x = THREADS.
extern "C" __global__ void slot_sum(const float4 *slot, int npix, float *partial) {
    __shared__ float sm[3][THREADS];
    float r = 0.f, g = 0.f, b = 0.f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < npix; i += gridDim.x * blockDim.x) {
        const float4 v = slot[i];
        r += v.x;
        g += v.y;
        b += v.z;
    }
    sm[0][threadIdx.x] = r;
    sm[1][threadIdx.x] = g;
    sm[2][threadIdx.x] = b;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) {
            for (int c = 0; c < 3; c++) sm[c][threadIdx.x] += sm[c][threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x < 3) partial[blockIdx.x * 3 + threadIdx.x] = sm[threadIdx.x][0];
}

// sums[c] = sum over blocks of partial (in double). One block, threads 0..2.
extern "C" __global__ void slot_sum_final(const float *partial, int nblk, double *sums) {
    const int c = threadIdx.x;
    if (c >= 3) return;
    double s = 0.0;
    for (int b = 0; b < nblk; b++) s += partial[b * 3 + c];
    sums[c] = s;
}

// The window's mean: mean[c] = sum over its 4 slots of sums[slot * SLOT_SUM_RECORD + c] /
// (4 * npix).
extern "C" __global__ void window_mean(const double *sums, const int *win, int npix, float *mean) {
    const int c = threadIdx.x;
    if (c >= 3) return;
    double s = 0.0;
    for (int t = 0; t < 4; t++) s += sums[win[t] * SLOT_SUM_RECORD + c];
    mean[c] = (float)(s / (4.0 * npix));
}

// Network input in space-to-depth form with time folded into channels (see `stem_fold` in
// src/cuda/weights.rs): x [ph/2 + 3, pw/2 + 3, NET_IN_CHANNELS = 48], block (by, bx) channel
// t*12 + (py*2 + px)*3 + c = slot[win[t]][2(by-2) + py, 2(bx-2) + px][c] - mean[c], zero outside
// the padded frame.
template <class S>
__device__ void assemble_t(const float4 *slots, i64 slot_elems, const int *win, const float *mean,
                           int pw, int ph, void *out_) {
    typedef typename S::T T;
    T *out = (T *)out_;
    const int bh = ph / 2 + 3, bw = pw / 2 + 3;
    const unsigned n = (unsigned)bh * bw;
    const float m[3] = {mean[0], mean[1], mean[2]};
    const int w4[4] = {win[0], win[1], win[2], win[3]};
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int by = (int)(i / bw), bx = (int)(i - (unsigned)by * bw);
        float f[NET_IN_CHANNELS];
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const float4 *slot = slots + w4[t] * slot_elems;
#pragma unroll
            for (int py = 0; py < 2; py++) {
#pragma unroll
                for (int px = 0; px < 2; px++) {
                    const int y = 2 * by - 4 + py, x = 2 * bx - 4 + px;
                    const int ch = t * 12 + (py * 2 + px) * 3;
                    if (y >= 0 && y < ph && x >= 0 && x < pw) {
                        const float4 v = slot[(i64)y * pw + x];
                        f[ch] = v.x - m[0];
                        f[ch + 1] = v.y - m[1];
                        f[ch + 2] = v.z - m[2];
                    } else {
                        f[ch] = f[ch + 1] = f[ch + 2] = 0.f;
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < NET_IN_CHANNELS; g += S::V)
            stv<S>(out + (i64)i * NET_IN_CHANNELS + g, f + g);
    }
}

INSTANTIATE3(assemble,
             (const float4 *slots, i64 slot_elems, const int *win, const float *mean, int pw,
              int ph, void *out),
             (slots, slot_elems, win, mean, pw, ph, out))

// Reads output frame k's pixel (x, y) from the outconv result y [ph/2, pw/2, kpad] (2x2 blocks:
// channel ((y%2)*2 + x%2)*n3 + 3k + c), adds the conv bias and the window mean (not clamped).
template <class S>
__device__ __forceinline__ float3 net_pixel(const typename S::T *y, int kpad, int n3,
                                            const float *bias, const float *mean, int k, int pw,
                                            int x, int yy) {
    const typename S::T *px = y + ((i64)(yy / 2) * (pw / 2) + x / 2) * kpad +
                              ((yy % 2) * 2 + x % 2) * n3 + 3 * k;
    return make_float3(S::ld(px[0]) + bias[3 * k] + mean[0],
                       S::ld(px[1]) + bias[3 * k + 1] + mean[1],
                       S::ld(px[2]) + bias[3 * k + 2] + mean[2]);
}

// Writes a Y'CbCr code at byte offset i of dst: a byte, or a little-endian 16-bit sample
// (P010: shifted to the top 10 bits).
__device__ __forceinline__ void put_code(u8 *dst, i64 i, int format, u16 code) {
    if (!is_deep_yuv(format)) {
        dst[i] = (u8)code;
        return;
    }
    st16(dst + i, format == FMT_P010 ? (unsigned)code << 6 : code);
}

// Output frame k in the frame's own format (cropped to width x height). Packed RGB: one thread
// per pixel; Y'CbCr: one thread per chroma sample (its block of 2x2, 2x1 or 1x1 pixels).
template <class S>
__device__ void out_frame_t(const void *y_, int kpad, int n3, const float *bias, const float *mean,
                            int k, const FrameParams p, u8 *dst) {
    typedef typename S::T T;
    const T *y = (const T *)y_;
    const bool deep = is_deep_yuv(p.format);
    const bool yuv = p.format == FMT_I420 || p.format == FMT_NV12 || deep;
    const int bx = yuv ? 1 << chroma_sx(p.format) : 1, by = yuv ? 1 << chroma_sy(p.format) : 1;
    const int bps = deep ? 2 : 1;  // bytes per Y'CbCr sample
    const int gw = (p.width + bx - 1) / bx;
    const int gh = (p.height + by - 1) / by;
    const int n = gw * gh;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int gy = i / gw, gx = i - gy * gw;
        if (p.format == FMT_RGBA64) {
            const float3 c = net_pixel<S>(y, kpad, n3, bias, mean, k, p.pw, gx, gy);
            u8 *px = dst + p.off[0] + (i64)gy * p.stride[0] + (i64)gx * 8;
            st16(px, unit_to_u16(c.x));
            st16(px + 2, unit_to_u16(c.y));
            st16(px + 4, unit_to_u16(c.z));
            st16(px + 6, 65535);
            continue;
        }
        if (!yuv) {
            const float3 c = net_pixel<S>(y, kpad, n3, bias, mean, k, p.pw, gx, gy);
            const int bpp = p.format == FMT_RGB ? 3 : 4;
            u8 *px = dst + p.off[0] + (i64)gy * p.stride[0] + (i64)gx * bpp;
            const bool bgr = p.format == FMT_BGRA || p.format == FMT_BGRX;
            px[bgr ? 2 : 0] = unit_to_u8(c.x);
            px[1] = unit_to_u8(c.y);
            px[bgr ? 0 : 2] = unit_to_u8(c.z);
            if (bpp == 4) px[3] = 255;
            continue;
        }
        const YuvCoeffs &q = p.yuv;
        float sr = 0.f, sg = 0.f, sb = 0.f;
        int cnt = 0;
        for (int dy = 0; dy < by; dy++) {
            for (int dx = 0; dx < bx; dx++) {
                const int x = bx * gx + dx, yy = by * gy + dy;
                if (x >= p.width || yy >= p.height) continue;
                const float3 c = net_pixel<S>(y, kpad, n3, bias, mean, k, p.pw, x, yy);
                const float r = clamp01(c.x), g = clamp01(c.y), b = clamp01(c.z);
                const float luma = q.kr * r + q.kg * g + q.kb * b;
                put_code(dst, p.off[0] + (i64)yy * p.stride[0] + (i64)x * bps, p.format,
                         to_code(q.y_off + luma * q.y_range, q.code_max));
                sr += r;
                sg += g;
                sb += b;
                cnt++;
            }
        }
        const float r = sr / (float)cnt, g = sg / (float)cnt, b = sb / (float)cnt;
        const float luma = q.kr * r + q.kg * g + q.kb * b;
        const float cb = (b - luma) * q.cb_scale;
        const float cr = (r - luma) * q.cr_scale;
        const u16 u = to_code(q.c_off + cb * q.c_range, q.code_max);
        const u16 v = to_code(q.c_off + cr * q.c_range, q.code_max);
        if (p.format == FMT_NV12 || p.format == FMT_P010) {
            const i64 ci = p.off[1] + (i64)gy * p.stride[1] + (i64)gx * 2 * bps;
            put_code(dst, ci, p.format, u);
            put_code(dst, ci + bps, p.format, v);
        } else {
            put_code(dst, p.off[1] + (i64)gy * p.stride[1] + (i64)gx * bps, p.format, u);
            put_code(dst, p.off[2] + (i64)gy * p.stride[2] + (i64)gx * bps, p.format, v);
        }
    }
}

INSTANTIATE3(out_frame,
             (const void *y, int kpad, int n3, const float *bias, const float *mean, int k,
              const FrameParams p, u8 *dst),
             (y, kpad, n3, bias, mean, k, p, dst))

// All n output frames as planar float [n, 3, height, width], not clamped (tests, PSNR).
template <class S>
__device__ void out_f32_t(const void *y_, int kpad, const float *bias, const float *mean, int nout,
                          const FrameParams p, float *dst) {
    const int n3 = 3 * nout;
    const typename S::T *y = (const typename S::T *)y_;
    const int n = p.width * p.height;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int yy = i / p.width, x = i - yy * p.width;
        for (int k = 0; k < nout; k++) {
            const float3 c = net_pixel<S>(y, kpad, n3, bias, mean, k, p.pw, x, yy);
            float *d = dst + (i64)k * 3 * n + i;
            d[0] = c.x;
            d[n] = c.y;
            d[2 * n] = c.z;
        }
    }
}

INSTANTIATE3(out_f32,
             (const void *y, int kpad, const float *bias, const float *mean, int nout,
              const FrameParams p, float *dst),
             (y, kpad, bias, mean, nout, p, dst))
