// Gram matrix of per-sample gradients: g += a a^T for a = [n][len] f32 row-major, g = [n][n]
// f64 row-major. Products are exact in double (f32 x f32 fits a double) and summed in double.
// column_moments: for each column j of a, out[at + j] = mean_i |a[i][j]| and
// out[at + len + j] = mean_i (a[i][j] - mean_i a[i][j])^2, in double, two passes (one thread
// per column: consecutive threads read consecutive addresses of each row); any 1-D grid.
//
// Launch: blockDim = (TILE, TILE), grid = (ceil(n/TILE), ceil(n/TILE), splits). Block
// (bx, by, bz) owns the tile of rows by*TILE.., columns bx*TILE.. and the bz-th of `splits`
// contiguous ranges of TILE-column chunks of a (split-K, so a small n still fills the GPU);
// the TILE x TILE panels of a are staged in shared memory, each value read once per tile.
// gram_partial writes its split's sums to part[bz][i][j]; gram_sum_partials (any 1-D grid)
// adds them to g in split order, so g is the same on every run (no float atomics).

#define GRAM_TILE 16

extern "C" __global__ void gram_partial(const float *__restrict__ a, double *__restrict__ part,
                                        int n, long long len) {
    __shared__ float rows[GRAM_TILE][GRAM_TILE + 1];
    __shared__ float cols[GRAM_TILE][GRAM_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int i = blockIdx.y * GRAM_TILE + ty, j = blockIdx.x * GRAM_TILE + tx;
    const int row_load = blockIdx.y * GRAM_TILE + ty, col_load = blockIdx.x * GRAM_TILE + ty;
    const long long chunks = (len + GRAM_TILE - 1) / GRAM_TILE;
    const long long per_split = (chunks + gridDim.z - 1) / gridDim.z;
    const long long first = blockIdx.z * per_split;
    const long long last = min(chunks, first + per_split);
    double acc = 0.0;
    for (long long chunk = first; chunk < last; ++chunk) {
        const long long k = chunk * GRAM_TILE + tx;
        rows[ty][tx] = (row_load < n && k < len) ? a[row_load * len + k] : 0.0f;
        cols[ty][tx] = (col_load < n && k < len) ? a[col_load * len + k] : 0.0f;
        __syncthreads();
        for (int t = 0; t < GRAM_TILE; ++t) acc += (double)rows[ty][t] * (double)cols[tx][t];
        __syncthreads();
    }
    if (i < n && j < n) part[((long long)blockIdx.z * n + i) * n + j] = acc;
}

extern "C" __global__ void gram_sum_partials(const double *__restrict__ part,
                                             double *__restrict__ g, int splits, long long nn) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < nn;
         e += (long long)gridDim.x * blockDim.x) {
        double total = 0.0;
        for (int z = 0; z < splits; ++z) total += part[z * nn + e];
        g[e] += total;
    }
}

extern "C" __global__ void column_moments(const float *__restrict__ a, double *__restrict__ out,
                                          int n, long long len, long long at) {
    out += at;
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < len;
         j += (long long)gridDim.x * blockDim.x) {
        double sum = 0.0, sum_abs = 0.0;
        for (int i = 0; i < n; ++i) {
            const double v = (double)a[i * len + j];
            sum += v;
            sum_abs += fabs(v);
        }
        const double mean = sum / n;
        double sq = 0.0;
        for (int i = 0; i < n; ++i) {
            const double d = (double)a[i * len + j] - mean;
            sq += d * d;
        }
        out[j] = sum_abs / n;
        out[len + j] = sq / n;
    }
}
