// The outconv of a model with one output frame (kout = 16) on tensor cores, for float16 and
// bfloat16 activations: the 4x4 conv over the reflection-padded map in space-to-depth form
// (weights::outconv_s2d), x [h2 + 3, w2 + 3, c] -> y [h2, w2, 16], weights [16][4][4][c]
// (output channel, tap row, tap column, input channel), no bias (the output kernels add it).
// cuDNN runs this shape (16 output channels) at a small share of the tensor cores' rate.
//
// A block makes a tile of OC_T x OC_T output cells; warp `wp` makes tile rows 2 wp and 2 wp + 1,
// each a 16 x 16 (cells x channels) product: two m16n8k16 MMAs per tap and 16 input channels.
// The input channels go in chunks of OC_CK: the (OC_T + 3)^2 input cells and the weights of the
// chunk are copied to shared memory, rows OC_LD elements apart (OC_CK + 8: the 32-bit fragment
// loads of a warp then fall in 32 different banks). Float32 accumulation; each output rounded
// once. The float32 entry point is a plain loop (the engine uses cuDNN in float32).

#include "common.cuh"

#define OC_T 16
#define OC_X (OC_T + 3)
#define OC_CK 16
#define OC_LD (OC_CK + 8)
#define OC_KOUT 16
#define OC_THREADS 256

template <class S>
__device__ __forceinline__ void mma16816(float *d, const unsigned *a, unsigned b0, unsigned b1);

// One m16n8k16 MMA, d += a b, for storage type S (PTX type name TY); only sm_80 and later.
#if __CUDA_ARCH__ >= 800
#define OC_MMA_ASM(TY)                                                                       \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY                          \
                 ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                 \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                             \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
#else
#define OC_MMA_ASM(TY) __trap()
#endif
#define OC_MMA(S, TY)                                                                        \
    template <>                                                                              \
    __device__ __forceinline__ void mma16816<S>(float *d, const unsigned *a, unsigned b0,    \
                                                unsigned b1) {                               \
        OC_MMA_ASM(TY);                                                                      \
    }
OC_MMA(F16, "f16")
OC_MMA(BF16, "bf16")

template <> __device__ __forceinline__ void mma16816<F32>(float *, const unsigned *, unsigned,
                                                          unsigned) {
    __trap();
}

// Grid (ceil(w2 / OC_T), ceil(h2 / OC_T)), OC_THREADS threads; c a multiple of OC_CK, x and w
// 16-byte aligned.
template <class S>
__device__ void outconv_t(const void *x_, const void *w_, void *y_, int h2, int w2, int c) {
    typedef typename S::T T;
    const T *x = (const T *)x_;
    const T *w = (const T *)w_;
    T *y = (T *)y_;
    const int wx = w2 + 3, hx = h2 + 3;
    const int bx0 = blockIdx.x * OC_T, by0 = blockIdx.y * OC_T;
    const int tid = threadIdx.x;
    if constexpr (sizeof(T) == 4) {
        for (int i = tid; i < OC_T * OC_T * OC_KOUT; i += blockDim.x) {
            const int o = i % OC_KOUT, cell = i / OC_KOUT;
            const int cx = bx0 + cell % OC_T, cy = by0 + cell / OC_T;
            if (cx >= w2 || cy >= h2) continue;
            float s = 0.f;
            for (int tap = 0; tap < 16; tap++) {
                const T *xp = x + ((i64)(cy + tap / 4) * wx + cx + tap % 4) * c;
                const T *wq = w + ((i64)o * 16 + tap) * c;
                for (int ch = 0; ch < c; ch++) s += S::ld(xp[ch]) * S::ld(wq[ch]);
            }
            y[((i64)cy * w2 + cx) * OC_KOUT + o] = S::st(s);
        }
    } else {
        __shared__ __align__(16) T xs[OC_X * OC_X * OC_LD];
        __shared__ __align__(16) T ws[16 * OC_KOUT * OC_LD];
        const int warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
        const int VPR = OC_CK / 8;  // 16-byte vectors per row of a chunk
        float acc[2][2][4];
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int k = 0; k < 4; k++) acc[m][n][k] = 0.f;
        for (int c0 = 0; c0 < c; c0 += OC_CK) {
            for (int i = tid; i < OC_X * OC_X * VPR; i += OC_THREADS) {
                const int cell = i / VPR, q = i % VPR;
                const int cy = by0 + cell / OC_X, cx = bx0 + cell % OC_X;
                uint4 v = make_uint4(0u, 0u, 0u, 0u);
                if (cy < hx && cx < wx)
                    v = *(const uint4 *)(x + ((i64)cy * wx + cx) * c + c0 + q * 8);
                *(uint4 *)(xs + cell * OC_LD + q * 8) = v;
            }
            for (int i = tid; i < 16 * OC_KOUT * VPR; i += OC_THREADS) {
                const int q = i % VPR, row = i / VPR;  // row = tap * OC_KOUT + o
                const int o = row % OC_KOUT, tap = row / OC_KOUT;
                *(uint4 *)(ws + row * OC_LD + q * 8) =
                    *(const uint4 *)(w + ((i64)o * 16 + tap) * c + c0 + q * 8);
            }
            __syncthreads();
#pragma unroll 4
            for (int tap = 0; tap < 16; tap++) {
                const int ty = tap / 4, tx = tap % 4;
                // B (16 channels x 8 outputs, column-major): outputs nt * 8 + g, channels
                // 2 t4, 2 t4 + 1 and 2 t4 + 8, 2 t4 + 9.
                unsigned b[2][2];
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    const T *wr = ws + (tap * OC_KOUT + nt * 8 + g) * OC_LD + 2 * t4;
                    b[nt][0] = *(const unsigned *)wr;
                    b[nt][1] = *(const unsigned *)(wr + 8);
                }
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    // A (16 cells x 16 channels, row-major): cells g and g + 8 of tile row r.
                    const int r = warp * 2 + mt;
                    const T *a0 = xs + ((r + ty) * OC_X + g + tx) * OC_LD + 2 * t4;
                    const T *a1 = a0 + 8 * OC_LD;
                    const unsigned a[4] = {*(const unsigned *)a0, *(const unsigned *)a1,
                                           *(const unsigned *)(a0 + 8),
                                           *(const unsigned *)(a1 + 8)};
#pragma unroll
                    for (int nt = 0; nt < 2; nt++) mma16816<S>(acc[mt][nt], a, b[nt][0], b[nt][1]);
                }
            }
            __syncthreads();
        }
        // D (16 cells x 8 outputs): cell g (then g + 8), outputs nt * 8 + 2 t4 and + 1.
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            const int cy = by0 + warp * 2 + mt;
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int cx = bx0 + g + 8 * hf;
                if (cy >= h2 || cx >= w2) continue;
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    T *yp = y + ((i64)cy * w2 + cx) * OC_KOUT + nt * 8 + 2 * t4;
                    yp[0] = S::st(acc[mt][nt][2 * hf]);
                    yp[1] = S::st(acc[mt][nt][2 * hf + 1]);
                }
            }
        }
    }
}

INSTANTIATE3(outconv, (const void *x, const void *w, void *y, int h2, int w2, int c),
             (x, w, y, h2, w2, c))
