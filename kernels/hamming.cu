// Hamming Gram of packed sign codes.
//
// codes is [n][words] u64 (see act.cu), k is [n][n] u64 row-major:
//   k[i][j] += weight * (units - popcount(code_i XOR code_j))
// the number of units on which images i and j agree, counted exactly. Padding bits are 0 in
// every code, so they never differ.
//
// Launch: blockDim = (TILE, TILE), grid = (ceil(n/TILE), ceil(n/TILE)). Block (bx, by) owns
// the tile of rows by*TILE.., columns bx*TILE..; both TILE x TILE word panels of the codes
// are staged in shared memory, so each word is read from global memory once per tile.
// Rows/columns past n load zero words and write nothing.

typedef unsigned long long u64;

#define HAMMING_TILE 16

extern "C" __global__ void hamming_gram_accumulate(const u64 *__restrict__ codes, u64 *__restrict__ k,
                                                   int n, int words, u64 units, u64 weight) {
    __shared__ u64 rows[HAMMING_TILE][HAMMING_TILE + 1];
    __shared__ u64 cols[HAMMING_TILE][HAMMING_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int i = blockIdx.y * HAMMING_TILE + ty; // row of k this thread owns
    const int j = blockIdx.x * HAMMING_TILE + tx; // column of k this thread owns
    const int row_load = blockIdx.y * HAMMING_TILE + ty;
    const int col_load = blockIdx.x * HAMMING_TILE + ty;
    u64 differ = 0;
    for (int w0 = 0; w0 < words; w0 += HAMMING_TILE) {
        const int w = w0 + tx;
        rows[ty][tx] = (row_load < n && w < words) ? codes[(long long)row_load * words + w] : 0;
        cols[ty][tx] = (col_load < n && w < words) ? codes[(long long)col_load * words + w] : 0;
        __syncthreads();
        for (int t = 0; t < HAMMING_TILE; ++t) differ += __popcll(rows[ty][t] ^ cols[tx][t]);
        __syncthreads();
    }
    if (i < n && j < n) k[(long long)i * n + j] += weight * (units - differ);
}
