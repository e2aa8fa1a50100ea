//! SWAP (Peng et al., ICLR 2024, "Sample-Wise Activation Patterns for Ultra-fast NAS").
//!
//! Definition (the released `src/metrics/swap.py`, pym1024/SWAP @ f6049f7c, applied to an
//! NB-201 network; ../shared/spec/proxies.md, "SWAP"): every conv and linear weight is
//! re-drawn from N(0, 1) (biases 0, BN gamma 1, beta 0), one forward pass of B = 16 images
//! with batch statistics, and every ReLU module's output is recorded. Each unit of every
//! recorded ReLU (a neuron) has a sample-wise pattern: the B bits "output > 0" over the
//! images. The SWAP of one initialisation is the number of distinct patterns among all
//! neurons; the score is its mean over 32 re-initialisations (higher is better).
//!
//! How it is computed: the executor's code stream gives, per computed ReLU layer, the bits
//! of every unit of every image; each 64-unit word is transposed into 64 patterns of B bits,
//! gathered in a set (a bitmap of the 2^B patterns for B <= 20). A ReLU layer standing for
//! several modules (a node feeding several conv edges) is read once: a repeated neuron adds
//! no pattern. Modules whose input is identically zero (fed by a zero node) add the
//! all-zero pattern, as their outputs do in the released code.
//!
//! Deviations from the released code:
//! - Weights: 32 seeded re-initialisations drawn by Philox from `Seeds::swap_weights`
//!   (the released class never applies its seed, so its runs are not repeatable).
//! - Images: the first 16 images of the run's minibatch (the run's `--data` and `--seed`),
//!   normalised with NAS-Bench-201's statistics; the released demo takes the first 16
//!   CIFAR-10 training images, normalised with std (0.2470, 0.2435, 0.2616), which differs
//!   from NAS-Bench-201's in the fourth decimal.
//!
//! `swap_reg` is SWAP x exp(-(Θ - mu)^2 / sigma), Θ the arch's parameters in thousands
//! (the released `cal_regular_factor`). The released code takes mu and sigma as arguments
//! and gives none for NAS-Bench-201; nasrank takes them from the settings
//! ([`SwapRegularizer`]), by default from the space's model sizes
//! ([`SwapRegularizer::space_default`], docs/SCORES.md).

use std::collections::HashSet;

use super::counts::params_of;
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::{Backend, BnStatistics, CodeBlock, Executor};
use crate::data::{Batch, Seeds};
use crate::net::init::gaussian_params;
use crate::space::{
    AnyArch, Arch, ClassKey, MacroConfig, Op, SizeArch, Space, SSS_POSITIONS, SSS_WIDTHS,
};

/// Re-initialisations averaged (the released demo's `--repeats`).
pub const SWAP_REINITS: usize = 32;

/// The most images a pattern holds (one bit each in a u64).
pub const SWAP_MAX_IMAGES: usize = 64;

/// Distinct patterns of `bits`-bit values: a bitmap of all 2^bits values when that is
/// small, a hash set beyond.
enum PatternSet {
    Bitmap { words: Vec<u64>, count: usize },
    Hashed(HashSet<u64>),
}

impl PatternSet {
    fn new(bits: usize) -> PatternSet {
        if bits <= 20 {
            PatternSet::Bitmap {
                words: vec![0; (1usize << bits).div_ceil(64)],
                count: 0,
            }
        } else {
            PatternSet::Hashed(HashSet::new())
        }
    }

    fn insert(&mut self, pattern: u64) {
        match self {
            PatternSet::Bitmap { words, count } => {
                let (w, bit) = ((pattern / 64) as usize, 1u64 << (pattern % 64));
                if words[w] & bit == 0 {
                    words[w] |= bit;
                    *count += 1;
                }
            }
            PatternSet::Hashed(set) => {
                set.insert(pattern);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            PatternSet::Bitmap { count, .. } => *count,
            PatternSet::Hashed(set) => set.len(),
        }
    }
}

/// The number of distinct sample-wise patterns of the executor's network on `input` (`n`
/// images, `n <= 64`): one forward pass with batch statistics.
pub fn distinct_neuron_patterns<B: Backend>(
    exec: &mut Executor<'_, B>,
    input: B::Buf,
    n: usize,
) -> usize {
    assert!(
        (1..=SWAP_MAX_IMAGES).contains(&n),
        "SWAP takes 1 to {SWAP_MAX_IMAGES} images, not {n}"
    );
    let be = exec.backend();
    let mut patterns = PatternSet::new(n);
    let mut sink = |block: CodeBlock<'_, B>| {
        if block.layer.is_none() {
            patterns.insert(0); // every unit of a zero-fed module is off for every image
            return;
        }
        let codes = be.download_words(block.codes);
        let per_image = block.units.div_ceil(64);
        for w in 0..per_image {
            let column: Vec<u64> = (0..n).map(|i| codes[i * per_image + w]).collect();
            for bit in 0..(block.units - 64 * w).min(64) {
                let pattern = column
                    .iter()
                    .enumerate()
                    .fold(0u64, |p, (i, word)| p | (((word >> bit) & 1) << i));
                patterns.insert(pattern);
            }
        }
    };
    exec.forward_with_codes(input, n, BnStatistics::Batch, &mut sink);
    patterns.len()
}

/// SWAP of the network `plan` on the first `n` images of `batch`: the mean over `reinits`
/// N(0, 1) re-initialisations (drawn from `seeds`) of the distinct pattern count.
pub fn swap<B: Backend>(
    be: &B,
    plan: &crate::net::Plan,
    batch: &Batch,
    n: usize,
    seeds: Seeds,
    reinits: usize,
) -> f64 {
    let total: usize = (0..reinits)
        .map(|r| {
            let values = gaussian_params(seeds.swap_weights(r), plan);
            let mut exec = Executor::with_values(be, plan, &values);
            distinct_neuron_patterns(&mut exec, upload_images(be, batch, n), n)
        })
        .sum();
    total as f64 / reinits as f64
}

/// `swap_reg`'s regulariser, the released `cal_regular_factor`: a factor
/// exp(-(Θ - mu)^2 / sigma) of the arch's parameter count Θ in thousands (sigma divides
/// the squared gap: it is not a standard deviation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwapRegularizer {
    /// The model size the factor centres on, in thousands of parameters.
    pub mu: f64,
    /// The width of the factor, in squared thousands of parameters.
    pub sigma: f64,
}

impl SwapRegularizer {
    /// The regulariser with these values: mu finite, sigma finite and positive.
    pub fn new(mu: f64, sigma: f64) -> Result<SwapRegularizer, String> {
        if !mu.is_finite() || !sigma.is_finite() || sigma <= 0.0 {
            return Err(format!(
                "swap_reg needs a finite mu and a finite sigma > 0, not mu {mu}, sigma {sigma}"
            ));
        }
        Ok(SwapRegularizer { mu, sigma })
    }

    /// The regulariser of options that come together (`--swap-mu`/`--swap-sigma`,
    /// `swap_mu`/`swap_sigma`): both or neither.
    pub fn from_options(
        mu: Option<f64>,
        sigma: Option<f64>,
    ) -> Result<Option<SwapRegularizer>, String> {
        match (mu, sigma) {
            (None, None) => Ok(None),
            (Some(mu), Some(sigma)) => SwapRegularizer::new(mu, sigma).map(Some),
            _ => Err("swap_reg's mu and sigma come together: give both or neither".into()),
        }
    }

    /// The factor for a network of `params` parameters.
    pub fn factor(&self, params: f64) -> f64 {
        let gap = params / 1e3 - self.mu;
        (-gap * gap / self.sigma).exp()
    }

    /// nasrank's default for a space (the released code has none for NAS-Bench-201, and
    /// the paper's values were not at hand): the factor is 1 at the space's largest
    /// network and 1/e at its smallest, mu = Θmax and sigma = (Θmax - Θmin)^2 under
    /// `config`. It uses no accuracy: only the space's model sizes.
    pub fn space_default(space: Space, config: &MacroConfig) -> SwapRegularizer {
        let (smallest, largest) = match space {
            // Every op but the convs is parameter-free; the convs' params add up per edge.
            Space::Tss => (
                AnyArch::Tss(Arch { ops: [Op::None; 6] }),
                AnyArch::Tss(Arch {
                    ops: [Op::Conv3x3; 6],
                }),
            ),
            Space::Sss => {
                let (narrow, wide) = (SSS_WIDTHS[0], SSS_WIDTHS[SSS_WIDTHS.len() - 1]);
                (
                    AnyArch::Sss(SizeArch::new([narrow; SSS_POSITIONS]).expect("a width")),
                    AnyArch::Sss(SizeArch::new([wide; SSS_POSITIONS]).expect("a width")),
                )
            }
        };
        let (low, high) = (params_of(&smallest, config), params_of(&largest, config));
        let span = (high - low) / 1e3;
        SwapRegularizer {
            mu: high / 1e3,
            sigma: span * span,
        }
    }
}

impl std::fmt::Display for SwapRegularizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mu={} sigma={}", self.mu, self.sigma)
    }
}

/// The SWAP of the arch being scored, computed once for `swap` and `swap_reg`.
#[derive(Clone, Copy)]
struct SwapMean(f64);

fn swap_mean<B: Backend>(arch: &mut ArchScoring<'_, B>) -> f64 {
    arch.shared(|arch| {
        let n = arch.settings.batch_of(Minibatch::Swap);
        SwapMean(swap(
            arch.backend,
            arch.plan,
            arch.data,
            n,
            Seeds(arch.settings.seed),
            SWAP_REINITS,
        ))
    })
    .0
}

/// SWAP (Peng et al.): distinct sample-wise ReLU patterns, mean over 32 N(0, 1) weights.
/// Dead value: none (the first cell's ReLUs still see the stem's output).
pub struct Swap;

impl ScoreDef for Swap {
    const INFO: ScoreInfo = ScoreInfo {
        name: "swap",
        higher_is_better: true,
        // Patterns come from the same ReLU codes as NASWOT's (read once per layer).
        class_key: ClassKey::Codes,
        dead_value: None,
        minibatch: Minibatch::Swap,
        runs: Runs::OwnNetworks,
        max_images: Some(SWAP_MAX_IMAGES),
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        Ok(swap_mean(arch))
    }
}

/// Regularised SWAP: SWAP x [`SwapRegularizer::factor`] of the arch's parameter count,
/// with the settings' regulariser or the space's default. Dead value: none (as SWAP).
pub struct SwapReg;

impl ScoreDef for SwapReg {
    const INFO: ScoreInfo = ScoreInfo {
        name: "swap_reg",
        // The parameter count separates archs that SWAP's codes key joins.
        class_key: ClassKey::Structure,
        ..Swap::INFO
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let regularizer = arch.settings.swap_regularizer_for(arch.arch.space());
        let factor = regularizer.factor(params_of(&arch.arch, &arch.settings.config));
        Ok(swap_mean(arch) * factor)
    }
}
