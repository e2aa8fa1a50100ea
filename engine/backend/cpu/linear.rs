//! Fully connected layer as PyTorch `Linear`: `y = x W^T + b` with `x` `[n][fin]`, `W`
//! `[fout][fin]`, `b` `[fout]`, `y` `[n][fout]`. Backward: `dx += dy W`, `dW += dy^T x`,
//! `db += sum_n dy`; per sample `dW_i = dy_i x_i^T` (an outer product), `db_i = dy_i`.

use rayon::prelude::*;

use super::gemm::{matmul, Mat, Parallelism};
use crate::backend::Real;

/// `y = x W^T (+ b)`, overwritten.
pub fn linear_forward<T: Real>(
    n: usize,
    fin: usize,
    fout: usize,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    y: &mut [T],
) {
    assert!(
        x.len() == n * fin && w.len() == fout * fin && y.len() == n * fout,
        "linear_forward: length"
    );
    matmul(
        y,
        Mat::rows(n, fout),
        false,
        x,
        Mat::rows(n, fin),
        w,
        Mat::rows(fout, fin).t(),
        Parallelism::Rayon(0),
    );
    if let Some(b) = b {
        assert_eq!(b.len(), fout, "linear_forward: bias length");
        for row in y.chunks_exact_mut(fout) {
            row.iter_mut().zip(b).for_each(|(y, &b)| *y += b);
        }
    }
}

/// Accumulates `dx` (if given), `dw` and `db` (if given).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Real>(
    n: usize,
    fin: usize,
    fout: usize,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    assert!(
        x.len() == n * fin
            && w.len() == fout * fin
            && dy.len() == n * fout
            && dw.len() == fout * fin,
        "linear_backward: length"
    );
    let par = Parallelism::Rayon(0);
    let dym = Mat::rows(n, fout);
    if let Some(dx) = dx {
        assert_eq!(dx.len(), n * fin, "linear_backward: dx length");
        matmul(
            dx,
            Mat::rows(n, fin),
            true,
            dy,
            dym,
            w,
            Mat::rows(fout, fin),
            par,
        );
    }
    matmul(
        dw,
        Mat::rows(fout, fin),
        true,
        dy,
        dym.t(),
        x,
        Mat::rows(n, fin),
        par,
    );
    if let Some(db) = db {
        assert_eq!(db.len(), fout, "linear_backward: db length");
        for row in dy.chunks_exact(fout) {
            db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
    }
}

/// Per-sample `dw[i] = dy_i x_i^T` (`[n][fout*fin]`) and `db[i] = dy_i` (`[n][fout]`), overwritten.
pub fn linear_grad_per_sample<T: Real>(
    n: usize,
    fin: usize,
    fout: usize,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    assert!(
        x.len() == n * fin && dy.len() == n * fout && dw.len() == n * fout * fin,
        "linear_grad_per_sample: length"
    );
    if fin > 0 && fout > 0 {
        dw.par_chunks_mut(fout * fin)
            .zip(x.par_chunks(fin).zip(dy.par_chunks(fout)))
            .for_each(|(dw, (x, dy))| {
                for (row, &g) in dw.chunks_exact_mut(fin).zip(dy) {
                    row.iter_mut().zip(x).for_each(|(d, &v)| *d = g * v);
                }
            });
    }
    if let Some(db) = db {
        assert_eq!(db.len(), n * fout, "linear_grad_per_sample: db length");
        db.copy_from_slice(dy);
    }
}
