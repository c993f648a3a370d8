// SE gating: g = sigmoid(W . mean_{rows}(x + bias) + b), computed in three steps:
// pool (per-block partial sums over rows, fixed order, so results are deterministic),
// se_mean (sum of the partials, / rows, + the conv bias that was not yet added to x),
// se_gate (the CxC matrix-vector product and the sigmoid). The scaling itself is done by
// `epilogue` in elementwise.cu.

#include "common.cuh"

// Partial sums of x [rows, c] (row stride rs elements) over rows [blockIdx.x * rows_per_block,
// +rows_per_block) into partial[blockIdx.x * c + ch]. With gh > 0, logical row r = (t, y, x) of
// a [t, gh, gw] grid lives at physical row (t (gh + 1) + y + ga) (gw + 1) + x + gb: one
// sub-pixel phase of a transposed conv's output (see weights::convt_phases), whose grid has one
// extra row and column and whose rows hold the four phases' channels (rs = 4c, x pointing at the
// phase's first channel). Vectorised (vec = 1): S::V channels per thread, which needs
// c % S::V == 0, rs % S::V == 0 and (c / S::V) dividing blockDim.x; otherwise (vec = 0) one
// channel per thread. blockDim.x must be THREADS.
__device__ __forceinline__ i64 pool_row(i64 r, int gh, int gw, int ga, int gb) {
    if (gh == 0) return r;
    const i64 hw = (i64)gh * gw;
    const i64 t = r / hw, rem = r - t * hw;
    const i64 y = rem / gw, x = rem - y * gw;
    return (t * (gh + 1) + y + ga) * (gw + 1) + x + gb;
}

template <class S>
__device__ void pool_t(const void *x_, i64 rows, int c, int rs, int rows_per_block, float *partial,
                       int vec, int gh, int gw, int ga, int gb) {
    typedef typename S::T T;
    const T *x = (const T *)x_;
    __shared__ float sm[THREADS * 8];
    const i64 r0 = (i64)blockIdx.x * rows_per_block;
    const i64 r1 = min(rows, r0 + rows_per_block);
    const int tid = threadIdx.x;
    if (vec) {
        const int V = S::V;
        const int lanes = c / V;
        const int lane = tid % lanes, ty = tid / lanes, ny = blockDim.x / lanes;
        float acc[S::V];
#pragma unroll
        for (int k = 0; k < S::V; k++) acc[k] = 0.f;
        for (i64 r = r0 + ty; r < r1; r += ny) {
            float v[S::V];
            ldv<S>(x + pool_row(r, gh, gw, ga, gb) * rs + lane * V, v);
#pragma unroll
            for (int k = 0; k < S::V; k++) acc[k] += v[k];
        }
        // sm[ty * c + ch] holds row group ty's sum of channel ch.
#pragma unroll
        for (int k = 0; k < S::V; k++) sm[tid * V + k] = acc[k];
        __syncthreads();
        for (int ch = tid; ch < c; ch += blockDim.x) {
            float s = 0.f;
            for (int y = 0; y < ny; y++) s += sm[y * c + ch];
            partial[(i64)blockIdx.x * c + ch] = s;
        }
    } else {
        for (int ch = tid; ch < c; ch += blockDim.x) {
            float s = 0.f;
            for (i64 r = r0; r < r1; r++) s += S::ld(x[pool_row(r, gh, gw, ga, gb) * rs + ch]);
            partial[(i64)blockIdx.x * c + ch] = s;
        }
    }
}

INSTANTIATE3(pool,
             (const void *x, i64 rows, int c, int rs, int rows_per_block, float *partial, int vec,
              int gh, int gw, int ga, int gb),
             (x, rows, c, rs, rows_per_block, partial, vec, gh, gw, ga, gb))

// mean[ch] = sum_b partial[b * c + ch] * inv_rows + bias[ch] (bias may be null).
extern "C" __global__ void se_mean(const float *partial, int nblk, int c, const float *bias,
                                   float inv_rows, float *mean) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    float s = 0.f;
    for (int b = 0; b < nblk; b++) s += partial[(i64)b * c + ch];
    mean[ch] = s * inv_rows + (bias ? bias[ch] : 0.f);
}

// g[o] = sigmoid(sum_i w[o * c + i] * mean[i] + b[o]); one warp per output, 8 warps per block.
extern "C" __global__ void se_gate(const float *mean, const float *w, const float *b, int c,
                                   float *g) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int o = blockIdx.x * (blockDim.x / 32) + warp;
    if (o >= c) return;
    float s = 0.f;
    for (int i = lane; i < c; i += 32) s += w[(i64)o * c + i] * mean[i];
#pragma unroll
    for (int d = 16; d > 0; d /= 2) s += __shfl_down_sync(0xffffffffu, s, d);
    if (lane == 0) g[o] = 1.f / (1.f + expf(-(s + b[o])));
}
