// Average pooling on NCHW planes (planes = n * c, each h x w, row-major).
//
// avgpool3x3_*: 3x3 window, stride 1, pad 1, padding not counted. With rows(i) and cols(j)
//   the in-bounds taps along each axis (2 at a border, else 3; 1 if the axis has length 1):
//   y[i][j] = (sum of in-bounds x) / (rows(i) * cols(j));
//   dx[i][j] += sum over in-bounds outputs (i', j') around (i, j) of dy[i'][j'] / cnt(i', j').
// avgpool2x2_*: 2x2, stride 2, output floor(h/2) x floor(w/2); a trailing odd row/column
//   gets no gradient (PyTorch AvgPool2d(2, 2)). dx += dy / 4 on the four inputs.
// global_avgpool_*: y[p] = mean of plane p (summed in double); dx[p][*] += dy[p] / hw.
// The backward kernels add to dx, or with accumulate == 0 overwrite it with what adding to
// zeros gives (act_added_to, storage.cuh; the 2x2 pool's trailing row/column get zeros).
//
// Launch: elementwise kernels (one thread per output element, backward: per input element,
// gathering, so no atomics) take any 1-D grid. global_avgpool_forward: one block per plane
// (block-stride over planes), blockDim.x a multiple of 32 and at most 1024.
//
// Every x, y, dy and dx is an activation (act_t, see storage.cuh).

#include "common.cuh"
#include "storage.cuh"

__device__ __forceinline__ float inv_taps(int i, int len) {
    return 1.0f / (float)(1 + (i > 0) + (i + 1 < len));
}

extern "C" __global__ void avgpool3x3_forward(const act_t *__restrict__ x, act_t *__restrict__ y,
                                              long long planes, int h, int w) {
    const long long plane_len = (long long)h * w;
    GRID_STRIDE(idx, planes * plane_len) {
        const act_t *p = x + (idx / plane_len) * plane_len;
        const int i = (int)(idx % plane_len) / w, j = (int)(idx % plane_len) % w;
        float sum = 0.0f;
        for (int r = max(i - 1, 0); r <= min(i + 1, h - 1); ++r)
            for (int c = max(j - 1, 0); c <= min(j + 1, w - 1); ++c) sum += act_load(p[r * w + c]);
        y[idx] = act_store(sum * inv_taps(j, w) * inv_taps(i, h));
    }
}

extern "C" __global__ void avgpool3x3_backward(const act_t *__restrict__ dy, act_t *__restrict__ dx,
                                               long long planes, int h, int w, int accumulate) {
    const long long plane_len = (long long)h * w;
    GRID_STRIDE(idx, planes * plane_len) {
        const act_t *p = dy + (idx / plane_len) * plane_len;
        const int i = (int)(idx % plane_len) / w, j = (int)(idx % plane_len) % w;
        float sum = 0.0f;
        for (int r = max(i - 1, 0); r <= min(i + 1, h - 1); ++r)
            for (int c = max(j - 1, 0); c <= min(j + 1, w - 1); ++c)
                sum += act_load(p[r * w + c]) * inv_taps(r, h) * inv_taps(c, w);
        dx[idx] = act_store(act_added_to(&dx[idx], accumulate) + sum);
    }
}

extern "C" __global__ void avgpool2x2_forward(const act_t *__restrict__ x, act_t *__restrict__ y,
                                              long long planes, int h, int w) {
    const int oh = h / 2, ow = w / 2;
    const long long out_len = (long long)oh * ow;
    GRID_STRIDE(idx, planes * out_len) {
        const act_t *p = x + (idx / out_len) * h * w;
        const int i = (int)(idx % out_len) / ow, j = (int)(idx % out_len) % ow;
        const act_t *r0 = p + 2 * i * w + 2 * j, *r1 = r0 + w;
        y[idx] = act_store((act_load(r0[0]) + act_load(r0[1]) + act_load(r1[0]) + act_load(r1[1])) *
                           0.25f);
    }
}

extern "C" __global__ void avgpool2x2_backward(const act_t *__restrict__ dy, act_t *__restrict__ dx,
                                               long long planes, int h, int w, int accumulate) {
    const int oh = h / 2, ow = w / 2;
    const long long plane_len = (long long)h * w;
    GRID_STRIDE(idx, planes * plane_len) {
        const long long plane = idx / plane_len;
        const int i = (int)(idx % plane_len) / w, j = (int)(idx % plane_len) % w;
        if (i < 2 * oh && j < 2 * ow)
            dx[idx] = act_store(act_added_to(&dx[idx], accumulate) +
                                act_load(dy[plane * oh * ow + (i / 2) * ow + j / 2]) * 0.25f);
        else if (!accumulate)
            dx[idx] = act_store(0.0f);
    }
}

extern "C" __global__ void global_avgpool_forward(const act_t *__restrict__ x, act_t *__restrict__ y,
                                                  long long planes, int hw) {
    for (long long p = blockIdx.x; p < planes; p += gridDim.x) {
        double s = 0.0;
        for (int k = threadIdx.x; k < hw; k += blockDim.x) s += (double)act_load(x[p * hw + k]);
        s = block_sum(s);
        if (threadIdx.x == 0) y[p] = act_store((float)(s / hw));
    }
}

extern "C" __global__ void global_avgpool_backward(const act_t *__restrict__ dy,
                                                   act_t *__restrict__ dx, long long planes,
                                                   int hw, int accumulate) {
    const float inv = 1.0f / (float)hw;
    GRID_STRIDE(idx, planes * hw) {
        dx[idx] = act_store(act_added_to(&dx[idx], accumulate) + act_load(dy[idx / hw]) * inv);
    }
}
