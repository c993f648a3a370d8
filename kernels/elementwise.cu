// Per-element work the convolution library does not do for us, on channels-last tensors
// [rows, c] (rows = T*H*W positions):
// - epilogue: out = act((x + bias) * gate + resid), optionally written twice (the second copy
//   into a concatenation buffer at a channel offset: that is how skips and decoder outputs are
//   concatenated in place, without a copy pass).
// - reflect_pad: ReflectionPad2d(3) of a [H, W, c] map with LeakyReLU(0.2) applied on the way.

// Mirrors `EpiParams` in src/cuda/launch.rs (#[repr(C)]).
struct EpiParams {
    const void *x;      // [rows, c]
    const void *resid;  // [rows, c] or null
    const float *bias;  // [c] or null
    const float *gate;  // [c] or null
    void *out;          // row stride out_stride, channel offset out_off
    void *out2;         // or null
    i64 rows;
    int c, act, out_stride, out_off, out2_stride, out2_off;
};

// Vectorised: S::V channels per thread. Needs c, strides and offsets multiples of S::V.
template <class S> __device__ void epilogue_t(const EpiParams p) {
    typedef typename S::T T;
    const int V = S::V;
    const int cv = p.c / V;
    const unsigned n = (unsigned)(p.rows * cv);
    const T *x = (const T *)p.x;
    const T *r = (const T *)p.resid;
    T *o = (T *)p.out;
    T *o2 = (T *)p.out2;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned row = i / cv;
        const int c0 = (int)(i - row * cv) * V;
        float v[V];
        ldv<S>(x + (i64)row * p.c + c0, v);
        if (p.bias) {
#pragma unroll
            for (int k = 0; k < V; k++) v[k] += p.bias[c0 + k];
        }
        if (p.gate) {
#pragma unroll
            for (int k = 0; k < V; k++) v[k] *= p.gate[c0 + k];
        }
        if (r) {
            float rv[V];
            ldv<S>(r + (i64)row * p.c + c0, rv);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] += rv[k];
        }
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = activate(v[k], p.act);
        stv<S>(o + (i64)row * p.out_stride + p.out_off + c0, v);
        if (o2) stv<S>(o2 + (i64)row * p.out2_stride + p.out2_off + c0, v);
    }
}

// Any channel count: one element per thread.
template <class S> __device__ void epilogue1_t(const EpiParams p) {
    typedef typename S::T T;
    const unsigned n = (unsigned)(p.rows * p.c);
    const T *x = (const T *)p.x;
    const T *r = (const T *)p.resid;
    T *o = (T *)p.out;
    T *o2 = (T *)p.out2;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned row = i / p.c;
        const int c = (int)(i - row * p.c);
        float v = S::ld(x[i]);
        if (p.bias) v += p.bias[c];
        if (p.gate) v *= p.gate[c];
        if (r) v += S::ld(r[i]);
        v = activate(v, p.act);
        o[(i64)row * p.out_stride + p.out_off + c] = S::st(v);
        if (o2) o2[(i64)row * p.out2_stride + p.out2_off + c] = S::st(v);
    }
}

INSTANTIATE3(epilogue, (const EpiParams p), (p))
INSTANTIATE3(epilogue1, (const EpiParams p), (p))

__device__ __forceinline__ int reflect(int i, int n) {
    return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

// in [h, w, c] -> out [h + 2*pad, w + 2*pad, c], out = lrelu(in[reflect(y - pad), reflect(x - pad)]).
// Vectorised when c % S::V == 0 (vec = 1), else one element per thread (vec = 0).
template <class S>
__device__ void reflect_pad_t(const void *in_, void *out_, int h, int w, int c, int pad, int vec) {
    typedef typename S::T T;
    const T *in = (const T *)in_;
    T *out = (T *)out_;
    const int V = vec ? S::V : 1;
    const int cv = c / V;
    const int ow = w + 2 * pad;
    const unsigned n = (unsigned)(h + 2 * pad) * ow * cv;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned px = i / cv;
        const int c0 = (int)(i - px * cv) * V;
        const int y = (int)(px / ow), x = (int)(px - (unsigned)y * ow);
        const int sy = reflect(y - pad, h), sx = reflect(x - pad, w);
        const i64 src = ((i64)sy * w + sx) * c + c0;
        const i64 dst = (i64)px * c + c0;
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

INSTANTIATE3(reflect_pad, (const void *in, void *out, int h, int w, int c, int pad, int vec),
             (in, out, h, w, c, pad, vec))
