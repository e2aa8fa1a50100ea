//! [`CpuBackend`]: the [`Backend`] primitives on host vectors, in f32 or f64.

use super::conv::ConvAlgo;
use super::{act, channel, codes, conv, elementwise, gram, linear, loss, norm, pool};
use crate::backend::{
    Backend, BnGeom, BnGrad, ChannelStat, ChannelView, ConvGeom, Real, Reduction,
};
use rayon::prelude::*;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Mutex;

/// The CPU backend computing in `T` (f32 for speed, f64 for reference checks).
///
/// Buffers released by executors are kept by length and handed out again: scoring arch
/// after arch then reuses mapped memory instead of page-faulting a fresh gigabyte each time
/// (measured: a first NASWOT pass took 0.74-1.1 s against 0.36-0.41 s on reused buffers).
#[derive(Debug, Default)]
pub struct CpuBackend<T: Real> {
    pool: Mutex<HashMap<usize, Vec<Vec<T>>>>,
    conv_algo: ConvAlgo,
    _scalar: PhantomData<T>,
}

/// Bytes of released buffers the pool keeps at most.
const POOL_BYTES: usize = 4 << 30;

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        Self::with_conv_algo(ConvAlgo::Auto)
    }

    /// A backend whose convolutions use `algo` (to compare Winograd with im2col).
    pub fn with_conv_algo(conv_algo: ConvAlgo) -> Self {
        CpuBackend {
            pool: Mutex::new(HashMap::new()),
            conv_algo,
            _scalar: PhantomData,
        }
    }

    /// Bytes of released buffers the backend holds for reuse.
    pub fn pooled_bytes(&self) -> usize {
        held_bytes(&self.pool())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Vec<Vec<T>>>> {
        // A panic elsewhere cannot leave the map itself inconsistent.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bytes held by a pool of released buffers (keyed by length).
fn held_bytes<T>(pool: &HashMap<usize, Vec<Vec<T>>>) -> usize {
    let held: usize = pool.iter().map(|(len, bufs)| len * bufs.len()).sum();
    held * std::mem::size_of::<T>()
}

impl<T: Real> CpuBackend<T> {
    /// A released buffer of `len`, with whatever it last held.
    fn reuse(&self, len: usize) -> Option<Vec<T>> {
        self.pool().get_mut(&len).and_then(Vec::pop)
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    type Real = T;
    type Buf = Vec<T>;
    type Words = Vec<u64>;
    type Acc = Vec<f64>;

    fn parallel_passes(&self) -> usize {
        // One pass per thread, its kernels on that thread alone: the cores no longer meet
        // at the end of every small kernel (docs/PERF.md, "Session 8").
        rayon::current_num_threads()
    }
    fn lockstep_passes(&self) -> usize {
        // Four passes share each weight gradient's input transforms: the exact NTK of arch
        // 1462 took 8 % less CPU time than one at a time; 8 and 16 were slower (their
        // Winograd-domain partials outgrow L2), 2 and 6 the same (docs/PERF.md, "Session 10").
        4
    }
    fn alloc(&self, len: usize) -> Vec<T> {
        match self.reuse(len) {
            Some(mut buf) => {
                buf.fill(T::zero());
                buf
            }
            None => vec![T::zero(); len],
        }
    }
    fn alloc_output(&self, len: usize) -> Vec<T> {
        // No zeroing: the caller overwrites every element.
        self.reuse(len).unwrap_or_else(|| vec![T::zero(); len])
    }
    fn release(&self, buf: Vec<T>) {
        if buf.is_empty() {
            return;
        }
        let mut pool = self.pool();
        if held_bytes(&pool) + buf.len() * std::mem::size_of::<T>() <= POOL_BYTES {
            pool.entry(buf.len()).or_default().push(buf);
        }
    }
    fn upload(&self, host: &[T]) -> Vec<T> {
        // From the pool like any buffer: executors release their parameters and inputs on
        // drop, so fresh vectors here would pile up in the pool arch after arch.
        let mut buf = self.alloc_output(host.len());
        buf.copy_from_slice(host);
        buf
    }
    fn download(&self, buf: &Vec<T>) -> Vec<T> {
        buf.clone()
    }
    fn buf_len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn fill_zero(&self, buf: &mut Vec<T>) {
        buf.fill(T::zero());
    }
    fn copy(&self, src: &Vec<T>, dst: &mut Vec<T>) {
        dst.copy_from_slice(src);
    }
    fn add_assign(&self, dst: &mut Vec<T>, src: &Vec<T>) {
        elementwise::add_assign(dst, src);
    }

    fn copy_into(&self, src: &Vec<T>, dst: &mut Vec<T>, offset: usize) {
        dst[offset..offset + src.len()].copy_from_slice(src);
    }

    fn alloc_words(&self, len: usize) -> Vec<u64> {
        vec![0; len]
    }
    fn download_words(&self, words: &Vec<u64>) -> Vec<u64> {
        words.clone()
    }
    fn buf_len_words(&self, words: &Vec<u64>) -> usize {
        words.len()
    }
    fn alloc_acc(&self, len: usize) -> Vec<f64> {
        vec![0.0; len]
    }
    fn download_acc(&self, acc: &Vec<f64>) -> Vec<f64> {
        acc.clone()
    }
    fn pack_signs(&self, x: &Vec<T>, n: usize, units: usize, codes: &mut Vec<u64>) {
        codes::pack_signs(x, n, units, codes);
    }
    fn hamming_gram_accumulate(
        &self,
        codes: &Vec<u64>,
        n: usize,
        units: usize,
        weight: u64,
        k: &mut Vec<u64>,
    ) {
        codes::hamming_gram_accumulate(codes, n, units, weight, k);
    }
    fn gram_accumulate(&self, a: &Vec<T>, n: usize, len: usize, g: &mut Vec<f64>) {
        gram::gram_accumulate(a, n, len, g);
    }
    fn column_moments(&self, a: &Vec<T>, n: usize, len: usize, out: &mut Vec<f64>, at: usize) {
        gram::column_moments(a, n, len, &mut out[at..at + 2 * len]);
    }
    fn add_scaled(&self, x: &Vec<T>, alpha: f64, y: &Vec<T>, out: &mut Vec<T>) {
        assert!(
            x.len() == y.len() && x.len() == out.len(),
            "add_scaled: lengths"
        );
        for ((o, x), y) in out.iter_mut().zip(x).zip(y) {
            *o = T::from_f64_rounded(x.to_f64_lossless() + alpha * y.to_f64_lossless());
        }
    }
    fn difference_dot(&self, x: &Vec<T>, a: &Vec<T>, b: &Vec<T>, out: &mut Vec<f64>, at: usize) {
        out[at] += gram::difference_dot(x, a, b);
    }
    fn abs_products_and_squares(&self, a: &Vec<T>, b: &Vec<T>, out: &mut Vec<f64>, at: usize) {
        gram::abs_products_and_squares(a, b, &mut out[at..at + 2]);
    }
    fn row_dot_squares(
        &self,
        a: &Vec<T>,
        b: &Vec<T>,
        rows: usize,
        len: usize,
        out: &mut Vec<f64>,
        at: usize,
    ) {
        out[at] += gram::row_dot_squares(a, b, rows, len);
    }
    fn count_unequal(&self, a: &Vec<T>, b: &Vec<T>, out: &mut Vec<f64>, at: usize) {
        out[at] += channel::count_unequal(a, b) as f64;
    }
    fn channel_sums(&self, a: &Vec<T>, view: ChannelView, n: usize, out: &mut Vec<f64>, at: usize) {
        channel::channel_sums(a, view, n, &mut out[at..at + 2 * view.channels()]);
    }
    #[allow(clippy::too_many_arguments)]
    fn channel_gram(
        &self,
        a: &Vec<T>,
        va: ChannelView,
        b: &Vec<T>,
        vb: ChannelView,
        n: usize,
        centred: bool,
        out: &mut Vec<f64>,
        at: usize,
    ) {
        let len = va.channels() * vb.channels();
        channel::channel_gram(a, va, b, vb, n, centred, &mut out[at..at + len]);
    }

    fn channel_stats(&self, stats: &[ChannelStat<'_, Self>], n: usize, out: &mut Vec<f64>) {
        // Each statistic into its own buffer, side by side, then copied to its place.
        let values: Vec<Vec<f64>> = stats
            .par_iter()
            .map(|stat| {
                let mut v = vec![0.0; stat.range().1];
                match *stat {
                    ChannelStat::Sums { a, view, .. } => channel::channel_sums(a, view, n, &mut v),
                    ChannelStat::Gram {
                        a,
                        va,
                        b,
                        vb,
                        centred,
                        ..
                    } => channel::channel_gram(a, va, b, vb, n, centred, &mut v),
                }
                v
            })
            .collect();
        for (stat, v) in stats.iter().zip(values) {
            let at = stat.range().0;
            out[at..at + v.len()].copy_from_slice(&v);
        }
    }

    fn conv_forward(&self, g: &ConvGeom, n: usize, x: &Vec<T>, w: &Vec<T>, y: &mut Vec<T>) {
        conv::conv2d_forward_with(self.conv_algo, g, n, x, w, y);
    }
    fn conv_backward_data(&self, g: &ConvGeom, n: usize, dy: &Vec<T>, w: &Vec<T>, dx: &mut Vec<T>) {
        conv::conv2d_backward_data_with(self.conv_algo, g, n, dy, w, dx);
    }
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Vec<T>,
        dy: &Vec<T>,
        dw: &mut Vec<T>,
    ) {
        conv::conv2d_backward_weight_with(self.conv_algo, g, n, x, dy, dw);
    }
    fn conv_backward_data_many(
        &self,
        g: &ConvGeom,
        n: usize,
        dys: &[&Vec<T>],
        w: &Vec<T>,
        dxs: &mut [&mut Vec<T>],
        accumulate: bool,
    ) {
        let dys: Vec<&[T]> = dys.iter().map(|dy| dy.as_slice()).collect();
        let mut dxs: Vec<&mut [T]> = dxs.iter_mut().map(|dx| dx.as_mut_slice()).collect();
        let algo = self.conv_algo;
        conv::conv2d_backward_data_many_with(algo, g, n, &dys, w, &mut dxs, accumulate);
    }
    fn conv_backward_weight_many(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Vec<T>,
        dys: &[&Vec<T>],
        dws: &mut [&mut Vec<T>],
    ) {
        let dys: Vec<&[T]> = dys.iter().map(|dy| dy.as_slice()).collect();
        let mut dws: Vec<&mut [T]> = dws.iter_mut().map(|dw| dw.as_mut_slice()).collect();
        conv::conv2d_backward_weight_many_with(self.conv_algo, g, n, x, &dys, &mut dws);
    }
    fn conv_weight_grad_per_sample(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Vec<T>,
        dy: &Vec<T>,
        out: &mut Vec<T>,
    ) {
        conv::conv2d_weight_grad_per_sample(g, n, x, dy, out);
    }

    fn bn_forward(
        &self,
        g: &BnGeom,
        eps: f64,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        y: &mut Vec<T>,
        mean: &mut Vec<T>,
        inv_std: &mut Vec<T>,
    ) {
        norm::batchnorm_forward(
            g,
            T::from_f64_rounded(eps),
            x,
            gamma,
            beta,
            y,
            mean,
            inv_std,
        );
    }
    fn bn_backward(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &Vec<T>,
        gamma: &Vec<T>,
        mean: &Vec<T>,
        inv_std: &Vec<T>,
        dy: &Vec<T>,
        dx: Option<&mut Vec<T>>,
        dgamma: &mut Vec<T>,
        dbeta: &mut Vec<T>,
    ) {
        norm::batchnorm_backward(
            g,
            mode,
            x,
            gamma,
            mean,
            inv_std,
            dy,
            dx.map(|d| d.as_mut_slice()),
            dgamma,
            dbeta,
        );
    }
    fn bn_backward_data(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &Vec<T>,
        gamma: &Vec<T>,
        mean: &Vec<T>,
        inv_std: &Vec<T>,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
    ) {
        norm::batchnorm_backward_data(g, mode, x, gamma, mean, inv_std, dy, dx);
    }
    fn bn_backward_data_first(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &Vec<T>,
        gamma: &Vec<T>,
        mean: &Vec<T>,
        inv_std: &Vec<T>,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
    ) {
        norm::batchnorm_backward_data_into(g, mode, x, gamma, mean, inv_std, dy, dx, false);
    }
    fn bn_param_grad_per_sample(
        &self,
        g: &BnGeom,
        x: &Vec<T>,
        mean: &Vec<T>,
        inv_std: &Vec<T>,
        dy: &Vec<T>,
        dgamma: &mut Vec<T>,
        dbeta: &mut Vec<T>,
    ) {
        norm::batchnorm_param_grad_per_sample(g, x, mean, inv_std, dy, dgamma, dbeta);
    }

    fn relu_forward(&self, x: &Vec<T>, y: &mut Vec<T>) {
        act::relu_forward(x, y);
    }
    fn relu_backward(&self, x: &Vec<T>, dy: &Vec<T>, dx: &mut Vec<T>) {
        act::relu_backward(x, dy, dx);
    }
    fn relu_backward_first(&self, x: &Vec<T>, dy: &Vec<T>, dx: &mut Vec<T>) {
        act::relu_backward_into(x, dy, dx, false);
    }

    fn avgpool3x3_forward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        x: &Vec<T>,
        y: &mut Vec<T>,
    ) {
        pool::avgpool3x3_forward(n, c, h, w, x, y);
    }
    fn avgpool3x3_backward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
    ) {
        pool::avgpool3x3_backward(n, c, h, w, dy, dx);
    }
    fn avgpool2x2_forward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        x: &Vec<T>,
        y: &mut Vec<T>,
    ) {
        pool::avgpool2x2_forward(n, c, h, w, x, y);
    }
    fn avgpool2x2_backward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        dy: &Vec<T>,
        dx: &mut Vec<T>,
    ) {
        pool::avgpool2x2_backward(n, c, h, w, dy, dx);
    }
    fn global_avgpool_forward(&self, n: usize, c: usize, hw: usize, x: &Vec<T>, y: &mut Vec<T>) {
        pool::global_avgpool_forward(n, c, hw, x, y);
    }
    fn global_avgpool_backward(&self, n: usize, c: usize, hw: usize, dy: &Vec<T>, dx: &mut Vec<T>) {
        pool::global_avgpool_backward(n, c, hw, dy, dx);
    }

    fn linear_forward(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &Vec<T>,
        w: &Vec<T>,
        b: &Vec<T>,
        y: &mut Vec<T>,
    ) {
        linear::linear_forward(n, fin, fout, x, w, Some(b), y);
    }
    fn linear_backward(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &Vec<T>,
        w: &Vec<T>,
        dy: &Vec<T>,
        dx: Option<&mut Vec<T>>,
        dw: &mut Vec<T>,
        db: &mut Vec<T>,
    ) {
        linear::linear_backward(
            n,
            fin,
            fout,
            x,
            w,
            dy,
            dx.map(|d| d.as_mut_slice()),
            dw,
            Some(db),
        );
    }
    fn linear_grad_per_sample(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &Vec<T>,
        dy: &Vec<T>,
        dw: &mut Vec<T>,
        db: &mut Vec<T>,
    ) {
        linear::linear_grad_per_sample(n, fin, fout, x, dy, dw, Some(db));
    }

    fn softmax_cross_entropy(
        &self,
        n: usize,
        classes: usize,
        logits: &Vec<T>,
        labels: &[usize],
        reduction: Reduction,
        dlogits: &mut Vec<T>,
    ) -> T {
        loss::softmax_cross_entropy(n, classes, logits, labels, reduction, dlogits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_buffers_come_back_zeroed_and_only_for_their_length() {
        let be = CpuBackend::<f32>::new();
        let mut buf = be.alloc(5);
        buf.fill(3.0);
        let address = buf.as_ptr();
        be.release(buf);
        let other = be.alloc(4);
        assert_eq!(other, vec![0.0; 4]);
        let again = be.alloc(5);
        assert_eq!(
            again.as_ptr(),
            address,
            "the released buffer was not reused"
        );
        assert_eq!(again, vec![0.0; 5]);
    }

    #[test]
    fn uploads_take_released_buffers() {
        let be = CpuBackend::<f32>::new();
        let buf = be.alloc(3);
        let address = buf.as_ptr();
        be.release(buf);
        let up = be.upload(&[1.0, 2.0, 3.0]);
        assert_eq!(up.as_ptr(), address, "the upload allocated afresh");
        assert_eq!(up, vec![1.0, 2.0, 3.0]);
        assert_eq!(be.pooled_bytes(), 0);
    }
}
