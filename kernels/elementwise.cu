// Elementwise helpers of the CUDA backend on flat buffers (any layout).
//
// add_assign: dst[i] += src[i]              for i < len (a residual sum, a gradient that
//                                            reaches a slot by two paths)
// copy_into:  dst[offset + i] = src[i]      for i < len (dst holds at least offset + len)
//
// to_storage:   dst[i] = act_store(src[i])   f32 -> the activation storage (see storage.cuh)
// from_storage: dst[i] = act_load(src[i])    the activation storage -> f32
// add_scaled:   out[i] = float(x[i] + alpha * y[i]) on f32 parameters, in double with the
//               product and the sum each rounded (no FMA: the host's `x + alpha * y`)
// copy_into_many: copy_into for many f32 buffers in one launch: `table` holds 4 u64 per copy
//               (source address, destination address, length, offset); grid y = the copy,
//               grid x strides over its values.
//
// add_assign and copy_into work on activations (act_t).
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

extern "C" __global__ void add_scaled(const float *__restrict__ x, double alpha,
                                      const float *__restrict__ y, float *__restrict__ out,
                                      long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = (float)__dadd_rn((double)x[i], __dmul_rn(alpha, (double)y[i]));
    }
}

extern "C" __global__ void copy_into_many(const unsigned long long *__restrict__ table,
                                          int count) {
    const int e = blockIdx.y;
    if (e >= count) return;
    const unsigned long long *entry = table + 4LL * e; // COPY_WORDS in ops.rs
    const float *src = reinterpret_cast<const float *>(entry[0]);
    float *dst = reinterpret_cast<float *>(entry[1]) + entry[3];
    const long long len = (long long)entry[2];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[i] = src[i];
    }
}
