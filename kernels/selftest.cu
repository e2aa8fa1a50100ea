// Kernels that test the execution model itself (used by tests/kernels_emu.rs to prove the
// emulator in kernels/emu/cuda_emu.h, and compiled by NVRTC like every family).
//
// selftest_ids:            out[4 * t + k] = (threadIdx, blockIdx) components of each thread,
//                          t the global linear thread id; 3-D grid and block.
// selftest_block_reduce:   out[b] = sum of x[b*blockDim.x .. +blockDim.x) (only the first
//                          `len` values exist), by a shared-memory tree (blockDim a power of 2).
// selftest_early_exit:     the same sum for one block where threads >= live return first and
//                          the others still meet at __syncthreads.
// selftest_warp:           per thread (one block, whole warps) 6 results of warp intrinsics,
//                          see the code; v is x[thread].
// selftest_atomic:         every thread adds 1 (double, float, u64) and its id (unsigned).
// selftest_dynamic_shared: out = x reversed within each block, through dynamic shared memory.

#ifndef NASRANK_EMU
#define NASRANK_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

typedef unsigned long long u64;

extern "C" __global__ void selftest_ids(unsigned *out) {
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = block * threads + threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[4 * t] = threadIdx.x + 100 * threadIdx.y + 10000 * threadIdx.z;
    out[4 * t + 1] = blockIdx.x;
    out[4 * t + 2] = blockIdx.y;
    out[4 * t + 3] = blockIdx.z;
}

extern "C" __global__ void selftest_block_reduce(const float *x, double *out, int len) {
    __shared__ double buf[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < len ? (double)x[i] : 0.0;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

extern "C" __global__ void selftest_early_exit(const float *x, double *out, int live) {
    __shared__ double buf[256];
    if ((int)threadIdx.x >= live) return;
    buf[threadIdx.x] = (double)x[threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int k = 0; k < live; ++k) s += buf[k];
        out[0] = s;
    }
}

extern "C" __global__ void selftest_warp(const int *x, int *out) {
    const unsigned t = threadIdx.x;
    const int v = x[t];
    int *o = out + 6 * t;
    o[0] = __shfl_sync(0xffffffffu, v, 3);            // lane 3's value
    o[1] = __shfl_down_sync(0xffffffffu, v, 1);       // next lane's (own at lane 31)
    o[2] = __shfl_xor_sync(0xffffffffu, v, 16);       // the other half-warp's
    o[3] = (int)__ballot_sync(0xffffffffu, v > 0);    // bit per lane
    o[4] = __popc(__ballot_sync(0xffffffffu, v & 1)); // odd values in the warp
    o[5] = __shfl_down_sync(0xffffffffu, v, 2, 8);    // within groups of 8 lanes
}

extern "C" __global__ void selftest_atomic(double *d, float *f, u64 *u, unsigned *ids) {
    atomicAdd(d, 1.0);
    atomicAdd(f, 1.0f);
    atomicAdd(u, 1ull);
    atomicAdd(ids, blockIdx.x * blockDim.x + threadIdx.x);
}

extern "C" __global__ void selftest_dynamic_shared(const int *x, int *out) {
    NASRANK_DYNAMIC_SHARED(int, tile);
    const unsigned base = blockIdx.x * blockDim.x;
    tile[threadIdx.x] = x[base + threadIdx.x];
    __syncthreads();
    out[base + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}
