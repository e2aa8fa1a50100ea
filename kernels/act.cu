// ReLU and sign codes.
//
// relu_forward:   y[i] = max(x[i], 0)                      (flat, any layout, overwrites y)
// relu_backward:  dx[i] += dy[i] * [x[i] > 0]               (x is the ReLU input; accumulate
//                 == 0: dx overwritten with 0 + that, see act_added_to in storage.cuh)
// pack_signs / relu_forward_pack: x is [n][units]; codes is [n][words], words = ceil(units/64);
//   bit b of word w of image i is [x[i][64w + b] > 0]; padding bits are 0. One warp builds one
//   word from two __ballot_sync calls (units 64w..64w+31, then 64w+32..64w+63).
//   relu_forward_pack also writes y = max(x, 0) in the same pass (the fused forward).
//
// Launch: elementwise kernels take any 1-D grid (grid-stride loops). The code kernels need
// blockDim.x a multiple of 32 (whole warps) and any 1-D grid; each warp strides over words.
//
// x, y, dy and dx are activations (act_t, see storage.cuh).

#include "storage.cuh"

typedef unsigned long long u64;

extern "C" __global__ void relu_forward(const act_t *__restrict__ x, act_t *__restrict__ y,
                                        long long len) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = act_load(x[i]);
        y[i] = act_store(v > 0.0f ? v : 0.0f);
    }
}

extern "C" __global__ void relu_backward(const act_t *__restrict__ x, const act_t *__restrict__ dy,
                                         act_t *__restrict__ dx, long long len, int accumulate) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        dx[i] = act_store(act_added_to(&dx[i], accumulate) +
                          (act_load(x[i]) > 0.0f ? act_load(dy[i]) : 0.0f));
    }
}

// The word loop shared by both code kernels; `y` may be null (codes only).
__device__ __forceinline__ void pack_words(const act_t *__restrict__ x, act_t *__restrict__ y,
                                           u64 *__restrict__ codes, int n, int units) {
    const int words = (units + 63) / 64;
    const long long total = (long long)n * words;
    const unsigned lane = threadIdx.x & 31;
    const long long warps_per_block = blockDim.x / 32;
    // Warp-uniform loop bounds: the whole warp reaches every ballot together.
    for (long long wi = blockIdx.x * warps_per_block + threadIdx.x / 32; wi < total;
         wi += gridDim.x * warps_per_block) {
        const long long image = wi / words;
        const int word = (int)(wi % words);
        const act_t *row = x + image * units;
        u64 bits = 0;
        for (int half = 0; half < 2; ++half) {
            const int unit = 64 * word + 32 * half + (int)lane;
            const float v = unit < units ? act_load(row[unit]) : 0.0f;
            if (y != 0 && unit < units) y[image * units + unit] = act_store(v > 0.0f ? v : 0.0f);
            const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
            bits |= (u64)ballot << (32 * half);
        }
        if (lane == 0) codes[wi] = bits;
    }
}

extern "C" __global__ void pack_signs(const act_t *__restrict__ x, u64 *__restrict__ codes, int n,
                                      int units) {
    pack_words(x, 0, codes, n, units);
}

extern "C" __global__ void relu_forward_pack(const act_t *__restrict__ x, act_t *__restrict__ y,
                                             u64 *__restrict__ codes, int n, int units) {
    pack_words(x, y, codes, n, units);
}
