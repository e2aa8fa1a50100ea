// Softmax cross-entropy on logits z [n][classes] (row-major f32) with labels [n] (int, each
// < classes, checked by the host):
//   losses[i]     = log sum_j exp(z[i][j]) - z[i][labels[i]]                (f64)
//   dlogits[i][j] = (softmax(z_i)[j] - [j == labels[i]]) * scale             (overwrites)
// scale is 1/n for the mean reduction and 1 for the sum. Log-sum-exp subtracts the row
// maximum and sums the exponentials in double (as the CPU backend does), so large logits
// neither overflow nor lose the loss. The host reduces `losses` (see ops.rs).
//
// Launch: blockDim.x a multiple of 32, any 1-D grid; one warp per row (warp-stride over rows),
// its lanes striding over the classes, reductions through warp shuffles.
//
// logits and dlogits are activations (act_t, see storage.cuh).

#include "storage.cuh"

extern "C" __global__ void softmax_cross_entropy(const act_t *__restrict__ logits,
                                                 const int *__restrict__ labels,
                                                 act_t *__restrict__ dlogits,
                                                 double *__restrict__ losses, int n, int classes,
                                                 double scale) {
    const int lane = threadIdx.x & 31;
    const long long warps = blockDim.x / 32;
    // Warp-uniform loop bounds: every lane reaches every shuffle.
    for (long long row = blockIdx.x * warps + threadIdx.x / 32; row < n;
         row += (long long)gridDim.x * warps) {
        const act_t *z = logits + row * classes;
        act_t *d = dlogits + row * classes;
        float mx = act_load(z[0]);
        for (int j = lane; j < classes; j += 32) mx = max(mx, act_load(z[j]));
        for (int o = 16; o > 0; o >>= 1) mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const double m = (double)mx;
        double sum = 0.0;
        for (int j = lane; j < classes; j += 32) sum += exp((double)act_load(z[j]) - m);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        const int label = labels[row];
        for (int j = lane; j < classes; j += 32) {
            const double p = exp((double)act_load(z[j]) - m) / sum;
            d[j] = act_store((float)((p - (j == label ? 1.0 : 0.0)) * scale));
        }
        if (lane == 0) losses[row] = m + log(sum) - (double)act_load(z[label]);
    }
}
