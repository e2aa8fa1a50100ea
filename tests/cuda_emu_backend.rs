//! `CudaBackend` on the emulated launcher against `CpuBackend<f32>`: its own primitives
//! (buffers, pool, sticky errors), then whole networks and every score
//! (tests/common/parity.rs). Configurations are tiny: the emulator runs every CUDA thread
//! as a fiber on one host thread.
#![cfg(feature = "emu")]

#[path = "common/parity.rs"]
mod parity;

use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::cuda::emu::EmuLauncher;
use nasrank::backend::cuda::{CountingLauncher, CudaBackend, CudaBuf, DeviceCounts, Storage};
use nasrank::backend::{Backend, BackwardOptions, BnStatistics, ConvGeom, Executor, ParamGrads};
use nasrank::net::Plan;
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{arch_of_index, Arch, Cell, MacroConfig};

fn emu() -> CudaBackend<EmuLauncher> {
    CudaBackend::new(EmuLauncher::new())
}

fn values(len: usize, seed: u64) -> Vec<f32> {
    nasrank::net::init::uniform_stream(seed, 1, len)
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect()
}

#[test]
fn buffer_primitives_match_cpu() {
    let (be, cpu) = (emu(), CpuBackend::<f32>::new());
    for len in [1, 5, 300, 1000] {
        let (a, b) = (values(len, 1), values(len, 2));
        assert_eq!(be.download(&be.upload(&a)), a, "round trip {len}");
        assert_eq!(be.download(&be.alloc(len)), vec![0.0; len], "alloc {len}");

        let (mut d, mut w) = (be.upload(&a), cpu.upload(&a));
        be.add_assign(&mut d, &be.upload(&b));
        cpu.add_assign(&mut w, &b);
        assert_eq!(be.download(&d), w, "add_assign {len}");

        be.copy(&be.upload(&b), &mut d);
        assert_eq!(be.download(&d), b, "copy {len}");
        be.fill_zero(&mut d);
        assert_eq!(be.download(&d), vec![0.0; len], "fill_zero {len}");

        let (mut d, mut w) = (be.upload(&values(len + 9, 3)), values(len + 9, 3));
        be.copy_into(&be.upload(&b), &mut d, 4);
        cpu.copy_into(&b, &mut w, 4);
        assert_eq!(be.download(&d), w, "copy_into {len}");
        assert_eq!(be.buf_len(&d), len + 9);
    }
    // Many copies at once, into a fresh destination and a written one.
    let (a, b) = (values(7, 5), values(300, 6));
    let (a_dev, b_dev) = (be.upload(&a), be.upload(&b));
    let (mut fresh, mut written) = (be.alloc(20), be.upload(&values(310, 7)));
    be.copy_into_many(&mut [(&a_dev, &mut fresh, 11), (&b_dev, &mut written, 9)]);
    let (mut fresh_cpu, mut written_cpu) = (vec![0.0; 20], values(310, 7));
    cpu.copy_into_many(&mut [(&a, &mut fresh_cpu, 11), (&b, &mut written_cpu, 9)]);
    assert_eq!(be.download(&fresh), fresh_cpu, "copy_into_many, fresh");
    assert_eq!(
        be.download(&written),
        written_cpu,
        "copy_into_many, written"
    );
    assert_eq!(be.download_words(&be.alloc_words(3)), vec![0; 3]);
    assert_eq!(be.download_acc(&be.alloc_acc(2)), vec![0.0; 2]);
    assert!(be.status().is_ok());
}

#[test]
fn released_buffers_are_pooled_by_size_and_come_back_zeroed() {
    let be = emu();
    let buf = be.upload(&values(100, 4));
    be.release(buf);
    assert_eq!(be.pooled_bytes(), 400);
    // Another size does not take it.
    let mut other = be.alloc(99);
    let src = be.upload(&values(99, 5));
    be.add_assign(&mut other, &src);
    assert_eq!(be.pooled_bytes(), 400);
    // A dropped buffer's memory goes back as a released one's does.
    drop(src);
    assert_eq!(be.pooled_bytes(), 400 + 396);
    // A fresh buffer reads as zeros and takes memory only when first written.
    let mut again = be.alloc(100);
    assert_eq!(be.download(&again), vec![0.0; 100]);
    assert_eq!(
        be.pooled_bytes(),
        400 + 396,
        "memory taken before the first write"
    );
    let x = be.upload(&values(100, 6));
    assert_eq!(
        be.pooled_bytes(),
        396,
        "the upload did not reuse the released memory"
    );
    be.add_assign(&mut again, &x);
    assert_eq!(be.pooled_bytes(), 396, "memory of another size taken");
    assert_eq!(
        be.download(&again),
        be.download(&x),
        "the new memory was not zeroed before adding"
    );
    assert!(be.status().is_ok());
}

#[test]
fn sixteen_bit_storage_holds_activations_in_half_the_bytes_and_parameters_in_f32() {
    let cpu = CpuBackend::<f32>::new();
    let bf16 = |v: f32| half::bf16::from_f32(v).to_f32();
    let be = emu().with_storage(Storage::Bf16);
    let (g, n) = (
        ConvGeom {
            cin: 3,
            cout: 5,
            h: 6,
            w: 7,
            k: 3,
            stride: 1,
            pad: 1,
        },
        2,
    );
    let xs = values(n * g.in_len(), 7);
    let ws = values(g.weight_len(), 8);
    // Uploads are f32; the convolution reads x as an activation, i.e. rounded to bf16.
    let (x, w) = (be.upload(&xs), be.upload(&ws));
    let mut y = be.alloc(n * g.out_len());
    be.conv_forward(&g, n, &x, &w, &mut y);
    assert_eq!(y.storage(), Storage::Bf16);
    assert_eq!(y.device_bytes(), 2 * n * g.out_len());
    let rounded: Vec<f32> = xs.iter().map(|&v| bf16(v)).collect();
    let mut want = vec![0.0; n * g.out_len()];
    cpu.conv_forward(&g, n, &rounded, &ws, &mut want);
    let got = be.download(&y);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, bf16(g), "y[{i}] = {g} is not a bfloat16 value");
        assert!((g - w).abs() <= 1e-2 * w.abs() + 1e-6, "y[{i}]: {g} vs {w}");
    }
    // The weight gradient is a parameter gradient: f32, from the bf16 activations.
    let mut dw = be.alloc(g.weight_len());
    be.conv_backward_weight(&g, n, &x, &y, &mut dw);
    assert_eq!(dw.storage(), Storage::F32);
    assert_eq!(dw.device_bytes(), 4 * g.weight_len());
    let mut want = vec![0.0; g.weight_len()];
    cpu.conv_backward_weight(&g, n, &rounded, &got, &mut want);
    let got = be.download(&dw);
    assert!(got.iter().any(|&v| v != bf16(v)), "dw was rounded to bf16");
    parity::assert_close(&got, &want, 1e-5, 0.0, "bf16-storage dw");
    // A buffer written as an activation and then as a parameter gradient changes storage,
    // keeping its values when the write adds to them.
    let mut reused = be.alloc(g.weight_len());
    be.copy(&be.upload(&vec![0.5; g.weight_len()]), &mut reused);
    be.relu_forward(&be.upload(&ws), &mut reused);
    assert_eq!(reused.storage(), Storage::Bf16);
    let relu: Vec<f32> = ws.iter().map(|&v| bf16(v.max(0.0))).collect();
    assert_eq!(be.download(&reused), relu);
    be.conv_backward_weight(&g, n, &x, &y, &mut reused);
    assert_eq!(reused.storage(), Storage::F32);
    let summed: Vec<f32> = relu.iter().zip(&got).map(|(r, d)| r + d).collect();
    parity::assert_close(&be.download(&reused), &summed, 1e-6, 0.0, "kept values");
    // Copying an activation (bf16) with a parameter gradient (f32) in one call: each keeps
    // its values (the many-copies launch is for f32 buffers; this goes copy by copy).
    let y_values = be.download(&y);
    let (mut act_rows, mut grad_rows) = (be.alloc(n * g.out_len() + 3), be.alloc(g.weight_len()));
    be.copy_into_many(&mut [(&y, &mut act_rows, 3), (&dw, &mut grad_rows, 0)]);
    assert_eq!(be.download(&act_rows)[3..], y_values[..]);
    assert_eq!(be.download(&grad_rows), got);
    assert!(be.status().is_ok());
}

#[test]
fn copying_or_adding_a_fresh_buffer_of_another_length_fails() {
    for op in ["copy", "add_assign"] {
        let be = emu();
        let mut three = be.upload(&[1.0, 2.0, 3.0]);
        let fresh = be.alloc(4);
        match op {
            "copy" => be.copy(&fresh, &mut three),
            _ => be.add_assign(&mut three, &fresh),
        }
        assert_eq!(be.status().unwrap_err().op, op);
    }
}

#[test]
fn the_first_failure_is_kept_and_later_primitives_are_skipped() {
    let be = emu();
    let mut three = be.upload(&[1.0, 2.0, 3.0]);
    // A length mismatch is an error of the launcher's copy.
    be.copy(&be.upload(&[1.0; 4]), &mut three);
    let first = be.status().unwrap_err();
    assert_eq!(first.op, "copy");
    // Later primitives do nothing and do not replace the first error; downloads give
    // zeros of the right length.
    be.add_assign(&mut three, &be.upload(&[1.0; 5]));
    assert_eq!(be.status().unwrap_err(), first);
    assert_eq!(be.download(&three), vec![0.0; 3]);
    let fresh = be.alloc(6);
    assert_eq!(be.buf_len(&fresh), 6);
    assert_eq!(be.download(&fresh), vec![0.0; 6]);
    // score_arch reports it as an error instead of returning values.
    let mut settings = ScoreSettings::paper_defaults(parity::TINY);
    settings.set_batch(2);
    let data = parity::batch(&parity::TINY, 2, 1);
    let arch = arch_of_index(1).unwrap();
    let err = score_arch(&be, arch, &[Score::Naswot], &data, &settings).unwrap_err();
    assert!(format!("{err:#}").contains("copy"), "{err:#}");
}

#[test]
fn whole_network_forward_matches_cpu() {
    parity::check_forward(&emu());
}

#[test]
fn whole_network_backward_matches_cpu_in_every_mode() {
    parity::check_backward(&emu());
}

#[test]
fn every_score_matches_cpu() {
    let arch: Arch =
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
            .parse()
            .unwrap();
    parity::check_scores(&emu(), &arch);
}

#[test]
fn f16_and_bf16_storage_round_activations_and_stay_near_f32() {
    let exact = emu();
    let f16 = emu().with_storage(Storage::F16);
    let bf16 = emu().with_storage(Storage::Bf16);
    parity::check_storage_formats(&exact, &f16, &bf16);
}

/// Issue 4's throughput design: once the input and the weights are on the device, a
/// forward or backward pass (each batch-norm and gradient mode, 16-bit storage included)
/// and a lockstep group of backward passes queue kernels only: no download, no
/// synchronisation, no upload that would make the host wait on the stream.
#[test]
fn forward_and_backward_never_wait_on_the_device() {
    let plan = parity::supernet_plan();
    let data = parity::batch(&parity::TINY, 3, 2);
    let n = data.n;
    let classes = plan.config.classes;
    for storage in [Storage::F32, Storage::Bf16] {
        let be = CudaBackend::new(CountingLauncher::new(EmuLauncher::new())).with_storage(storage);
        // (waits, uploads, launches) so far.
        let counts = || {
            let c: DeviceCounts = be.launcher().counts();
            (c.waits(), c.uploads, c.total_launches())
        };
        for (bn, bn_grad, grads) in parity::backward_modes() {
            let what = format!("{storage:?} {bn:?} {bn_grad:?} {grads:?}");
            let mut exec = Executor::with_init(&be, &plan, 5);
            let input = be.upload(&data.images);
            let seed = be.upload(&values(n * classes, 9));
            let seeds: Vec<_> = (0..3).map(|k| be.upload(&values(n * classes, k))).collect();
            let before = counts();
            exec.forward(input, n, bn);
            let after_forward = counts();
            assert_eq!(after_forward.0, before.0, "{what}: forward waited");
            assert_eq!(after_forward.1, before.1, "{what}: forward uploaded");
            assert!(
                after_forward.2 > before.2,
                "{what}: forward launched nothing"
            );
            let options = BackwardOptions {
                bn_grad,
                input_grad: true,
            };
            let mut visits = 0;
            let mut visit = |_: usize, _: &CudaBuf<CountingLauncher<EmuLauncher>>| visits += 1;
            let mode = match grads {
                parity::Grads::Skip => ParamGrads::Skip,
                parity::Grads::Batched => ParamGrads::Batched,
                parity::Grads::PerSample => ParamGrads::PerSample(&mut visit),
            };
            let out = exec.backward(seed, &options, mode);
            let after_backward = counts();
            assert_eq!(after_backward.0, before.0, "{what}: backward waited");
            assert_eq!(after_backward.1, before.1, "{what}: backward uploaded");
            assert!(
                after_backward.2 > after_forward.2,
                "{what}: backward launched nothing"
            );
            drop(out);
            if matches!(grads, parity::Grads::PerSample) {
                assert!(visits > 0, "{what}: no per-sample gradient visited");
            }
            if matches!(grads, parity::Grads::Batched) && bn != BnStatistics::Bypass {
                exec.backward_each(seeds, &BackwardOptions::default(), &|_, _| {});
                let after_each = counts();
                assert_eq!(after_each.0, before.0, "{what}: backward_each waited");
                assert_eq!(after_each.1, before.1, "{what}: backward_each uploaded");
            }
            be.status().expect("backend status");
        }
    }
}

/// Arch 5256 on a 2-cell tiny network with 4 images: the setting of the counting tests.
fn counted_arch() -> (Arch, nasrank::data::Batch, ScoreSettings) {
    let config = MacroConfig {
        classes: 10,
        cells_per_stage: 2,
        ..parity::TINY
    };
    let data = parity::batch(&config, 4, 3);
    let mut settings = ScoreSettings::paper_defaults(config);
    settings.set_batch(4);
    let arch = arch_of_index(5256).unwrap();
    (arch, data, settings)
}

/// Device memory is reused in steady state: scoring an arch a second time on one backend
/// allocates (almost) nothing, so a whole-space run neither allocates nor frees per layer,
/// per kernel scratch or per uploaded weight (engine/backend/cuda/pooled.rs).
#[test]
fn a_second_arch_reuses_the_device_memory_of_the_first() {
    let (arch, data, settings) = counted_arch();
    for score in &Score::ALL {
        let be = CudaBackend::new(CountingLauncher::new(EmuLauncher::new()));
        let first = score_arch(&be, arch, &[*score], &data, &settings).unwrap();
        let warm_up = be.launcher().take_counts();
        let again = score_arch(&be, arch, &[*score], &data, &settings).unwrap();
        let second = be.launcher().take_counts();
        // Each run builds its plan, weights and buffers anew; all but a few of the second
        // run's allocations must come from the pool.
        assert!(
            second.allocations * 20 <= warm_up.allocations,
            "{score}: {} allocations on the first run, {} on the second",
            warm_up.allocations,
            second.allocations
        );
        assert_eq!(
            first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            again.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{score}: the second run on reused memory differs"
        );
    }
}

/// Parameters drawn on the device (kernels/init.cu) are the host's draws, bit for bit
/// (parity::check_drawn_params), in one table upload and one launch however many
/// parameters.
#[test]
fn parameters_drawn_on_the_device_are_the_host_draws_bit_for_bit() {
    let be = CudaBackend::new(CountingLauncher::new(EmuLauncher::new()));
    let plan = parity::supernet_plan();
    drop(Executor::with_init(&be, &plan, 3));
    let counts = be.launcher().take_counts();
    assert_eq!(
        (counts.uploads, counts.total_launches(), counts.waits()),
        (1, 1, 0),
        "{} parameters: {counts:?}",
        plan.params.len()
    );
    parity::check_drawn_params(&be);
}

/// What these scores read back is reduced on the device first: per arch, the loss and one
/// vector of sums (snip, grad_norm and fisher downloaded every weight and gradient, 107
/// waits per 5-cell arch, and fisher two activations per conv on top; ZiCo each weight
/// tensor's moments), and the weights are one table upload. GraSP: three losses, the norms
/// and the final dots, and images and labels for each of its three passes (it downloaded
/// and uploaded every weight and gradient: 680 waits and 269 uploads). MeCo: one vector of
/// the channel sums and centred Gram of every module output's map (it downloaded each map).
#[test]
fn scores_that_reduce_on_the_device_download_a_few_times_per_arch() {
    let (arch, data, settings) = counted_arch();
    let be = CudaBackend::new(CountingLauncher::new(EmuLauncher::new()));
    for (score, max_waits, max_uploads) in [
        (Score::Naswot, 2, 3),
        (Score::Ntk, 2, 3),
        (Score::Mgm, 2, 3),
        (Score::Snip, 2, 3),
        (Score::GradNorm, 2, 3),
        (Score::Fisher, 2, 3),
        (Score::JacobCov, 2, 3),
        (Score::Zico, 2, 3),
        (Score::Grasp, 5, 7),
        (Score::Meco, 1, 2),
        (Score::MecoOpt, 1, 2),
    ] {
        score_arch(&be, arch, &[score], &data, &settings).unwrap();
        let c = be.launcher().take_counts();
        assert!(
            c.waits() <= max_waits && c.uploads <= max_uploads,
            "{score}: {} waits, {} uploads",
            c.waits(),
            c.uploads
        );
    }
}

/// AZ-NAS reads its channel statistics back in one download per arch (it downloaded each
/// feature map and each cell's input gradient: 17 waits on this 8-cell network, 35 on
/// NB-201's), as does MeCo above (one per module output's map). Its uploads are its
/// host-drawn Kaiming weights, the images and one probe per cell.
#[test]
fn az_nas_downloads_once_per_arch() {
    let (arch, data, settings) = counted_arch();
    let plan = Plan::build(&Cell::from(arch), &settings.config).unwrap();
    let cells = plan.features.len() - 1;
    assert_eq!(cells, 8);
    let be = CudaBackend::new(CountingLauncher::new(EmuLauncher::new()));
    let scores = [
        Score::AzExpressivity,
        Score::AzProgressivity,
        Score::AzTrainability,
    ];
    score_arch(&be, arch, &scores, &data, &settings).unwrap();
    let c = be.launcher().take_counts();
    assert_eq!(c.waits(), 1, "{c:?}");
    assert_eq!(c.uploads, plan.params.len() + 1 + cells, "{c:?}");
}

/// Issue 24: the NATS-Bench size space's networks (parity::check_size_space).
#[test]
fn size_space_networks_of_ragged_widths_match_cpu() {
    parity::check_size_space(&emu());
}

/// AZ-NAS term by term (each feature's entropy, each cell's trainability) and MeCo on the
/// device's channel statistics against the CPU's, on archs with an exact identity cell
/// (`count_unequal` must find the input gradient equal to the probe: -inf), a dead arch
/// (NaN entropies, zero gradients), and
/// 16- to 64-channel maps, of which meco_opt samples 8-channel sub-matrices.
#[test]
fn az_nas_terms_and_meco_match_cpu_cell_by_cell() {
    use nasrank::backend::cpu::CpuBackend;
    use nasrank::data::{Seeds, SplitMix64};
    use nasrank::proxy::az_nas::az_nas;
    use nasrank::proxy::meco::{meco, meco_opt};
    let config = MacroConfig {
        channels: 16,
        classes: 10,
        ..parity::TINY
    };
    let data = parity::batch(&config, 4, 9);
    let cpu = CpuBackend::<f32>::new();
    let close =
        |g: f64, w: f64| g == w || (g - w).abs() <= 1e-4 * w.abs() || (g.is_nan() && w.is_nan());
    for (case, arch) in [
        "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
        "|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|avg_pool_3x3~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    ]
    .into_iter()
    .enumerate()
    {
        let plan = Plan::build(&Cell::from(arch.parse::<Arch>().unwrap()), &config).unwrap();
        let be = emu();
        let (want, got) = (
            az_nas(&cpu, &plan, 4, Seeds(3)),
            az_nas(&be, &plan, 4, Seeds(3)),
        );
        // The cases are what they are meant to be.
        match case {
            0 => assert!(
                want.cells.contains(&f64::NEG_INFINITY),
                "{arch}: no identity"
            ),
            3 => assert!(want.entropies[1].is_nan(), "{arch}: not dead"),
            _ => assert!(want.trainability.is_finite(), "{arch}: {want:?}"),
        }
        for (k, (&g, &w)) in got.entropies.iter().zip(&want.entropies).enumerate() {
            assert!(close(g, w), "{arch}: entropy {k}: got {g}, want {w}");
        }
        for (k, (&g, &w)) in got.cells.iter().zip(&want.cells).enumerate() {
            assert!(close(g, w), "{arch}: cell {k}: got {g}, want {w}");
        }
        let run = |b: &dyn Fn(&mut SplitMix64) -> (f64, f64)| b(&mut SplitMix64::new(7));
        let want = run(&|rng| {
            let mut exec = Executor::with_init(&cpu, &plan, 3);
            (
                meco(&mut exec, &data, 4),
                meco_opt(&mut exec, &data, 4, rng),
            )
        });
        let got = run(&|rng| {
            let mut exec = Executor::with_init(&be, &plan, 3);
            (
                meco(&mut exec, &data, 4),
                meco_opt(&mut exec, &data, 4, rng),
            )
        });
        assert!(
            close(got.0, want.0),
            "{arch}: meco: got {}, want {}",
            got.0,
            want.0
        );
        assert!(
            close(got.1, want.1),
            "{arch}: meco_opt: got {}, want {}",
            got.1,
            want.1
        );
        be.status().expect("backend status");
    }
}
