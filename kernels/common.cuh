// Shared by every kernel file (each includes it). src/cuda/kernels.rs compiles all the .cu
// files as one NVRTC program, expanding each header where it is first included (NVRTC has no file
// system here, and no CUDA headers are needed: half and bfloat16 conversions are written out
// below).
//
// Storage types: activations are float32, float16 or bfloat16 (the engine's precision); every
// kernel computes in float32. A storage type is one of the structs F32, F16, BF16 below; a kernel
// template `op<S>` is instantiated per type as `op_f32`, `op_f16`, `op_bf16`.

#ifndef FLAVR_COMMON_CUH
#define FLAVR_COMMON_CUH

#include "params.cuh"

typedef unsigned char u8;
typedef unsigned short u16;
typedef long long i64;
#define I32_MAX 2147483647

__device__ __forceinline__ float h2f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f2h(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float bf2f(u16 b) { return __uint_as_float(((unsigned)b) << 16); }
// Round to nearest even (what cvt.rn.bf16.f32 does on sm_80+), written out so that any
// architecture compiles it.
__device__ __forceinline__ u16 f2bf(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}

// V: elements in 16 bytes (one vector load or store).
struct F32 {
    typedef float T;
    static const int V = 4;
    static __device__ __forceinline__ float ld(T x) { return x; }
    static __device__ __forceinline__ T st(float x) { return x; }
};
struct F16 {
    typedef u16 T;
    static const int V = 8;
    static __device__ __forceinline__ float ld(T x) { return h2f(x); }
    static __device__ __forceinline__ T st(float x) { return f2h(x); }
};
struct BF16 {
    typedef u16 T;
    static const int V = 8;
    static __device__ __forceinline__ float ld(T x) { return bf2f(x); }
    static __device__ __forceinline__ T st(float x) { return f2bf(x); }
};

static_assert(F32::V * sizeof(float) == VECTOR_BYTES, "F32::V");
static_assert(F16::V * sizeof(u16) == VECTOR_BYTES, "F16::V");
static_assert(BF16::V * sizeof(u16) == VECTOR_BYTES, "BF16::V");

template <class S> union Pack16 {
    uint4 u;
    typename S::T e[S::V];
};

// 16-byte load of S::V elements (p must be 16-byte aligned) into floats.
template <class S> __device__ __forceinline__ void ldv(const typename S::T *p, float *f) {
    Pack16<S> k;
    k.u = *reinterpret_cast<const uint4 *>(p);
#pragma unroll
    for (int i = 0; i < S::V; i++) f[i] = S::ld(k.e[i]);
}

// 16-byte store of S::V floats converted to S (p must be 16-byte aligned).
template <class S> __device__ __forceinline__ void stv(typename S::T *p, const float *f) {
    Pack16<S> k;
#pragma unroll
    for (int i = 0; i < S::V; i++) k.e[i] = S::st(f[i]);
    *reinterpret_cast<uint4 *>(p) = k.u;
}

__device__ __forceinline__ float activate(float v, int act) {
    if (act == ACT_RELU) return v > 0.f ? v : 0.f;
    if (act == ACT_LRELU) return v >= 0.f ? v : 0.2f * v;
    return v;
}

// Emits `extern "C"` entry points NAME_f32, NAME_f16, NAME_bf16 for a template NAME##_t<S>
// whose arguments are ARGS (a parenthesised list) and call list CALL.
#define INSTANTIATE3(NAME, ARGS, CALL)                                   \
    extern "C" __global__ void NAME##_f32 ARGS { NAME##_t<F32> CALL; }   \
    extern "C" __global__ void NAME##_f16 ARGS { NAME##_t<F16> CALL; }   \
    extern "C" __global__ void NAME##_bf16 ARGS { NAME##_t<BF16> CALL; }

#endif
