// Self-check of the convolution library (the engine's `verify` option, FLAVR_CUDA_VERIFY=1): a
// plain direct convolution (one thread per output value, float32 sums) of channels-last
// x [t, h, w, c] with a filter [k, kt, kh, kw, c], and the largest difference between two
// outputs.

#include "common.cuh"

template <class S>
__device__ void ref_conv_t(const void *x_, const void *w_, float *y, int c, int t, int h, int w,
                           int k, int kt, int kh, int kw, int st, int sh, int sw, int pt, int ph,
                           int pw, int to, int ho, int wo) {
    const typename S::T *x = (const typename S::T *)x_;
    const typename S::T *wt = (const typename S::T *)w_;
    const i64 n = (i64)to * ho * wo * k;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n;
         i += (i64)gridDim.x * blockDim.x) {
        const int ko = (int)(i % k);
        i64 r = i / k;
        const int xo = (int)(r % wo);
        r /= wo;
        const int yo = (int)(r % ho);
        const int tq = (int)(r / ho);
        float acc = 0.f;
        for (int a = 0; a < kt; a++) {
            const int ti = tq * st - pt + a;
            if (ti < 0 || ti >= t) continue;
            for (int b = 0; b < kh; b++) {
                const int yi = yo * sh - ph + b;
                if (yi < 0 || yi >= h) continue;
                for (int e = 0; e < kw; e++) {
                    const int xi = xo * sw - pw + e;
                    if (xi < 0 || xi >= w) continue;
                    const typename S::T *xp = x + (((i64)ti * h + yi) * w + xi) * c;
                    const typename S::T *wp = wt + ((((i64)ko * kt + a) * kh + b) * kw + e) * c;
                    for (int ci = 0; ci < c; ci++) acc += S::ld(xp[ci]) * S::ld(wp[ci]);
                }
            }
        }
        y[i] = acc;
    }
}

INSTANTIATE3(ref_conv,
             (const void *x, const void *w, float *y, int c, int t, int h, int w_, int k, int kt,
              int kh, int kw, int st, int sh, int sw, int pt, int ph, int pw, int to, int ho,
              int wo),
             (x, w, y, c, t, h, w_, k, kt, kh, kw, st, sh, sw, pt, ph, pw, to, ho, wo))

// out[0] = max |a - ref| (as float bits), out[1] = max |ref|, out[2] = index of the largest
// difference's first occurrence (approximately: last writer wins among equal maxima).
template <class S>
__device__ void max_diff_t(const void *a_, const float *ref, i64 n, unsigned *out) {
    const typename S::T *a = (const typename S::T *)a_;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n;
         i += (i64)gridDim.x * blockDim.x) {
        const float d = fabsf(S::ld(a[i]) - ref[i]);
        const unsigned bits = __float_as_uint(d == d ? d : 1e30f);
        const unsigned old = atomicMax(out, bits);
        if (bits > old) out[2] = (unsigned)i;
        atomicMax(out + 1, __float_as_uint(fabsf(ref[i])));
    }
}

INSTANTIATE3(max_diff, (const void *a, const float *ref, i64 n, unsigned *out), (a, ref, n, out))
