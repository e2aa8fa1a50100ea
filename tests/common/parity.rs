//! Whole-network parity of an f32 backend with `CpuBackend<f32>`: the same plan, the same
//! counter-based initial weights (`Executor::with_init`), the same input; forward (logits,
//! ReLU codes, K_H), backward in every executor mode, and every score through `score_arch`.
//! Shared by the emulated CUDA backend (tests/cuda_emu_backend.rs) and the real one
//! (tests/cuda_gpu_backend.rs).
//!
//! Tolerances. Both sides compute in f32, in different orders (the CPU backend's convs are
//! GEMMs over im2col panels and its reductions run in f32 per thread; the kernels reduce in
//! double and accumulate per output element), so values differ by rounding only: a few
//! units of f32 epsilon (6e-8) per operation, grown by the depth of the network and by the
//! cancellations of batch-norm backward (measured on these networks: at most 6e-5 of a
//! tensor's scale). Tensors are compared entry by entry against `RTOL` times (the entry +
//! the tensor's largest entry), which keeps entries that cancel to near zero from demanding
//! relative accuracy they cannot have; gradients also get a floor of `RTOL` times the
//! largest gradient of the pass, as some parameters' gradients are zero but for rounding
//! (e.g. those whose effect batch normalisation with the full gradient removes: 1e-10 on
//! both sides, with no common digits). ReLU codes and K_H are compared exactly: a
//! pre-activation would have to lie within rounding of zero to flip, which the random
//! inputs here do not produce.
#![allow(dead_code)]

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::{
    Backend, BackwardOptions, BnGrad, BnStatistics, CodeBlock, Executor, ParamGrads, Reduction,
};
use nasrank::data::Batch;
use nasrank::net::init::uniform_stream;
use nasrank::net::Plan;
use nasrank::proxy::naswot::{naswot_kernel, CodeCount};
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{AnyArch, Arch, Cell, MacroConfig, Op, OpSet, SizeArch};

/// Entrywise tolerance of activations and gradients, relative to the tensor's scale.
pub const RTOL: f64 = 3e-4;

/// Channels 2, one cell per stage, 8x8 images, 3 classes: every layer kind, few launches.
pub const TINY: MacroConfig = MacroConfig {
    channels: 2,
    cells_per_stage: 1,
    classes: 3,
    input_size: 8,
    input_channels: 3,
    stem: true,
};

/// The supernet cell with every op on every edge: every layer kind, sums of many inputs.
pub fn supernet_plan() -> Plan {
    let all = OpSet::from_ops(&Op::ALL);
    Plan::build(&Cell { edges: [all; 6] }, &TINY).unwrap()
}

/// `n` images of the plan's input shape, uniform in [-1, 1), with labels.
pub fn batch(config: &MacroConfig, n: usize, seed: u64) -> Batch {
    let (c, s) = (config.input_channels, config.input_size);
    Batch {
        n,
        c,
        h: s,
        w: s,
        images: uniform_stream(seed, 7, n * c * s * s)
            .map(|u| (2.0 * u - 1.0) as f32)
            .collect(),
        labels: (0..n).map(|i| (3 * i + 1) % config.classes).collect(),
    }
}

/// `|got - want| <= rtol * (|want| + max|want|) + floor` entry by entry.
pub fn assert_close(got: &[f32], want: &[f32], rtol: f64, floor: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().map(|&w| f64::from(w).abs()).fold(0.0, f64::max);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (f64::from(g), f64::from(w));
        assert!(
            (g - w).abs() <= rtol * (w.abs() + scale) + floor,
            "{what}[{i}]: got {g}, want {w} (scale {scale})"
        );
    }
}

/// What one forward pass shows: logits and the codes of every ReLU block, in order.
struct Forward {
    logits: Vec<f32>,
    codes: Vec<(Option<usize>, usize, u32, Vec<u64>)>,
}

fn forward<B: Backend<Real = f32>>(
    be: &B,
    plan: &Plan,
    x: &[f32],
    n: usize,
    bn: BnStatistics,
) -> Forward {
    let mut exec = Executor::with_init(be, plan, 3);
    let mut codes = Vec::new();
    let mut sink = |b: CodeBlock<'_, B>| {
        codes.push((b.layer, b.units, b.modules, be.download_words(b.codes)));
    };
    exec.forward_with_codes(be.upload(x), n, bn, &mut sink);
    let logits = be.download(exec.logits());
    be.status().expect("backend status after forward");
    Forward { logits, codes }
}

/// 16-bit activation storage (`rounded`, with `round` the format's rounding) against f32
/// storage (`exact`) on one backend: the logits, themselves stored values, are all values
/// of the format, and the whole network stays within `rtol` of f32 (relative to the
/// largest logit) although every stored activation was rounded on the way.
fn check_storage<B: Backend<Real = f32>>(
    exact: &B,
    rounded: &B,
    round: fn(f32) -> f32,
    rtol: f64,
    what: &str,
) {
    let plan = supernet_plan();
    let n = 4;
    let data = batch(&TINY, n, 1);
    let want = forward(exact, &plan, &data.images, n, BnStatistics::Batch).logits;
    let got = forward(rounded, &plan, &data.images, n, BnStatistics::Batch).logits;
    for &v in &got {
        assert_eq!(
            round(v).to_bits(),
            v.to_bits(),
            "{what}: logit {v} is not stored"
        );
    }
    assert_ne!(got, want, "{what}: no rounding reached the logits");
    assert_close(&got, &want, rtol, 0.0, what);
}

/// [`check_storage`] for IEEE half (`f16`) and bfloat16 (`bf16`) against f32 (`exact`).
pub fn check_storage_formats<B: Backend<Real = f32>>(exact: &B, f16: &B, bf16: &B) {
    check_storage(exact, f16, |v| half::f16::from_f32(v).to_f32(), 1e-2, "f16");
    check_storage(
        exact,
        bf16,
        |v| half::bf16::from_f32(v).to_f32(),
        5e-2,
        "bf16",
    );
}

/// Forward in every batch-norm mode: logits close, codes equal; and K_H equal.
pub fn check_forward<B: Backend<Real = f32>>(be: &B) {
    let cpu = CpuBackend::<f32>::new();
    let plan = supernet_plan();
    let n = 4;
    let data = batch(&TINY, n, 1);
    for bn in [
        BnStatistics::Batch,
        BnStatistics::PerSample,
        BnStatistics::Bypass,
    ] {
        let want = forward(&cpu, &plan, &data.images, n, bn);
        let got = forward(be, &plan, &data.images, n, bn);
        assert_close(
            &got.logits,
            &want.logits,
            RTOL,
            0.0,
            &format!("logits {bn:?}"),
        );
        assert_eq!(got.codes.len(), want.codes.len(), "{bn:?}: code blocks");
        for (g, w) in got.codes.iter().zip(&want.codes) {
            assert_eq!(g, w, "{bn:?}: codes of layer {:?}", w.0);
        }
    }
    let want = naswot_kernel(
        &mut Executor::with_init(&cpu, &plan, 3),
        &data,
        n,
        CodeCount::Paper,
    );
    let got = naswot_kernel(
        &mut Executor::with_init(be, &plan, 3),
        &data,
        n,
        CodeCount::Paper,
    );
    assert_eq!(got, want, "K_H");
    be.status().expect("backend status after K_H");
}

/// The executor's backward modes: batch-norm statistics, gradient through them, what is
/// done with parameter gradients.
#[derive(Clone, Copy, Debug)]
pub enum Grads {
    Skip,
    Batched,
    PerSample,
}

/// Modes that together take every batch-norm mode, both batch-norm gradients and every
/// kind of parameter gradients, each through the primitives it alone uses (all 17 valid
/// combinations would repeat the same primitives at several minutes each under the
/// emulator). Per-sample gradients need decoupled images (per-image statistics, or
/// statistics held constant).
pub fn backward_modes() -> Vec<(BnStatistics, BnGrad, Grads)> {
    use BnGrad::*;
    use BnStatistics::*;
    vec![
        // bn_backward through batch statistics; batched conv/linear weight gradients.
        (Batch, Full, Grads::Batched),
        // Frozen statistics; every per-sample parameter gradient primitive.
        (Batch, FrozenStats, Grads::PerSample),
        // Statistics per image: grouped reductions, in both gradient kinds.
        (PerSample, Full, Grads::PerSample),
        (PerSample, FrozenStats, Grads::Batched),
        // Batch norm as the identity; the input gradient alone.
        (Bypass, Full, Grads::Skip),
    ]
}

/// Parameter gradients (batched: one per parameter; per sample: one `[n][len]` per
/// parameter visit, in order) and the input gradient of one backward pass.
fn backward<B: Backend<Real = f32>>(
    be: &B,
    plan: &Plan,
    data: &Batch,
    (bn, bn_grad, grads): (BnStatistics, BnGrad, Grads),
) -> (Vec<Vec<f32>>, Vec<f32>) {
    let n = data.n;
    let mut exec = Executor::with_init(be, plan, 5);
    exec.forward(be.upload(&data.images), n, bn);
    let classes = plan.config.classes;
    let mut dlogits = be.alloc(n * classes);
    be.softmax_cross_entropy(
        n,
        classes,
        exec.logits(),
        &data.labels,
        Reduction::Sum,
        &mut dlogits,
    );
    let options = BackwardOptions {
        bn_grad,
        input_grad: true,
    };
    let mut per_sample = Vec::new();
    let mut visit = |_: usize, g: &B::Buf| per_sample.push(be.download(g));
    let mode = match grads {
        Grads::Skip => ParamGrads::Skip,
        Grads::Batched => ParamGrads::Batched,
        Grads::PerSample => ParamGrads::PerSample(&mut visit),
    };
    let out = exec.backward(dlogits, &options, mode);
    let mut params: Vec<Vec<f32>> = out
        .params
        .iter()
        .flatten()
        .map(|g| be.download(g))
        .collect();
    params.extend(per_sample);
    let input = be.download(out.input.as_ref().expect("input gradient"));
    be.status().expect("backend status after backward");
    (params, input)
}

/// Backward in every mode: every parameter gradient and the input gradient close.
pub fn check_backward<B: Backend<Real = f32>>(be: &B) {
    let cpu = CpuBackend::<f32>::new();
    let plan = supernet_plan();
    let data = batch(&TINY, 3, 2);
    for mode in backward_modes() {
        let (want_p, want_x) = backward(&cpu, &plan, &data, mode);
        let (got_p, got_x) = backward(be, &plan, &data, mode);
        assert_eq!(got_p.len(), want_p.len(), "{mode:?}: gradients");
        if !matches!(mode.2, Grads::Skip) {
            assert!(!want_p.is_empty(), "{mode:?}: no parameter gradients");
        }
        let largest = want_p
            .iter()
            .flatten()
            .map(|&v| f64::from(v).abs())
            .fold(0.0, f64::max);
        for (i, (g, w)) in got_p.iter().zip(&want_p).enumerate() {
            let what = format!("{mode:?} gradient {i}");
            assert_close(g, w, RTOL, RTOL * largest, &what);
        }
        assert_close(
            &got_x,
            &want_x,
            RTOL,
            0.0,
            &format!("{mode:?} input gradient"),
        );
    }
}

/// A plan's forward (logits close, codes equal, batch statistics) and backward (batched
/// parameter gradients through the batch statistics, and the input gradient) against
/// `CpuBackend<f32>`, on `n` images (networks of any widths: the size space's).
pub fn check_plan<B: Backend<Real = f32>>(be: &B, plan: &Plan, config: &MacroConfig, n: usize) {
    let cpu = CpuBackend::<f32>::new();
    let data = batch(config, n, 4);
    let want = forward(&cpu, plan, &data.images, n, BnStatistics::Batch);
    let got = forward(be, plan, &data.images, n, BnStatistics::Batch);
    assert_close(&got.logits, &want.logits, RTOL, 0.0, "logits");
    assert_eq!(got.codes.len(), want.codes.len(), "code blocks");
    for (g, w) in got.codes.iter().zip(&want.codes) {
        assert_eq!(g, w, "codes of layer {:?}", w.0);
    }
    let mode = (BnStatistics::Batch, BnGrad::Full, Grads::Batched);
    let (want_p, want_x) = backward(&cpu, plan, &data, mode);
    let (got_p, got_x) = backward(be, plan, &data, mode);
    assert_eq!(got_p.len(), want_p.len(), "gradients");
    assert!(!want_p.is_empty(), "no parameter gradients");
    let largest = want_p
        .iter()
        .flatten()
        .map(|&v| f64::from(v).abs())
        .fold(0.0, f64::max);
    for (i, (g, w)) in got_p.iter().zip(&want_p).enumerate() {
        assert_close(g, w, RTOL, RTOL * largest, &format!("gradient {i}"));
    }
    assert_close(&got_x, &want_x, RTOL, 0.0, "input gradient");
}

/// `scores` of `arch` through `score_arch` on both backends, each within its
/// [`score_rtol`] (not GraSP).
pub fn check_some_scores<B: Backend<Real = f32>>(
    be: &B,
    arch: impl Into<AnyArch> + Copy + std::fmt::Display,
    scores: &[Score],
    data: &Batch,
    settings: &ScoreSettings,
) {
    let cpu = CpuBackend::<f32>::new();
    let want = score_arch(&cpu, arch, scores, data, settings).unwrap();
    let got = score_arch(be, arch, scores, data, settings).unwrap();
    for ((&score, &g), &w) in scores.iter().zip(&got).zip(&want) {
        assert!(score != Score::Grasp, "GraSP has its own check");
        let same =
            g == w || (g - w).abs() <= score_rtol(score) * w.abs() || (g.is_nan() && w.is_nan());
        assert!(same, "{arch}: {score}: got {g}, want {w}");
    }
}

/// Issue 24: the NATS-Bench size space's networks, whose widths (8 to 64 in steps of 8) are
/// mostly not multiples of the kernels' 16- and 32-wide tiles nor of a warp: forward and
/// backward ([`check_plan`]) and the scores that run them (AZ-NAS's channel Grams of 8- to
/// 56-channel maps and of pixel-unshuffled input gradients among them), on 8x8 images.
pub fn check_size_space<B: Backend<Real = f32>>(be: &B) {
    let config = MacroConfig {
        classes: 10,
        input_size: 8,
        ..MacroConfig::NB201_CIFAR10
    };
    let mut settings = ScoreSettings::paper_defaults(config);
    settings.set_batch(4);
    let data = batch(&config, 4, 9);
    for widths in ["24:40:8:56:16", "8:8:8:8:8", "56:24:40:8:24"] {
        let arch: SizeArch = widths.parse().unwrap();
        let plan = Plan::build_sized(arch.widths(), config.classes, config.input_size).unwrap();
        check_plan(be, &plan, &config, 3);
        check_some_scores(
            be,
            arch,
            &[
                Score::Naswot,
                Score::Synflow,
                Score::Snip,
                Score::AzExpressivity,
                Score::AzProgressivity,
                Score::AzTrainability,
            ],
            &data,
            &settings,
        );
    }
}

/// Relative tolerance of each score against the CPU's f32 value (GraSP: see
/// [`GRASP_RTOL`]).
pub fn score_rtol(score: Score) -> f64 {
    match score {
        // Functions of ReLU codes and of counts: exact (see the module comment).
        Score::Naswot
        | Score::LinearRegions
        | Score::LinearRegionsNet
        | Score::Params
        | Score::Flops => 0.0,
        // Computed on the f64 CPU backend whatever the backend (proxy/synflow.rs).
        Score::Synflow => 0.0,
        // Smooth functions of f32 activations, gradients and Gram matrices: rounding only
        // (measured: 1e-5 at most, MGM's top eigenvalue; 3e-7 for the others).
        _ => 1e-4,
    }
}

/// GraSP is a central difference of two f32 gradients a small step apart (proxy/grasp.rs):
/// each gradient's rounding is divided by the step, so the f32 score carries an error of
/// its own, larger on tiny networks (grasp.rs measures a few 1e-3, 3e-3 on the tests'
/// networks) and different for every summation order. Both backends' f32 values are
/// therefore compared with the f64 CPU value, each within this relative bound.
pub const GRASP_RTOL: f64 = 5e-2;

/// Every score of the Score enum through `score_arch` on both backends.
pub fn check_scores<B: Backend<Real = f32>>(be: &B, arch: &Arch) {
    let cpu = CpuBackend::<f32>::new();
    let config = MacroConfig {
        classes: 10,
        ..TINY
    };
    let mut settings = ScoreSettings::paper_defaults(config);
    settings.set_batch(4);
    let data = batch(&config, 4, 9);
    let want = score_arch(&cpu, arch, &Score::ALL, &data, &settings).unwrap();
    let got = score_arch(be, arch, &Score::ALL, &data, &settings).unwrap();
    for ((&score, &g), &w) in Score::ALL.iter().zip(&got).zip(&want) {
        if score == Score::Grasp {
            let f64_cpu = CpuBackend::<f64>::new();
            let exact = score_arch(&f64_cpu, arch, &[score], &data, &settings).unwrap()[0];
            for (name, v) in [("this backend", g), ("the f32 CPU", w)] {
                assert!(
                    (v - exact).abs() <= GRASP_RTOL * exact.abs(),
                    "{arch}: grasp on {name}: {v}, f64 CPU {exact} (this backend {g}, f32 CPU {w})"
                );
            }
            continue;
        }
        let same =
            g == w || (g - w).abs() <= score_rtol(score) * w.abs() || (g.is_nan() && w.is_nan());
        assert!(same, "{arch}: {score}: got {g}, want {w}");
    }
}

/// The backend's `draw_params` against the host's draws rounded to f32, bit for bit: every
/// parameter of a network, and ragged lengths (not multiples of a Philox block's 4
/// values), seeds and streams with high bits set, constants, and an empty parameter.
pub fn check_drawn_params<B: Backend<Real = f32>>(be: &B) {
    use nasrank::net::init::{init_params, InitRule};
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let rounded = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();

    let plan = supernet_plan();
    let seed = 0x9e37_79b9_7f4a_7c15;
    let exec = Executor::with_init(be, &plan, seed);
    for ((buf, values), spec) in exec
        .params()
        .iter()
        .zip(init_params(seed, &plan))
        .zip(&plan.params)
    {
        assert_eq!(
            bits(&be.download(buf)),
            bits(&rounded(&values)),
            "{}",
            spec.name
        );
    }

    let uniform = |stream, bound| InitRule::SymmetricUniform { stream, bound };
    let rules = [
        (uniform(7, 0.3), 1),
        (uniform(u64::MAX - 5, 1.0 / 3f64.sqrt()), 5),
        (InitRule::Constant(1.0), 3),
        (uniform(1 << 40, 2.5), 4099),
        (InitRule::Constant(0.0), 0),
        (InitRule::Constant(-0.1), 6),
        (uniform(12, 1e-3), 4),
    ];
    for seed in [0, 1, u64::MAX, 1 << 33] {
        let bufs = be.draw_params(seed, &rules);
        assert_eq!(bufs.len(), rules.len());
        for ((rule, len), buf) in rules.iter().zip(&bufs) {
            assert_eq!(
                bits(&be.download(buf)),
                bits(&rounded(&rule.values(seed, *len))),
                "seed {seed}: {rule:?} x {len}"
            );
        }
    }
    be.status().expect("backend status");
}
