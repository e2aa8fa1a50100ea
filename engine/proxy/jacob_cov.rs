//! jacob_cov (Mellor et al., 2020, the first NASWOT preprint; as the zero-cost proxies of
//! Abdelfattah et al., ICLR 2021, compute it).
//!
//! `J[i] = d(sum over the batch of every logit) / d(image i)`, flattened: one backward pass
//! with `dlogits = 1`, batch statistics and the full batch-norm gradient (the released code's
//! `y.backward(ones_like(y))` in train mode, so each row also carries the coupling through
//! the batch statistics). `C = corrcoef` of the `n` rows (numpy's: rows centred, divided by
//! their norms); score = `- sum over eigenvalues l of C of (ln(l + 1e-5) + 1 / (l + 1e-5))`.
//!
//! The released code takes `np.linalg.eig` of `C` (general, possibly complex); `C` is
//! symmetric, so here its symmetric eigenvalues (nalgebra, f64). A row with zero variance (a
//! network whose logits ignore the input) makes `C` undefined: the score is NaN, as numpy's.

use super::linalg::symmetric_eigenvalues;
use super::registry::{ArchScoring, Minibatch, Runs, ScoreDef, ScoreInfo, EVERY_SPACE};
use super::upload_images;
use crate::backend::{Backend, BackwardOptions, BnGrad, BnStatistics, Executor, ParamGrads, Real};
use crate::data::Batch;
use crate::space::ClassKey;

/// The regulariser of the eigenvalues in the released code.
pub const JACOB_COV_K: f64 = 1e-5;

/// jacob_cov on the first `n` images of `batch`.
pub fn jacob_cov<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> f64 {
    let j = input_jacobian(exec, batch, n);
    let c = corrcoef(&j, n);
    jacob_cov_from_corr(&c, n)
}

/// `[n][c*h*w]` rows: the gradient of the summed logits with respect to each image.
pub fn input_jacobian<B: Backend>(exec: &mut Executor<'_, B>, batch: &Batch, n: usize) -> Vec<f64> {
    let be = exec.backend();
    let classes = exec.plan().config.classes;
    exec.forward(upload_images(be, batch, n), n, BnStatistics::Batch);
    let ones = be.upload(&vec![B::Real::from_f64_rounded(1.0); n * classes]);
    let options = BackwardOptions {
        bn_grad: BnGrad::Full,
        input_grad: true,
    };
    let grads = exec.backward(ones, &options, ParamGrads::Skip);
    let input = grads.input.expect("input gradient");
    be.download(&input)
        .iter()
        .map(|v| v.to_f64_lossless())
        .collect()
}

/// numpy's `corrcoef` of the `n` rows of `x` (`[n][d]`), `[n][n]`.
pub fn corrcoef(x: &[f64], n: usize) -> Vec<f64> {
    let d = x.len() / n;
    let centred: Vec<Vec<f64>> = x
        .chunks_exact(d)
        .map(|row| {
            let mean = row.iter().sum::<f64>() / d as f64;
            row.iter().map(|v| v - mean).collect()
        })
        .collect();
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
            c[i * n + j] = dot;
            c[j * n + i] = dot;
        }
    }
    let diag: Vec<f64> = (0..n).map(|i| c[i * n + i].sqrt()).collect();
    for i in 0..n {
        for j in 0..n {
            // numpy clips to [-1, 1] after dividing.
            c[i * n + j] = (c[i * n + j] / (diag[i] * diag[j])).clamp(-1.0, 1.0);
        }
    }
    c
}

/// The score from a correlation matrix (`[n][n]`).
pub fn jacob_cov_from_corr(c: &[f64], n: usize) -> f64 {
    if c.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    -symmetric_eigenvalues(c, n)
        .iter()
        .map(|l| (l + JACOB_COV_K).ln() + 1.0 / (l + JACOB_COV_K))
        .sum::<f64>()
}

/// jacob_cov. Dead value NaN: the input Jacobian is zero, its correlation undefined.
pub struct JacobCov;

impl ScoreDef for JacobCov {
    const INFO: ScoreInfo = ScoreInfo {
        name: "jacob_cov",
        higher_is_better: true,
        class_key: ClassKey::Function,
        dead_value: Some(f64::NAN),
        minibatch: Minibatch::Gradient,
        runs: Runs::SharedNetwork,
        max_images: None,
        spaces: EVERY_SPACE,
    };

    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64> {
        let (data, n) = (arch.data, arch.settings.batch_of(Self::INFO.minibatch));
        Ok(jacob_cov(arch.exec(), data, n))
    }
}
