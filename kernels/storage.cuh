// Activation storage, shared by every family that holds activations (build.rs puts this file
// in place of the family's `#include "storage.cuh"`, for NVRTC and the emulator alike).
//
// act_t is what activations and activation gradients are stored as; kernels load them with
// act_load and store them with act_store, and compute in f32 (accumulating in f32 or f64 as
// before). Parameters, their gradients, batch-norm statistics and Gram accumulators stay f32.
// ACT_STORAGE, set by the host for each compiled variant:
//   0: f32            act_t = float (the conversions are the identity)
//   1: IEEE half      act_t = unsigned short holding binary16 bits
//   2: bfloat16       act_t = unsigned short holding the high half of an f32
// Stores round to nearest, ties to even; half overflows to +-inf from 65520 on; a NaN stays a
// (quiet) NaN. The conversions are integer arithmetic, not device intrinsics, so that the
// emulator's results are the GPU's bit for bit.

#ifndef ACT_STORAGE
#define ACT_STORAGE 0
#endif

#if ACT_STORAGE == 0

typedef float act_t;
__device__ __forceinline__ float act_load(float v) { return v; }
__device__ __forceinline__ float act_store(float v) { return v; }

#elif ACT_STORAGE == 1

typedef unsigned short act_t;

__device__ __forceinline__ float act_load(act_t h) {
    const unsigned sign = (unsigned)(h & 0x8000u) << 16;
    const unsigned e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1Fu) return __uint_as_float(sign | 0x7F800000u | (m << 13)); // inf, NaN
    if (e != 0u) return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
    // Zero or subnormal: m * 2^-24, exact in f32.
    return __uint_as_float(sign | __float_as_uint((float)m * 5.9604644775390625e-08f));
}

__device__ __forceinline__ act_t act_store(float x) {
    const unsigned u = __float_as_uint(x);
    const unsigned sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (act_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu)); // NaN, quiet
    if (a >= 0x477FF000u) return (act_t)(sign | 0x7C00u);              // |x| >= 65520: inf
    // Below 2^-14 the result is subnormal: a multiple of 2^-24 (the scaling is exact; 2^-14
    // itself comes out as 0x400, the smallest normal's bits).
    if (a < 0x38800000u) return (act_t)(sign | (unsigned)rintf(__uint_as_float(a) * 16777216.0f));
    // Normal: drop 13 mantissa bits rounding to even (a carry moves into the exponent), and
    // rebias the exponent from 127 to 15.
    const unsigned r = a + 0xFFFu + ((a >> 13) & 1u);
    return (act_t)(sign | ((r >> 13) - (112u << 10)));
}

#elif ACT_STORAGE == 2

typedef unsigned short act_t;

__device__ __forceinline__ float act_load(act_t h) { return __uint_as_float((unsigned)h << 16); }

__device__ __forceinline__ act_t act_store(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (act_t)((u >> 16) | 0x40u); // NaN, made quiet
    return (act_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#else
#error "ACT_STORAGE must be 0 (f32), 1 (f16) or 2 (bf16)"
#endif

// What an accumulating kernel adds its value to: the gradient already in *dx, or, when the
// host asks it to overwrite (accumulate == 0: dx is a fresh buffer of unspecified contents),
// zero, so that the result has the bits of adding to a zeroed buffer without a memset.
__device__ __forceinline__ float act_added_to(const act_t *dx, int accumulate) {
    return accumulate ? act_load(*dx) : 0.0f;
}
