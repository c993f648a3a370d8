// SE gating: g = sigmoid(W . mean_{rows}(x + bias) + b), computed in three steps:
// pool (per-block partial sums over rows, fixed order, so results are deterministic),
// se_mean (sum of the partials, / rows, + the conv bias that was not yet added to x),
// se_gate (the CxC matrix-vector product and the sigmoid). The scaling itself is done by
// `epilogue` in elementwise.cu, or folded into the next conv's weights by `gate_weights`.

#include "common.cuh"

// Partial sums of x over rows [blockIdx.x * rows_per_block, +rows_per_block) into
// partial[blockIdx.x * c + ch]. Two layouts:
// - gh == 0: x is [rows, c];
// - gh > 0: x holds the four sub-pixel phases of a transposed conv's output (see
//   weights::convt_phases), [t, gh + 1, gw + 1, 4, c], and rows counts those physical cells.
//   Phase p = 2 a + b of logical pixel (y, x) lives at cell (y + a, x + b), so a cell (Y, X)
//   counts for phase p when a <= Y < gh + a and b <= X < gw + b. The four phases' sums are
//   added into one partial row per block (the SE mean is over all of the phases' pixels).
// A row holds cw = c (or 4c) elements. Vectorised (vec = 1): cw / S::V threads read a row, one
// vector each, and the block's other threads take the next rows; it needs c % S::V == 0 and
// (cw / S::V) dividing blockDim.x. Otherwise (vec = 0) each thread sums whole columns. Four
// rows are loaded before they are added, so that each thread has four loads in flight. The
// order of every sum is fixed, so results are deterministic. blockDim.x must be THREADS and
// cw at most 8 THREADS. Each negative value read is multiplied by `neg` first: 1 sums x itself;
// 5 sums the pre-activation of x = LeakyReLU(0.2)(y), i.e. y (the gate of a conv whose bias
// and LeakyReLU cuDNN applied in the conv's own epilogue).

// Adds rows r, r + step, ... < r1 of element e (N of them from e on) into acc, skipping the
// cells outside phase (pa, pb) when gh > 0.
template <class S, int N>
__device__ __forceinline__ void pool_walk(const typename S::T *x, i64 r, i64 r1, int step, int cw,
                                          int e, int gh, int gw, int pa, int pb, float neg,
                                          float *acc) {
    const int W1 = gw + 1, H1 = gh + 1;
    // (Y, X): the cell of row r in its frame, kept up to date as r steps.
    int Y = 0, X = 0;
    if (gh > 0 && r < r1) {
        const i64 cell = r % ((i64)H1 * W1);
        Y = (int)(cell / W1);
        X = (int)(cell - (i64)Y * W1);
    }
    while (r < r1) {
        float v[4][N];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const bool in =
                r < r1 && (gh == 0 || (Y >= pa && Y < gh + pa && X >= pb && X < gw + pb));
            if (in) {
                if constexpr (N == S::V) {
                    ldv<S>(x + r * cw + e, v[u]);
                } else {
#pragma unroll
                    for (int k = 0; k < N; k++) v[u][k] = S::ld(x[r * cw + e + k]);
                }
            } else {
#pragma unroll
                for (int k = 0; k < N; k++) v[u][k] = 0.f;
            }
            r += step;
            if (gh > 0) {
                X += step;
                while (X >= W1) {
                    X -= W1;
                    if (++Y == H1) Y = 0;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
#pragma unroll
            for (int k = 0; k < N; k++) acc[k] += v[u][k] < 0.f ? v[u][k] * neg : v[u][k];
        }
    }
}

template <class S>
__device__ void pool_t(const void *x_, i64 rows, int c, int rows_per_block, float *partial,
                       int vec, int gh, int gw, float neg) {
    typedef typename S::T T;
    const T *x = (const T *)x_;
    __shared__ float sm[THREADS * 8];
    const int np = gh > 0 ? 4 : 1;
    const int cw = np * c;
    const i64 r0 = (i64)blockIdx.x * rows_per_block;
    const i64 r1 = min(rows, r0 + rows_per_block);
    const int tid = threadIdx.x;
    // ny row groups; sm[y * cw + e] holds group y's sum of element e of the row.
    int ny = 1;
    if (vec) {
        const int lanes = cw / S::V;
        ny = blockDim.x / lanes;
        const int e = (tid % lanes) * S::V, p = e / c;
        float acc[S::V];
#pragma unroll
        for (int k = 0; k < S::V; k++) acc[k] = 0.f;
        pool_walk<S, S::V>(x, r0 + tid / lanes, r1, ny, cw, e, gh, gw, p / 2, p % 2, neg, acc);
#pragma unroll
        for (int k = 0; k < S::V; k++) sm[tid * S::V + k] = acc[k];
    } else {
        for (int e = tid; e < cw; e += blockDim.x) {
            const int p = e / c;
            float acc[1] = {0.f};
            pool_walk<S, 1>(x, r0, r1, 1, cw, e, gh, gw, p / 2, p % 2, neg, acc);
            sm[e] = acc[0];
        }
    }
    __syncthreads();
    for (int ch = tid; ch < c; ch += blockDim.x) {
        float s = 0.f;
        for (int y = 0; y < ny; y++)
            for (int q = 0; q < np; q++) s += sm[y * cw + q * c + ch];
        partial[(i64)blockIdx.x * c + ch] = s;
    }
}

INSTANTIATE3(pool,
             (const void *x, i64 rows, int c, int rows_per_block, float *partial, int vec,
              int gh, int gw, float neg),
             (x, rows, c, rows_per_block, partial, vec, gh, gw, neg))

// mean[ch] = sum_b partial[b * c + ch] * inv_rows + bias[ch] (bias may be null). A block
// takes 32 channels; its 8 warps sum every 8th partial row, from row w on, and warp 0 adds
// the eight sums in order (a fixed order, so results are deterministic). blockDim.x must be
// THREADS (8 warps).
extern "C" __global__ void se_mean(const float *partial, int nblk, int c, const float *bias,
                                   float inv_rows, float *mean) {
    __shared__ float sm[8][32];
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    const int ch = blockIdx.x * 32 + lane;
    float s = 0.f;
    if (ch < c) {
        int b = w;
        for (; b + 24 < nblk; b += 32) {
            const float a0 = partial[(i64)b * c + ch], a1 = partial[(i64)(b + 8) * c + ch];
            const float a2 = partial[(i64)(b + 16) * c + ch], a3 = partial[(i64)(b + 24) * c + ch];
            s += a0;
            s += a1;
            s += a2;
            s += a3;
        }
        for (; b < nblk; b += 8) s += partial[(i64)b * c + ch];
    }
    sm[w][lane] = s;
    __syncthreads();
    if (w == 0 && ch < c) {
        float t = 0.f;
#pragma unroll
        for (int k = 0; k < 8; k++) t += sm[k][lane];
        mean[ch] = t * inv_rows + (bias ? bias[ch] : 0.f);
    }
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

// The SE gate folded into the next conv: out[i] = w[i] * g[i % c] over n filter elements whose
// input channel is innermost with period c (a channels-last filter [k, t, r, s, cin] whose
// input channel j reads gated channel j % c, as the four phases of a transposed conv's output
// do: cin = 4c). Valid because the gate g > 0 (a sigmoid) and LeakyReLU is positively
// homogeneous: conv(LeakyReLU(g y)) = conv_w(g LeakyReLU(y)) = conv_{w g}(LeakyReLU(y)).
// Grid-stride over n in 64-bit.
template <class S>
__device__ void gate_weights_t(const void *w_, void *out_, const float *g, i64 n, int c) {
    typedef typename S::T T;
    const T *w = (const T *)w_;
    T *out = (T *)out_;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        out[i] = S::st(S::ld(w[i]) * g[i % c]);
}

INSTANTIATE3(gate_weights, (const void *w, void *out, const float *g, i64 n, int c),
             (w, out, g, n, c))
