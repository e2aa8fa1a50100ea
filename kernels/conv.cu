// 2-d convolution without bias (PyTorch Conv2d(bias=False)), f32 data, f32 accumulation.
//
// Layout: x [n][cin][h][w], w [cout][cin][k][k], y [n][cout][oh][ow], oh = (h+2p-k)/s + 1,
// per-image weight gradients [n][cout*cin*k*k]. With P = oh*ow, R = cin*k*k and the
// im2col matrix col_i[r][pix] = x[i][ci][oy*s-p+ki][ox*s-p+kj] (r = (ci*k+ki)*k+kj, zero
// outside the image), every kernel is an implicit GEMM (col is never materialised):
//   conv_forward:        y[i][co][pix]  = sum_r w[co][r] col_i[r][pix]             (overwrites)
//                        M = cout, N = n*P (images side by side), depth R (conv_forward_m16:
//                        the same for cout <= 16, with a 16 x 128 tile)
//   conv_backward_data:  dx[i][ci][iy][ix] += sum_{co,ki,kj} w[co][ci][ki][kj] dy[i][co][oy][ox]
//                        (accumulate == 0: dx overwritten, see act_added_to in storage.cuh)
//                        over the taps with oy*s-p+ki = iy, ox*s-p+kj = ix (a gather: no
//                        atomics); M = cin, N = n*h*w, depth cout*k*k
//   conv_weight_grad:    out[z][co][r] = sum_{q in range z} dy[i][co][pix] col_i[r][pix],
//                        q = i*P + pix ranging over [z*span, min((z+1)*span, n*P))  (overwrites)
//                        M = cout, N = R. span = P gives the per-image gradients; a longer span
//                        gives split-K partial sums of the batch gradient, which
//   conv_sum_partials:   dw[j] = (accumulate ? dw[j] : 0) + sum_z part[z][j] (z in order:
//                        deterministic, no atomics): adds to dw, or overwrites it with what
//                        adding to zeros gives, bit for bit, without a memset first.
//
// Tiling: a block of 16 x 16 threads owns a TM x TN tile of the output (CONV_TILE_M x
// CONV_TILE_N; conv_forward_m16 16 x 128) and walks the depth in steps of CONV_TILE_K,
// staging the A (CONV_TILE_K x TM) and B (CONV_TILE_K x TN) panels in shared memory; each
// staged value is reused by 16 threads, each thread keeps a TM/16 x TN/16 register block
// (rows ty + 16i, columns tx + 16j: consecutive threads touch consecutive shared words and
// consecutive outputs). The implicit-im2col addressing is decoded once per thread for the
// panel columns it stages and once per depth step for the rows, not per value (integer
// division is slow on a GPU; index arithmetic is 32-bit).
//
// Launch: block (16, 16); grid (ceil(N / CONV_TILE_N), ceil(M / CONV_TILE_M), ranges), ranges
// = 1 except conv_weight_grad (one per range z); conv_forward_m16: (ceil(N / 128), 1, 1);
// conv_sum_partials: any 1-D grid.
// The host mirrors CONV_TILE_M / CONV_TILE_N in engine/backend/cuda/ops.rs and checks that
// n*oh*ow, n*h*w and the weight length fit an int (index arithmetic is 32-bit).
//
// x, y, dy and dx are activations (act_t, see storage.cuh), converted to f32 as they are
// staged; weights, weight gradients and partial sums are f32.

#include "storage.cuh"

#define CONV_TILE_M 32
#define CONV_TILE_N 64
#define CONV_TILE_K 16
#define CONV_THREADS 16 // per block edge

// acc[i][j] += sum_d as[d][ty + 16i] bs[d][tx + 16j]: one depth step of staged panels.
template <int TM, int TN>
__device__ __forceinline__ void accumulate_panels(const float (&as)[CONV_TILE_K][TM + 1],
                                                  const float (&bs)[CONV_TILE_K][TN + 1],
                                                  float (&acc)[TM / CONV_THREADS][TN / CONV_THREADS],
                                                  int tx, int ty) {
    constexpr int RM = TM / CONV_THREADS, RN = TN / CONV_THREADS;
    for (int d = 0; d < CONV_TILE_K; ++d) {
        float a[RM], b[RN];
        for (int i = 0; i < RM; ++i) a[i] = as[d][ty + CONV_THREADS * i];
        for (int j = 0; j < RN; ++j) b[j] = bs[d][tx + CONV_THREADS * j];
        for (int i = 0; i < RM; ++i)
            for (int j = 0; j < RN; ++j) acc[i][j] += a[i] * b[j];
    }
}

// The convolution's shape, with the derived extents.
struct ConvShape {
    int cin, h, w, cout, k, stride, pad, oh, ow, P, kk, R;
    __device__ ConvShape(int cin_, int h_, int w_, int cout_, int k_, int stride_, int pad_)
        : cin(cin_), h(h_), w(w_), cout(cout_), k(k_), stride(stride_), pad(pad_),
          oh((h_ + 2 * pad_ - k_) / stride_ + 1), ow((w_ + 2 * pad_ - k_) / stride_ + 1),
          P(oh * ow), kk(k_ * k_), R(cin_ * k_ * k_) {}
};

// The forward GEMM with the im2col addressing hoisted out of the depth loop: each thread
// loads the B panel for one fixed column q (256 threads, TN | 256), so the column's image
// and output pixel are decoded once; the rows r = (ci, ki, kj) of each depth step are
// decoded once per block into shared tables. A TM x TN tile, TM/16 x TN/16 outputs per
// thread; conv_forward is 32 x 64, conv_forward_m16 (cout <= 16) 16 x 128, so a 16-channel
// layer wastes no rows of its tile.
template <int TM, int TN>
__device__ __forceinline__ void conv_forward_tiled(const act_t *__restrict__ x,
                                                   const float *__restrict__ wt,
                                                   act_t *__restrict__ y, int n, int cin,
                                                   int height, int width, int cout, int k,
                                                   int stride, int pad) {
    constexpr int RM = TM / CONV_THREADS, RN = TN / CONV_THREADS;
    constexpr int THREADS = CONV_THREADS * CONV_THREADS;
    static_assert(THREADS % TN == 0, "each thread loads one column of the B panel");
    __shared__ float as[CONV_TILE_K][TM + 1];
    __shared__ float bs[CONV_TILE_K][TN + 1];
    __shared__ int r_plane[CONV_TILE_K], r_ky[CONV_TILE_K], r_kx[CONV_TILE_K];
    const ConvShape s(cin, height, width, cout, k, stride, pad);
    const int M = cout, N = n * s.P, R = s.R;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * CONV_THREADS + tx;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    // This thread's B column.
    const int nn = tid % TN, q = n0 + nn;
    const bool q_in = q < N;
    const int img = q_in ? q / s.P : 0, pix = q_in ? q % s.P : 0;
    const int iy0 = (pix / s.ow) * stride - pad, ix0 = (pix % s.ow) * stride - pad;
    const act_t *__restrict__ xi = x + (long long)img * cin * height * width;
    float acc[RM][RN];
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;
    for (int kb = 0; kb < R; kb += CONV_TILE_K) {
        if (tid < CONV_TILE_K) {
            const int r = kb + tid;
            const int t = r % s.kk;
            r_plane[tid] = (r / s.kk) * height * width;
            // Rows past R read as outside the image.
            r_ky[tid] = r < R ? t / k : -(1 << 20);
            r_kx[tid] = t % k;
        }
        for (int e = tid; e < CONV_TILE_K * TM; e += THREADS) {
            const int kk = e % CONV_TILE_K, m = e / CONV_TILE_K;
            const int r = kb + kk;
            as[kk][m] = (r < R && m0 + m < M) ? wt[(long long)(m0 + m) * R + r] : 0.0f;
        }
        __syncthreads(); // the row tables
        for (int kk = tid / TN; kk < CONV_TILE_K; kk += THREADS / TN) {
            const int iy = iy0 + r_ky[kk], ix = ix0 + r_kx[kk];
            const bool in = q_in && iy >= 0 && iy < height && ix >= 0 && ix < width;
            bs[kk][nn] = in ? act_load(xi[r_plane[kk] + iy * width + ix]) : 0.0f;
        }
        __syncthreads();
        accumulate_panels<TM, TN>(as, bs, acc, tx, ty);
        __syncthreads(); // the panels and tables are overwritten by the next step
    }
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) {
            const int co = m0 + ty + CONV_THREADS * i, qq = n0 + tx + CONV_THREADS * j;
            if (co < M && qq < N)
                y[((long long)(qq / s.P) * cout + co) * s.P + qq % s.P] = act_store(acc[i][j]);
        }
}

extern "C" __global__ void conv_forward(const act_t *__restrict__ x, const float *__restrict__ wt,
                                        act_t *__restrict__ y, int n, int cin, int height,
                                        int width, int cout, int k, int stride, int pad) {
    conv_forward_tiled<CONV_TILE_M, CONV_TILE_N>(x, wt, y, n, cin, height, width, cout, k, stride,
                                                 pad);
}

extern "C" __global__ void conv_forward_m16(const act_t *__restrict__ x,
                                            const float *__restrict__ wt, act_t *__restrict__ y,
                                            int n, int cin, int height, int width, int cout, int k,
                                            int stride, int pad) {
    conv_forward_tiled<16, 128>(x, wt, y, n, cin, height, width, cout, k, stride, pad);
}

// Backward-data with the same hoisting as the forward: the thread's B column q (an input
// pixel) is decoded once, the depth rows r = (co, ki, kj) once per step into shared tables.
extern "C" __global__ void conv_backward_data(const act_t *__restrict__ dy,
                                              const float *__restrict__ wt, act_t *__restrict__ dx,
                                              int n, int cin, int height, int width, int cout,
                                              int k, int stride, int pad, int accumulate) {
    constexpr int TM = CONV_TILE_M, TN = CONV_TILE_N;
    constexpr int RM = TM / CONV_THREADS, RN = TN / CONV_THREADS;
    constexpr int THREADS = CONV_THREADS * CONV_THREADS;
    __shared__ float as[CONV_TILE_K][TM + 1];
    __shared__ float bs[CONV_TILE_K][TN + 1];
    __shared__ int r_plane[CONV_TILE_K], r_ky[CONV_TILE_K], r_kx[CONV_TILE_K];
    const ConvShape s(cin, height, width, cout, k, stride, pad);
    const int hw = height * width;
    const int M = cin, N = n * hw, D = cout * s.kk;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * CONV_THREADS + tx;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    // This thread's B column: input pixel (iy, ix) of image img.
    const int nn = tid % TN, q = n0 + nn;
    const bool q_in = q < N;
    const int img = q_in ? q / hw : 0, pix = q_in ? q % hw : 0;
    const int py = pix / width + pad, px = pix % width + pad;
    const act_t *__restrict__ dyi = dy + (long long)img * cout * s.P;
    float acc[RM][RN];
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;
    for (int kb = 0; kb < D; kb += CONV_TILE_K) {
        if (tid < CONV_TILE_K) {
            const int r = kb + tid;
            const int t = r % s.kk;
            r_plane[tid] = (r / s.kk) * s.P;
            // Rows past the depth read as outside dy.
            r_ky[tid] = r < D ? t / k : (1 << 20);
            r_kx[tid] = t % k;
        }
        // A[ci][(co, t)] = w[co][ci][t]
        for (int e = tid; e < CONV_TILE_K * TM; e += THREADS) {
            const int kk = e % CONV_TILE_K, m = e / CONV_TILE_K;
            const int r = kb + kk, ci = m0 + m;
            as[kk][m] = (r < D && ci < M)
                            ? wt[((long long)(r / s.kk) * cin + ci) * s.kk + r % s.kk]
                            : 0.0f;
        }
        __syncthreads(); // the row tables
        // B[(co, ki, kj)][q] = dy[img][co][oy][ox] where oy*stride - pad + ki = iy (ox alike).
        for (int kk = tid / TN; kk < CONV_TILE_K; kk += THREADS / TN) {
            const int ty_ = py - r_ky[kk], tx_ = px - r_kx[kk];
            float v = 0.0f;
            if (q_in && ty_ >= 0 && tx_ >= 0) {
                if (stride == 1) {
                    if (ty_ < s.oh && tx_ < s.ow) v = act_load(dyi[r_plane[kk] + ty_ * s.ow + tx_]);
                } else if (ty_ % stride == 0 && tx_ % stride == 0) {
                    const int oy = ty_ / stride, ox = tx_ / stride;
                    if (oy < s.oh && ox < s.ow) v = act_load(dyi[r_plane[kk] + oy * s.ow + ox]);
                }
            }
            bs[kk][nn] = v;
        }
        __syncthreads();
        accumulate_panels<TM, TN>(as, bs, acc, tx, ty);
        __syncthreads(); // the panels and tables are overwritten by the next step
    }
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) {
            const int ci = m0 + ty + CONV_THREADS * i, qq = n0 + tx + CONV_THREADS * j;
            if (ci < M && qq < N) {
                act_t &d = dx[((long long)(qq / hw) * cin + ci) * hw + qq % hw];
                d = act_store(act_added_to(&d, accumulate) + acc[i][j]);
            }
        }
}

// The weight-gradient GEMM with hoisted addressing: each thread stages one depth offset kk
// of every panel (consecutive threads, consecutive (image, pixel) columns q: coalesced), so
// it decodes q once per step for both operands, and its B columns r = (ci, ki, kj), the
// same at every step, once.
extern "C" __global__ void conv_weight_grad(const act_t *__restrict__ x, const act_t *__restrict__ dy,
                                            float *__restrict__ out, int n, int cin, int height,
                                            int width, int cout, int k, int stride, int pad,
                                            long long span) {
    constexpr int TM = CONV_TILE_M, TN = CONV_TILE_N;
    constexpr int RM = TM / CONV_THREADS, RN = TN / CONV_THREADS;
    constexpr int STEP = CONV_THREADS * CONV_THREADS / CONV_TILE_K; // panel rows per pass
    constexpr int LA = TM / STEP, LB = TN / STEP;
    __shared__ float as[CONV_TILE_K][TM + 1];
    __shared__ float bs[CONV_TILE_K][TN + 1];
    const ConvShape s(cin, height, width, cout, k, stride, pad);
    const int total = n * s.P;
    const int q0 = (int)(blockIdx.z * span), q1 = (int)min((long long)total, q0 + span);
    float *part = out + (long long)blockIdx.z * cout * s.R;
    const int M = cout, N = s.R;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * CONV_THREADS + tx;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const int kk = tid % CONV_TILE_K, first = tid / CONV_TILE_K;
    int b_plane[LB], b_ky[LB], b_kx[LB];
    for (int j = 0; j < LB; ++j) {
        const int r = n0 + first + STEP * j;
        const int t = r % s.kk;
        b_plane[j] = (r / s.kk) * height * width;
        // Columns past R read as outside the image.
        b_ky[j] = r < N ? t / k : -(1 << 20);
        b_kx[j] = t % k;
    }
    float acc[RM][RN];
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;
    for (int kb = q0; kb < q1; kb += CONV_TILE_K) {
        const int q = kb + kk;
        const bool q_in = q < q1;
        const int img = q_in ? q / s.P : 0, pix = q_in ? q % s.P : 0;
        const int iy0 = (pix / s.ow) * stride - pad, ix0 = (pix % s.ow) * stride - pad;
        const act_t *__restrict__ xi = x + (long long)img * cin * height * width;
        const act_t *__restrict__ dyi = dy + (long long)img * cout * s.P + pix;
        for (int i = 0; i < LA; ++i) {
            const int m = first + STEP * i;
            as[kk][m] = (q_in && m0 + m < M) ? act_load(dyi[(long long)(m0 + m) * s.P]) : 0.0f;
        }
        for (int j = 0; j < LB; ++j) {
            const int iy = iy0 + b_ky[j], ix = ix0 + b_kx[j];
            const bool in = q_in && iy >= 0 && iy < height && ix >= 0 && ix < width;
            bs[kk][first + STEP * j] = in ? act_load(xi[b_plane[j] + iy * width + ix]) : 0.0f;
        }
        __syncthreads();
        accumulate_panels<TM, TN>(as, bs, acc, tx, ty);
        __syncthreads(); // the panels are overwritten by the next step
    }
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) {
            const int co = m0 + ty + CONV_THREADS * i, r = n0 + tx + CONV_THREADS * j;
            if (co < M && r < N) part[(long long)co * s.R + r] = acc[i][j];
        }
}

extern "C" __global__ void conv_sum_partials(const float *__restrict__ part, float *__restrict__ dw,
                                             int parts, long long len, int accumulate) {
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < len;
         j += (long long)gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int z = 0; z < parts; ++z) sum += part[z * len + j];
        dw[j] = (accumulate ? dw[j] : 0.0f) + sum;
    }
}
