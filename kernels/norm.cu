// Batch normalisation, training mode (affine, biased variance), on x laid out [n][c][hw].
//
// Statistics per (group g, channel ch) over the m = group*hw values of images
// g*group..(g+1)*group: mean[g][c], inv_std[g][c] = 1/sqrt(var + eps) (one pass about a
// shift, sums in double). xhat = (x - mean) * inv_std, y = gamma[ch] * xhat + beta[ch].
// Backward, with Sdy = sum dy and Sdx = inv_std * sum dy*(x - mean) per (g, ch):
//   dbeta[ch] += Sdy, dgamma[ch] += Sdx (groups added in order, in float);
//   Full:        dx += k*dy - k*Sdy/m - (x - mean) * k*inv_std*Sdx/m,   k = gamma*inv_std;
//   FrozenStats: dx += k*dy.
// Per-sample (FrozenStats) parameter gradients, per plane p = image*c + ch (overwritten):
//   dgamma[p] = inv_std * sum dy*(x - mean), dbeta[p] = sum dy.
// `sums` is a double scratch [groups][c][2] = (Sdy, Sdx) written by bn_backward_sums_*.
//
// Launch: the *_partial kernels run a (runs, pairs) grid; bn_param_grad_per_sample one block
// per plane (block-stride); blockDim.x a multiple of 32, at most 1024; the elementwise and
// finalize kernels take any 1-D grid.
//
// x, y, dy and dx are activations (act_t, see storage.cuh); gamma, beta, the statistics and
// the parameter gradients f32.

#include "common.cuh"
#include "storage.cuh"

// Index of the statistics of plane p (= image * c + channel) in a [groups][c] array.
__device__ __forceinline__ long long stat_index(long long p, int c, int group) {
    return (p / c / group) * c + p % c;
}

// Statistics in two launches, so that a layer with few channels still fills the device:
// bn_stats_partial sums runs of `run` images of each (group, channel) pair, one block per
// (run, pair) = (blockIdx.x, blockIdx.y), both moments in one pass about the pair's shift
// x[first image of the group][ch][0] (so S2/m - (S1/m)^2 does not cancel when the mean is
// large against the spread); partial[pair][run] = (S1, S2) in double. bn_stats_finalize
// adds the runs of each pair in order (one thread per pair): deterministic, and the same
// arithmetic as the CPU backend's.
__device__ __forceinline__ long long pair_first(long long pair, int c, int hw, int group) {
    return ((pair / c) * group * (long long)c + pair % c) * hw;
}

// (a, b) = the sums over the runs of one pair's partial (a, b) pairs, in run order.
__device__ __forceinline__ void sum_runs(const double *__restrict__ partial, long long pair,
                                         int runs, double &a, double &b) {
    a = 0.0;
    b = 0.0;
    for (int r = 0; r < runs; ++r) {
        a += partial[2 * (pair * runs + r)];
        b += partial[2 * (pair * runs + r) + 1];
    }
}

extern "C" __global__ void bn_stats_partial(const act_t *__restrict__ x,
                                            double *__restrict__ partial, int n, int c, int hw,
                                            int group, int run) {
    const long long pair = blockIdx.y;
    const int r = blockIdx.x, runs = gridDim.x;
    const double shift = (double)act_load(x[pair_first(pair, c, hw, group)]);
    const long long g = pair / c, ch = pair % c;
    const int first = r * run, count = min(run, group - first);
    double s1 = 0.0, s2 = 0.0;
    for (int e = threadIdx.x; e < count * hw; e += blockDim.x) {
        const int i = e / hw, pos = e - i * hw;
        const double d = (double)act_load(x[((g * group + first + i) * c + ch) * hw + pos]) - shift;
        s1 += d;
        s2 += d * d;
    }
    s1 = block_sum(s1);
    s2 = block_sum(s2);
    if (threadIdx.x == 0) {
        partial[2 * (pair * runs + r)] = s1;
        partial[2 * (pair * runs + r) + 1] = s2;
    }
}

extern "C" __global__ void bn_stats_finalize(const act_t *__restrict__ x,
                                             const double *__restrict__ partial,
                                             float *__restrict__ mean, float *__restrict__ inv_std,
                                             int n, int c, int hw, int group, int runs,
                                             double eps) {
    const long long pairs = (long long)(n / group) * c;
    const double m = (double)group * hw;
    GRID_STRIDE(pair, pairs) {
        double s1, s2;
        sum_runs(partial, pair, runs, s1, s2);
        const double dev = s1 / m;
        const double var = fmax(s2 / m - dev * dev, 0.0);
        mean[pair] = (float)((double)act_load(x[pair_first(pair, c, hw, group)]) + dev);
        inv_std[pair] = (float)(1.0 / sqrt(var + eps));
    }
}

extern "C" __global__ void bn_apply(const act_t *__restrict__ x, const float *__restrict__ gamma,
                                    const float *__restrict__ beta, const float *__restrict__ mean,
                                    const float *__restrict__ inv_std, act_t *__restrict__ y, int n,
                                    int c, int hw, int group) {
    GRID_STRIDE(idx, (long long)n * c * hw) {
        const long long p = idx / hw;
        const long long s = stat_index(p, c, group);
        const int ch = (int)(p % c);
        const float a = gamma[ch] * inv_std[s];
        y[idx] = act_store((act_load(x[idx]) - mean[s]) * a + beta[ch]);
    }
}

// Backward sums in two launches, split as the statistics are: partial[pair][run] =
// (sum dy, sum dy*(x - mean)) over the run's images; bn_backward_sums_finalize adds the runs
// in order into sums[pair] = (Sdy, Sdx).
extern "C" __global__ void bn_backward_sums_partial(const act_t *__restrict__ x,
                                                    const act_t *__restrict__ dy,
                                                    const float *__restrict__ mean,
                                                    double *__restrict__ partial, int n, int c,
                                                    int hw, int group, int run) {
    const long long pair = blockIdx.y;
    const int r = blockIdx.x, runs = gridDim.x;
    const long long g = pair / c, ch = pair % c;
    const int first = r * run, count = min(run, group - first);
    const double mu = (double)mean[pair];
    double sdy = 0.0, sdev = 0.0;
    for (int e = threadIdx.x; e < count * hw; e += blockDim.x) {
        const int i = e / hw, pos = e - i * hw;
        const long long at = ((g * group + first + i) * c + ch) * hw + pos;
        const double d = (double)act_load(dy[at]);
        sdy += d;
        sdev += d * ((double)act_load(x[at]) - mu);
    }
    sdy = block_sum(sdy);
    sdev = block_sum(sdev);
    if (threadIdx.x == 0) {
        partial[2 * (pair * runs + r)] = sdy;
        partial[2 * (pair * runs + r) + 1] = sdev;
    }
}

extern "C" __global__ void bn_backward_sums_finalize(const double *__restrict__ partial,
                                                     const float *__restrict__ inv_std,
                                                     double *__restrict__ sums, int pairs,
                                                     int runs) {
    GRID_STRIDE(pair, pairs) {
        double sdy, sdev;
        sum_runs(partial, pair, runs, sdy, sdev);
        sums[2 * pair] = sdy;
        sums[2 * pair + 1] = sdev * (double)inv_std[pair];
    }
}

// dgamma[ch] += Sdx, dbeta[ch] += Sdy over the groups in order (one thread per channel);
// accumulate == 0: starting from zeros instead of their values (no memset needed first).
extern "C" __global__ void bn_param_accumulate(const double *__restrict__ sums,
                                               float *__restrict__ dgamma,
                                               float *__restrict__ dbeta, int groups, int c,
                                               int accumulate) {
    GRID_STRIDE(ch, c) {
        float sdy = accumulate ? dbeta[ch] : 0.0f, sdx = accumulate ? dgamma[ch] : 0.0f;
        for (int g = 0; g < groups; ++g) {
            const long long gc = (long long)g * c + ch;
            sdy += (float)sums[2 * gc];
            sdx += (float)sums[2 * gc + 1];
        }
        dbeta[ch] = sdy;
        dgamma[ch] = sdx;
    }
}

// full != 0: gradient through the statistics (BnGrad::Full); else FrozenStats. accumulate == 0:
// dx overwritten with what adding to zeros gives (act_added_to, storage.cuh).
extern "C" __global__ void bn_backward_dx(const act_t *__restrict__ x, const act_t *__restrict__ dy,
                                          const float *__restrict__ gamma,
                                          const float *__restrict__ mean,
                                          const float *__restrict__ inv_std,
                                          const double *__restrict__ sums, act_t *__restrict__ dx,
                                          int n, int c, int hw, int group, int full,
                                          int accumulate) {
    const double m = (double)group * hw;
    GRID_STRIDE(idx, (long long)n * c * hw) {
        const long long p = idx / hw;
        const long long s = stat_index(p, c, group);
        const float k = gamma[p % c] * inv_std[s];
        if (full) {
            const double k64 = (double)k;
            const float c0 = (float)(k64 * sums[2 * s] / m);
            const float c1 = (float)(k64 * (double)inv_std[s] * sums[2 * s + 1] / m);
            dx[idx] = act_store(act_added_to(&dx[idx], accumulate) +
                                (k * act_load(dy[idx]) - c0 - (act_load(x[idx]) - mean[s]) * c1));
        } else {
            dx[idx] = act_store(act_added_to(&dx[idx], accumulate) + k * act_load(dy[idx]));
        }
    }
}

extern "C" __global__ void bn_param_grad_per_sample(const act_t *__restrict__ x,
                                                    const act_t *__restrict__ dy,
                                                    const float *__restrict__ mean,
                                                    const float *__restrict__ inv_std,
                                                    float *__restrict__ dgamma,
                                                    float *__restrict__ dbeta, int n, int c,
                                                    int hw, int group) {
    const long long planes = (long long)n * c;
    for (long long p = blockIdx.x; p < planes; p += gridDim.x) {
        const long long s = stat_index(p, c, group);
        const double mu = (double)mean[s];
        double sdy = 0.0, sdev = 0.0;
        for (int e = threadIdx.x; e < hw; e += blockDim.x) {
            const double d = (double)act_load(dy[p * hw + e]);
            sdy += d;
            sdev += d * ((double)act_load(x[p * hw + e]) - mu);
        }
        sdy = block_sum(sdy);
        sdev = block_sum(sdev);
        if (threadIdx.x == 0) {
            dgamma[p] = (float)(sdev * (double)inv_std[s]);
            dbeta[p] = (float)sdy;
        }
    }
}
