// Fully connected layer (PyTorch Linear), f32 data, f32 accumulation.
//
// Layout: x [n][fin], w [fout][fin], b [fout], y [n][fout] (row-major).
//   linear_forward:           y = x w^T + b                      (overwrites)
//   linear_backward_data:     dx += dy w                         ([n][fin])
//   linear_backward_weight:   dw += dy^T x                       ([fout][fin])
//   linear_backward_bias:     db[o] += sum_i dy[i][o]            (images in order)
//   linear_grad_per_sample:   dw[i][o][f] = dy[i][o] x[i][f], db[i][o] = dy[i][o] (overwrite)
//
// The three products are tiled GEMMs (tile_gemm below): 16 x 16 threads own a LINEAR_TILE_M x
// LINEAR_TILE_N output tile, the operand panels of depth LINEAR_TILE_K are staged in shared
// memory, each thread keeps a 2 x 4 register block.
//
// Launch: GEMM kernels: block (16, 16), grid (ceil(N / LINEAR_TILE_N), ceil(M / LINEAR_TILE_M))
// with (M, N) = (n, fout) forward, (n, fin) backward data, (fout, fin) backward weight; the
// host mirrors the tile sizes in engine/backend/cuda/ops.rs. The others: any 1-D grid.
//
// x, y, dy and dx are activations (act_t, see storage.cuh); w, b and their gradients f32.

#include "common.cuh"
#include "storage.cuh"

#define LINEAR_TILE_M 32
#define LINEAR_TILE_N 64
#define LINEAR_TILE_K 16
#define LINEAR_THREADS 16 // per block edge
#define LINEAR_RM (LINEAR_TILE_M / LINEAR_THREADS)
#define LINEAR_RN (LINEAR_TILE_N / LINEAR_THREADS)

// C[m][n] over the block's tile = sum_{k < K} A(m, k) B(k, n), handed to store(m, n, value)
// for m < M, n < N; load_a / load_b are called only in range. *_K_FAST: whether consecutive
// threads load consecutive k (the operand's contiguous axis) or consecutive m / n.
template <bool A_K_FAST, bool B_K_FAST, class LoadA, class LoadB, class Store>
__device__ __forceinline__ void tile_gemm(int M, int N, int K, LoadA load_a, LoadB load_b,
                                          Store store) {
    __shared__ float as[LINEAR_TILE_K][LINEAR_TILE_M + 1];
    __shared__ float bs[LINEAR_TILE_K][LINEAR_TILE_N + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * LINEAR_THREADS + tx;
    const int threads = LINEAR_THREADS * LINEAR_THREADS;
    const int m0 = blockIdx.y * LINEAR_TILE_M, n0 = blockIdx.x * LINEAR_TILE_N;
    float acc[LINEAR_RM][LINEAR_RN];
    for (int i = 0; i < LINEAR_RM; ++i)
        for (int j = 0; j < LINEAR_RN; ++j) acc[i][j] = 0.0f;
    for (int kb = 0; kb < K; kb += LINEAR_TILE_K) {
        for (int e = tid; e < LINEAR_TILE_K * LINEAR_TILE_M; e += threads) {
            const int kk = A_K_FAST ? e % LINEAR_TILE_K : e / LINEAR_TILE_M;
            const int m = A_K_FAST ? e / LINEAR_TILE_K : e % LINEAR_TILE_M;
            as[kk][m] = (kb + kk < K && m0 + m < M) ? load_a(m0 + m, kb + kk) : 0.0f;
        }
        for (int e = tid; e < LINEAR_TILE_K * LINEAR_TILE_N; e += threads) {
            const int kk = B_K_FAST ? e % LINEAR_TILE_K : e / LINEAR_TILE_N;
            const int nn = B_K_FAST ? e / LINEAR_TILE_K : e % LINEAR_TILE_N;
            bs[kk][nn] = (kb + kk < K && n0 + nn < N) ? load_b(kb + kk, n0 + nn) : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < LINEAR_TILE_K; ++kk) {
            float a[LINEAR_RM], b[LINEAR_RN];
            for (int i = 0; i < LINEAR_RM; ++i) a[i] = as[kk][ty + LINEAR_THREADS * i];
            for (int j = 0; j < LINEAR_RN; ++j) b[j] = bs[kk][tx + LINEAR_THREADS * j];
            for (int i = 0; i < LINEAR_RM; ++i)
                for (int j = 0; j < LINEAR_RN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads(); // the panels are overwritten by the next step
    }
    for (int i = 0; i < LINEAR_RM; ++i)
        for (int j = 0; j < LINEAR_RN; ++j) {
            const int m = m0 + ty + LINEAR_THREADS * i, nn = n0 + tx + LINEAR_THREADS * j;
            if (m < M && nn < N) store(m, nn, acc[i][j]);
        }
}

extern "C" __global__ void linear_forward(const act_t *__restrict__ x, const float *__restrict__ w,
                                          const float *__restrict__ b, act_t *__restrict__ y, int n,
                                          int fin, int fout) {
    tile_gemm<true, true>(
        n, fout, fin, [&](int i, int f) { return act_load(x[(long long)i * fin + f]); },
        [&](int f, int o) { return w[(long long)o * fin + f]; },
        [&](int i, int o, float v) { y[(long long)i * fout + o] = act_store(v + b[o]); });
}

extern "C" __global__ void linear_backward_data(const act_t *__restrict__ dy,
                                                const float *__restrict__ w, act_t *__restrict__ dx,
                                                int n, int fin, int fout) {
    tile_gemm<true, false>(
        n, fin, fout, [&](int i, int o) { return act_load(dy[(long long)i * fout + o]); },
        [&](int o, int f) { return w[(long long)o * fin + f]; },
        [&](int i, int f, float v) {
            act_t &d = dx[(long long)i * fin + f];
            d = act_store(act_load(d) + v);
        });
}

extern "C" __global__ void linear_backward_weight(const act_t *__restrict__ x,
                                                  const act_t *__restrict__ dy,
                                                  float *__restrict__ dw, int n, int fin,
                                                  int fout) {
    tile_gemm<false, false>(
        fout, fin, n, [&](int o, int i) { return act_load(dy[(long long)i * fout + o]); },
        [&](int i, int f) { return act_load(x[(long long)i * fin + f]); },
        [&](int o, int f, float v) { dw[(long long)o * fin + f] += v; });
}

extern "C" __global__ void linear_backward_bias(const act_t *__restrict__ dy,
                                                float *__restrict__ db, int n, int fout) {
    // One thread per output: the threads of a warp read consecutive dy values of a row.
    GRID_STRIDE(o, fout) {
        float sum = db[o];
        for (int i = 0; i < n; ++i) sum += act_load(dy[(long long)i * fout + o]);
        db[o] = sum;
    }
}

extern "C" __global__ void linear_grad_per_sample(const act_t *__restrict__ x,
                                                  const act_t *__restrict__ dy,
                                                  float *__restrict__ dw, float *__restrict__ db,
                                                  int n, int fin, int fout) {
    const long long per_image = (long long)fout * fin;
    GRID_STRIDE(idx, n * per_image) {
        const long long i = idx / per_image, o = idx % per_image / fin, f = idx % fin;
        dw[idx] = act_load(dy[i * fout + o]) * act_load(x[i * fin + f]);
    }
    GRID_STRIDE(idx, (long long)n * fout) { db[idx] = act_load(dy[idx]); }
}
