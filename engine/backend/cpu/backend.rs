//! [`CpuBackend`]: the [`Backend`] primitives on host vectors, in f32 or f64.

use super::{act, codes, conv, elementwise, gram, linear, loss, norm, pool};
use crate::backend::{Backend, BnGeom, BnGrad, ConvGeom, Real, Reduction};
use std::marker::PhantomData;

/// The CPU backend computing in `T` (f32 for speed, f64 for reference checks).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend<T: Real>(PhantomData<T>);

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        CpuBackend(PhantomData)
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    type Real = T;
    type Buf = Vec<T>;
    type Words = Vec<u64>;
    type Acc = Vec<f64>;

    fn alloc(&self, len: usize) -> Vec<T> {
        vec![T::zero(); len]
    }
    fn upload(&self, host: &[T]) -> Vec<T> {
        host.to_vec()
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

    fn conv_forward(&self, g: &ConvGeom, n: usize, x: &Vec<T>, w: &Vec<T>, y: &mut Vec<T>) {
        conv::conv2d_forward(g, n, x, w, y);
    }
    fn conv_backward_data(&self, g: &ConvGeom, n: usize, dy: &Vec<T>, w: &Vec<T>, dx: &mut Vec<T>) {
        conv::conv2d_backward_data(g, n, dy, w, dx);
    }
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &Vec<T>,
        dy: &Vec<T>,
        dw: &mut Vec<T>,
    ) {
        conv::conv2d_backward_weight(g, n, x, dy, dw);
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
