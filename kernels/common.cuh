// Helpers shared by several kernel families (build.rs puts this file in place of a family's
// `#include "common.cuh"`, for NVRTC and the emulator alike).

// for (i = this thread's first index; i < total; i += the grid's thread count).
#define GRID_STRIDE(i, total)                                                                      \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (total);              \
         i += (long long)gridDim.x * blockDim.x)

// Sum of `v` over the block, returned to every thread (blockDim.x a multiple of 32, at most
// 1024). Warp shuffles, then one warp over the warps' partials: the order of the additions
// depends only on blockDim.x, so a result repeats bit for bit.
__device__ double block_sum(double v) {
    __shared__ double partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? partial[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    const double total = partial[0];
    __syncthreads(); // `partial` is free for the next call
    return total;
}
