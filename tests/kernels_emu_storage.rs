//! The 16-bit activation-storage variants of the kernels (kernels/storage.cuh), under the
//! emulator:
//! - the conversions to and from f32 agree with the `half` crate bit for bit;
//! - every kernel that holds activations, run on IEEE-half or bfloat16 buffers, gives what its
//!   f32 variant gives on the same values, with each activation it writes rounded to the
//!   format (by the `half` crate) and every f32 output (weight gradients, statistics) equal:
//!   the variants differ in how values are loaded and stored, never in the arithmetic.
#![cfg(feature = "emu")]

use half::{bf16, f16};
use nasrank::backend::cuda::emu::{EmuBuf, EmuLauncher};
use nasrank::backend::cuda::launch::StorageLauncher;
use nasrank::backend::cuda::{ops, Arg, LaunchConfig, Launcher, Storage};
use nasrank::backend::{BnGeom, BnGrad, ChannelView, ConvGeom, Reduction};

const L: EmuLauncher = EmuLauncher;

/// Values in [-scale, scale) from the engine's counter-based stream, every 11th an exact
/// zero (the ReLU boundary).
fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    nasrank::net::init::uniform_stream(seed, 2, len)
        .enumerate()
        .map(|(i, u)| {
            if i % 11 == 3 {
                0.0
            } else {
                scale * (2.0 * u - 1.0) as f32
            }
        })
        .collect()
}

fn to_bits(storage: Storage, v: f32) -> u16 {
    match storage {
        Storage::F16 => f16::from_f32(v).to_bits(),
        Storage::Bf16 => bf16::from_f32(v).to_bits(),
        Storage::F32 => unreachable!("16-bit formats only"),
    }
}

fn from_bits(storage: Storage, b: u16) -> f32 {
    match storage {
        Storage::F16 => f16::from_bits(b).to_f32(),
        Storage::Bf16 => bf16::from_bits(b).to_f32(),
        Storage::F32 => unreachable!("16-bit formats only"),
    }
}

/// `v` rounded to `storage` by the `half` crate.
fn round(storage: Storage, v: f32) -> f32 {
    from_bits(storage, to_bits(storage, v))
}

// ---- conversions --------------------------------------------------------------------------

/// Ties, subnormals of both formats, the overflow edges, infinities, signed zero, and a sweep.
fn edge_values() -> Vec<f32> {
    let mut v: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        1.0 + 2f32.powi(-11),       // tie in half: stays 1
        1.0 + 3.0 * 2f32.powi(-11), // tie in half: rounds up to even
        1.0 + 2f32.powi(-8),        // tie in bfloat16
        65504.0,                    // half's largest
        65519.99,                   // rounds to 65504
        65520.0,                    // rounds to inf in half
        -70000.0,
        6.0e-5,               // half subnormal
        6.103515e-5,          // just below half's smallest normal: rounds up to it
        2f32.powi(-25),       // half: tie between 0 and 2^-24
        3.0 * 2f32.powi(-25), // half: tie, to even (2^-23)
        1e-8,                 // below half's smallest subnormal
        f32::MIN_POSITIVE,
        1e-40, // f32 subnormal
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3.389_531_4e38, // bfloat16 rounds to inf
    ];
    let sweep = nasrank::net::init::uniform_stream(3, 7, 4000).enumerate();
    v.extend(sweep.map(|(i, u)| ((u - 0.5) * 2f64.powi((i % 60) as i32 - 30)) as f32));
    v
}

fn launch_elementwise<Ls: Launcher<Buf = EmuBuf>>(
    l: &Ls,
    kernel: &str,
    src: &EmuBuf,
    dst: &mut EmuBuf,
    len: usize,
) {
    let args = &mut [Arg::Buf(src), Arg::BufMut(dst), Arg::I64(len as i64)];
    // SAFETY: src and dst hold `len` values of the kernel's types (sized by the callers).
    unsafe { l.launch(kernel, LaunchConfig::new(4, 64), args) }.unwrap();
}

#[test]
fn conversions_match_the_half_crate_bit_for_bit() {
    let values = edge_values();
    let len = values.len();
    for storage in [Storage::F16, Storage::Bf16] {
        let sl = StorageLauncher::new(&L, storage);
        let src = L.upload(&values).unwrap();
        let mut dst = L.alloc::<u16>(len).unwrap();
        launch_elementwise(&sl, "to_storage", &src, &mut dst, len);
        let got: Vec<u16> = L.download(&dst).unwrap();
        for (&x, &g) in values.iter().zip(&got) {
            assert_eq!(g, to_bits(storage, x), "{storage:?} of {x:e}");
        }
        // A NaN stays a NaN.
        let nan = L.upload(&[f32::NAN, -f32::NAN]).unwrap();
        let mut nan16 = L.alloc::<u16>(2).unwrap();
        launch_elementwise(&sl, "to_storage", &nan, &mut nan16, 2);
        for b in L.download::<u16>(&nan16).unwrap() {
            assert!(from_bits(storage, b).is_nan(), "{storage:?}: {b:#06x}");
        }

        // Every 16-bit pattern back to f32.
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let src = L.upload(&all).unwrap();
        let mut back = L.alloc::<f32>(all.len()).unwrap();
        launch_elementwise(&sl, "from_storage", &src, &mut back, all.len());
        let got: Vec<f32> = L.download(&back).unwrap();
        for (&b, &g) in all.iter().zip(&got) {
            let want = from_bits(storage, b);
            if want.is_nan() {
                assert!(g.is_nan(), "{storage:?} {b:#06x}: {g:e}");
            } else {
                assert_eq!(g.to_bits(), want.to_bits(), "{storage:?} {b:#06x}");
            }
        }
    }
}

#[test]
fn a_launch_names_the_variant_only_for_storage_families() {
    let sl = StorageLauncher::new(&L, Storage::Bf16);
    assert_eq!(sl.storage(), Storage::Bf16);
    // gram.cu holds no activations: its kernels have no variants, and launch as they are.
    let a = L.upload(&[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let mut g = L.alloc::<f64>(4).unwrap();
    ops::gram_accumulate(&sl, 2, 2, &a, &mut g).unwrap();
    assert_eq!(L.download::<f64>(&g).unwrap(), vec![5.0, 11.0, 11.0, 25.0]);
    // A 16-bit activation buffer is half the bytes: an f32-sized one is rejected.
    let x = L.upload(&[1.0f32; 8]).unwrap();
    let mut y = L.alloc::<u16>(8).unwrap();
    assert!(ops::relu_forward(&sl, 8, &x, &mut y).is_err());
}

// ---- every activation kernel: 16-bit variant against f32 variant ---------------------------

/// One run of the kernels on one launcher: activation inputs are uploaded in its storage,
/// outputs come back as f32 with a flag saying whether they are activations.
struct Run<'a, Ls> {
    l: &'a Ls,
    outputs: Vec<(String, bool, Vec<f32>)>,
}

impl<Ls: Launcher<Buf = EmuBuf>> Run<'_, Ls> {
    fn act(&self, v: &[f32]) -> EmuBuf {
        match self.l.storage() {
            Storage::F32 => L.upload(v).unwrap(),
            s => {
                let bits: Vec<u16> = v.iter().map(|&x| to_bits(s, x)).collect();
                L.upload(&bits).unwrap()
            }
        }
    }

    fn param(&self, v: &[f32]) -> EmuBuf {
        L.upload(v).unwrap()
    }

    fn zero_params(&self, len: usize) -> EmuBuf {
        L.alloc::<f32>(len).unwrap()
    }

    fn keep_act(&mut self, what: &str, b: &EmuBuf) {
        let values = match self.l.storage() {
            Storage::F32 => L.download::<f32>(b).unwrap(),
            s => L
                .download::<u16>(b)
                .unwrap()
                .into_iter()
                .map(|x| from_bits(s, x))
                .collect(),
        };
        self.outputs.push((what.to_string(), true, values));
    }

    fn keep_param(&mut self, what: &str, b: &EmuBuf) {
        let values = L.download::<f32>(b).unwrap();
        self.outputs.push((what.to_string(), false, values));
    }
}

/// Inputs as the 16-bit format holds them, so that both runs see the same values.
fn inputs(storage: Storage, len: usize, seed: u64, scale: f32) -> Vec<f32> {
    values(len, seed, scale)
        .into_iter()
        .map(|v| round(storage, v))
        .collect()
}

fn conv_geom(cin: usize, cout: usize, (h, w): (usize, usize), k: usize, stride: usize) -> ConvGeom {
    ConvGeom {
        cin,
        cout,
        h,
        w,
        k,
        stride,
        pad: k / 2,
    }
}

/// Every kernel of a storage family, on ragged shapes; `s` is the format whose values the
/// inputs take (the run itself may be f32).
fn run_all<Ls: Launcher<Buf = EmuBuf>>(l: &Ls, s: Storage) -> Vec<(String, bool, Vec<f32>)> {
    let mut r = Run {
        l,
        outputs: Vec::new(),
    };
    // Convolutions: a <= 16-channel forward (its own tile) and a wider one, stride 1 and 2;
    // the batched weight gradient long enough to be split into ranges.
    for (i, (g, n)) in [
        (conv_geom(3, 5, (7, 9), 3, 1), 3),
        (conv_geom(17, 33, (5, 6), 3, 2), 2),
        (conv_geom(9, 20, (11, 13), 1, 1), 3),
    ]
    .into_iter()
    .enumerate()
    {
        let x = r.act(&inputs(s, n * g.in_len(), 10 + i as u64, 2.0));
        let dy = r.act(&inputs(s, n * g.out_len(), 20 + i as u64, 1.0));
        let w = r.param(&values(g.weight_len(), 30 + i as u64, 0.5));
        let mut y = r.act(&vec![0.0; n * g.out_len()]);
        ops::conv_forward(l, &g, n, &x, &w, &mut y).unwrap();
        r.keep_act(&format!("conv{i} forward"), &y);
        // Backward-data adds to what dx holds.
        let mut dx = r.act(&inputs(s, n * g.in_len(), 40 + i as u64, 1.0));
        ops::conv_backward_data(l, &g, n, &dy, &w, &mut dx, true).unwrap();
        r.keep_act(&format!("conv{i} backward-data"), &dx);
        let mut dw = r.param(&values(g.weight_len(), 50 + i as u64, 0.5));
        ops::conv_backward_weight(l, &g, n, &x, &dy, &mut dw, true).unwrap();
        r.keep_param(&format!("conv{i} backward-weight"), &dw);
        let mut per = r.zero_params(n * g.weight_len());
        ops::conv_weight_grad_per_sample(l, &g, n, &x, &dy, &mut per).unwrap();
        r.keep_param(&format!("conv{i} per-sample"), &per);
    }

    // Batch norm, batch and grouped statistics, both gradient modes.
    for (i, g) in [
        BnGeom {
            n: 4,
            c: 3,
            hw: 35,
            group: 4,
        },
        BnGeom {
            n: 6,
            c: 5,
            hw: 9,
            group: 2,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let len = g.n * g.c * g.hw;
        let pairs = g.groups() * g.c;
        let x = r.act(&inputs(s, len, 60 + i as u64, 3.0));
        let dy = r.act(&inputs(s, len, 70 + i as u64, 1.0));
        let gamma = r.param(&values(g.c, 80 + i as u64, 1.0));
        let beta = r.param(&values(g.c, 90 + i as u64, 1.0));
        let mut y = r.act(&vec![0.0; len]);
        let (mut mean, mut inv_std) = (r.zero_params(pairs), r.zero_params(pairs));
        ops::bn_forward(
            l,
            &g,
            1e-5,
            &x,
            &gamma,
            &beta,
            &mut y,
            &mut mean,
            &mut inv_std,
        )
        .unwrap();
        r.keep_act(&format!("bn{i} forward"), &y);
        r.keep_param(&format!("bn{i} mean"), &mean);
        r.keep_param(&format!("bn{i} inv_std"), &inv_std);
        for mode in [BnGrad::Full, BnGrad::FrozenStats] {
            let mut dx = r.act(&inputs(s, len, 100 + i as u64, 1.0));
            let (mut dgamma, mut dbeta) = (r.zero_params(g.c), r.zero_params(g.c));
            ops::bn_backward(
                l,
                &g,
                mode,
                &x,
                &gamma,
                &mean,
                &inv_std,
                &dy,
                Some((&mut dx, true)),
                &mut dgamma,
                &mut dbeta,
                true,
            )
            .unwrap();
            r.keep_act(&format!("bn{i} {mode:?} dx"), &dx);
            r.keep_param(&format!("bn{i} {mode:?} dgamma"), &dgamma);
            r.keep_param(&format!("bn{i} {mode:?} dbeta"), &dbeta);
            let mut dx = r.act(&vec![0.0; len]);
            ops::bn_backward_data(l, &g, mode, &x, &gamma, &mean, &inv_std, &dy, &mut dx, true)
                .unwrap();
            r.keep_act(&format!("bn{i} {mode:?} data-only dx"), &dx);
        }
        let (mut dgamma, mut dbeta) = (r.zero_params(g.n * g.c), r.zero_params(g.n * g.c));
        ops::bn_param_grad_per_sample(l, &g, &x, &mean, &inv_std, &dy, &mut dgamma, &mut dbeta)
            .unwrap();
        r.keep_param(&format!("bn{i} per-sample dgamma"), &dgamma);
        r.keep_param(&format!("bn{i} per-sample dbeta"), &dbeta);
    }

    // ReLU and sign codes (units not a multiple of 64).
    let (n, units) = (3, 150);
    let x = r.act(&inputs(s, n * units, 110, 1.0));
    let dy = r.act(&inputs(s, n * units, 111, 1.0));
    let mut y = r.act(&vec![0.0; n * units]);
    ops::relu_forward(l, n * units, &x, &mut y).unwrap();
    r.keep_act("relu forward", &y);
    let mut dx = r.act(&inputs(s, n * units, 112, 1.0));
    ops::relu_backward(l, n * units, &x, &dy, &mut dx, true).unwrap();
    r.keep_act("relu backward", &dx);
    let words = units.div_ceil(64);
    let mut codes = L.alloc::<u64>(n * words).unwrap();
    let mut fused = r.act(&vec![0.0; n * units]);
    ops::pack_signs(l, n, units, &x, Some(&mut fused), &mut codes).unwrap();
    r.keep_act("relu_forward_pack y", &fused);
    let code_values = L.download::<u64>(&codes).unwrap();
    r.outputs.push((
        "codes".into(),
        false,
        code_values.iter().map(|&c| c as f32).collect(),
    ));
    // Each bit checked, not only the word converted to f32.
    for (w, &c) in code_values.iter().enumerate() {
        r.outputs.push((
            format!("code word {w}"),
            false,
            (0..64).map(|b| ((c >> b) & 1) as f32).collect(),
        ));
    }

    // Pools on odd planes.
    let (n, c, h, w) = (2, 3, 7, 5);
    let x = r.act(&inputs(s, n * c * h * w, 120, 1.0));
    let dy3 = r.act(&inputs(s, n * c * h * w, 121, 1.0));
    let dy2 = r.act(&inputs(s, n * c * (h / 2) * (w / 2), 122, 1.0));
    let dyg = r.act(&inputs(s, n * c, 123, 1.0));
    let mut y = r.act(&vec![0.0; n * c * h * w]);
    ops::avgpool3x3_forward(l, (n, c, h, w), &x, &mut y).unwrap();
    r.keep_act("avgpool3x3 forward", &y);
    let mut dx = r.act(&inputs(s, n * c * h * w, 124, 1.0));
    ops::avgpool3x3_backward(l, (n, c, h, w), &dy3, &mut dx, true).unwrap();
    r.keep_act("avgpool3x3 backward", &dx);
    let mut y = r.act(&vec![0.0; n * c * (h / 2) * (w / 2)]);
    ops::avgpool2x2_forward(l, (n, c, h, w), &x, &mut y).unwrap();
    r.keep_act("avgpool2x2 forward", &y);
    let mut dx = r.act(&inputs(s, n * c * h * w, 125, 1.0));
    ops::avgpool2x2_backward(l, (n, c, h, w), &dy2, &mut dx, true).unwrap();
    r.keep_act("avgpool2x2 backward", &dx);
    let mut y = r.act(&vec![0.0; n * c]);
    ops::global_avgpool_forward(l, (n, c, h * w), &x, &mut y).unwrap();
    r.keep_act("global avgpool forward", &y);
    let mut dx = r.act(&inputs(s, n * c * h * w, 126, 1.0));
    ops::global_avgpool_backward(l, (n, c, h * w), &dyg, &mut dx, true).unwrap();
    r.keep_act("global avgpool backward", &dx);

    // Linear layer and loss.
    let (n, fin, fout) = (5, 37, 10);
    let x = r.act(&inputs(s, n * fin, 130, 1.0));
    let w = r.param(&values(fout * fin, 131, 0.5));
    let b = r.param(&values(fout, 132, 0.5));
    let dy = r.act(&inputs(s, n * fout, 133, 1.0));
    let mut y = r.act(&vec![0.0; n * fout]);
    ops::linear_forward(l, n, fin, fout, &x, &w, &b, &mut y).unwrap();
    r.keep_act("linear forward", &y);
    let mut dx = r.act(&inputs(s, n * fin, 134, 1.0));
    let (mut dw, mut db) = (r.param(&values(fout * fin, 135, 0.5)), r.zero_params(fout));
    ops::linear_backward(
        l,
        n,
        fin,
        fout,
        &x,
        &w,
        &dy,
        Some(&mut dx),
        &mut dw,
        &mut db,
    )
    .unwrap();
    r.keep_act("linear backward dx", &dx);
    r.keep_param("linear backward dw", &dw);
    r.keep_param("linear backward db", &db);
    let (mut dw, mut db) = (r.zero_params(n * fout * fin), r.zero_params(n * fout));
    ops::linear_grad_per_sample(l, n, fin, fout, &x, &dy, &mut dw, &mut db).unwrap();
    r.keep_param("linear per-sample dw", &dw);
    r.keep_param("linear per-sample db", &db);
    let logits = r.act(&inputs(s, n * fout, 136, 4.0));
    let labels: Vec<usize> = (0..n).map(|i| (3 * i + 1) % fout).collect();
    let mut dlogits = r.act(&vec![0.0; n * fout]);
    let loss =
        ops::softmax_cross_entropy(l, n, fout, &logits, &labels, Reduction::Mean, &mut dlogits)
            .unwrap();
    r.keep_act("softmax dlogits", &dlogits);
    r.outputs.push(("loss".into(), false, vec![loss]));

    // Elementwise helpers.
    let len = 77;
    let src = r.act(&inputs(s, len, 140, 1.0));
    let mut dst = r.act(&inputs(s, len, 141, 1.0));
    ops::add_assign(l, len, &mut dst, &src).unwrap();
    r.keep_act("add_assign", &dst);
    let mut wide = r.act(&inputs(s, 2 * len, 142, 1.0));
    ops::copy_into(l, len, &src, &mut wide, 30).unwrap();
    r.keep_act("copy_into", &wide);

    // Whole-tensor sums of activations (f64 out, compared bit for bit as its f32 halves).
    let (rows, len) = (37, 45);
    let a_rows = r.act(&inputs(s, rows * len, 150, 2.0));
    let b_rows = r.act(&inputs(s, rows * len, 151, 1.0));
    let mut out = L.upload(&[0.25f64, 0.0]).unwrap();
    ops::row_dot_squares(l, (rows, len), &a_rows, &b_rows, &mut out, 1).unwrap();
    r.keep_param("row_dot_squares", &out);

    // Channel statistics (f64 out): a pixel-unshuffled map against a plain one, 3 images.
    let (n, view_a, view_b) = (
        3,
        ChannelView::unshuffled(5, 6, 4, 2),
        ChannelView::plain(11, 6),
    );
    let a = r.act(&inputs(s, n * view_a.image_len(), 160, 2.0));
    let b = r.act(&inputs(s, n * view_b.image_len(), 161, 1.0));
    let mut out = L.upload(&vec![0.0f64; 2 * view_a.channels()]).unwrap();
    ops::channel_sums(l, (&a, view_a), n, &mut out, 0).unwrap();
    r.keep_param("channel_sums", &out);
    for centred in [false, true] {
        let mut out = L
            .upload(&vec![0.0f64; view_a.channels() * view_b.channels()])
            .unwrap();
        ops::channel_gram(l, (&a, view_a), (&b, view_b), n, centred, &mut out, 0).unwrap();
        r.keep_param(&format!("channel_gram centred {centred}"), &out);
    }
    // Half of the values equal a_rows' (the count is of the 16-bit values where stored so).
    let mixed: Vec<f32> = inputs(s, rows * len, 150, 2.0)
        .into_iter()
        .zip(inputs(s, rows * len, 151, 2.0))
        .enumerate()
        .map(|(i, (x, y))| if i % 2 == 0 { x } else { y })
        .collect();
    let mut out = L.upload(&[0.0f64]).unwrap();
    ops::count_unequal(l, rows * len, &a_rows, &r.act(&mixed), &mut out, 0).unwrap();
    r.keep_param("count_unequal", &out);
    r.outputs
}

#[test]
fn every_activation_kernel_in_16_bits_rounds_what_f32_computes() {
    for storage in [Storage::F16, Storage::Bf16] {
        let want = run_all(&L, storage);
        let got = run_all(&StorageLauncher::new(&L, storage), storage);
        assert_eq!(got.len(), want.len());
        let mut rounded_somewhere = false;
        for ((what, is_act, g), (_, _, w)) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "{storage:?} {what}: length");
            for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                let w_stored = if *is_act { round(storage, w) } else { w };
                rounded_somewhere |= *is_act && w_stored != w;
                assert_eq!(
                    g.to_bits(),
                    w_stored.to_bits(),
                    "{storage:?} {what}[{i}]: got {g:e}, f32 computes {w:e} (stored {w_stored:e})"
                );
            }
        }
        assert!(rounded_somewhere, "{storage:?}: no output needed rounding");
    }
}
