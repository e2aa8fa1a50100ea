// Whole-tensor sums into an f64 accumulator, so that a score reads one small vector instead
// of downloading every tensor it sums over. Products of two f32 values are exact in double;
// every sum is in double, in an order fixed by the launch (no atomics), so results repeat
// bit for bit.
//
// abs_products_and_squares: out[at] += sum_i |a[i] * b[i]|, out[at + 1] += sum_i b[i]^2
//   for f32 a, b of len values. Launch: one block (blockDim.x a multiple of 32); each thread
//   sums a strided share, then block_sum.
// difference_dot: out[at] += sum_i x[i] * (a[i] - b[i]) for f32 x, a, b of len values (each
//   difference and product exact in double). Launch: one block, as abs_products_and_squares.
// row_dots: dots[r] = sum_p a[r][p] * b[r][p] for activations a, b = [rows][len]
//   (act_t). Launch: one warp per row (1-D blocks of a multiple of 32 threads, any grid:
//   warps stride over rows); lanes stride over p, then a shuffle sum.
// sum_squares: out[at] += sum_r dots[r]^2 (f64). Launch: one block, as
//   abs_products_and_squares.
// count_unequal: partial[blockIdx.x] = how many i of the block's grid-stride share have
//   a[i] != b[i] (act_t; a NaN differs from everything), an exact count in double. Launch:
//   1-D blocks of a multiple of 32 threads, any grid.
// sum_into: out[at] += sum_i v[i] (f64). Launch: one block, as abs_products_and_squares.

#include "common.cuh"
#include "storage.cuh"

extern "C" __global__ void abs_products_and_squares(const float *__restrict__ a,
                                                    const float *__restrict__ b, long long len,
                                                    double *__restrict__ out, int at) {
    double abs_products = 0.0, squares = 0.0;
    for (long long i = threadIdx.x; i < len; i += blockDim.x) {
        const double x = a[i], y = b[i];
        abs_products += fabs(x * y);
        squares += y * y;
    }
    abs_products = block_sum(abs_products);
    squares = block_sum(squares);
    if (threadIdx.x == 0) {
        out[at] += abs_products;
        out[at + 1] += squares;
    }
}

extern "C" __global__ void row_dots(const act_t *__restrict__ a, const act_t *__restrict__ b,
                                    long long rows, int len, double *__restrict__ dots) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; r < rows;
         r += warps) {
        double dot = 0.0;
        for (int p = lane; p < len; p += 32) {
            dot += (double)act_load(a[r * len + p]) * (double)act_load(b[r * len + p]);
        }
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_down_sync(0xffffffffu, dot, o);
        if (lane == 0) dots[r] = dot;
    }
}

extern "C" __global__ void sum_squares(const double *__restrict__ dots, long long rows,
                                       double *__restrict__ out, int at) {
    double squares = 0.0;
    for (long long r = threadIdx.x; r < rows; r += blockDim.x) squares += dots[r] * dots[r];
    squares = block_sum(squares);
    if (threadIdx.x == 0) out[at] += squares;
}

extern "C" __global__ void difference_dot(const float *__restrict__ x, const float *__restrict__ a,
                                          const float *__restrict__ b, long long len,
                                          double *__restrict__ out, int at) {
    double dot = 0.0;
    for (long long i = threadIdx.x; i < len; i += blockDim.x) {
        dot += (double)x[i] * ((double)a[i] - (double)b[i]);
    }
    dot = block_sum(dot);
    if (threadIdx.x == 0) out[at] += dot;
}

extern "C" __global__ void count_unequal(const act_t *__restrict__ a, const act_t *__restrict__ b,
                                         long long len, double *__restrict__ partial) {
    double count = 0.0;
    GRID_STRIDE(i, len) count += act_load(a[i]) != act_load(b[i]) ? 1.0 : 0.0;
    count = block_sum(count);
    if (threadIdx.x == 0) partial[blockIdx.x] = count;
}

extern "C" __global__ void sum_into(const double *__restrict__ v, long long len,
                                    double *__restrict__ out, int at) {
    double total = 0.0;
    for (long long i = threadIdx.x; i < len; i += blockDim.x) total += v[i];
    total = block_sum(total);
    if (threadIdx.x == 0) out[at] += total;
}
