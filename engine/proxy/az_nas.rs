//! AZ-NAS (Lee & Ham, CVPR 2024, "AZ-NAS: Assembling Zero-Cost Proxies for Network
//! Architecture Search"): three terms of one forward pass and one backward pass.
//!
//! Definition (the released `compute_az_nas_score.py`, cvlab-yonsei/AZ-NAS, with its
//! NAS-Bench-201 driver; ../shared/spec/proxies.md, "AZ-NAS"): the network re-initialised
//! Kaiming-normal (fan-in, ReLU gain; [`kaiming_normal_params`]), one forward pass of a
//! batch of 64 N(0, 1) images with batch statistics, and the 18 cell-boundary feature maps
//! ([`crate::net::Plan::features`]: the stem's output, then each cell's and reduction
//! block's).
//! - Expressivity: per feature, the channel covariance over all images and positions
//!   (biased, centred), its eigenvalues `λ`, `p = λ / Σλ`, the entropy `−Σ p ln(p + 1e-8)`;
//!   the sum over the 18 features.
//! - Progressivity: the smallest increase of that entropy from one feature to the next.
//! - Trainability: for each of the 17 cells, last first, a Rademacher vector `g` at the
//!   cell's output carried back to its input ([`Executor::vjp`], batch norm through its
//!   statistics); where the input is twice the output's size (reduction blocks) it is
//!   pixel-unshuffled; `M = g_inᵀ g / (images x positions)` over channels, `σ` its largest
//!   singular value, the cell's score `2 − σ − 1/(σ + 1e-6)` (at most 0, at `σ = 1`), and
//!   `−inf` where the cell is an exact identity (`g_in == g`). The mean over the cells.
//! - NaN in any term becomes `−inf`, as released. AZ-NAS's fourth term is FLOPs (`flops`);
//!   its aggregate, `Σ ln(rank / m)` over a set of archs, is `nasrank eval --ensemble
//!   az_expressivity,az_progressivity,az_trainability,flops --ensemble-method log-rank`.
//!
//! Deviations from the released code:
//! - Seeded streams of their own (`Seeds::az_weights`, `az_inputs`, `az_probes`): the
//!   released driver scores archs one after another from one torch stream.
//! - Covariances, eigenvalues and singular values in f64 (released: f32 `eigvalsh`,
//!   `svdvals`).
//! - A cell whose input is identically zero (after a dead cell) gets the zero gradient, so
//!   `σ = 0`; the released code still carries the probe back through a reduction block's
//!   linear shortcut there. Only dead archs, whose expressivity and progressivity are
//!   `−inf` anyway, are affected.

use super::linalg::{channel_gram, largest_singular_value, symmetric_eigenvalues};
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::{Backend, BnGrad, BnStatistics, Executor, Real};
use crate::data::{synthetic_batch, Seeds, SplitMix64};
use crate::net::init::kaiming_normal_params;
use crate::net::plan::INPUT;
use crate::net::{Plan, SlotShape};
use crate::space::ClassKey;

/// AZ-NAS's three network terms of one arch, and what they are made of.
#[derive(Clone, Debug, PartialEq)]
pub struct AzNasTerms {
    pub expressivity: f64,
    pub progressivity: f64,
    pub trainability: f64,
    /// Each feature map's spectral entropy, in order (NaN for a zero map).
    pub entropies: Vec<f64>,
    /// Each cell's trainability, the last cell first.
    pub cells: Vec<f64>,
}

/// A slot's values of the last forward pass, widened to f64.
fn slot_values<B: Backend>(exec: &Executor<'_, B>, slot: usize) -> Vec<f64> {
    let be = exec.backend();
    be.download(exec.slot(slot))
        .into_iter()
        .map(Real::to_f64_lossless)
        .collect()
}

/// The entropy of a feature map's normalised channel-covariance spectrum
/// (`[n][c][hw]`); NaN for a map without variance.
pub fn spectral_entropy(map: &[f64], n: usize, c: usize, hw: usize) -> f64 {
    let count = (n * hw) as f64;
    let means: Vec<f64> = (0..c)
        .map(|ch| {
            (0..n)
                .map(|i| {
                    map[(i * c + ch) * hw..(i * c + ch + 1) * hw]
                        .iter()
                        .sum::<f64>()
                })
                .sum::<f64>()
                / count
        })
        .collect();
    // E[x x^T] - m m^T: the maps are sums of batch-normalised outputs, with channel means
    // near 0, so nothing cancels and the centred copy is not needed.
    let mut sigma = channel_gram(map, c, map, c, n, hw);
    for i in 0..c {
        for j in 0..c {
            sigma[i * c + j] = sigma[i * c + j] / count - means[i] * means[j];
        }
    }
    let eigenvalues = symmetric_eigenvalues(&sigma, c);
    let total: f64 = eigenvalues.iter().sum();
    eigenvalues
        .iter()
        .map(|&l| {
            let p = l / total;
            -p * (p + 1e-8).ln()
        })
        .sum()
}

/// `[n][c][h][w]` rearranged to `[n][c s²][h/s][w/s]` (PyTorch's `PixelUnshuffle(s)`:
/// channel `c s² + dy s + dx` holds the pixels at offset `(dy, dx)` of each `s x s` block).
pub fn pixel_unshuffle(x: &[f64], n: usize, shape: SlotShape, s: usize) -> Vec<f64> {
    let (c, h, w) = (shape.c, shape.h, shape.w);
    assert_eq!(x.len(), n * c * h * w);
    assert!(h % s == 0 && w % s == 0, "{h}x{w} is not a multiple of {s}");
    let (ho, wo) = (h / s, w / s);
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for dy in 0..s {
                for dx in 0..s {
                    let oc = ch * s * s + dy * s + dx;
                    for i in 0..ho {
                        for j in 0..wo {
                            out[((b * c * s * s + oc) * ho + i) * wo + j] =
                                x[((b * c + ch) * h + i * s + dy) * w + j * s + dx];
                        }
                    }
                }
            }
        }
    }
    out
}

/// One cell's trainability from its probe `g_out` and the gradient it gives at the input.
fn cell_trainability(
    g_in: &[f64],
    in_shape: SlotShape,
    g_out: &[f64],
    out_shape: SlotShape,
    n: usize,
) -> f64 {
    if in_shape == out_shape && g_in == g_out {
        return f64::NEG_INFINITY; // an exact identity
    }
    let (g_in, ci) = if in_shape.h != out_shape.h || in_shape.w != out_shape.w {
        let s = in_shape.h / out_shape.h;
        (pixel_unshuffle(g_in, n, in_shape, s), in_shape.c * s * s)
    } else {
        (g_in.to_vec(), in_shape.c)
    };
    let (co, hw) = (out_shape.c, out_shape.hw());
    let mut m = channel_gram(&g_in, ci, g_out, co, n, hw);
    let count = (n * hw) as f64;
    m.iter_mut().for_each(|v| *v /= count);
    let sigma = largest_singular_value(&m, ci, co);
    -sigma - 1.0 / (sigma + 1e-6) + 2.0
}

/// `len` Rademacher signs: value `e` is bit `e % 64` of draw `e / 64` (1: +1, 0: −1).
pub fn rademacher(rng: &mut SplitMix64, len: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let word = rng.next_u64();
        let take = (len - out.len()).min(64);
        out.extend((0..take).map(|b| if (word >> b) & 1 == 1 { 1.0 } else { -1.0 }));
    }
    out
}

/// The three terms from the executor's last forward pass of `n` images, the probes drawn
/// from `probes` (cell by cell, last first).
pub fn az_nas_of_forward<B: Backend>(
    exec: &mut Executor<'_, B>,
    n: usize,
    probes: &mut SplitMix64,
) -> AzNasTerms {
    let plan = exec.plan();
    let be = exec.backend();
    let features = &plan.features;
    let entropies: Vec<f64> = features
        .iter()
        .map(|f| match f.slot {
            Some(slot) => spectral_entropy(&slot_values(exec, slot), n, f.shape.c, f.shape.hw()),
            None => f64::NAN,
        })
        .collect();
    let expressivity: f64 = entropies.iter().sum();
    // The smallest step, NaN if any entropy is (as numpy's min).
    let progressivity = entropies
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, |m, d| {
            if m.is_nan() || d.is_nan() {
                f64::NAN
            } else {
                m.min(d)
            }
        });

    let mut cells = Vec::with_capacity(features.len().saturating_sub(1));
    for l in (1..features.len()).rev() {
        let (f_in, f_out) = (features[l - 1], features[l]);
        let g_out = rademacher(probes, n * f_out.shape.len());
        let g_in = match (f_in.slot, f_out.slot) {
            (Some(x), Some(y)) => {
                let dy = be.upload(
                    &g_out
                        .iter()
                        .map(|&v| B::Real::from_f64_rounded(v))
                        .collect::<Vec<_>>(),
                );
                exec.vjp(y, dy, x, BnGrad::Full).map(|g| {
                    let values = be
                        .download(&g)
                        .into_iter()
                        .map(Real::to_f64_lossless)
                        .collect();
                    be.release(g);
                    values
                })
            }
            _ => None,
        }
        .unwrap_or_else(|| vec![0.0; n * f_in.shape.len()]);
        cells.push(cell_trainability(&g_in, f_in.shape, &g_out, f_out.shape, n));
    }
    let trainability = cells.iter().sum::<f64>() / cells.len() as f64;
    let or_neg_inf = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    AzNasTerms {
        expressivity: or_neg_inf(expressivity),
        progressivity: or_neg_inf(progressivity),
        trainability: or_neg_inf(trainability),
        entropies,
        cells,
    }
}

/// AZ-NAS's three terms of the network `plan` on `n` Gaussian images, weights, images and
/// probes drawn from `seeds`.
pub fn az_nas<B: Backend>(be: &B, plan: &Plan, n: usize, seeds: Seeds) -> AzNasTerms {
    let mut exec =
        Executor::with_values(be, plan, &kaiming_normal_params(seeds.az_weights(), plan));
    let s = plan.slots[INPUT];
    let images = synthetic_batch(
        n,
        s.c,
        s.h,
        s.w,
        plan.config.classes.max(1),
        seeds.az_inputs(),
    );
    exec.forward(upload_images(be, &images, n), n, BnStatistics::Batch);
    az_nas_of_forward(&mut exec, n, &mut SplitMix64::new(seeds.az_probes()))
}

/// The arch's three terms, computed once for all three scores.
fn terms<B: Backend>(arch: &mut ArchScoring<'_, B>, minibatch: Minibatch) -> AzNasTerms {
    let n = arch.settings.batch_of(minibatch);
    arch.shared(|arch| az_nas(arch.backend, arch.plan, n, Seeds(arch.settings.seed)))
}

/// The facts the three terms share.
const fn info(name: &'static str, dead_value: Option<f64>) -> ScoreInfo {
    ScoreInfo {
        name,
        higher_is_better: true,
        // Cell outputs and their input gradients: functions of the input.
        class_key: ClassKey::Function,
        dead_value,
        // AZ-NAS's batch of 64, of Gaussian images (no dataset image is read).
        minibatch: Minibatch::Gradient,
        runs: Runs::OwnNetworks,
        max_images: None,
        spaces: EVERY_SPACE,
    }
}

/// AZ-NAS expressivity. Dead value −inf: the first cell's output is zero, its spectrum
/// 0/0.
pub struct AzExpressivity;

impl ScoreDef for AzExpressivity {
    const INFO: ScoreInfo = info("az_expressivity", Some(f64::NEG_INFINITY));

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(terms(arch, Self::INFO.minibatch).expressivity)
    }
}

/// AZ-NAS progressivity. Dead value −inf, as expressivity.
pub struct AzProgressivity;

impl ScoreDef for AzProgressivity {
    const INFO: ScoreInfo = info("az_progressivity", Some(f64::NEG_INFINITY));

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(terms(arch, Self::INFO.minibatch).progressivity)
    }
}

/// AZ-NAS trainability. No dead value: computed like any other arch.
pub struct AzTrainability;

impl ScoreDef for AzTrainability {
    const INFO: ScoreInfo = info("az_trainability", None);

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(terms(arch, Self::INFO.minibatch).trainability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_unshuffle_moves_each_block_offset_to_its_channel() {
        // One image, one 4x4 channel holding its own index.
        let x: Vec<f64> = (0..16).map(f64::from).collect();
        let shape = SlotShape { c: 1, h: 4, w: 4 };
        let out = pixel_unshuffle(&x, 1, shape, 2);
        // Channel 0: offsets (0, 0) of each 2x2 block; channel 3: (1, 1).
        assert_eq!(&out[0..4], &[0.0, 2.0, 8.0, 10.0]);
        assert_eq!(&out[4..8], &[1.0, 3.0, 9.0, 11.0]);
        assert_eq!(&out[12..16], &[5.0, 7.0, 13.0, 15.0]);
    }

    #[test]
    fn spectral_entropy_of_independent_equal_channels_is_ln_c() {
        // Four channels, each +-1 on a different pair of positions: covariance is a
        // multiple of the identity, so p = 1/4 each and the entropy ln 4.
        let c = 4;
        let hw = 8;
        let mut map = vec![0.0; c * hw];
        for ch in 0..c {
            map[ch * hw + 2 * ch] = 1.0;
            map[ch * hw + 2 * ch + 1] = -1.0;
        }
        let e = spectral_entropy(&map, 1, c, hw);
        assert!((e - (4.0f64).ln()).abs() < 1e-6, "{e}");
        assert!(spectral_entropy(&vec![0.0; c * hw], 1, c, hw).is_nan());
    }

    #[test]
    fn rademacher_signs_follow_the_bits() {
        let mut a = SplitMix64::new(9);
        let word = a.next_u64();
        let signs = rademacher(&mut SplitMix64::new(9), 70);
        assert_eq!(signs.len(), 70);
        for (b, &s) in signs.iter().take(64).enumerate() {
            assert_eq!(s, if (word >> b) & 1 == 1 { 1.0 } else { -1.0 });
        }
    }
}
