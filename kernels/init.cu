// Parameter initialisation on the device: the values of engine/net/init.rs, bit for bit, so
// that scoring an arch uploads a small table instead of every weight.
//
// Philox4x32-10 (Salmon et al., SC'11), key (seed low, seed high), counter (block low,
// block high, stream low, stream high): element e of a parameter is word e % 4 of block e / 4
// of its stream (the FNV-1a hash of its name); u = (word >> 8) * 2^-24 (24 random bits,
// exact in f64), value = (2u - 1) * bound in f64 (every step exact but the product, which
// rounds once, as on the host), stored as the nearest f32. A constant parameter (batch-norm
// gamma 1, beta 0) is its value rounded to f32.
//
// init_params: every parameter of a network in one launch. `table` holds INIT_WORDS u64 per
// parameter: [0] the address of its f32 buffer, [1] its length, [2] its rule (INIT_CONSTANT or
// INIT_SYMMETRIC_UNIFORM), [3] its stream, [4] the bits of an f64 (the constant, or the bound).
// Launch: grid (x: any, y: one per parameter), 1-D blocks; a thread makes the (up to) 4
// elements of one Philox block, grid-stride over blocks.

#define INIT_WORDS 5
#define INIT_CONSTANT 0
#define INIT_SYMMETRIC_UNIFORM 1

__device__ __forceinline__ unsigned mul_hi32(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}

// Philox4x32 with 10 rounds (the key bumped before every round but the first).
__device__ void philox4x32_10(unsigned c[4], unsigned k0, unsigned k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const unsigned m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
        const unsigned hi0 = mul_hi32(m0, c[0]), lo0 = m0 * c[0];
        const unsigned hi1 = mul_hi32(m1, c[2]), lo1 = m1 * c[2];
        const unsigned n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

extern "C" __global__ void init_params(const unsigned long long *__restrict__ table, int count,
                                       unsigned long long seed) {
    const int p = blockIdx.y;
    if (p >= count) return;
    const unsigned long long *entry = table + (long long)p * INIT_WORDS;
    float *dst = reinterpret_cast<float *>(entry[0]);
    const long long len = (long long)entry[1];
    const unsigned long long rule = entry[2], stream = entry[3];
    const double value = __longlong_as_double((long long)entry[4]);
    const long long blocks = (len + 3) / 4;
    for (long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x; b < blocks;
         b += (long long)gridDim.x * blockDim.x) {
        unsigned words[4] = {(unsigned)b, (unsigned)(b >> 32), (unsigned)stream,
                             (unsigned)(stream >> 32)};
        if (rule == INIT_SYMMETRIC_UNIFORM) philox4x32_10(words, (unsigned)seed, (unsigned)(seed >> 32));
        for (int j = 0; j < 4 && 4 * b + j < len; ++j) {
            double v = value;
            if (rule == INIT_SYMMETRIC_UNIFORM) {
                const double u = (double)(words[j] >> 8) * (1.0 / 16777216.0);
                v = (2.0 * u - 1.0) * value;
            }
            dst[4 * b + j] = (float)v;
        }
    }
}
