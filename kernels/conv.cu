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
//                        over the taps with oy*s-p+ki = iy, ox*s-p+kj = ix (a gather: no
//                        atomics); M = cin, N = n*h*w, depth cout*k*k
//   conv_weight_grad:    out[z][co][r] = sum_{q in range z} dy[i][co][pix] col_i[r][pix],
//                        q = i*P + pix ranging over [z*span, min((z+1)*span, n*P))  (overwrites)
//                        M = cout, N = R. span = P gives the per-image gradients; a longer span
//                        gives split-K partial sums of the batch gradient, which
//   conv_sum_partials:   dw[j] += sum_z part[z][j] (z in order: deterministic, no atomics)
//                        adds to dw.
//
// Tiling (tile_gemm): a block of 16 x 16 threads owns a CONV_TILE_M x CONV_TILE_N tile of the
// output and walks the depth in steps of CONV_TILE_K, staging the A (CONV_TILE_K x
// CONV_TILE_M) and B (CONV_TILE_K x CONV_TILE_N) panels in shared memory; each staged value
// is reused by 16 threads, each thread keeps a 2 x 4 register block (rows ty + 16i, columns
// tx + 16j: consecutive threads touch consecutive shared words and consecutive outputs).
// Panel loads are mapped so that consecutive threads read consecutive global addresses of
// the operand's contiguous axis (A_K_FAST / B_K_FAST).
//
// Launch: block (16, 16); grid (ceil(N / CONV_TILE_N), ceil(M / CONV_TILE_M), ranges), ranges
// = 1 except conv_weight_grad (one per range z); conv_forward_m16: (ceil(N / 128), 1, 1). conv_sum_partials: any 1-D grid.
// The host mirrors CONV_TILE_M / CONV_TILE_N in engine/backend/cuda/ops.rs and checks that
// n*oh*ow, n*h*w and the weight length fit an int (index arithmetic is 32-bit).

#define CONV_TILE_M 32
#define CONV_TILE_N 64
#define CONV_TILE_K 16
#define CONV_THREADS 16 // per block edge
#define CONV_RM (CONV_TILE_M / CONV_THREADS)
#define CONV_RN (CONV_TILE_N / CONV_THREADS)

// C[m][n] over the block's tile = sum_{k in [k0, k1)} A(m, k) B(k, n), handed to
// store(m, n, value) for m < M, n < N. load_a / load_b are called only in range.
template <bool A_K_FAST, bool B_K_FAST, class LoadA, class LoadB, class Store>
__device__ __forceinline__ void tile_gemm(int M, int N, long long k0, long long k1, LoadA load_a,
                                          LoadB load_b, Store store) {
    __shared__ float as[CONV_TILE_K][CONV_TILE_M + 1];
    __shared__ float bs[CONV_TILE_K][CONV_TILE_N + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * CONV_THREADS + tx;
    const int threads = CONV_THREADS * CONV_THREADS;
    const int m0 = blockIdx.y * CONV_TILE_M, n0 = blockIdx.x * CONV_TILE_N;
    float acc[CONV_RM][CONV_RN];
    for (int i = 0; i < CONV_RM; ++i)
        for (int j = 0; j < CONV_RN; ++j) acc[i][j] = 0.0f;
    for (long long kb = k0; kb < k1; kb += CONV_TILE_K) {
        for (int e = tid; e < CONV_TILE_K * CONV_TILE_M; e += threads) {
            const int kk = A_K_FAST ? e % CONV_TILE_K : e / CONV_TILE_M;
            const int m = A_K_FAST ? e / CONV_TILE_K : e % CONV_TILE_M;
            const long long k = kb + kk;
            as[kk][m] = (k < k1 && m0 + m < M) ? load_a(m0 + m, k) : 0.0f;
        }
        for (int e = tid; e < CONV_TILE_K * CONV_TILE_N; e += threads) {
            const int kk = B_K_FAST ? e % CONV_TILE_K : e / CONV_TILE_N;
            const int nn = B_K_FAST ? e / CONV_TILE_K : e % CONV_TILE_N;
            const long long k = kb + kk;
            bs[kk][nn] = (k < k1 && n0 + nn < N) ? load_b(k, n0 + nn) : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < CONV_TILE_K; ++kk) {
            float a[CONV_RM], b[CONV_RN];
            for (int i = 0; i < CONV_RM; ++i) a[i] = as[kk][ty + CONV_THREADS * i];
            for (int j = 0; j < CONV_RN; ++j) b[j] = bs[kk][tx + CONV_THREADS * j];
            for (int i = 0; i < CONV_RM; ++i)
                for (int j = 0; j < CONV_RN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads(); // the panels are overwritten by the next step
    }
    for (int i = 0; i < CONV_RM; ++i)
        for (int j = 0; j < CONV_RN; ++j) {
            const int m = m0 + ty + CONV_THREADS * i, nn = n0 + tx + CONV_THREADS * j;
            if (m < M && nn < N) store(m, nn, acc[i][j]);
        }
}

// The convolution's shape, with the derived extents.
struct ConvShape {
    int cin, h, w, cout, k, stride, pad, oh, ow, P, kk, R;
    __device__ ConvShape(int cin_, int h_, int w_, int cout_, int k_, int stride_, int pad_)
        : cin(cin_), h(h_), w(w_), cout(cout_), k(k_), stride(stride_), pad(pad_),
          oh((h_ + 2 * pad_ - k_) / stride_ + 1), ow((w_ + 2 * pad_ - k_) / stride_ + 1),
          P(oh * ow), kk(k_ * k_), R(cin_ * k_ * k_) {}

    // col_i[r][pix] for the flat column q = i*P + pix. Index arithmetic is in int (the host
    // checks n*P, n*h*w and the weight length fit one): 64-bit division is slow on a GPU.
    __device__ float col(const float *__restrict__ x, int r, int q) const {
        const int img = q / P, pix = q % P;
        const int ci = r / kk, t = r % kk;
        const int iy = (pix / ow) * stride - pad + t / k;
        const int ix = (pix % ow) * stride - pad + t % k;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) return 0.0f;
        return x[(((long long)img * cin + ci) * h + iy) * w + ix];
    }
};

// The forward GEMM with the im2col addressing hoisted out of the depth loop: each thread
// loads the B panel for one fixed column q (256 threads, TN | 256), so the column's image
// and output pixel are decoded once; the rows r = (ci, ki, kj) of each depth step are
// decoded once per block into shared tables. A TM x TN tile, TM/16 x TN/16 outputs per
// thread; conv_forward is 32 x 64, conv_forward_m16 (cout <= 16) 16 x 128, so a 16-channel
// layer wastes no rows of its tile.
template <int TM, int TN>
__device__ __forceinline__ void conv_forward_tiled(const float *__restrict__ x,
                                                   const float *__restrict__ wt,
                                                   float *__restrict__ y, int n, int cin,
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
    const float *__restrict__ xi = x + (long long)img * cin * height * width;
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
            bs[kk][nn] = in ? xi[r_plane[kk] + iy * width + ix] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < CONV_TILE_K; ++kk) {
            float a[RM], b[RN];
            for (int i = 0; i < RM; ++i) a[i] = as[kk][ty + CONV_THREADS * i];
            for (int j = 0; j < RN; ++j) b[j] = bs[kk][tx + CONV_THREADS * j];
            for (int i = 0; i < RM; ++i)
                for (int j = 0; j < RN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads(); // the panels and tables are overwritten by the next step
    }
    for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) {
            const int co = m0 + ty + CONV_THREADS * i, qq = n0 + tx + CONV_THREADS * j;
            if (co < M && qq < N) y[((long long)(qq / s.P) * cout + co) * s.P + qq % s.P] = acc[i][j];
        }
}

extern "C" __global__ void conv_forward(const float *__restrict__ x, const float *__restrict__ wt,
                                        float *__restrict__ y, int n, int cin, int height,
                                        int width, int cout, int k, int stride, int pad) {
    conv_forward_tiled<CONV_TILE_M, CONV_TILE_N>(x, wt, y, n, cin, height, width, cout, k, stride,
                                                 pad);
}

extern "C" __global__ void conv_forward_m16(const float *__restrict__ x,
                                            const float *__restrict__ wt, float *__restrict__ y,
                                            int n, int cin, int height, int width, int cout, int k,
                                            int stride, int pad) {
    conv_forward_tiled<16, 128>(x, wt, y, n, cin, height, width, cout, k, stride, pad);
}

extern "C" __global__ void conv_backward_data(const float *__restrict__ dy,
                                              const float *__restrict__ wt, float *__restrict__ dx,
                                              int n, int cin, int height, int width, int cout,
                                              int k, int stride, int pad) {
    const ConvShape s(cin, height, width, cout, k, stride, pad);
    const int hw = height * width;
    tile_gemm<true, false>(
        cin, n * hw, 0, (long long)cout * s.kk,
        // A[ci][(co, t)] = w[co][ci][t]
        [&](int ci, long long r) {
            const int co = (int)r / s.kk;
            return wt[((long long)co * cin + ci) * s.kk + (int)r % s.kk];
        },
        // B[(co, ki, kj)][(i, iy, ix)] = dy[i][co][oy][ox] if oy*s - p + ki = iy (and ox alike)
        [&](long long r, int q) {
            const int co = (int)r / s.kk, t = (int)r % s.kk;
            const int img = q / hw, pix = q % hw;
            const int ty = pix / width + pad - t / k, tx = pix % width + pad - t % k;
            if (ty < 0 || tx < 0 || ty % stride != 0 || tx % stride != 0) return 0.0f;
            const int oy = ty / stride, ox = tx / stride;
            if (oy >= s.oh || ox >= s.ow) return 0.0f;
            return dy[(((long long)img * cout + co) * s.oh + oy) * s.ow + ox];
        },
        [&](int ci, int q, float v) { dx[((long long)(q / hw) * cin + ci) * hw + q % hw] += v; });
}

extern "C" __global__ void conv_weight_grad(const float *__restrict__ x, const float *__restrict__ dy,
                                            float *__restrict__ out, int n, int cin, int height,
                                            int width, int cout, int k, int stride, int pad,
                                            long long span) {
    const ConvShape s(cin, height, width, cout, k, stride, pad);
    const long long total = (long long)n * s.P;
    const long long q0 = blockIdx.z * span, q1 = min(total, q0 + span);
    float *part = out + (long long)blockIdx.z * cout * s.R;
    tile_gemm<true, true>(
        cout, s.R, q0, q1,
        [&](int co, long long q) {
            const int img = (int)q / s.P, pix = (int)q % s.P;
            return dy[((long long)img * cout + co) * s.P + pix];
        },
        [&](long long q, int r) { return s.col(x, r, (int)q); },
        [&](int co, int r, float v) { part[(long long)co * s.R + r] = v; });
}

extern "C" __global__ void conv_sum_partials(const float *__restrict__ part, float *__restrict__ dw,
                                             int parts, long long len) {
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < len;
         j += (long long)gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int z = 0; z < parts; ++z) sum += part[z * len + j];
        dw[j] += sum;
    }
}
