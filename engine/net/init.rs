//! Deterministic, backend-independent initialisation.
//!
//! Every parameter element is drawn from Philox4x32-10 (Salmon et al., SC'11) keyed by
//! the seed and counted by (parameter name hash, element / 4): any backend, in any order,
//! on any thread, draws the same numbers. Distributions are the framework defaults of
//! NAS-Bench-201: conv and linear weights and linear biases ~ U(-1/sqrt(fan_in),
//! 1/sqrt(fan_in)), BN gamma = 1, beta = 0.

use rayon::prelude::*;

use super::plan::{ParamKind, ParamSpec, Plan};

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: a counter-based generator (four 32-bit words per counter).
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// FNV-1a 64-bit hash of a parameter name: the parameter's stream id.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Uniform draws in [0, 1) with 24 random bits (exact in f32), for elements
/// `0..len` of the stream `stream` under `seed`: element e is word e % 4 of the Philox block
/// e / 4 (each block computed once).
pub fn uniform_stream(seed: u64, stream: u64, len: usize) -> impl Iterator<Item = f64> {
    let key = [seed as u32, (seed >> 32) as u32];
    (0..len.div_ceil(4) as u64)
        .flat_map(move |block| {
            philox4x32(
                [
                    block as u32,
                    (block >> 32) as u32,
                    stream as u32,
                    (stream >> 32) as u32,
                ],
                key,
            )
        })
        .take(len)
        .map(|word| f64::from(word >> 8) * (1.0 / (1u32 << 24) as f64))
}

/// How one parameter's initial values are drawn: what a backend needs to draw them itself
/// (the CUDA backend does, in kernels/init.cu, bit for bit as [`InitRule::values`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitRule {
    /// Every element this value.
    Constant(f64),
    /// Element e is `(2u - 1) * bound`, u the e-th draw of [`uniform_stream`] of `stream`:
    /// U(-bound, bound), each step exact in f64 but the product.
    SymmetricUniform { stream: u64, bound: f64 },
}

impl InitRule {
    /// The framework default for a parameter (module docs).
    pub fn of(spec: &ParamSpec) -> InitRule {
        match spec.kind {
            ParamKind::BnGamma => InitRule::Constant(1.0),
            ParamKind::BnBeta => InitRule::Constant(0.0),
            ParamKind::ConvWeight | ParamKind::LinearWeight | ParamKind::LinearBias => {
                InitRule::SymmetricUniform {
                    stream: name_hash(&spec.name),
                    bound: 1.0 / (spec.fan_in as f64).sqrt(),
                }
            }
        }
    }

    /// The first `len` values under `seed`, in f64 (backends round to their type).
    pub fn values(&self, seed: u64, len: usize) -> Vec<f64> {
        match *self {
            InitRule::Constant(value) => vec![value; len],
            InitRule::SymmetricUniform { stream, bound } => uniform_stream(seed, stream, len)
                .map(|u| (2.0 * u - 1.0) * bound)
                .collect(),
        }
    }
}

/// Initial values of one parameter, in f64 (backends round to their type).
pub fn init_param(seed: u64, spec: &ParamSpec) -> Vec<f64> {
    InitRule::of(spec).values(seed, spec.len())
}

/// Initial values of every parameter of a plan, in plan order (drawn in parallel: a GPU
/// backend would otherwise wait on them).
pub fn init_params(seed: u64, plan: &Plan) -> Vec<Vec<f64>> {
    plan.params
        .par_iter()
        .map(|p| init_param(seed, p))
        .collect()
}

/// Standard normal draws (Box-Muller on pairs of [`uniform_stream`] draws) for elements
/// `0..len` of the stream `stream` under `seed`.
pub fn normal_stream(seed: u64, stream: u64, len: usize) -> Vec<f64> {
    let uniforms: Vec<f64> = uniform_stream(seed, stream, 2 * len.div_ceil(2)).collect();
    uniforms
        .chunks_exact(2)
        .flat_map(|pair| {
            // 1 - u lies in (0, 1]: the logarithm stays finite.
            let radius = (-2.0 * (1.0 - pair[0]).ln()).sqrt();
            let angle = std::f64::consts::TAU * pair[1];
            [radius * angle.cos(), radius * angle.sin()]
        })
        .take(len)
        .collect()
}

/// Zen-NAS's initialisation: conv and linear weights ~ N(0, 1), linear bias 0, BN gamma 1,
/// beta 0 (its released `network_weight_gaussian_init`).
pub fn gaussian_params(seed: u64, plan: &Plan) -> Vec<Vec<f64>> {
    plan.params
        .par_iter()
        .map(|spec| match spec.kind {
            ParamKind::ConvWeight | ParamKind::LinearWeight => {
                normal_stream(seed, name_hash(&spec.name), spec.len())
            }
            ParamKind::BnGamma => vec![1.0; spec.len()],
            ParamKind::BnBeta | ParamKind::LinearBias => vec![0.0; spec.len()],
        })
        .collect()
}

/// AZ-NAS's initialisation (its released `kaiming_normal_fanin_init`): conv and linear
/// weights ~ N(0, 2 / fan_in) (Kaiming normal, fan-in mode, ReLU gain), linear bias 0, BN
/// gamma 1, beta 0. The normal draws are [`gaussian_params`]' of the same seed, scaled.
pub fn kaiming_normal_params(seed: u64, plan: &Plan) -> Vec<Vec<f64>> {
    let mut values = gaussian_params(seed, plan);
    for (spec, v) in plan.params.iter().zip(&mut values) {
        if matches!(spec.kind, ParamKind::ConvWeight | ParamKind::LinearWeight) {
            let std = (2.0 / spec.fan_in as f64).sqrt();
            v.iter_mut().for_each(|w| *w *= std);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32_10).
    #[test]
    fn philox_matches_random123_known_answers() {
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    /// Element e is word e % 4 of Philox block e / 4, whatever the stream's length (the
    /// layout every backend and the PyTorch fixtures rely on).
    #[test]
    fn uniform_stream_element_e_is_word_e_mod_4_of_block_e_div_4() {
        let (seed, stream) = (0x1234_5678_9abc_def0u64, 0xfedc_ba98_7654_3210u64);
        let key = [seed as u32, (seed >> 32) as u32];
        for len in [0, 1, 3, 4, 5, 9, 13] {
            let got: Vec<f64> = uniform_stream(seed, stream, len).collect();
            let want: Vec<f64> = (0..len)
                .map(|e| {
                    let block = (e / 4) as u64;
                    let counter = [
                        block as u32,
                        (block >> 32) as u32,
                        stream as u32,
                        (stream >> 32) as u32,
                    ];
                    f64::from(philox4x32(counter, key)[e % 4] >> 8) / f64::from(1u32 << 24)
                })
                .collect();
            assert_eq!(got, want, "len {len}");
        }
    }

    #[test]
    fn uniform_draws_are_in_range_and_roughly_uniform() {
        let draws: Vec<f64> = uniform_stream(7, 3, 40_000).collect();
        assert!(draws.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.003, "variance {var}");
    }

    #[test]
    fn normal_draws_have_the_standard_moments() {
        let draws = normal_stream(3, 9, 40_001);
        assert_eq!(draws.len(), 40_001);
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let within_one = draws.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
        // P(|z| < 1) = 0.6827 for a standard normal.
        assert!((within_one - 0.6827).abs() < 0.01, "{within_one}");
    }

    #[test]
    fn streams_and_seeds_differ() {
        let a: Vec<f64> = uniform_stream(1, 1, 8).collect();
        let b: Vec<f64> = uniform_stream(1, 2, 8).collect();
        let c: Vec<f64> = uniform_stream(2, 1, 8).collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, uniform_stream(1, 1, 8).collect::<Vec<_>>());
    }
}
