// Elementwise helpers of the CUDA backend on flat f32 buffers (any layout).
//
// add_assign: dst[i] += src[i]              for i < len (a residual sum, a gradient that
//                                            reaches a slot by two paths)
// copy_into:  dst[offset + i] = src[i]      for i < len (dst holds at least offset + len)
// round_to_storage: x[i] = the nearest value of a 16-bit storage format (mode 1: IEEE half,
//             mode 2: bfloat16), ties to even, overflow to +-inf, NaN kept; for studying
//             the rankings of f16/bf16 activation storage (values stay f32 in memory).
//
// to_storage:   dst[i] = act_store(src[i])   f32 -> the activation storage (see storage.cuh)
// from_storage: dst[i] = act_load(src[i])    the activation storage -> f32
//
// add_assign and copy_into work on activations (act_t); round_to_storage on f32.
// Zero fills and whole-buffer copies are the launcher's memset / memcpy, not kernels.
//
// Launch: any 1-D grid (grid-stride loops).

#include "storage.cuh"

extern "C" __global__ void add_assign(act_t *__restrict__ dst, const act_t *__restrict__ src,
                                      long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[i] = act_store(act_load(dst[i]) + act_load(src[i]));
    }
}

extern "C" __global__ void copy_into(const act_t *__restrict__ src, act_t *__restrict__ dst,
                                     long long len, long long offset) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[offset + i] = src[i];
    }
}

// x rounded to IEEE half precision and back (ties to even; |x| >= 65520 -> inf).
__device__ __forceinline__ float round_to_half(float x) {
    const float a = fabsf(x);
    if (!(a < 65520.0f))
        return a != a ? x : __uint_as_float(0x7F800000u | (__float_as_uint(x) & 0x80000000u));
    // Below 2^-14 half is subnormal: multiples of 2^-24 (the scaling is exact).
    if (a < 6.103515625e-05f) return rintf(x * 16777216.0f) * 5.9604644775390625e-08f;
    unsigned u = __float_as_uint(x);
    u += 0xFFFu + ((u >> 13) & 1u);
    return __uint_as_float(u & ~0x1FFFu);
}

// x rounded to bfloat16 and back (ties to even; NaN kept).
__device__ __forceinline__ float round_to_bf16(float x) {
    if (x != x) return x;
    unsigned u = __float_as_uint(x);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return __uint_as_float(u & 0xFFFF0000u);
}

extern "C" __global__ void round_to_storage(float *__restrict__ x, long long len, int mode) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        x[i] = mode == 1 ? round_to_half(x[i]) : round_to_bf16(x[i]);
    }
}

extern "C" __global__ void to_storage(const float *__restrict__ src, act_t *__restrict__ dst,
                                      long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[i] = act_store(src[i]);
    }
}

extern "C" __global__ void from_storage(const act_t *__restrict__ src, float *__restrict__ dst,
                                        long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[i] = act_load(src[i]);
    }
}
