// Per-element work the convolution library does not do for us, on channels-last tensors
// [rows, c] (rows = T*H*W positions):
// - epilogue: out = act((x + bias) * gate + resid), optionally written twice (the second copy
//   into a concatenation buffer at a channel offset: that is how skips and decoder outputs are
//   concatenated in place, without a copy pass).
// - reflect_pad: ReflectionPad2d(3) of a [H, W, c] map with LeakyReLU(0.2) applied on the way.
// The epilogue's parameters, `EpiParams`, are in params.cuh.

#include "common.cuh"

// Element offset of output pixel (t, Y, X), channel 0, in the four-phase layout
// [t][h + 1][w + 1][4][c] of a transposed conv's output of [t, 2h, 2w] (see EpiParams).
__device__ __forceinline__ i64 phase_elem(unsigned t, unsigned Y, unsigned X, int h, int w, int c) {
    const unsigned a = Y & 1u, b = X & 1u;
    const i64 cell = ((i64)t * (h + 1) + (Y >> 1) + a) * (w + 1) + (X >> 1) + b;
    return (cell * 4 + a * 2 + b) * c;
}

// Element counts: a [rows, c] map of a 16384 x 16384 frame has more than 2^32 elements, so
// every grid-stride loop below runs over I = i64 when its count exceeds I32_MAX, and over
// I = unsigned (32-bit division, the fast path) otherwise. Per-element arithmetic is the same.

// Row of output row `row` in the time-folded layout [fold_p, fold_t] (row itself without a
// fold).
template <class I> __device__ __forceinline__ i64 folded_row(const EpiParams &p, I row) {
    if (p.fold_t == 0) return (i64)row;
    const I t = row / p.fold_p, q = row - t * p.fold_p;
    return (i64)q * p.fold_t + t;
}

// Row of `resid`, `out` or `out2` (`bit`: FOLD_RESID, FOLD_OUT, FOLD_OUT2) for output row
// `row`, whose folded row is `frow`.
__device__ __forceinline__ i64 keep_row(const EpiParams &p, int bit, i64 row, i64 frow) {
    return (p.fold_keep & bit) ? frow : row;
}

// Element offset of row `row`'s channel 0 in x.
template <class I> __device__ __forceinline__ i64 x_elem(const EpiParams &p, I row) {
    if (p.fold_keep & FOLD_X) return folded_row(p, row) * p.c;
    if (p.ph_h != 0) {
        const I w2 = 2 * p.ph_w, h2 = 2 * p.ph_h;
        const I X = row % w2, q = row / w2;
        const I Y = q % h2, t = q / h2;
        return phase_elem((unsigned)t, (unsigned)Y, (unsigned)X, p.ph_h, p.ph_w, p.c);
    }
    return (i64)row * p.c;
}

template <class S, class I> __device__ __forceinline__ void epilogue_loop(const EpiParams p, I n) {
    typedef typename S::T T;
    const int V = S::V;
    const int cv = p.c / V;
    const T *x = (const T *)p.x;
    const T *r = (const T *)p.resid;
    T *o = (T *)p.out;
    T *o2 = (T *)p.out2;
    for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const I row = i / cv;
        const int c0 = (int)(i - row * cv) * V;
        const int cg = p.gc ? c0 % p.gc : c0;
        float v[V];
        ldv<S>(x + x_elem(p, row) + c0, v);
        if (p.bias) {
#pragma unroll
            for (int k = 0; k < V; k++) v[k] += p.bias[cg + k];
        }
        if (p.gate) {
#pragma unroll
            for (int k = 0; k < V; k++) v[k] *= p.gate[cg + k];
        }
        const i64 fr = folded_row(p, row);
        if (r) {
            float rv[V];
            ldv<S>(r + keep_row(p, FOLD_RESID, row, fr) * p.c + c0, rv);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] += rv[k];
        }
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = activate(v[k], p.act);
        stv<S>(o + keep_row(p, FOLD_OUT, row, fr) * p.out_stride + p.out_off + c0, v);
        if (o2) stv<S>(o2 + keep_row(p, FOLD_OUT2, row, fr) * p.out2_stride + p.out2_off + c0, v);
    }
}

// Vectorised: S::V channels per thread. Needs c, strides and offsets multiples of S::V.
template <class S> __device__ void epilogue_t(const EpiParams p) {
    const i64 n = p.rows * (p.c / S::V);
    if (n <= I32_MAX)
        epilogue_loop<S, unsigned>(p, (unsigned)n);
    else
        epilogue_loop<S, i64>(p, n);
}

template <class S, class I>
__device__ __forceinline__ void epilogue1_loop(const EpiParams p, I n) {
    typedef typename S::T T;
    const T *x = (const T *)p.x;
    const T *r = (const T *)p.resid;
    T *o = (T *)p.out;
    T *o2 = (T *)p.out2;
    for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const I row = i / p.c;
        const int c = (int)(i - row * p.c);
        const int cg = p.gc ? c % p.gc : c;
        float v = S::ld(x[x_elem(p, row) + c]);
        if (p.bias) v += p.bias[cg];
        if (p.gate) v *= p.gate[cg];
        const i64 fr = folded_row(p, row);
        if (r) v += S::ld(r[keep_row(p, FOLD_RESID, row, fr) * p.c + c]);
        v = activate(v, p.act);
        o[keep_row(p, FOLD_OUT, row, fr) * p.out_stride + p.out_off + c] = S::st(v);
        if (o2) o2[keep_row(p, FOLD_OUT2, row, fr) * p.out2_stride + p.out2_off + c] = S::st(v);
    }
}

// Any channel count: one element per thread.
template <class S> __device__ void epilogue1_t(const EpiParams p) {
    const i64 n = p.rows * p.c;
    if (n <= I32_MAX)
        epilogue1_loop<S, unsigned>(p, (unsigned)n);
    else
        epilogue1_loop<S, i64>(p, n);
}

INSTANTIATE3(epilogue, (const EpiParams p), (p))
INSTANTIATE3(epilogue1, (const EpiParams p), (p))

__device__ __forceinline__ int reflect(int i, int n) {
    return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

// in [h, w, c] -> out [(h + 2 pad)/2, (w + 2 pad)/2, 4c]: the reflection-padded map (LeakyReLU
// applied) in 2x2 space-to-depth form, channel (py*2 + px)*c + ci of block (by, bx) = padded
// pixel (2by + py, 2bx + px) = in[reflect(2by + py - pad), reflect(2bx + px - pad)].
// Vectorised when c % S::V == 0 (vec = 1), else one element per thread (vec = 0). phased: `in`
// is the four sub-pixel phases [h/2 + 1][w/2 + 1][4][c] (see EpiParams) instead of [h][w][c].
template <class S, class I>
__device__ __forceinline__ void reflect_pad_loop(const void *in_, void *out_, int h, int w, int c,
                                                 int pad, int vec, int phased, I n) {
    typedef typename S::T T;
    const T *in = (const T *)in_;
    T *out = (T *)out_;
    const int V = vec ? S::V : 1;
    const int cv = 4 * c / V;  // vectors per block
    const int bw = (w + 2 * pad) / 2;
    for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const I blk = i / cv;
        const int e = (int)(i - blk * cv) * V;  // element within the block's 4c
        const int q = e / c, c0 = e - q * c;
        const int by = (int)(blk / bw), bx = (int)(blk - (I)by * bw);
        const int sy = reflect(2 * by + q / 2 - pad, h), sx = reflect(2 * bx + q % 2 - pad, w);
        const i64 src =
            (phased ? phase_elem(0, sy, sx, h / 2, w / 2, c) : ((i64)sy * w + sx) * c) + c0;
        const i64 dst = (i64)blk * 4 * c + e;
        if (vec) {
            float v[S::V];
            ldv<S>(in + src, v);
#pragma unroll
            for (int k = 0; k < S::V; k++) v[k] = activate(v[k], ACT_LRELU);
            stv<S>(out + dst, v);
        } else {
            out[dst] = S::st(activate(S::ld(in[src]), ACT_LRELU));
        }
    }
}

template <class S>
__device__ void reflect_pad_t(const void *in, void *out, int h, int w, int c, int pad, int vec,
                              int phased) {
    const i64 n = (i64)((h + 2 * pad) / 2) * ((w + 2 * pad) / 2) * (4 * c / (vec ? S::V : 1));
    if (n <= I32_MAX)
        reflect_pad_loop<S, unsigned>(in, out, h, w, c, pad, vec, phased, (unsigned)n);
    else
        reflect_pad_loop<S, i64>(in, out, h, w, c, pad, vec, phased, n);
}

INSTANTIATE3(reflect_pad,
             (const void *in, void *out, int h, int w, int c, int pad, int vec, int phased),
             (in, out, h, w, c, pad, vec, phased))
