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

use super::linalg::{largest_singular_value, symmetric_eigenvalues};
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::cpu::channel;
use crate::backend::{Backend, BnGrad, BnStatistics, ChannelStat, ChannelView, Executor, Real};
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

/// The entropy of a feature map's normalised channel-covariance spectrum from its moments
/// over `count` (images x positions) observations: each channel's sum and the raw channel
/// Gram (`[c][c]`); NaN for a map without variance.
pub fn spectral_entropy_of_moments(sums: &[f64], gram: &[f64], c: usize, count: f64) -> f64 {
    assert_eq!((sums.len(), gram.len()), (c, c * c));
    let means: Vec<f64> = sums.iter().map(|s| s / count).collect();
    // E[x x^T] - m m^T: the maps are sums of batch-normalised outputs, with channel means
    // near 0, so nothing cancels and the centred Gram is not needed.
    let mut sigma = gram.to_vec();
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

/// The entropy of a feature map's normalised channel-covariance spectrum
/// (`[n][c][hw]`, on the host); NaN for a map without variance.
pub fn spectral_entropy(map: &[f64], n: usize, c: usize, hw: usize) -> f64 {
    let view = ChannelView::plain(c, hw);
    let mut sums = vec![0.0; 2 * c];
    channel::channel_sums(map, view, n, &mut sums);
    let mut gram = vec![0.0; c * c];
    channel::channel_gram(map, view, map, view, n, false, &mut gram);
    spectral_entropy_of_moments(&sums[..c], &gram, c, (n * hw) as f64)
}

/// How a cell's input gradient is read against its output probe: as stored, or
/// pixel-unshuffled to the output's resolution where the cell halves it (reduction
/// blocks).
fn input_view(in_shape: SlotShape, out_shape: SlotShape) -> ChannelView {
    if in_shape.h == out_shape.h && in_shape.w == out_shape.w {
        return ChannelView::plain(in_shape.c, in_shape.hw());
    }
    let s = in_shape.h / out_shape.h;
    let view = ChannelView::unshuffled(in_shape.c, in_shape.h, in_shape.w, s);
    assert_eq!(
        (view.h, view.w),
        (out_shape.h, out_shape.w),
        "a {in_shape:?} input does not unshuffle to {out_shape:?}"
    );
    view
}

/// One cell's trainability from `M = g_in^T g_out` summed over `count` observations
/// (`[ci][co]`), unless the cell is an exact identity.
fn cell_trainability(m: &[f64], ci: usize, co: usize, count: f64, identity: bool) -> f64 {
    if identity {
        return f64::NEG_INFINITY;
    }
    let m: Vec<f64> = m.iter().map(|v| v / count).collect();
    let sigma = largest_singular_value(&m, ci, co);
    -sigma - 1.0 / (sigma + 1e-6) + 2.0
}

/// `len` Rademacher signs: value `e` is bit `e % 64` of draw `e / 64` (1: +1, 0: −1),
/// in the backend's number type (both exact in every one).
pub fn rademacher<R: Real>(rng: &mut SplitMix64, len: usize) -> Vec<R> {
    let (plus, minus) = (R::from_f64_rounded(1.0), R::from_f64_rounded(-1.0));
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let word = rng.next_u64();
        let take = (len - out.len()).min(64);
        out.extend((0..take).map(|b| if (word >> b) & 1 == 1 { plus } else { minus }));
    }
    out
}

/// A cell's input gradient (through `view_in`, pixel-unshuffled at a reduction) and the
/// probe it came from, and where their cross Gram goes in the accumulator.
struct CellGradient<B: Backend> {
    g_in: B::Buf,
    view_in: ChannelView,
    probe: B::Buf,
    view_out: ChannelView,
    at: usize,
}

/// The three terms from the executor's last forward pass of `n` images, the probes drawn
/// from `probes` (cell by cell, last first).
///
/// What leaves the backend is one accumulator, downloaded once at the end: per feature map
/// its channel sums and raw channel Gram ([`Backend::channel_sums`],
/// [`Backend::channel_gram`]); per cell whether its input gradient equals the probe
/// ([`Backend::count_unequal`]) and the cross Gram of the (pixel-unshuffled) input gradient
/// with the probe. The probes are drawn here and uploaded, one per cell.
pub fn az_nas_of_forward<B: Backend>(
    exec: &mut Executor<'_, B>,
    n: usize,
    probes: &mut SplitMix64,
) -> AzNasTerms {
    let plan = exec.plan();
    let be = exec.backend();
    let features = plan.features.clone();
    // The accumulator's layout: each live feature's 2c sums and c x c Gram, then each cell
    // with both ends live (last first): a count and its ci x co Gram.
    let mut len = 0;
    let mut take = |values: usize| {
        let at = len;
        len += values;
        at
    };
    let feature_at: Vec<Option<usize>> = features
        .iter()
        .map(|f| f.slot.map(|_| take(2 * f.shape.c + f.shape.c * f.shape.c)))
        .collect();
    let cell_at: Vec<Option<usize>> = (1..features.len())
        .rev()
        .map(|l| {
            let (f_in, f_out) = (features[l - 1], features[l]);
            let ci = input_view(f_in.shape, f_out.shape).channels();
            (f_in.slot.is_some() && f_out.slot.is_some()).then(|| take(1 + ci * f_out.shape.c))
        })
        .collect();
    let mut acc = be.alloc_acc(len);
    // Every feature's statistics in one call (the CPU computes them side by side).
    let stats: Vec<ChannelStat<'_, B>> = features
        .iter()
        .zip(&feature_at)
        .filter_map(|(f, at)| Some((f, exec.slot(f.slot?), (*at)?)))
        .flat_map(|(f, a, at)| {
            let view = ChannelView::plain(f.shape.c, f.shape.hw());
            let gram = ChannelStat::Gram {
                a,
                va: view,
                b: a,
                vb: view,
                centred: false,
                at: at + 2 * f.shape.c,
            };
            [ChannelStat::Sums { a, view, at }, gram]
        })
        .collect();
    be.channel_stats(&stats, n, &mut acc);
    drop(stats);
    // Cells whose input gradient is the zero tensor (no path from input to output).
    let mut zero_gradient = vec![false; cell_at.len()];
    // Each cell's input gradient and probe, kept for one call of their cross Grams.
    let mut crossed: Vec<CellGradient<B>> = Vec::new();
    for (k, l) in (1..features.len()).rev().enumerate() {
        let (f_in, f_out) = (features[l - 1], features[l]);
        let g_out = rademacher::<B::Real>(probes, n * f_out.shape.len());
        let (Some(x), Some(y), Some(at)) = (f_in.slot, f_out.slot, cell_at[k]) else {
            continue;
        };
        let probe = be.upload(&g_out);
        // The VJP consumes its seed; the probe stays for the Gram.
        let mut dy = be.alloc_output(be.buf_len(&probe));
        be.copy(&probe, &mut dy);
        match exec.vjp(y, dy, x, BnGrad::Full) {
            Some(g_in) => {
                if f_in.shape == f_out.shape {
                    be.count_unequal(&g_in, &probe, &mut acc, at);
                }
                let view_out = ChannelView::plain(f_out.shape.c, f_out.shape.hw());
                let view_in = input_view(f_in.shape, f_out.shape);
                crossed.push(CellGradient {
                    g_in,
                    view_in,
                    probe,
                    view_out,
                    at: at + 1,
                });
            }
            None => {
                zero_gradient[k] = true;
                be.release(probe);
            }
        }
    }
    let stats: Vec<ChannelStat<'_, B>> = crossed
        .iter()
        .map(|c| ChannelStat::Gram {
            a: &c.g_in,
            va: c.view_in,
            b: &c.probe,
            vb: c.view_out,
            centred: false,
            at: c.at,
        })
        .collect();
    be.channel_stats(&stats, n, &mut acc);
    drop(stats);
    for c in crossed {
        be.release(c.g_in);
        be.release(c.probe);
    }
    let values = be.download_acc(&acc);

    let entropies: Vec<f64> = features
        .iter()
        .zip(&feature_at)
        .map(|(f, at)| match at {
            Some(at) => {
                let c = f.shape.c;
                let count = (n * f.shape.hw()) as f64;
                let gram = &values[at + 2 * c..at + 2 * c + c * c];
                spectral_entropy_of_moments(&values[*at..at + c], gram, c, count)
            }
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

    let cells: Vec<f64> = (1..features.len())
        .rev()
        .enumerate()
        .map(|(k, l)| {
            let (f_in, f_out) = (features[l - 1], features[l]);
            let (ci, co) = (
                input_view(f_in.shape, f_out.shape).channels(),
                f_out.shape.c,
            );
            let count = (n * f_out.shape.hw()) as f64;
            match cell_at[k] {
                // A gradient equal to the probe (no value differs) is an exact identity;
                // the zero gradient of a dead path is not (the probe is +-1).
                Some(at) if !zero_gradient[k] => {
                    let identity = f_in.shape == f_out.shape && values[at] == 0.0;
                    let m = &values[at + 1..at + 1 + ci * co];
                    cell_trainability(m, ci, co, count, identity)
                }
                _ => cell_trainability(&vec![0.0; ci * co], ci, co, count, false),
            }
        })
        .collect();
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
        let signs = rademacher::<f64>(&mut SplitMix64::new(9), 70);
        assert_eq!(signs.len(), 70);
        for (b, &s) in signs.iter().take(64).enumerate() {
            assert_eq!(s, if (word >> b) & 1 == 1 { 1.0 } else { -1.0 });
        }
    }
}
