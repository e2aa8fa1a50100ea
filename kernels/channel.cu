// Channel statistics of activation maps, in f64, so that a score reads a channels x channels
// matrix instead of downloading the map. A map is [images][c][h s][w s] act_t values read as
// [images][c s^2][h][w]: view channel ch s^2 + dy s + dx holds the pixels at offset (dy, dx)
// of each s x s block of stored channel ch (PyTorch's PixelUnshuffle(s); s = 1: the map as
// stored). Only the first n images are read. Every sum is in double (act_load'ed f32 values
// widened, each centred value and product rounded once in double), in an order fixed by the
// launch (no atomics), so results repeat bit for bit.
//
// channel_sums: for each view channel i (C of them), out[at + i] = the sum of its values over
//   the n images and positions, out[at + C + i] = how many of them differ (!=, so a NaN
//   always does) from the channel's value at position 0 of the same image (an exact count in
//   double: 0 iff the channel is constant within each image). Launch: 1-D blocks of a
//   multiple of 32 threads, any grid (blocks stride over channels); threads stride over the
//   (image, position) columns, then block_sum.
// channel_gram_partial: part[z][i][j] = sum over the z-th of gridDim.z ranges of (image,
//   position) columns of a_i b_j, for view channels i of a (Ca) and j of b (Cb) with as many
//   positions (ha wa = hb wb; position p of a view is its pixel (p / w, p % w)), so that a
//   pixel-unshuffled map pairs with a plain one. channel_gram_centred_partial: the same of (a_i - mean_i)(b_j - mean_j),
//   the means being sums_a[i] / (n ha wa) and sums_b[j] / (n ha wa) (channel_sums' sums).
//   Launch: blockDim (CHANNEL_TILE, CHANNEL_TILE), grid (ceil(Cb/TILE), ceil(Ca/TILE),
//   splits). Block (bx, by, bz) owns the output tile of rows by*TILE.., columns bx*TILE..
//   and the bz-th range of TILE-column chunks; each step stages TILE columns of TILE
//   channels of a and of b in shared memory (as double, centred), each value read once per
//   tile. Ragged tiles and chunks load zeros (not minus the mean).
// channel_gram_sum: out[at + e] = sum_z part[z][e], in split order (any 1-D grid).

#include "common.cuh"
#include "storage.cuh"

#define CHANNEL_TILE 16

// The stored index of view channel ch at position p of image `image`.
__device__ __forceinline__ long long view_index(int image, int ch, long long p, int c, int h,
                                                int w, int s) {
    const int stored = ch / (s * s), dy = (ch / s) % s, dx = ch % s;
    const long long y = p / w, x = p - y * w;
    return (((long long)image * c + stored) * h * s + y * s + dy) * ((long long)w * s) + x * s +
           dx;
}

extern "C" __global__ void channel_sums(const act_t *__restrict__ a, int n, int c, int h, int w,
                                        int s, double *__restrict__ out, long long at) {
    const int channels = c * s * s;
    const long long hw = (long long)h * w, columns = n * hw;
    for (int ch = blockIdx.x; ch < channels; ch += gridDim.x) {
        double sum = 0.0, changes = 0.0;
        for (long long k = threadIdx.x; k < columns; k += blockDim.x) {
            const int image = (int)(k / hw);
            const long long p = k - image * hw;
            const float v = act_load(a[view_index(image, ch, p, c, h, w, s)]);
            const float first = act_load(a[view_index(image, ch, 0, c, h, w, s)]);
            sum += (double)v;
            changes += v != first ? 1.0 : 0.0;
        }
        sum = block_sum(sum);
        changes = block_sum(changes);
        if (threadIdx.x == 0) {
            out[at + ch] = sum;
            out[at + channels + ch] = changes;
        }
    }
}

// One output tile of channel_gram_partial (sums_a, sums_b: null when not centred).
__device__ void channel_gram_tile(const act_t *__restrict__ a, int ca, int ha, int wa, int sa,
                                  const act_t *__restrict__ b, int cb, int hb, int wb, int sb,
                                  const double *__restrict__ sums_a,
                                  const double *__restrict__ sums_b, double *__restrict__ part,
                                  int n) {
    __shared__ double rows[CHANNEL_TILE][CHANNEL_TILE + 1];
    __shared__ double cols[CHANNEL_TILE][CHANNEL_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int channels_a = ca * sa * sa, channels_b = cb * sb * sb;
    const int i = blockIdx.y * CHANNEL_TILE + ty, j = blockIdx.x * CHANNEL_TILE + tx;
    // This thread loads channel a_load of a and b_load of b at column tx of each chunk.
    const int a_load = blockIdx.y * CHANNEL_TILE + ty, b_load = blockIdx.x * CHANNEL_TILE + ty;
    const long long hw = (long long)ha * wa, columns = n * hw;
    const double count = (double)columns;
    const double mean_a = sums_a != nullptr && a_load < channels_a ? sums_a[a_load] / count : 0.0;
    const double mean_b = sums_b != nullptr && b_load < channels_b ? sums_b[b_load] / count : 0.0;
    const long long chunks = (columns + CHANNEL_TILE - 1) / CHANNEL_TILE;
    const long long per_split = (chunks + gridDim.z - 1) / gridDim.z;
    const long long first = blockIdx.z * per_split;
    const long long last = min(chunks, first + per_split);
    double acc = 0.0;
    for (long long chunk = first; chunk < last; ++chunk) {
        const long long k = chunk * CHANNEL_TILE + tx;
        double va = 0.0, vb = 0.0;
        if (k < columns) {
            const int image = (int)(k / hw);
            const long long p = k - image * hw;
            if (a_load < channels_a) {
                va = (double)act_load(a[view_index(image, a_load, p, ca, ha, wa, sa)]) - mean_a;
            }
            if (b_load < channels_b) {
                vb = (double)act_load(b[view_index(image, b_load, p, cb, hb, wb, sb)]) - mean_b;
            }
        }
        rows[ty][tx] = va;
        cols[ty][tx] = vb;
        __syncthreads();
        for (int t = 0; t < CHANNEL_TILE; ++t) acc += rows[ty][t] * cols[tx][t];
        __syncthreads();
    }
    if (i < channels_a && j < channels_b) {
        part[((long long)blockIdx.z * channels_a + i) * channels_b + j] = acc;
    }
}

extern "C" __global__ void channel_gram_partial(const act_t *__restrict__ a, int ca, int ha,
                                                int wa, int sa, const act_t *__restrict__ b,
                                                int cb, int hb, int wb, int sb,
                                                double *__restrict__ part, int n) {
    channel_gram_tile(a, ca, ha, wa, sa, b, cb, hb, wb, sb, nullptr, nullptr, part, n);
}

extern "C" __global__ void channel_gram_centred_partial(
    const act_t *__restrict__ a, int ca, int ha, int wa, int sa, const act_t *__restrict__ b,
    int cb, int hb, int wb, int sb, const double *__restrict__ sums_a,
    const double *__restrict__ sums_b, double *__restrict__ part, int n) {
    channel_gram_tile(a, ca, ha, wa, sa, b, cb, hb, wb, sb, sums_a, sums_b, part, n);
}

extern "C" __global__ void channel_gram_sum(const double *__restrict__ part,
                                            double *__restrict__ out, int splits,
                                            long long entries, long long at) {
    GRID_STRIDE(e, entries) {
        double total = 0.0;
        for (int z = 0; z < splits; ++z) total += part[z * entries + e];
        out[at + e] = total;
    }
}
