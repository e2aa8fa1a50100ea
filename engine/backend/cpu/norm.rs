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
//! The forward statistics are accumulated in f64 in one pass over `x` (both moments about
//! a per-(group, channel) shift, see [`batchnorm_forward`]), so they differ from a
//! two-pass computation by f64 rounding only. The backward sums are accumulated in `T`
//! within each `hw` plane (32 lanes per sum: at most 32 terms per lane at 32x32) and in
//! f64 across planes, parallel over (group, channel) pairs; the elementwise passes are
//! parallel over `hw` planes.

use rayon::prelude::*;

use super::elementwise::{sum_dy_dev, with_widest_simd, Moments, PAR_CHUNK};
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
    let (hw, c) = (g.hw, g.c);
    let m = (g.group * hw) as f64;
    let eps = eps.to_f64_lossless();
    // One pass for both moments, about a shift per (group, channel): the group's first
    // value of the channel, so `S2/m - (S1/m)^2` does not cancel when the mean is large
    // against the spread. Each (group, channel)'s images are split into runs of about
    // PAR_CHUNK values, one task each, so both cores stay busy however few channels;
    // the runs' sums are then added per (group, channel) in image order.
    let shift: Vec<f64> = (0..g.groups() * c)
        .map(|gc| x[((gc / c) * g.group * c + gc % c) * hw].to_f64_lossless())
        .collect();
    let run = (PAR_CHUNK / hw).clamp(1, g.group);
    let runs = g.group.div_ceil(run);
    let mut partial = vec![(0.0f64, 0.0f64); g.groups() * c * runs];
    partial.par_iter_mut().enumerate().for_each(|(t, sums)| {
        let (gc, r) = (t / runs, t % runs);
        let (gi, ch) = (gc / c, gc % c);
        let first = gi * g.group + r * run;
        let images = first..(first + run).min((gi + 1) * g.group);
        *sums = with_widest_simd(
            #[inline(always)]
            || {
                let mut moments = Moments::new(shift[gc]);
                for i in images {
                    moments.add(&x[(i * c + ch) * hw..][..hw]);
                }
                moments.sums()
            },
        );
    });
    for (gc, ((mu, is), runs)) in mean
        .iter_mut()
        .zip(inv_std.iter_mut())
        .zip(partial.chunks_exact(runs))
        .enumerate()
    {
        let (s1, s2) = runs.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let dev = s1 / m;
        let var = (s2 / m - dev * dev).max(0.0);
        *mu = T::from_f64_rounded(shift[gc] + dev);
        *is = T::from_f64_rounded(1.0 / (var + eps).sqrt());
    }
    let per_task = (PAR_CHUNK / hw).max(1);
    let (mean, inv_std) = (&*mean, &*inv_std);
    y.par_chunks_mut(per_task * hw)
        .zip(x.par_chunks(per_task * hw))
        .enumerate()
        .for_each(|(t, (y, x))| {
            with_widest_simd(
                #[inline(always)]
                || {
                    for (k, (y, x)) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).enumerate() {
                        let p = t * per_task + k;
                        let s = g.stat_index(p);
                        let (mu, b) = (mean[s], beta[p % c]);
                        let a = gamma[p % c] * inv_std[s];
                        for (y, &x) in y.iter_mut().zip(x) {
                            *y = (x - mu) * a + b;
                        }
                    }
                },
            )
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
    let sums = backward_sums(g, x, mean, inv_std, dy);
    for (gc, &(sdy, sdx)) in sums.iter().enumerate() {
        dbeta[gc % g.c] += T::from_f64_rounded(sdy);
        dgamma[gc % g.c] += T::from_f64_rounded(sdx);
    }
    if let Some(dx) = dx {
        backward_dx(g, mode, x, gamma, mean, inv_std, dy, &sums, dx, true);
    }
}

/// `dx +=` the input gradient of [`batchnorm_backward`] alone: in `FrozenStats` mode
/// without the reductions over `dy` that only the parameter gradients need.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_data<T: Real>(
    g: &BnGeom,
    mode: BnGrad,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    inv_std: &[T],
    dy: &[T],
    dx: &mut [T],
) {
    batchnorm_backward_data_into(g, mode, x, gamma, mean, inv_std, dy, dx, true);
}

/// [`batchnorm_backward_data`], or without `accumulate` the same values written over
/// whatever `dx` holds (`0 + g`, what adding to a zeroed `dx` gives, bit for bit).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_data_into<T: Real>(
    g: &BnGeom,
    mode: BnGrad,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    inv_std: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    g.check(
        x.len(),
        &[mean.len(), inv_std.len()],
        &[gamma.len()],
        "batchnorm_backward_data",
    );
    assert_eq!(dy.len(), x.len(), "batchnorm_backward_data: dy length");
    let sums = match mode {
        BnGrad::Full => backward_sums(g, x, mean, inv_std, dy),
        BnGrad::FrozenStats => Vec::new(),
    };
    backward_dx(g, mode, x, gamma, mean, inv_std, dy, &sums, dx, accumulate);
}

/// `(Sdy, Sdx)` per (group, channel): per plane in `T` lanes, across planes in f64.
fn backward_sums<T: Real>(
    g: &BnGeom,
    x: &[T],
    mean: &[T],
    inv_std: &[T],
    dy: &[T],
) -> Vec<(f64, f64)> {
    (0..g.groups() * g.c)
        .into_par_iter()
        .map(|gc| {
            let (gi, ch) = (gc / g.c, gc % g.c);
            let mu = mean[gc];
            // Compiled for the widest vectors: 4 f32 lanes per SSE register otherwise.
            let (sdy, sdev) = with_widest_simd(
                #[inline(always)]
                || {
                    // A plain loop: an iterator `fold` is outlined, out of the wrapper.
                    let mut sums = (0.0, 0.0);
                    for (x, dy) in g.planes(x, gi, ch).zip(g.planes(dy, gi, ch)) {
                        let (sdy, sdev) = sum_dy_dev(x, dy, mu);
                        sums = (sums.0 + sdy, sums.1 + sdev);
                    }
                    sums
                },
            );
            (sdy, sdev * inv_std[gc].to_f64_lossless())
        })
        .collect()
}

/// `dx +=` the input gradient; `sums` from [`backward_sums`] (read in `Full` mode only).
#[allow(clippy::too_many_arguments)]
fn backward_dx<T: Real>(
    g: &BnGeom,
    mode: BnGrad,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    inv_std: &[T],
    dy: &[T],
    sums: &[(f64, f64)],
    dx: &mut [T],
    accumulate: bool,
) {
    assert_eq!(dx.len(), x.len(), "batchnorm_backward: dx length");
    let m = (g.group * g.hw) as f64;
    dx.par_chunks_mut(g.hw)
        .zip(x.par_chunks(g.hw).zip(dy.par_chunks(g.hw)))
        .enumerate()
        .for_each(|(p, (dx, (x, dy)))| {
            let s = g.stat_index(p);
            let k = gamma[p % g.c] * inv_std[s];
            with_widest_simd(
                #[inline(always)]
                || {
                    // The first gradient into dx is `0 + g`: a zeroed dx plus g, unread.
                    if !accumulate {
                        dx.fill(T::zero());
                    }
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
                            let c1 =
                                T::from_f64_rounded(k64 * inv_std[s].to_f64_lossless() * sdx / m);
                            let mu = mean[s];
                            for ((dx, &dy), &x) in dx.iter_mut().zip(dy).zip(x) {
                                *dx += k * dy - c0 - (x - mu) * c1;
                            }
                        }
                    }
                },
            )
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
            let mu = mean[s];
            let (sdy, sdev) = with_widest_simd(
                #[inline(always)]
                || sum_dy_dev(x, dy, mu),
            );
            *dg = T::from_f64_rounded(sdev * inv_std[s].to_f64_lossless());
            *db = T::from_f64_rounded(sdy);
        });
}
