// Elementwise helpers of the CUDA backend on flat f32 buffers (any layout).
//
// add_assign: dst[i] += src[i]              for i < len (a residual sum, a gradient that
//                                            reaches a slot by two paths)
// copy_into:  dst[offset + i] = src[i]      for i < len (dst holds at least offset + len)
//
// Zero fills and whole-buffer copies are the launcher's memset / memcpy, not kernels.
//
// Launch: any 1-D grid (grid-stride loops).

extern "C" __global__ void add_assign(float *__restrict__ dst, const float *__restrict__ src,
                                      long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[i] += src[i];
    }
}

extern "C" __global__ void copy_into(const float *__restrict__ src, float *__restrict__ dst,
                                     long long len, long long offset) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dst[offset + i] = src[i];
    }
}
