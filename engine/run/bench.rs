//! Benchmarks on a backend: every primitive at NAS-Bench-201's stage shapes, and each
//! score per arch on the ordinary scoring path. Timings only; front ends print them.

use super::device::AnyBackend;
use super::RunError;
use crate::backend::cuda::Storage;
use crate::backend::{Backend, BnGeom, BnGrad, ConvGeom, Real};
use crate::data::Batch;
use crate::proxy::scorer::{score_arch, ScoreSettings};
use crate::proxy::Score;
use crate::space::AnyArch;
use crate::with_backend;
use std::time::Instant;

/// [`kernel_timings`] on the backend inside `be`.
pub fn kernels(be: &AnyBackend, n: usize, repeat: u32, storage: Storage) -> Vec<KernelTiming> {
    with_backend!(be, be => kernel_timings(be, n, repeat, storage))
}

/// One score's seconds on one arch.
pub struct ScoreTiming {
    pub index: usize,
    pub arch: AnyArch,
    pub score: Score,
    /// The median of `repeat` runs after a warm-up, each to the backend's completion.
    pub seconds: f64,
}

/// Times each score alone on each arch (the scorer's ordinary path: plan, weights, the
/// score's passes), handing each timing to `report` as it is known.
pub fn scores(
    be: &AnyBackend,
    archs: &[(usize, AnyArch)],
    scores: &[Score],
    batch: &Batch,
    settings: &ScoreSettings,
    repeat: u32,
    report: &mut dyn FnMut(ScoreTiming),
) -> Result<(), RunError> {
    with_backend!(be, be => {
        for &(index, arch) in archs {
            for &score in scores {
                let mut failure = None;
                let seconds = median_seconds(be, repeat, || {
                    if let Err(e) = score_arch(be, arch, &[score], batch, settings) {
                        failure = Some(e);
                    }
                });
                if let Some(e) = failure {
                    return Err(RunError::Failed(e.context(format!("scoring arch {index}"))));
                }
                report(ScoreTiming { index, arch, score, seconds });
            }
        }
        Ok(())
    })
}

/// The median of `repeat` timed runs of `f`, after one warm-up run; each run ends when the
/// backend has finished its work (a GPU's queued kernels included).
pub fn median_seconds<B: Backend>(be: &B, repeat: u32, mut f: impl FnMut()) -> f64 {
    f();
    be.synchronize();
    let mut t: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            f();
            be.synchronize();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// One primitive's timing.
pub struct KernelTiming {
    pub kernel: String,
    pub shape: String,
    pub seconds: f64,
    /// Floating-point operations per call, where the kernel is arithmetic.
    pub flops: Option<f64>,
    /// Bytes read and written per call (each operand once).
    pub bytes: f64,
}

/// Uniform values in [-1, 1], uploaded as they are (parameters, per-sample gradients).
fn random<B: Backend>(be: &B, len: usize, seed: u64) -> B::Buf {
    let host: Vec<B::Real> = crate::net::init::uniform_stream(seed, 1, len)
        .map(|u| B::Real::from_f64_rounded(2.0 * u - 1.0))
        .collect();
    be.upload(&host)
}

/// [`random`] values `[n][c][hw][hw]` smoothed by a 3x3 average pool: a primitive's
/// output, so held in the backend's activation storage (an upload is read as an
/// activation through a converted copy, which the timings must not include).
fn random_activation<B: Backend>(be: &B, n: usize, c: usize, hw: usize, seed: u64) -> B::Buf {
    let uploaded = random(be, n * c * hw * hw, seed);
    let mut x = be.alloc(n * c * hw * hw);
    be.avgpool3x3_forward(n, c, hw, hw, &uploaded, &mut x);
    be.release(uploaded);
    x
}

/// Every primitive at NB-201's three stage shapes (C=16@32x32, 32@16x16, 64@8x8), `n`
/// images per call, activations held in `storage` (parameters, statistics and gradient
/// Gram inputs in the backend's scalar).
pub fn kernel_timings<B: Backend>(
    be: &B,
    n: usize,
    repeat: u32,
    storage: Storage,
) -> Vec<KernelTiming> {
    let size = std::mem::size_of::<B::Real>();
    // Bytes of an activation, and of a parameter (or per-sample gradient).
    let act = if storage == Storage::F32 {
        size
    } else {
        storage.value_bytes()
    };
    let mut out = Vec::new();
    let mut push = |kernel: &str, shape: String, seconds: f64, flops: Option<f64>, bytes: usize| {
        out.push(KernelTiming {
            kernel: kernel.to_string(),
            shape,
            seconds,
            flops,
            bytes: bytes as f64,
        })
    };
    for (c, hw) in [(16, 32), (32, 16), (64, 8)] {
        let shape = format!("{n}x{c}x{hw}x{hw}");
        let len = n * c * hw * hw;
        let x = random_activation(be, n, c, hw, 1);
        let dy = random_activation(be, n, c, hw, 2);
        let mut y = be.alloc(len);
        let mut dx = be.alloc(len);
        for k in [3, 1] {
            let g = ConvGeom {
                cin: c,
                cout: c,
                h: hw,
                w: hw,
                k,
                stride: 1,
                pad: k / 2,
            };
            let w = random(be, g.weight_len(), 3);
            let mut dw = be.alloc(g.weight_len());
            let flops = Some(2.0 * (g.macs() * n) as f64);
            let bytes = 2 * len * act + g.weight_len() * size;
            let name = format!("conv{k}x{k}");
            let t = median_seconds(be, repeat, || {
                be.conv_forward(&g, n, &x, &w, &mut y);
            });
            push(&format!("{name} forward"), shape.clone(), t, flops, bytes);
            let t = median_seconds(be, repeat, || {
                be.conv_backward_data(&g, n, &dy, &w, &mut dx);
            });
            push(
                &format!("{name} backward-data"),
                shape.clone(),
                t,
                flops,
                bytes,
            );
            let t = median_seconds(be, repeat, || {
                be.conv_backward_weight(&g, n, &x, &dy, &mut dw);
            });
            push(
                &format!("{name} backward-weight"),
                shape.clone(),
                t,
                flops,
                bytes,
            );
        }
        let bn = BnGeom {
            n,
            c,
            hw: hw * hw,
            group: n,
        };
        let gamma = random(be, c, 4);
        let beta = random(be, c, 5);
        let (mut mean, mut inv_std) = (be.alloc(c), be.alloc(c));
        let (mut dgamma, mut dbeta) = (be.alloc(c), be.alloc(c));
        let t = median_seconds(be, repeat, || {
            be.bn_forward(
                &bn,
                1e-5,
                &x,
                &gamma,
                &beta,
                &mut y,
                &mut mean,
                &mut inv_std,
            );
        });
        push("batch norm forward", shape.clone(), t, None, 2 * len * act);
        let t = median_seconds(be, repeat, || {
            be.bn_backward(
                &bn,
                BnGrad::Full,
                &x,
                &gamma,
                &mean,
                &inv_std,
                &dy,
                Some(&mut dx),
                &mut dgamma,
                &mut dbeta,
            );
        });
        push("batch norm backward", shape.clone(), t, None, 3 * len * act);
        let t = median_seconds(be, repeat, || {
            be.avgpool3x3_forward(n, c, hw, hw, &x, &mut y);
        });
        push(
            "avg pool 3x3 forward",
            shape.clone(),
            t,
            Some(9.0 * len as f64),
            2 * len * act,
        );
        let t = median_seconds(be, repeat, || {
            be.avgpool3x3_backward(n, c, hw, hw, &dy, &mut dx);
        });
        push(
            "avg pool 3x3 backward",
            shape.clone(),
            t,
            Some(9.0 * len as f64),
            2 * len * act,
        );
        let mut half = be.alloc(len / 4);
        let t = median_seconds(be, repeat, || {
            be.avgpool2x2_forward(n, c, hw, hw, &x, &mut half);
        });
        push(
            "avg pool 2x2 forward",
            shape.clone(),
            t,
            Some(len as f64),
            (len + len / 4) * act,
        );
        let units = c * hw * hw;
        let words = units.div_ceil(64);
        let mut codes = be.alloc_words(n * words);
        let t = median_seconds(be, repeat, || {
            be.relu_forward(&x, &mut y);
            be.pack_signs(&y, n, units, &mut codes);
        });
        // ReLU reads and writes the tensor, packing reads it and writes n * words words.
        let code_bytes = n * words * 8;
        push(
            "relu + code packing",
            shape.clone(),
            t,
            None,
            3 * len * act + code_bytes,
        );
        let mut k = be.alloc_words(n * n);
        let t = median_seconds(be, repeat, || {
            be.hamming_gram_accumulate(&codes, n, units, 1, &mut k);
        });
        // Counted as one operation per bit pair (XOR and popcount over the codes).
        push(
            "hamming gram",
            format!("{n}x{units} bits"),
            t,
            Some((n * n * units) as f64),
            code_bytes,
        );
    }
    // Per-image gradients of a 16-channel NB-201 network's size (the gradient Gram matrix
    // of NTK, MGM): n rows of 2^17 values.
    let len = 1 << 17;
    let grads = random(be, n * len, 6);
    let mut g = be.alloc_acc(n * n);
    let t = median_seconds(be, repeat, || {
        be.gram_accumulate(&grads, n, len, &mut g);
    });
    push(
        "gradient gram",
        format!("{n}x{len}"),
        t,
        Some(2.0 * (n * n * len) as f64),
        n * len * size,
    );
    out
}

#[cfg(all(test, feature = "emu"))]
mod tests {
    use super::*;
    use crate::backend::cuda::emu::EmuLauncher;
    use crate::backend::cuda::CudaBackend;

    /// GB/s counts an activation at its storage's bytes and a parameter at 4: the rows'
    /// bytes in bf16 against those in f32, operand by operand.
    #[test]
    fn kernel_bytes_count_activations_in_their_storage() {
        let n = 1;
        let f32s = kernel_timings(&CudaBackend::new(EmuLauncher::new()), n, 1, Storage::F32);
        let bf16 = CudaBackend::new(EmuLauncher::new()).with_storage(Storage::Bf16);
        let halves = kernel_timings(&bf16, n, 1, Storage::Bf16);
        assert_eq!(f32s.len(), halves.len());
        let bytes = |rows: &[KernelTiming], kernel: &str, shape: &str| {
            rows.iter()
                .find(|t| t.kernel == kernel && t.shape == shape)
                .unwrap_or_else(|| panic!("no row {kernel} {shape}"))
                .bytes
        };
        let len = (16 * 32 * 32) as f64;
        let shape = "1x16x32x32";
        let weights = (16 * 16 * 9) as f64;
        assert_eq!(
            bytes(&f32s, "conv3x3 forward", shape),
            4.0 * (2.0 * len + weights)
        );
        assert_eq!(
            bytes(&halves, "conv3x3 forward", shape),
            2.0 * 2.0 * len + 4.0 * weights
        );
        assert_eq!(
            bytes(&halves, "batch norm backward", shape),
            2.0 * 3.0 * len
        );
        // Codes are words whatever the storage; per-sample gradients stay f32.
        let codes = 8.0 * (len / 64.0);
        assert_eq!(
            bytes(&halves, "relu + code packing", shape),
            6.0 * len + codes
        );
        assert_eq!(
            bytes(&halves, "hamming gram", "1x16384 bits"),
            bytes(&f32s, "hamming gram", "1x16384 bits")
        );
        assert_eq!(bytes(&halves, "gradient gram", "1x131072"), 4.0 * 131072.0);
    }
}
