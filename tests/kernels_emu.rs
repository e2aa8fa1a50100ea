//! The CUDA kernels executed under the host emulator (kernels/emu/cuda_emu.h), compared
//! with the CPU backend on the same inputs, plus tests of the emulator itself.
//! Shapes are small and ragged (not multiples of the tile, warp or block sizes).
#![cfg(feature = "emu")]

use nasrank::backend::cpu;
use nasrank::backend::cpu::CpuBackend;
use nasrank::backend::cuda::emu::{EmuBuf, EmuLauncher};
use nasrank::backend::cuda::{ops, Arg, LaunchConfig, LaunchError, Launcher};
use nasrank::backend::{Backend, BnGeom, BnGrad, ConvGeom, Reduction};

const L: EmuLauncher = EmuLauncher;

/// Deterministic values in [-1, 1) with some exact zeros (the ReLU boundary).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if s.is_multiple_of(13) {
                0.0
            } else {
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            }
        })
        .collect()
}

fn up<T: nasrank::backend::cuda::launch::Pod>(v: &[T]) -> EmuBuf {
    L.upload(v).unwrap()
}

fn down<T: nasrank::backend::cuda::launch::Pod>(b: &EmuBuf) -> Vec<T> {
    L.download(b).unwrap()
}

/// `len` f32 of memory with unspecified contents (`take_bytes`: NaN bytes here).
fn scratch_f32(len: usize) -> EmuBuf {
    L.take_bytes(len * 4).unwrap()
}

fn bits(b: &EmuBuf) -> Vec<u32> {
    down::<f32>(b).iter().map(|v| v.to_bits()).collect()
}

/// `op(dst, accumulate)` overwriting unspecified memory (`accumulate` false) gives the bits
/// of adding to zeros.
fn overwrite_matches_adding_to_zeros(len: usize, what: &str, op: impl Fn(&mut EmuBuf, bool)) {
    let mut fresh = scratch_f32(len);
    op(&mut fresh, false);
    let mut zeros = up(&vec![0.0f32; len]);
    op(&mut zeros, true);
    assert_eq!(bits(&fresh), bits(&zeros), "{what}: overwritten");
}

/// `|got - want| <= rtol * (|want| + max|want|)`: relative, with a floor at the tensor's
/// scale for entries that cancel to near zero.
fn assert_close<T: Copy + Into<f64>>(got: &[T], want: &[T], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().map(|&w| w.into().abs()).fold(0.0, f64::max);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.into(), w.into());
        assert!(
            (g - w).abs() <= rtol * (w.abs() + scale),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

// ---- the emulator itself -------------------------------------------------------------

#[test]
fn emulator_sets_thread_and_block_indices_in_3d() {
    let (grid, block) = ((3u32, 2u32, 2u32), (4u32, 3u32, 2u32));
    let threads = 12 * 24;
    let mut out = L.alloc::<u32>(4 * threads).unwrap();
    let config = LaunchConfig::new(grid, block);
    unsafe { L.launch("selftest_ids", config, &mut [Arg::BufMut(&mut out)]) }.unwrap();
    let out: Vec<u32> = down(&out);
    let mut t = 0;
    for bz in 0..2 {
        for by in 0..2 {
            for bx in 0..3 {
                for tz in 0..2 {
                    for ty in 0..3 {
                        for tx in 0..4 {
                            let want = [tx + 100 * ty + 10000 * tz, bx, by, bz];
                            assert_eq!(out[4 * t..4 * t + 4], want, "thread {t}");
                            t += 1;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn emulator_shared_memory_tree_reduction_with_syncthreads() {
    // 5 blocks of 64, the last one partly past the end: a block's threads must see each
    // other's shared writes after __syncthreads, and blocks must not see each other's.
    let len = 4 * 64 + 23;
    let x = values(len, 1);
    let mut out = L.alloc::<f64>(5).unwrap();
    let config = LaunchConfig::new(5, 64);
    let args = &mut [
        Arg::Buf(&up(&x)),
        Arg::BufMut(&mut out),
        Arg::I32(len as i32),
    ];
    unsafe { L.launch("selftest_block_reduce", config, args) }.unwrap();
    let got: Vec<f64> = down(&out);
    for (b, chunk) in x.chunks(64).enumerate() {
        let want: f64 = chunk.iter().map(|&v| f64::from(v)).sum();
        assert!(
            (got[b] - want).abs() < 1e-12,
            "block {b}: {} vs {want}",
            got[b]
        );
    }
}

#[test]
fn emulator_syncthreads_ignores_threads_that_returned() {
    let x = values(96, 2);
    let live = 37;
    let mut out = L.alloc::<f64>(1).unwrap();
    let args = &mut [Arg::Buf(&up(&x)), Arg::BufMut(&mut out), Arg::I32(live)];
    unsafe { L.launch("selftest_early_exit", LaunchConfig::new(1, 96), args) }.unwrap();
    let want: f64 = x[..live as usize].iter().map(|&v| f64::from(v)).sum();
    assert!((down::<f64>(&out)[0] - want).abs() < 1e-12);
}

#[test]
fn emulator_warp_intrinsics() {
    let threads = 64;
    let x: Vec<i32> = (0..threads).map(|t| (t * 7 % 11) - 5).collect();
    let mut out = L.alloc::<i32>(6 * threads as usize).unwrap();
    let args = &mut [Arg::Buf(&up(&x)), Arg::BufMut(&mut out)];
    unsafe { L.launch("selftest_warp", LaunchConfig::new(1, threads as u32), args) }.unwrap();
    let out: Vec<i32> = down(&out);
    for t in 0..threads as usize {
        let (lane, base) = (t % 32, t - t % 32);
        let warp = &x[base..base + 32];
        let ballot = (0..32).fold(0u32, |m, k| m | (u32::from(warp[k] > 0) << k));
        let odd = warp.iter().filter(|&&v| v & 1 != 0).count() as i32;
        let want = [
            warp[3],
            if lane < 31 { x[t + 1] } else { x[t] },
            warp[lane ^ 16],
            ballot as i32,
            odd,
            if lane % 8 + 2 < 8 { x[t + 2] } else { x[t] },
        ];
        assert_eq!(out[6 * t..6 * t + 6], want, "thread {t} (lane {lane})");
    }
}

#[test]
fn emulator_atomics_count_every_thread() {
    let (blocks, threads) = (3u32, 96u32);
    let (mut d, mut f) = (L.alloc::<f64>(1).unwrap(), L.alloc::<f32>(1).unwrap());
    let (mut u, mut ids) = (L.alloc::<u64>(1).unwrap(), L.alloc::<u32>(1).unwrap());
    let args = &mut [
        Arg::BufMut(&mut d),
        Arg::BufMut(&mut f),
        Arg::BufMut(&mut u),
        Arg::BufMut(&mut ids),
    ];
    unsafe { L.launch("selftest_atomic", LaunchConfig::new(blocks, threads), args) }.unwrap();
    let total = blocks * threads;
    assert_eq!(down::<f64>(&d), [f64::from(total)]);
    assert_eq!(down::<f32>(&f), [total as f32]);
    assert_eq!(down::<u64>(&u), [u64::from(total)]);
    assert_eq!(down::<u32>(&ids), [total * (total - 1) / 2]);
}

#[test]
fn emulator_dynamic_shared_memory() {
    let (blocks, threads) = (3u32, 40u32);
    let x: Vec<i32> = (0..(blocks * threads) as i32).collect();
    let mut out = L.alloc::<i32>(x.len()).unwrap();
    let mut config = LaunchConfig::new(blocks, threads);
    config.shared_bytes = threads * 4;
    let args = &mut [Arg::Buf(&up(&x)), Arg::BufMut(&mut out)];
    unsafe { L.launch("selftest_dynamic_shared", config, args) }.unwrap();
    let want: Vec<i32> = x
        .chunks(threads as usize)
        .flat_map(|c| c.iter().rev().copied())
        .collect();
    assert_eq!(down::<i32>(&out), want);
}

#[test]
fn launches_are_checked_against_the_kernel_signature() {
    let x = up(&[1.0f32; 4]);
    let mut y = L.alloc::<f32>(4).unwrap();
    let cfg = LaunchConfig::new(1, 32);
    let unknown = unsafe { L.launch("no_such_kernel", cfg, &mut []) };
    assert!(matches!(unknown, Err(LaunchError::UnknownKernel(_))));
    let too_few = unsafe { L.launch("relu_forward", cfg, &mut [Arg::Buf(&x)]) };
    assert!(matches!(too_few, Err(LaunchError::BadArgs { .. })));
    // `y` is `float*`: a read-only buffer may not be passed for it.
    let read_only = unsafe {
        L.launch(
            "relu_forward",
            cfg,
            &mut [Arg::Buf(&x), Arg::Buf(&x), Arg::I64(4)],
        )
    };
    assert!(matches!(read_only, Err(LaunchError::BadArgs { .. })));
    let wrong_int = unsafe {
        L.launch(
            "relu_forward",
            cfg,
            &mut [Arg::Buf(&x), Arg::BufMut(&mut y), Arg::I32(4)],
        )
    };
    assert!(matches!(wrong_int, Err(LaunchError::BadArgs { .. })));
    let huge_block = unsafe {
        L.launch(
            "relu_forward",
            LaunchConfig::new(1, 2048),
            &mut [Arg::Buf(&x), Arg::BufMut(&mut y), Arg::I64(4)],
        )
    };
    assert!(matches!(huge_block, Err(LaunchError::BadConfig { .. })));
    // And the host wrappers check lengths against the geometry.
    assert!(matches!(
        ops::relu_forward(&L, 5, &x, &mut y),
        Err(LaunchError::Length(_))
    ));
}

// ---- kernels vs the CPU backend -------------------------------------------------------

#[test]
fn relu_forward_and_backward_match_cpu() {
    for len in [1, 255, 1000, 2 * 256 + 3] {
        let (x, dy, dx0) = (values(len, 3), values(len, 4), values(len, 5));
        let mut y = L.alloc::<f32>(len).unwrap();
        ops::relu_forward(&L, len, &up(&x), &mut y).unwrap();
        let mut want = vec![0.0; len];
        cpu::relu_forward(&x, &mut want);
        assert_eq!(down::<f32>(&y), want, "relu_forward len {len}");

        let mut dx = up(&dx0);
        ops::relu_backward(&L, len, &up(&x), &up(&dy), &mut dx, true).unwrap();
        let mut want = dx0.clone();
        cpu::relu_backward(&x, &dy, &mut want);
        assert_eq!(down::<f32>(&dx), want, "relu_backward len {len}");
        overwrite_matches_adding_to_zeros(len, "relu_backward", |dx, acc| {
            ops::relu_backward(&L, len, &up(&x), &up(&dy), dx, acc).unwrap()
        });
    }
}

#[test]
fn sign_codes_match_cpu_with_and_without_fused_relu() {
    // units: less than a word, exactly one, ragged over several; n past one block of warps.
    for (n, units) in [(3usize, 5usize), (2, 64), (7, 130), (5, 200)] {
        let x = values(n * units, 6 + units as u64);
        let words = units.div_ceil(64);
        let mut want = vec![0u64; n * words];
        cpu::codes::pack_signs(&x, n, units, &mut want);

        let mut codes = L.alloc::<u64>(n * words).unwrap();
        ops::pack_signs(&L, n, units, &up(&x), None, &mut codes).unwrap();
        assert_eq!(down::<u64>(&codes), want, "pack_signs n {n} units {units}");

        let (mut y, mut codes) = (
            L.alloc::<f32>(n * units).unwrap(),
            L.alloc::<u64>(n * words).unwrap(),
        );
        ops::pack_signs(&L, n, units, &up(&x), Some(&mut y), &mut codes).unwrap();
        assert_eq!(down::<u64>(&codes), want, "relu_forward_pack codes");
        let mut relu = vec![0.0; n * units];
        cpu::relu_forward(&x, &mut relu);
        assert_eq!(down::<f32>(&y), relu, "relu_forward_pack y");
    }
}

#[test]
fn hamming_gram_matches_cpu_exactly() {
    // n not a multiple of the 16-wide tile; words past one 16-word chunk.
    for (n, units) in [(1usize, 3usize), (5, 64), (19, 130), (17, 64 * 17 + 9)] {
        let words = units.div_ceil(64);
        let x = values(n * units, 7 + n as u64);
        let mut codes = vec![0u64; n * words];
        cpu::codes::pack_signs(&x, n, units, &mut codes);
        // A symmetric starting K (the CPU mirrors its upper triangle).
        let k0: Vec<u64> = (0..n * n).map(|p| ((p / n) * (p % n) % 7) as u64).collect();
        let mut want = k0.clone();
        cpu::codes::hamming_gram_accumulate(&codes, n, units, 3, &mut want);
        let mut k = up(&k0);
        ops::hamming_gram_accumulate(&L, n, units, 3, &up(&codes), &mut k).unwrap();
        assert_eq!(down::<u64>(&k), want, "n {n} units {units}");
    }
}

#[test]
fn column_moments_match_cpu() {
    // One row (variance 0), a grid-stride tail, rows with an offset against the spread.
    for (n, len) in [(1usize, 7usize), (5, 1000), (64, 20_000)] {
        let a: Vec<f32> = values(n * len, 9 + len as u64)
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 3 == 0 { 100.0 } else { 0.0 })
            .collect();
        let mut want = vec![0.0; 2 * len];
        cpu::gram::column_moments(&a, n, len, &mut want);
        // Written at an offset; the values around it kept.
        let mut out = up(&vec![-7.0; 2 * len + 4]);
        ops::column_moments(&L, n, len, &up(&a), &mut out, 3).unwrap();
        let got = down::<f64>(&out);
        assert_eq!(
            [got[..3].to_vec(), vec![got[3 + 2 * len]]].concat(),
            vec![-7.0; 4],
            "n {n} len {len}: written outside its slots"
        );
        let got = &got[3..3 + 2 * len];
        let what = format!("n {n} len {len}");
        assert_close(
            &got[..len],
            &want[..len],
            1e-12,
            &format!("mean |a| {what}"),
        );
        assert_close(
            &got[len..],
            &want[len..],
            1e-12,
            &format!("variance {what}"),
        );
    }
}

/// Many copies in one launch: sources of ragged lengths (an empty one among them) into
/// destinations at offsets, each destination's other values kept; a copy that does not fit
/// is an error before anything is launched.
#[test]
fn copy_into_many_matches_copy_into() {
    let lens = [1usize, 0, 257, 3000, 5];
    let offsets = [0usize, 2, 13, 1, 4];
    let srcs: Vec<Vec<f32>> = lens.iter().map(|&n| values(n, 60 + n as u64)).collect();
    let dsts: Vec<Vec<f32>> = lens
        .iter()
        .map(|&n| values(n + 20, 70 + n as u64))
        .collect();
    let (src_bufs, mut dst_bufs): (Vec<EmuBuf>, Vec<EmuBuf>) = (
        srcs.iter().map(|s| up(s)).collect(),
        dsts.iter().map(|d| up(d)).collect(),
    );
    let mut copies: Vec<(&EmuBuf, &mut EmuBuf, usize)> = src_bufs
        .iter()
        .zip(dst_bufs.iter_mut())
        .zip(offsets)
        .map(|((s, d), o)| (s, d, o))
        .collect();
    ops::copy_into_many(&L, &mut copies).unwrap();
    for (k, ((src, dst), offset)) in srcs.iter().zip(&dsts).zip(offsets).enumerate() {
        let mut want = dst.clone();
        want[offset..offset + src.len()].copy_from_slice(src);
        assert_eq!(down::<f32>(&dst_bufs[k]), want, "copy {k}");
    }
    let (src, mut dst) = (up(&values(10, 1)), up(&values(12, 2)));
    assert!(ops::copy_into_many(&L, &mut [(&src, &mut dst, 3)]).is_err());
    assert_eq!(down::<f32>(&dst), values(12, 2), "a refused copy wrote");
}

/// `x + alpha * y` in f64, rounded once to f32: the CPU backend's values bit for bit (GraSP's
/// moved weights), for steps small and large, of either sign.
#[test]
fn add_scaled_matches_cpu_bit_for_bit() {
    let cpu = CpuBackend::<f32>::new();
    for len in [1usize, 300, 5000] {
        let (x, y) = (values(len, 51), values(len, 52));
        for alpha in [3e-6 * 0.731, -1.7e-7, 0.37, -2.0] {
            let mut want = vec![0.0f32; len];
            cpu.add_scaled(&x, alpha, &y, &mut want);
            let mut out = scratch_f32(len);
            ops::add_scaled(&L, len, (&up(&x), alpha, &up(&y)), &mut out).unwrap();
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&down::<f32>(&out)),
                bits(&want),
                "len {len} alpha {alpha}"
            );
        }
    }
}

/// The whole-tensor sums add to their slots of an accumulator and leave the others alone
/// (NaN there stays NaN): one block for any length, one warp per row.
#[test]
fn tensor_sums_match_cpu() {
    for len in [1usize, 33, 1000, 36_865] {
        let (a, b) = (values(len, 21 + len as u64), values(len, 22 + len as u64));
        let mut want = [0.5, -2.0];
        cpu::gram::abs_products_and_squares(&a, &b, &mut want);
        let mut out = up(&[f64::NAN, 0.5, -2.0, f64::NAN]);
        ops::abs_products_and_squares(&L, len, &up(&a), &up(&b), &mut out, 1).unwrap();
        let got = down::<f64>(&out);
        assert!(
            got[0].is_nan() && got[3].is_nan(),
            "len {len}: other slots written"
        );
        assert_close(&got[1..3], &want, 1e-13, &format!("len {len}"));
    }
    // Rows shorter than a warp, longer than one, more rows than one block's warps.
    for (rows, len) in [(1usize, 1usize), (3, 33), (130, 7), (1024, 64), (5, 1025)] {
        let a = values(rows * len, 31 + len as u64);
        let b = values(rows * len, 32 + rows as u64);
        let want = 1.25 + cpu::gram::row_dot_squares(&a, &b, rows, len);
        let mut out = up(&[f64::NAN, 1.25]);
        ops::row_dot_squares(&L, (rows, len), &up(&a), &up(&b), &mut out, 1).unwrap();
        let got = down::<f64>(&out);
        assert!(got[0].is_nan(), "rows {rows} len {len}: other slot written");
        assert_close(&got[1..], &[want], 1e-13, &format!("rows {rows} len {len}"));
    }
    for len in [1usize, 257, 36_865] {
        let x = values(len, 41 + len as u64);
        let (a, b) = (values(len, 42), values(len, 43));
        let want = 0.75 + cpu::gram::difference_dot(&x, &a, &b);
        let mut out = up(&[0.75, f64::NAN]);
        ops::difference_dot(&L, len, (&up(&x), &up(&a), &up(&b)), &mut out, 0).unwrap();
        let got = down::<f64>(&out);
        assert!(got[1].is_nan(), "len {len}: other slot written");
        assert_close(&got[..1], &[want], 1e-13, &format!("difference_dot {len}"));
    }
    // A slot past the accumulator is an error, not a write out of bounds.
    let mut short = up(&[0.0f64; 2]);
    let (a, b) = (up(&values(4, 1)), up(&values(4, 2)));
    assert!(ops::abs_products_and_squares(&L, 4, &a, &b, &mut short, 1).is_err());
    assert!(ops::row_dot_squares(&L, (2, 2), &a, &b, &mut short, 2).is_err());
}

#[test]
fn gram_matches_cpu() {
    // len spanning several split-K ranges and a ragged final tile.
    // The last: more chunks than 64 splits of 32 (the split count is capped).
    for (n, len) in [
        (1usize, 7usize),
        (3, 16),
        (18, 33),
        (9, 32 * 16 * 3 + 5),
        (2, 35_843),
    ] {
        let a = values(n * len, 8 + len as u64);
        let g0: Vec<f64> = (0..n * n).map(|p| p as f64 * 0.25).collect();
        let mut want = g0.clone();
        cpu::gram::gram_accumulate(&a, n, len, &mut want);
        let mut g = up(&g0);
        ops::gram_accumulate(&L, n, len, &up(&a), &mut g).unwrap();
        assert_close(
            &down::<f64>(&g),
            &want,
            1e-5,
            &format!("gram n {n} len {len}"),
        );
    }
}

#[test]
fn pools_match_cpu() {
    for (n, c, h, w) in [
        (1usize, 1usize, 1usize, 1usize),
        (2, 3, 5, 7),
        (1, 2, 8, 8),
        (3, 1, 1, 6),
    ] {
        let len = n * c * h * w;
        let shape = (n, c, h, w);
        let x = values(len, 9 + len as u64);
        let dx0 = values(len, 10);

        let mut y = L.alloc::<f32>(len).unwrap();
        ops::avgpool3x3_forward(&L, shape, &up(&x), &mut y).unwrap();
        let mut want = vec![0.0; len];
        cpu::avgpool3x3_forward(n, c, h, w, &x, &mut want);
        assert_close(&down::<f32>(&y), &want, 1e-5, "avgpool3x3_forward");

        let mut dx = up(&dx0);
        ops::avgpool3x3_backward(&L, shape, &up(&x), &mut dx, true).unwrap();
        let mut want = dx0.clone();
        cpu::avgpool3x3_backward(n, c, h, w, &x, &mut want);
        assert_close(&down::<f32>(&dx), &want, 1e-5, "avgpool3x3_backward");
        overwrite_matches_adding_to_zeros(len, "avgpool3x3_backward", |dx, acc| {
            ops::avgpool3x3_backward(&L, shape, &up(&x), dx, acc).unwrap()
        });

        let out = n * c * (h / 2) * (w / 2);
        let mut y = L.alloc::<f32>(out).unwrap();
        ops::avgpool2x2_forward(&L, shape, &up(&x), &mut y).unwrap();
        let mut want = vec![0.0; out];
        cpu::avgpool2x2_forward(n, c, h, w, &x, &mut want);
        assert_close(&down::<f32>(&y), &want, 1e-6, "avgpool2x2_forward");

        let dy = values(out, 11);
        let mut dx = up(&dx0);
        ops::avgpool2x2_backward(&L, shape, &up(&dy), &mut dx, true).unwrap();
        let mut want = dx0.clone();
        cpu::avgpool2x2_backward(n, c, h, w, &dy, &mut want);
        assert_close(&down::<f32>(&dx), &want, 1e-6, "avgpool2x2_backward");
        // Trailing odd rows and columns, or no output at all (h or w of 1), get zeros.
        overwrite_matches_adding_to_zeros(len, "avgpool2x2_backward", |dx, acc| {
            ops::avgpool2x2_backward(&L, shape, &up(&dy), dx, acc).unwrap()
        });

        let mut y = L.alloc::<f32>(n * c).unwrap();
        ops::global_avgpool_forward(&L, (n, c, h * w), &up(&x), &mut y).unwrap();
        let mut want = vec![0.0; n * c];
        cpu::global_avgpool_forward(n, c, h * w, &x, &mut want);
        assert_close(&down::<f32>(&y), &want, 1e-6, "global_avgpool_forward");

        let dy = values(n * c, 12);
        let mut dx = up(&dx0);
        ops::global_avgpool_backward(&L, (n, c, h * w), &up(&dy), &mut dx, true).unwrap();
        let mut want = dx0.clone();
        cpu::global_avgpool_backward(n, c, h * w, &dy, &mut want);
        assert_close(&down::<f32>(&dx), &want, 1e-6, "global_avgpool_backward");
        overwrite_matches_adding_to_zeros(len, "global_avgpool_backward", |dx, acc| {
            ops::global_avgpool_backward(&L, (n, c, h * w), &up(&dy), dx, acc).unwrap()
        });
    }
}

#[test]
fn global_avgpool_reduces_planes_longer_than_a_block() {
    // hw = 300 > 128 threads: each thread sums several values before the block reduction.
    let (n, c, hw) = (2, 3, 300);
    let x = values(n * c * hw, 13);
    let mut y = L.alloc::<f32>(n * c).unwrap();
    ops::global_avgpool_forward(&L, (n, c, hw), &up(&x), &mut y).unwrap();
    let mut want = vec![0.0; n * c];
    cpu::global_avgpool_forward(n, c, hw, &x, &mut want);
    assert_close(&down::<f32>(&y), &want, 1e-6, "global_avgpool_forward");
}

fn bn_case(g: BnGeom, seed: u64) {
    let len = g.n * g.c * g.hw;
    let pairs = g.groups() * g.c;
    // An offset and scale per channel so the statistics are not trivial.
    let x: Vec<f32> = values(len, seed)
        .iter()
        .enumerate()
        .map(|(i, v)| 3.0 * v + ((i / g.hw) % g.c) as f32 * 0.5)
        .collect();
    let gamma = values(g.c, seed + 1);
    let beta = values(g.c, seed + 2);
    let eps = 1e-5;

    let (mut y, mut mean, mut inv_std) = (
        L.alloc::<f32>(len).unwrap(),
        L.alloc::<f32>(pairs).unwrap(),
        L.alloc::<f32>(pairs).unwrap(),
    );
    let (xb, gb) = (up(&x), up(&gamma));
    ops::bn_forward(
        &L,
        &g,
        eps,
        &xb,
        &gb,
        &up(&beta),
        &mut y,
        &mut mean,
        &mut inv_std,
    )
    .unwrap();
    let (mut wy, mut wmean, mut wis) = (vec![0.0; len], vec![0.0; pairs], vec![0.0; pairs]);
    cpu::batchnorm_forward(
        &g, eps as f32, &x, &gamma, &beta, &mut wy, &mut wmean, &mut wis,
    );
    assert_close(&down::<f32>(&mean), &wmean, 1e-5, "bn mean");
    assert_close(&down::<f32>(&inv_std), &wis, 1e-5, "bn inv_std");
    assert_close(&down::<f32>(&y), &wy, 1e-5, "bn y");

    // Backward from the CPU statistics, so both sides differentiate the same point.
    let (mb, ib) = (up(&wmean), up(&wis));
    let dy = values(len, seed + 3);
    let (dx0, dg0, db0) = (
        values(len, seed + 4),
        values(g.c, seed + 5),
        values(g.c, seed + 6),
    );
    for mode in [BnGrad::Full, BnGrad::FrozenStats] {
        let (mut dx, mut dg, mut db) = (up(&dx0), up(&dg0), up(&db0));
        ops::bn_backward(
            &L,
            &g,
            mode,
            &xb,
            &gb,
            &mb,
            &ib,
            &up(&dy),
            Some((&mut dx, true)),
            &mut dg,
            &mut db,
            true,
        )
        .unwrap();
        // Overwriting the parameter gradients (unspecified memory: NaN bytes under the
        // emulator) gives what adding to zeros gives, bit for bit.
        let (mut dg_new, mut db_new) = (scratch_f32(g.c), scratch_f32(g.c));
        let (mut dg_zero, mut db_zero) = (up(&vec![0.0f32; g.c]), up(&vec![0.0f32; g.c]));
        for (dg, db, accumulate) in [
            (&mut dg_new, &mut db_new, false),
            (&mut dg_zero, &mut db_zero, true),
        ] {
            ops::bn_backward(
                &L,
                &g,
                mode,
                &xb,
                &gb,
                &mb,
                &ib,
                &up(&dy),
                None,
                dg,
                db,
                accumulate,
            )
            .unwrap();
        }
        assert_eq!(
            bits(&dg_new),
            bits(&dg_zero),
            "bn dgamma overwritten {mode:?}"
        );
        assert_eq!(
            bits(&db_new),
            bits(&db_zero),
            "bn dbeta overwritten {mode:?}"
        );
        let (mut wdx, mut wdg, mut wdb) = (dx0.clone(), dg0.clone(), db0.clone());
        cpu::batchnorm_backward(
            &g,
            mode,
            &x,
            &gamma,
            &wmean,
            &wis,
            &dy,
            Some(&mut wdx),
            &mut wdg,
            &mut wdb,
        );
        assert_close(&down::<f32>(&dx), &wdx, 1e-5, &format!("bn dx {mode:?}"));
        assert_close(
            &down::<f32>(&dg),
            &wdg,
            1e-5,
            &format!("bn dgamma {mode:?}"),
        );
        assert_close(&down::<f32>(&db), &wdb, 1e-5, &format!("bn dbeta {mode:?}"));

        // The data-only entry point adds the same dx (FrozenStats without the sums).
        let mut dx_only = up(&dx0);
        ops::bn_backward_data(
            &L,
            &g,
            mode,
            &xb,
            &gb,
            &mb,
            &ib,
            &up(&dy),
            &mut dx_only,
            true,
        )
        .unwrap();
        let mut wdx_only = dx0.clone();
        cpu::batchnorm_backward_data(&g, mode, &x, &gamma, &wmean, &wis, &dy, &mut wdx_only);
        assert_close(
            &down::<f32>(&dx_only),
            &wdx_only,
            1e-5,
            &format!("bn dx only {mode:?}"),
        );
        overwrite_matches_adding_to_zeros(len, &format!("bn dx only {mode:?}"), |dx, acc| {
            ops::bn_backward_data(&L, &g, mode, &xb, &gb, &mb, &ib, &up(&dy), dx, acc).unwrap()
        });
        overwrite_matches_adding_to_zeros(len, &format!("bn dx {mode:?}"), |dx, acc| {
            let (mut dg, mut db) = (up(&dg0), up(&db0));
            ops::bn_backward(
                &L,
                &g,
                mode,
                &xb,
                &gb,
                &mb,
                &ib,
                &up(&dy),
                Some((dx, acc)),
                &mut dg,
                &mut db,
                true,
            )
            .unwrap()
        });
    }
    // Without dx only the parameter gradients change.
    let (mut dg, mut db) = (up(&dg0), up(&db0));
    ops::bn_backward(
        &L,
        &g,
        BnGrad::Full,
        &xb,
        &gb,
        &mb,
        &ib,
        &up(&dy),
        None,
        &mut dg,
        &mut db,
        true,
    )
    .unwrap();
    let (mut wdg, mut wdb) = (dg0.clone(), db0.clone());
    cpu::batchnorm_backward(
        &g,
        BnGrad::Full,
        &x,
        &gamma,
        &wmean,
        &wis,
        &dy,
        None,
        &mut wdg,
        &mut wdb,
    );
    assert_close(&down::<f32>(&dg), &wdg, 1e-5, "bn dgamma (no dx)");

    let (mut pg, mut pb) = (
        L.alloc::<f32>(g.n * g.c).unwrap(),
        L.alloc::<f32>(g.n * g.c).unwrap(),
    );
    ops::bn_param_grad_per_sample(&L, &g, &xb, &mb, &ib, &up(&dy), &mut pg, &mut pb).unwrap();
    let (mut wpg, mut wpb) = (vec![0.0; g.n * g.c], vec![0.0; g.n * g.c]);
    cpu::batchnorm_param_grad_per_sample(&g, &x, &wmean, &wis, &dy, &mut wpg, &mut wpb);
    assert_close(&down::<f32>(&pg), &wpg, 1e-5, "bn per-sample dgamma");
    assert_close(&down::<f32>(&pb), &wpb, 1e-5, "bn per-sample dbeta");
}

#[test]
fn batchnorm_matches_cpu_for_batch_and_grouped_statistics() {
    // Batch statistics with m = 4*37 > one block's threads; groups of 2; groups of 1.
    bn_case(
        BnGeom {
            n: 4,
            c: 3,
            hw: 37,
            group: 4,
        },
        20,
    );
    bn_case(
        BnGeom {
            n: 6,
            c: 2,
            hw: 9,
            group: 2,
        },
        30,
    );
    bn_case(
        BnGeom {
            n: 3,
            c: 5,
            hw: 1,
            group: 1,
        },
        40,
    );
    // Statistics split into runs of 2 images (2048 values per block), the last run ragged.
    bn_case(
        BnGeom {
            n: 5,
            c: 2,
            hw: 700,
            group: 5,
        },
        50,
    );
}

// ---- conv, linear, loss vs the CPU backend in f64 --------------------------------------

/// The f64 CPU backend: the reference the f32 kernels are held to.
fn cpu64() -> CpuBackend<f64> {
    CpuBackend::new()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// The f32 kernel result against the f64 reference.
fn assert_close_f64(got: &EmuBuf, want: &[f64], what: &str) {
    assert_close(&widen(&down::<f32>(got)), want, 2e-5, what);
}

fn conv(
    n: usize,
    cin: usize,
    cout: usize,
    (h, w): (usize, usize),
    k: usize,
    stride: usize,
    pad: usize,
) -> (ConvGeom, usize) {
    (
        ConvGeom {
            cin,
            cout,
            h,
            w,
            k,
            stride,
            pad,
        },
        n,
    )
}

/// Ragged shapes: channels and pixel counts not multiples of the 32 x 64 x 16 tiles; every
/// (k, stride, pad) of NB-201 and a few more; n = 1 and n > 1 (batched weight gradients split
/// into ranges that cross image boundaries when n * oh * ow > 128).
fn conv_cases() -> Vec<(ConvGeom, usize)> {
    vec![
        conv(1, 3, 5, (7, 9), 3, 1, 1),
        conv(3, 3, 5, (7, 9), 3, 1, 1),
        conv(3, 17, 33, (5, 6), 3, 1, 1),
        conv(2, 17, 33, (7, 9), 1, 1, 0),
        conv(3, 4, 6, (8, 9), 3, 2, 1),
        conv(2, 5, 3, (7, 6), 1, 2, 0),
        conv(1, 2, 3, (5, 4), 3, 1, 0),
        conv(4, 1, 2, (1, 1), 1, 1, 0),
    ]
}

#[test]
fn conv_forward_and_backward_match_cpu() {
    let be = cpu64();
    for (case, (g, n)) in conv_cases().into_iter().enumerate() {
        let what = |op: &str| format!("{op} {g:?} n {n}");
        let seed = 100 + 10 * case as u64;
        let (x, w) = (
            values(n * g.in_len(), seed),
            values(g.weight_len(), seed + 1),
        );
        let dy = values(n * g.out_len(), seed + 2);
        let (xb, wb, dyb) = (up(&x), up(&w), up(&dy));
        let (x64, w64, dy64) = (widen(&x), widen(&w), widen(&dy));

        // Forward overwrites: start from garbage.
        let mut y = up(&vec![7.0f32; n * g.out_len()]);
        ops::conv_forward(&L, &g, n, &xb, &wb, &mut y).unwrap();
        let mut want = vec![0.0; n * g.out_len()];
        be.conv_forward(&g, n, &x64, &w64, &mut want);
        assert_close_f64(&y, &want, &what("conv_forward"));

        // Backward accumulates onto what is there.
        let dx0 = values(n * g.in_len(), seed + 3);
        let mut dx = up(&dx0);
        ops::conv_backward_data(&L, &g, n, &dyb, &wb, &mut dx, true).unwrap();
        let mut want = widen(&dx0);
        be.conv_backward_data(&g, n, &dy64, &w64, &mut want);
        assert_close_f64(&dx, &want, &what("conv_backward_data"));
        overwrite_matches_adding_to_zeros(n * g.in_len(), &what("dx overwritten"), |dx, acc| {
            ops::conv_backward_data(&L, &g, n, &dyb, &wb, dx, acc).unwrap()
        });

        let dw0 = values(g.weight_len(), seed + 4);
        let mut dw = up(&dw0);
        ops::conv_backward_weight(&L, &g, n, &xb, &dyb, &mut dw, true).unwrap();
        let mut want = widen(&dw0);
        be.conv_backward_weight(&g, n, &x64, &dy64, &mut want);
        assert_close_f64(&dw, &want, &what("conv_backward_weight"));
        // Overwriting unspecified memory (NaN bytes under the emulator) gives what adding
        // to zeros gives, bit for bit.
        let mut dw_new = scratch_f32(g.weight_len());
        ops::conv_backward_weight(&L, &g, n, &xb, &dyb, &mut dw_new, false).unwrap();
        let mut dw_zero = up(&vec![0.0f32; g.weight_len()]);
        ops::conv_backward_weight(&L, &g, n, &xb, &dyb, &mut dw_zero, true).unwrap();
        assert_eq!(bits(&dw_new), bits(&dw_zero), "{}", what("dw overwritten"));

        // Per-sample gradients overwrite.
        let mut per = up(&vec![-3.0f32; n * g.weight_len()]);
        ops::conv_weight_grad_per_sample(&L, &g, n, &xb, &dyb, &mut per).unwrap();
        let mut want = vec![0.0; n * g.weight_len()];
        be.conv_weight_grad_per_sample(&g, n, &x64, &dy64, &mut want);
        assert_close_f64(&per, &want, &what("conv_weight_grad_per_sample"));
    }
}

#[test]
fn conv_wrappers_check_lengths_and_geometry() {
    let (g, n) = conv(2, 3, 4, (5, 5), 3, 1, 1);
    let (x, w) = (
        L.alloc::<f32>(n * g.in_len()).unwrap(),
        L.alloc::<f32>(g.weight_len()).unwrap(),
    );
    let mut short = L.alloc::<f32>(n * g.out_len() - 1).unwrap();
    assert!(matches!(
        ops::conv_forward(&L, &g, n, &x, &w, &mut short),
        Err(LaunchError::Length(_))
    ));
    let mut dw = L.alloc::<f32>(g.weight_len() + 1).unwrap();
    let dy = L.alloc::<f32>(n * g.out_len()).unwrap();
    assert!(matches!(
        ops::conv_backward_weight(&L, &g, n, &x, &dy, &mut dw, true),
        Err(LaunchError::Length(_))
    ));
    // A kernel larger than the padded image.
    let bad = ConvGeom { k: 9, ..g };
    let mut y = L.alloc::<f32>(0).unwrap();
    assert!(ops::conv_forward(&L, &bad, n, &x, &w, &mut y).is_err());
}

#[test]
fn linear_forward_and_backward_match_cpu() {
    let be = cpu64();
    // Rows past one 32-row tile, features past one 64-column tile, a depth not a multiple
    // of 16, and the degenerate 1 x 1 x 1.
    for (case, (n, fin, fout)) in [
        (1usize, 1usize, 1usize),
        (3, 17, 10),
        (37, 70, 33),
        (5, 64, 100),
    ]
    .into_iter()
    .enumerate()
    {
        let what = |op: &str| format!("{op} n {n} fin {fin} fout {fout}");
        let seed = 200 + 10 * case as u64;
        let (x, w, b) = (
            values(n * fin, seed),
            values(fout * fin, seed + 1),
            values(fout, seed + 2),
        );
        let dy = values(n * fout, seed + 3);
        let (xb, wb, dyb) = (up(&x), up(&w), up(&dy));
        let (x64, w64, dy64) = (widen(&x), widen(&w), widen(&dy));

        let mut y = up(&vec![5.0f32; n * fout]);
        ops::linear_forward(&L, n, fin, fout, &xb, &wb, &up(&b), &mut y).unwrap();
        let mut want = vec![0.0; n * fout];
        be.linear_forward(n, fin, fout, &x64, &w64, &widen(&b), &mut want);
        assert_close_f64(&y, &want, &what("linear_forward"));

        let (dx0, dw0, db0) = (
            values(n * fin, seed + 4),
            values(fout * fin, seed + 5),
            values(fout, seed + 6),
        );
        let (mut dx, mut dw, mut db) = (up(&dx0), up(&dw0), up(&db0));
        ops::linear_backward(
            &L,
            n,
            fin,
            fout,
            &xb,
            &wb,
            &dyb,
            Some(&mut dx),
            &mut dw,
            &mut db,
        )
        .unwrap();
        let (mut wdx, mut wdw, mut wdb) = (widen(&dx0), widen(&dw0), widen(&db0));
        be.linear_backward(
            n,
            fin,
            fout,
            &x64,
            &w64,
            &dy64,
            Some(&mut wdx),
            &mut wdw,
            &mut wdb,
        );
        assert_close_f64(&dx, &wdx, &what("linear_backward dx"));
        assert_close_f64(&dw, &wdw, &what("linear_backward dw"));
        assert_close_f64(&db, &wdb, &what("linear_backward db"));

        // Without dx: the same parameter gradients.
        let (mut dw, mut db) = (up(&dw0), up(&db0));
        ops::linear_backward(&L, n, fin, fout, &xb, &wb, &dyb, None, &mut dw, &mut db).unwrap();
        assert_close_f64(&dw, &wdw, &what("linear_backward dw (no dx)"));
        assert_close_f64(&db, &wdb, &what("linear_backward db (no dx)"));

        let (mut pdw, mut pdb) = (
            up(&vec![9.0f32; n * fout * fin]),
            up(&vec![9.0f32; n * fout]),
        );
        ops::linear_grad_per_sample(&L, n, fin, fout, &xb, &dyb, &mut pdw, &mut pdb).unwrap();
        let (mut wpdw, mut wpdb) = (vec![0.0; n * fout * fin], vec![0.0; n * fout]);
        be.linear_grad_per_sample(n, fin, fout, &x64, &dy64, &mut wpdw, &mut wpdb);
        assert_close_f64(&pdw, &wpdw, &what("linear_grad_per_sample dw"));
        assert_close_f64(&pdb, &wpdb, &what("linear_grad_per_sample db"));
    }
}

#[test]
fn softmax_cross_entropy_matches_cpu_for_both_reductions() {
    let be = cpu64();
    // Rows past one block of 4 warps, classes past one warp, and logits in the thousands
    // (a naive exp overflows).
    for (case, (n, classes, magnitude)) in [
        (1usize, 1usize, 1.0f32),
        (3, 10, 1.0),
        (9, 100, 3.0),
        (5, 33, 2000.0),
    ]
    .into_iter()
    .enumerate()
    {
        let logits: Vec<f32> = values(n * classes, 300 + case as u64)
            .iter()
            .map(|v| v * magnitude)
            .collect();
        let labels: Vec<usize> = (0..n).map(|i| (7 * i + case) % classes).collect();
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let what = format!("n {n} classes {classes} x{magnitude} {reduction:?}");
            let mut d = up(&vec![4.0f32; n * classes]);
            let loss = ops::softmax_cross_entropy(
                &L,
                n,
                classes,
                &up(&logits),
                &labels,
                reduction,
                &mut d,
            )
            .unwrap();
            let mut want = vec![0.0; n * classes];
            let want_loss = be.softmax_cross_entropy(
                n,
                classes,
                &widen(&logits),
                &labels,
                reduction,
                &mut want,
            );
            assert!(
                (f64::from(loss) - want_loss).abs() <= 1e-6 * (1.0 + want_loss.abs()),
                "loss {what}: got {loss}, want {want_loss}"
            );
            assert_close_f64(&d, &want, &format!("dlogits {what}"));
        }
    }
}

#[test]
fn softmax_cross_entropy_rejects_bad_labels() {
    let (n, classes) = (3, 4);
    let logits = up(&values(n * classes, 5));
    let mut d = L.alloc::<f32>(n * classes).unwrap();
    let loss = |labels: &[usize], d: &mut EmuBuf| {
        ops::softmax_cross_entropy(&L, n, classes, &logits, labels, Reduction::Mean, d)
    };
    assert!(matches!(
        loss(&[0, 4, 1], &mut d),
        Err(LaunchError::BadArgs { .. })
    ));
    assert!(matches!(loss(&[0, 1], &mut d), Err(LaunchError::Length(_))));
    assert!(loss(&[0, 3, 1], &mut d).is_ok());
}

#[test]
fn add_assign_and_copy_into_match_cpu() {
    for len in [1, 255, 1000, 2 * 256 + 3] {
        let (a, b) = (values(len, 40), values(len, 41));
        let mut dst = up(&a);
        ops::add_assign(&L, len, &mut dst, &up(&b)).unwrap();
        let mut want = a.clone();
        cpu::add_assign(&mut want, &b);
        assert_eq!(down::<f32>(&dst), want, "add_assign len {len}");

        // Into the middle of a longer buffer: values before and after stay.
        let (offset, total) = (7, len + 7 + 5);
        let base = values(total, 42);
        let mut dst = up(&base);
        ops::copy_into(&L, len, &up(&b), &mut dst, offset).unwrap();
        let mut want = base.clone();
        want[offset..offset + len].copy_from_slice(&b);
        assert_eq!(down::<f32>(&dst), want, "copy_into len {len}");
    }
    // A copy that would run past the end is refused before any launch.
    let mut small = L.alloc::<f32>(4).unwrap();
    assert!(matches!(
        ops::copy_into(&L, 3, &up(&[1.0f32; 3]), &mut small, 2),
        Err(LaunchError::Length(_))
    ));
    assert!(matches!(
        ops::add_assign(&L, 4, &mut small, &up(&[1.0f32; 3])),
        Err(LaunchError::Length(_))
    ));
}

/// A `[n][c][h s][w s]` map of values in [-1, 1) with, in every image, channel 1 constant
/// (a different constant per image), channel 2 constant but for one value, channel 3
/// offset by 50 (against its spread: the centred Gram must not cancel it away) and every
/// 7th value of channel 0 an exact zero.
fn channel_map(n: usize, c: usize, plane: usize, seed: u64) -> Vec<f32> {
    let mut x = values(n * c * plane, seed);
    for img in 0..n {
        let at = |ch: usize| (img * c + ch) * plane;
        if c > 1 {
            let first = x[at(1)];
            x[at(1)..at(1) + plane].fill(first);
        }
        if c > 2 && plane > 1 {
            let first = x[at(2)];
            x[at(2)..at(2) + plane].fill(first);
            x[at(2) + plane / 2] = first + 0.5;
        }
        if c > 3 {
            x[at(3)..at(3) + plane].iter_mut().for_each(|v| *v += 50.0);
        }
        for p in (0..plane).step_by(7) {
            x[at(0) + p] = 0.0;
        }
    }
    x
}

/// Channel `k` at position (y, x) of image `img` of a `[n][c][h s][w s]` map pixel-unshuffled
/// by `s`, the textbook way: channel `k = ch s^2 + dy s + dx` is stored channel `ch` at
/// pixel `(y s + dy, x s + dx)`.
fn unshuffled(
    map: &[f32],
    (c, h, w, s): (usize, usize, usize, usize),
    img: usize,
    k: usize,
    y: usize,
    x: usize,
) -> f64 {
    let (ch, dy, dx) = (k / (s * s), (k / s) % s, k % s);
    let (hs, ws) = (h * s, w * s);
    f64::from(map[((img * c + ch) * hs + y * s + dy) * ws + x * s + dx])
}

type View4 = (usize, usize, usize, usize);

/// Naive f64 channel statistics of the first `n` images of maps `a` and `b` (each view
/// `(c, h, w, s)`, of as many positions `h w`, position p being pixel (p / w, p % w)):
/// a's sums, a's counts of values differing from the image's first, raw Gram and centred
/// Gram.
#[allow(clippy::type_complexity)]
fn naive_channel_stats(
    (a, va): (&[f32], View4),
    (b, vb): (&[f32], View4),
    n: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let hw = va.1 * va.2;
    assert_eq!(hw, vb.1 * vb.2);
    let (ca, cb) = (va.0 * va.3 * va.3, vb.0 * vb.3 * vb.3);
    let at = |m: &[f32], v: View4, img, k, p: usize| unshuffled(m, v, img, k, p / v.2, p % v.2);
    let mut sums = vec![0.0; 2 * ca];
    for k in 0..ca {
        for img in 0..n {
            for p in 0..hw {
                let v = at(a, va, img, k, p);
                sums[k] += v;
                if v != at(a, va, img, k, 0) {
                    sums[ca + k] += 1.0;
                }
            }
        }
    }
    let count = (n * hw) as f64;
    let mean = |m: &[f32], v, k| -> f64 {
        (0..n)
            .flat_map(|img| (0..hw).map(move |p| (img, p)))
            .map(|(img, p)| at(m, v, img, k, p))
            .sum::<f64>()
            / count
    };
    let (mut raw, mut centred) = (vec![0.0; ca * cb], vec![0.0; ca * cb]);
    for i in 0..ca {
        let ma = mean(a, va, i);
        for j in 0..cb {
            let mb = mean(b, vb, j);
            for img in 0..n {
                for p in 0..hw {
                    let (x, y) = (at(a, va, img, i, p), at(b, vb, img, j, p));
                    raw[i * cb + j] += x * y;
                    centred[i * cb + j] += (x - ma) * (y - mb);
                }
            }
        }
    }
    (sums[..ca].to_vec(), sums[ca..].to_vec(), raw, centred)
}

/// The channel primitives (kernels/channel.cu) against a naive f64 reference and the CPU
/// backend: channel counts not multiples of the 16-wide tile or of a warp (8, 24, 40, 56),
/// 1 to 1024 positions, 1 to 64 images (split-K over many ranges), pixel-unshuffled views
/// against plain ones of another shape (AZ-NAS's reduction cells), buffers holding more
/// images than are read; only the output's own slots written.
#[test]
fn channel_statistics_match_a_naive_reference_and_cpu() {
    use nasrank::backend::cpu::channel as cpu_channel;
    use nasrank::backend::ChannelView;
    // (images read, images held, a's view, b's view), views as (c, h, w, s).
    for (n, held, va4, vb4) in [
        (
            1usize,
            1usize,
            (8usize, 1usize, 1usize, 1usize),
            (8usize, 1usize, 1usize, 1usize),
        ),
        (3, 4, (24, 2, 2, 1), (40, 2, 2, 1)),
        (64, 64, (40, 8, 8, 1), (8, 8, 8, 1)),
        (1, 3, (56, 32, 32, 1), (56, 32, 32, 1)),
        (3, 3, (6, 4, 4, 2), (40, 1, 16, 1)),
        (2, 2, (2, 2, 3, 2), (3, 3, 2, 2)),
        (64, 64, (8, 32, 32, 1), (24, 32, 32, 1)),
    ] {
        let ((ca, h, w, sa), (cb, hb, wb, sb)) = (va4, vb4);
        let what = format!("n {n} a {va4:?} b {vb4:?}");
        let a = channel_map(held, ca, h * w * sa * sa, 60 + ca as u64);
        let b = channel_map(held, cb, hb * wb * sb * sb, 61 + cb as u64);
        let view = |(c, h, w, s): (usize, usize, usize, usize)| {
            ChannelView::unshuffled(c, h * s, w * s, s)
        };
        let (va, vb) = (view(va4), view(vb4));
        let (ka, kb) = (va.channels(), vb.channels());
        let (sums, changes, raw, centred) = naive_channel_stats((&a, va4), (&b, vb4), n);
        assert!(
            changes.contains(&0.0) || h * w == 1 || ca < 2,
            "{what}: no constant channel"
        );

        // CPU backend.
        let mut cpu_sums = vec![0.0; 2 * ka];
        cpu_channel::channel_sums(&a, va, n, &mut cpu_sums);
        assert_close(&cpu_sums[..ka], &sums, 1e-12, &format!("cpu sums {what}"));
        assert_eq!(cpu_sums[ka..], changes[..], "cpu counts {what}");
        for (centre, want) in [(false, &raw), (true, &centred)] {
            let mut g = vec![0.0; ka * kb];
            cpu_channel::channel_gram(&a, va, &b, vb, n, centre, &mut g);
            assert_close(
                &g,
                want,
                1e-12,
                &format!("cpu gram centred {centre} {what}"),
            );
        }

        // Kernels, written at an offset into an accumulator of sentinels.
        let (da, db) = (up(&a), up(&b));
        let mut out = up(&vec![-7.0f64; 2 * ka + 5]);
        ops::channel_sums(&L, (&da, va), n, &mut out, 3).unwrap();
        let got = down::<f64>(&out);
        assert_eq!(
            [&got[..3], &got[3 + 2 * ka..]].concat(),
            vec![-7.0; 5],
            "{what}: sums outside their slots"
        );
        assert_close(&got[3..3 + ka], &sums, 1e-12, &format!("sums {what}"));
        assert_eq!(got[3 + ka..3 + 2 * ka], changes[..], "counts {what}");
        for (centre, want) in [(false, &raw), (true, &centred)] {
            let mut out = up(&vec![-7.0f64; ka * kb + 2]);
            ops::channel_gram(&L, (&da, va), (&db, vb), n, centre, &mut out, 1).unwrap();
            let got = down::<f64>(&out);
            assert_eq!(
                (got[0], got[ka * kb + 1]),
                (-7.0, -7.0),
                "{what}: gram outside its slots"
            );
            assert_close(
                &got[1..=ka * kb],
                want,
                1e-12,
                &format!("gram centred {centre} {what}"),
            );
        }
        // A map with itself (one buffer: its sums taken once).
        let (_, _, raw_aa, centred_aa) = naive_channel_stats((&a, va4), (&a, va4), n);
        for (centre, want) in [(false, &raw_aa), (true, &centred_aa)] {
            let mut out = up(&vec![0.0f64; ka * ka]);
            ops::channel_gram(&L, (&da, va), (&da, va), n, centre, &mut out, 0).unwrap();
            assert_close(
                &down::<f64>(&out),
                want,
                1e-12,
                &format!("self gram centred {centre} {what}"),
            );
        }
    }
    // Too few images held, a slot past the accumulator, positions that differ: errors.
    let (a, v) = (up(&values(2 * 8 * 4, 3)), ChannelView::plain(8, 4));
    let mut out = up(&[0.0f64; 64]);
    assert!(ops::channel_sums(&L, (&a, v), 3, &mut out, 0).is_err());
    assert!(ops::channel_sums(&L, (&a, v), 2, &mut out, 49).is_err());
    assert!(ops::channel_gram(&L, (&a, v), (&a, v), 2, true, &mut out, 1).is_err());
    let other = ChannelView::plain(16, 2);
    assert!(ops::channel_gram(&L, (&a, v), (&a, other), 1, false, &mut out, 0).is_err());
}

#[test]
fn count_unequal_counts_exactly() {
    for len in [1usize, 33, 5000, 70_001] {
        let a = values(len, 70 + len as u64);
        let mut b = a.clone();
        let mut want = 0.0;
        for i in (0..len).step_by(3) {
            b[i] = -b[i] - 1.0;
            want += 1.0;
        }
        if len > 10 {
            (b[4], b[5]) = (f32::NAN, a[5]); // NaN differs; equal values do not
            want += 1.0;
        }
        assert_eq!(
            cpu::channel::count_unequal(&a, &b) as f64,
            want,
            "cpu len {len}"
        );
        let mut out = up(&[f64::NAN, 2.0]);
        ops::count_unequal(&L, len, &up(&a), &up(&b), &mut out, 1).unwrap();
        let got = down::<f64>(&out);
        assert!(got[0].is_nan(), "len {len}: other slot written");
        assert_eq!(got[1], 2.0 + want, "len {len}");
    }
}
