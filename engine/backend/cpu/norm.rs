//! Batch normalisation in training mode (affine, biased variance), as PyTorch `BatchNorm2d`
//! in `train()`, on `x` laid out `[n][c][hw]`.
//!
//! Statistics are taken per channel over groups of `group` consecutive images (`group == n`
//! is ordinary batch statistics; `group == 1` treats each image as a batch of one):
//! `mean[g][c]`, `var[g][c]` over the `m = group*hw` values, `inv_std = 1/sqrt(var + eps)`,
//! `xhat = (x - mean) * inv_std`, `y = gamma[c] * xhat + beta[c]`.
//!
//! Backward, per group and channel, with `Sdy = sum dy` and `Sdx = sum dy * xhat`:
//! `dbeta += Sdy`, `dgamma += Sdx`, and
//! - `Full` (through the statistics): `dx += gamma*inv_std/m * (m*dy - Sdy - xhat*Sdx)`;
//! - `FrozenStats` (mean, inv_std constant): `dx += gamma*inv_std*dy`.
//!
//! Sums are accumulated in f64; statistics are parallel over (group, channel) pairs and the
//! elementwise passes parallel over `hw` planes.

use rayon::prelude::*;

use super::elementwise::{sum_dy_dev, sum_f64, sum_sq_dev};
use crate::backend::{BnGeom, BnGrad, Real};

impl BnGeom {
    fn check(&self, x: usize, stats: &[usize], params: &[usize], op: &str) {
        assert!(
            self.group > 0 && self.n.is_multiple_of(self.group) && self.hw > 0,
            "{op}: invalid geometry {self:?}"
        );
        assert!(x == self.n * self.c * self.hw, "{op}: tensor length");
        assert!(
            stats.iter().all(|&l| l == self.groups() * self.c),
            "{op}: mean/inv_std length"
        );
        assert!(
            params.iter().all(|&l| l == self.c),
            "{op}: per-channel length"
        );
    }

    /// The `hw` planes of channel `ch` in statistics group `gi`.
    fn planes<'a, T>(&self, v: &'a [T], gi: usize, ch: usize) -> impl Iterator<Item = &'a [T]> {
        let (c, hw) = (self.c, self.hw);
        (gi * self.group..(gi + 1) * self.group).map(move |i| &v[(i * c + ch) * hw..][..hw])
    }

    /// Index into `[groups][c]` arrays for plane `p` (`p = image * c + channel`).
    fn stat_index(&self, p: usize) -> usize {
        (p / self.c / self.group) * self.c + p % self.c
    }
}

/// Normalises `x` into `y` (overwritten) and stores `mean` and `inv_std` (`[groups][c]`).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward<T: Real>(
    g: &BnGeom,
    eps: T,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    mean: &mut [T],
    inv_std: &mut [T],
) {
    g.check(
        x.len(),
        &[mean.len(), inv_std.len()],
        &[gamma.len(), beta.len()],
        "batchnorm_forward",
    );
    assert_eq!(y.len(), x.len(), "batchnorm_forward: y length");
    let m = (g.group * g.hw) as f64;
    let eps = eps.to_f64_lossless();
    mean.par_iter_mut()
        .zip(inv_std.par_iter_mut())
        .enumerate()
        .for_each(|(gc, (mu, is))| {
            let (gi, ch) = (gc / g.c, gc % g.c);
            let mean = g.planes(x, gi, ch).map(sum_f64).sum::<f64>() / m;
            let var = g
                .planes(x, gi, ch)
                .map(|p| sum_sq_dev(p, mean))
                .sum::<f64>()
                / m;
            *mu = T::from_f64_rounded(mean);
            *is = T::from_f64_rounded(1.0 / (var + eps).sqrt());
        });
    let (mean, inv_std) = (&*mean, &*inv_std);
    y.par_chunks_mut(g.hw)
        .zip(x.par_chunks(g.hw))
        .enumerate()
        .for_each(|(p, (y, x))| {
            let s = g.stat_index(p);
            let (mu, b) = (mean[s], beta[p % g.c]);
            let a = gamma[p % g.c] * inv_std[s];
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - mu) * a + b;
            }
        });
}

/// Accumulates `dgamma`, `dbeta` (`[c]`) and, if given, `dx`; see the module doc for `mode`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward<T: Real>(
    g: &BnGeom,
    mode: BnGrad,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    inv_std: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    g.check(
        x.len(),
        &[mean.len(), inv_std.len()],
        &[gamma.len(), dgamma.len(), dbeta.len()],
        "batchnorm_backward",
    );
    assert_eq!(dy.len(), x.len(), "batchnorm_backward: dy length");
    // (Sdy, Sdx) per (group, channel).
    let sums: Vec<(f64, f64)> = (0..g.groups() * g.c)
        .into_par_iter()
        .map(|gc| {
            let (gi, ch) = (gc / g.c, gc % g.c);
            let mu = mean[gc].to_f64_lossless();
            let (sdy, sdev) = g
                .planes(x, gi, ch)
                .zip(g.planes(dy, gi, ch))
                .map(|(x, dy)| sum_dy_dev(x, dy, mu))
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            (sdy, sdev * inv_std[gc].to_f64_lossless())
        })
        .collect();
    for (gc, &(sdy, sdx)) in sums.iter().enumerate() {
        dbeta[gc % g.c] += T::from_f64_rounded(sdy);
        dgamma[gc % g.c] += T::from_f64_rounded(sdx);
    }
    let Some(dx) = dx else { return };
    assert_eq!(dx.len(), x.len(), "batchnorm_backward: dx length");
    let m = (g.group * g.hw) as f64;
    dx.par_chunks_mut(g.hw)
        .zip(x.par_chunks(g.hw).zip(dy.par_chunks(g.hw)))
        .enumerate()
        .for_each(|(p, (dx, (x, dy)))| {
            let s = g.stat_index(p);
            let k = gamma[p % g.c] * inv_std[s];
            match mode {
                BnGrad::FrozenStats => {
                    for (dx, &dy) in dx.iter_mut().zip(dy) {
                        *dx += k * dy;
                    }
                }
                BnGrad::Full => {
                    // dx += k*dy - k*Sdy/m - (x - mean) * k*inv_std*Sdx/m
                    let (sdy, sdx) = sums[s];
                    let k64 = k.to_f64_lossless();
                    let c0 = T::from_f64_rounded(k64 * sdy / m);
                    let c1 = T::from_f64_rounded(k64 * inv_std[s].to_f64_lossless() * sdx / m);
                    let mu = mean[s];
                    for ((dx, &dy), &x) in dx.iter_mut().zip(dy).zip(x) {
                        *dx += k * dy - c0 - (x - mu) * c1;
                    }
                }
            }
        });
}

/// Per-image `dgamma[i][c] = sum dy * xhat`, `dbeta[i][c] = sum dy` (overwritten), with each
/// image normalised by its group's `mean`/`inv_std` (the FrozenStats parameter gradient).
pub fn batchnorm_param_grad_per_sample<T: Real>(
    g: &BnGeom,
    x: &[T],
    mean: &[T],
    inv_std: &[T],
    dy: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    g.check(
        x.len(),
        &[mean.len(), inv_std.len()],
        &[],
        "batchnorm_param_grad_per_sample",
    );
    assert_eq!(
        dy.len(),
        x.len(),
        "batchnorm_param_grad_per_sample: dy length"
    );
    assert!(
        dgamma.len() == g.n * g.c && dbeta.len() == g.n * g.c,
        "batchnorm_param_grad_per_sample: output length"
    );
    dgamma
        .par_iter_mut()
        .zip(dbeta.par_iter_mut())
        .zip(x.par_chunks(g.hw).zip(dy.par_chunks(g.hw)))
        .enumerate()
        .for_each(|(p, ((dg, db), (x, dy)))| {
            let s = g.stat_index(p);
            let (sdy, sdev) = sum_dy_dev(x, dy, mean[s].to_f64_lossless());
            *dg = T::from_f64_rounded(sdev * inv_std[s].to_f64_lossless());
            *db = T::from_f64_rounded(sdy);
        });
}
