//! Checks of the CPU primitives: forwards against naive f64 loops, backwards against central
//! finite differences of `sum(y * r)`, the `+=` convention (gradients start from a non-zero
//! buffer), per-sample gradients against the batched ones, and f32 against f64.

use nasrank::backend::cpu::gemm::{matmul, Mat, Parallelism};
use nasrank::backend::cpu::*;
use nasrank::backend::{BnGeom, BnGrad, ConvGeom, Reduction};

/// splitmix64, mapped to uniform values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.uniform()).collect()
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Asserts `|got - want| <= tol * max(1, max |want|)` elementwise.
fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: index {i}: got {g}, want {w} (tol {tol} x {scale})"
        );
    }
}

/// Central finite differences of `f` at `x`.
fn fd(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    const H: f64 = 1e-5;
    let mut p = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = p[i];
            p[i] = v + H;
            let a = f(&p);
            p[i] = v - H;
            let b = f(&p);
            p[i] = v;
            (a - b) / (2.0 * H)
        })
        .collect()
}

/// Runs an accumulating backward on a copy of the non-zero `base`; returns what it added.
fn added(base: &[f64], run: impl FnOnce(&mut [f64])) -> Vec<f64> {
    let mut buf = base.to_vec();
    run(&mut buf);
    buf.iter().zip(base).map(|(b, a)| b - a).collect()
}

// ---------------------------------------------------------------- gemm wrapper

#[test]
fn matmul_handles_transposed_views_and_accumulation() {
    let mut rng = Rng(1);
    let (m, k, n) = (5, 7, 3);
    let a = rng.vec(k * m); // stored as a^T, k x m
    let b = rng.vec(k * n);
    let base = rng.vec(m * n);
    let mut want = base.clone();
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] += (0..k).map(|l| a[l * m + i] * b[l * n + j]).sum::<f64>();
        }
    }
    let mut dst = base.clone();
    let am = Mat::rows(k, m).t();
    matmul(
        &mut dst,
        Mat::rows(m, n),
        true,
        &a,
        am,
        &b,
        Mat::rows(k, n),
        Parallelism::None,
    );
    assert_close(&dst, &want, 1e-14, "accumulate");
    let overwrite: Vec<f64> = want.iter().zip(&base).map(|(w, b)| w - b).collect();
    // Overwrite into a column-major destination.
    let mut dst_t = vec![f64::NAN; m * n];
    let dm = Mat::rows(n, m).t();
    matmul(
        &mut dst_t,
        dm,
        false,
        &a,
        am,
        &b,
        Mat::rows(k, n),
        Parallelism::Rayon(0),
    );
    let back: Vec<f64> = (0..m * n).map(|p| dst_t[(p % n) * m + p / n]).collect();
    assert_close(&back, &overwrite, 1e-14, "overwrite, column-major dst");
}

#[test]
#[should_panic(expected = "past")]
fn matmul_rejects_a_view_past_its_slice() {
    let a = vec![0.0f64; 5];
    let mut d = vec![0.0f64; 4];
    matmul(
        &mut d,
        Mat::rows(2, 2),
        false,
        &a,
        Mat::rows(2, 3),
        &a,
        Mat::rows(3, 2),
        Parallelism::None,
    );
}

// ---------------------------------------------------------------- convolution

const fn geom(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom {
        cin,
        cout,
        h,
        w,
        k,
        stride,
        pad,
    }
}

/// Ragged shapes covering k 1/3/5, stride 1/2, pad 0/1/2, the direct 1x1 path and the
/// shifted-plane im2col of "same" stride-1 convs (also narrower than the kernel).
const GEOMS: [ConvGeom; 9] = [
    geom(3, 5, 5, 7, 3, 1, 1),
    geom(4, 3, 5, 7, 3, 2, 1),
    geom(2, 3, 5, 5, 3, 1, 0),
    geom(3, 4, 6, 7, 3, 2, 0),
    geom(5, 6, 6, 5, 1, 1, 0),
    geom(3, 2, 7, 5, 1, 2, 0),
    geom(3, 2, 4, 3, 1, 1, 1),
    geom(2, 3, 6, 5, 5, 1, 2),
    geom(2, 2, 3, 2, 5, 1, 2),
];

fn naive_conv(g: &ConvGeom, n: usize, x: &[f64], w: &[f64]) -> Vec<f64> {
    let oh = (g.h + 2 * g.pad - g.k) / g.stride + 1;
    let ow = (g.w + 2 * g.pad - g.k) / g.stride + 1;
    let mut y = vec![0.0; n * g.cout * oh * ow];
    for b in 0..n {
        for co in 0..g.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0;
                    for ci in 0..g.cin {
                        for ki in 0..g.k {
                            for kj in 0..g.k {
                                let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let (iy, ix) = (iy as usize, ix as usize);
                                s += w[((co * g.cin + ci) * g.k + ki) * g.k + kj]
                                    * x[((b * g.cin + ci) * g.h + iy) * g.w + ix];
                            }
                        }
                    }
                    y[((b * g.cout + co) * oh + oy) * ow + ox] = s;
                }
            }
        }
    }
    y
}

fn conv_fwd(g: &ConvGeom, n: usize, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![f64::NAN; n * g.out_len()];
    conv2d_forward(g, n, x, w, &mut y);
    y
}

#[test]
fn conv_geometry_sizes() {
    let g = geom(3, 5, 5, 7, 3, 2, 1);
    assert_eq!((g.out_h(), g.out_w()), (3, 4));
    assert_eq!(g.weight_len(), 5 * 3 * 9);
    assert_eq!((g.in_len(), g.out_len()), (3 * 35, 5 * 12));
    assert_eq!(g.macs(), 5 * 12 * 27);
}

#[test]
fn conv_forward_matches_naive() {
    let mut rng = Rng(2);
    let big = [
        geom(16, 16, 32, 32, 3, 1, 1),
        geom(16, 32, 8, 8, 1, 1, 0),
        geom(3, 16, 9, 9, 3, 2, 1),
    ];
    for g in GEOMS.iter().chain(&big) {
        for n in [1, 3] {
            let (x, w) = (rng.vec(n * g.in_len()), rng.vec(g.weight_len()));
            let want = naive_conv(g, n, &x, &w);
            assert_close(
                &conv_fwd(g, n, &x, &w),
                &want,
                1e-12,
                &format!("f64 {g:?} n={n}"),
            );
            let mut y = vec![f32::NAN; want.len()];
            conv2d_forward(g, n, &f32s(&x), &f32s(&w), &mut y);
            assert_close(&f64s(&y), &want, 1e-5, &format!("f32 {g:?} n={n}"));
        }
    }
}

#[test]
fn conv_backward_matches_finite_differences() {
    let mut rng = Rng(3);
    for g in &GEOMS {
        for n in [1, 3] {
            let (x, w) = (rng.vec(n * g.in_len()), rng.vec(g.weight_len()));
            let r = rng.vec(n * g.out_len());
            let (bx, bw) = (rng.vec(x.len()), rng.vec(w.len()));
            let dx = added(&bx, |dx| conv2d_backward_data(g, n, &r, &w, dx));
            let fdx = fd(&x, |x| dot(&conv_fwd(g, n, x, &w), &r));
            assert_close(&dx, &fdx, 1e-7, &format!("dx {g:?} n={n}"));
            let dw = added(&bw, |dw| conv2d_backward_weight(g, n, &x, &r, dw));
            let fdw = fd(&w, |w| dot(&conv_fwd(g, n, &x, w), &r));
            assert_close(&dw, &fdw, 1e-7, &format!("dw {g:?} n={n}"));

            let mut dx32 = f32s(&bx);
            conv2d_backward_data(g, n, &f32s(&r), &f32s(&w), &mut dx32);
            let got: Vec<f64> = f64s(&dx32).iter().zip(&bx).map(|(a, b)| a - b).collect();
            assert_close(&got, &dx, 1e-5, &format!("f32 dx {g:?} n={n}"));
            let mut dw32 = f32s(&bw);
            conv2d_backward_weight(g, n, &f32s(&x), &f32s(&r), &mut dw32);
            let got: Vec<f64> = f64s(&dw32).iter().zip(&bw).map(|(a, b)| a - b).collect();
            assert_close(&got, &dw, 1e-5, &format!("f32 dw {g:?} n={n}"));
        }
    }
}

#[test]
fn conv_per_sample_weight_grads_match_batched() {
    let mut rng = Rng(4);
    // Beyond GEOMS: stride-1 shapes with full 4 x 4 blocks and ragged ones, runs longer
    // than the 16 lanes of the im2col-free path.
    let more = [
        geom(8, 8, 8, 8, 3, 1, 1),
        geom(5, 17, 9, 11, 3, 1, 1),
        geom(16, 16, 12, 12, 3, 1, 1),
        geom(7, 9, 10, 13, 1, 1, 0),
    ];
    for g in GEOMS.iter().chain(&more) {
        let n = 5;
        let (x, dy) = (rng.vec(n * g.in_len()), rng.vec(n * g.out_len()));
        let wl = g.weight_len();
        let mut per = rng.vec(n * wl); // overwritten, so garbage must not leak through
        conv2d_weight_grad_per_sample(g, n, &x, &dy, &mut per);
        let mut sum = vec![0.0; wl];
        for p in per.chunks_exact(wl) {
            sum.iter_mut().zip(p).for_each(|(s, v)| *s += v);
        }
        let mut batched = vec![0.0; wl];
        conv2d_backward_weight(g, n, &x, &dy, &mut batched);
        assert_close(&sum, &batched, 1e-12, &format!("sum {g:?}"));
        for (i, p) in per.chunks_exact(wl).enumerate() {
            let mut one = vec![0.0; wl];
            let xi = &x[i * g.in_len()..(i + 1) * g.in_len()];
            conv2d_backward_weight(
                g,
                1,
                xi,
                &dy[i * g.out_len()..(i + 1) * g.out_len()],
                &mut one,
            );
            assert_close(p, &one, 1e-12, &format!("image {i} {g:?}"));
        }
        let mut per32 = vec![f32::NAN; n * wl];
        conv2d_weight_grad_per_sample(g, n, &f32s(&x), &f32s(&dy), &mut per32);
        assert_close(&f64s(&per32), &per, 1e-5, &format!("f32 {g:?}"));
    }
}

// ---------------------------------------------------------------- Winograd

/// `conv^T(dy, w)` by direct loops: each output gradient scattered back through its taps.
fn naive_conv_transpose(g: &ConvGeom, n: usize, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut dx = vec![0.0; n * g.in_len()];
    for b in 0..n {
        for co in 0..g.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let d = dy[((b * g.cout + co) * oh + oy) * ow + ox];
                    for ci in 0..g.cin {
                        for ki in 0..g.k {
                            for kj in 0..g.k {
                                let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let (iy, ix) = (iy as usize, ix as usize);
                                dx[((b * g.cin + ci) * g.h + iy) * g.w + ix] +=
                                    w[((co * g.cin + ci) * g.k + ki) * g.k + kj] * d;
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// Per output element of `conv(x, w)` (`transpose`: of `conv^T(x, w)`): `max |x_b| *
/// sum |w|` over the filters feeding it, a bound on the output's magnitude that also
/// covers the neighbouring pixels a Winograd tile mixes in.
fn conv_bound(g: &ConvGeom, n: usize, x: &[f64], w: &[f64], transpose: bool) -> Vec<f64> {
    let kk = g.k * g.k;
    let (fan, outs, spatial) = if transpose {
        (g.cout, g.cin, g.h * g.w)
    } else {
        (g.cin, g.cout, g.out_h() * g.out_w())
    };
    let per_image = x.len() / n;
    let mut bound = Vec::with_capacity(n * outs * spatial);
    for xb in x.chunks_exact(per_image) {
        let x_max = xb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for o in 0..outs {
            let w_sum: f64 = (0..fan)
                .map(|f| {
                    let (co, ci) = if transpose { (f, o) } else { (o, f) };
                    w[(co * g.cin + ci) * kk..][..kk]
                        .iter()
                        .map(|v| v.abs())
                        .sum::<f64>()
                })
                .sum();
            bound.extend(std::iter::repeat_n(x_max * w_sum, spatial));
        }
    }
    bound
}

/// The f64 and f32 results (`got`, in that order) each within `WINOGRAD_ROUNDING` x eps of
/// `want` relative to `bound`; `worst` keeps the largest ratio seen per precision.
fn check_winograd_rounding(
    got: [Vec<f64>; 2],
    want: &[f64],
    bound: &[f64],
    what: &str,
    worst: &mut [f64; 2],
) {
    for (k, (got, eps)) in got
        .iter()
        .zip([f64::EPSILON, f32::EPSILON as f64])
        .enumerate()
    {
        let ratio = max_rounding_ratio(got, want, bound, eps);
        assert!(
            ratio <= WINOGRAD_ROUNDING,
            "{} {what}: error {ratio} x eps x bound",
            ["f64", "f32"][k]
        );
        worst[k] = worst[k].max(ratio);
    }
}

/// Largest `|got - want| / (eps * bound)` over the elements.
fn max_rounding_ratio(got: &[f64], want: &[f64], bound: &[f64], eps: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .zip(bound)
        .map(|((g, w), b)| (g - w).abs() / (eps * b.max(f64::MIN_POSITIVE)))
        .fold(0.0, f64::max)
}

/// Rounding bound for Winograd in units of `eps * conv_bound`. F(2x2, 3x3): the transforms
/// grow values by at most 4x (input), 2.25x (filters) and 9x (output) around the summed
/// products. F(4x4, 3x3) (f32 at 16 and 32 pixels) scales by up to 8 and 1/24 and
/// cancels more: observed ~8 against ~2 for F(2x2) in f32 (the tests print the worst).
const WINOGRAD_ROUNDING: f64 = 16.0;

/// Ragged 3x3 stride-1 shapes: sizes under one tile and not multiples of it, channel
/// counts on both sides of the Winograd threshold, pads 0-2 (pad 2 is the backward data of
/// a pad-0 conv), and the shapes of the fused f32 kernel.
fn winograd_geoms() -> Vec<ConvGeom> {
    let mut geoms = Vec::new();
    for (h, w) in [(7, 9), (1, 1), (2, 3), (32, 32)] {
        for cin in [1, 3, 16, 17] {
            for cout in [1, 3, 16, 17] {
                geoms.push(geom(cin, cout, h, w, 3, 1, 1));
            }
        }
    }
    geoms.extend([
        geom(3, 4, 7, 9, 3, 1, 0),
        geom(4, 3, 7, 9, 3, 1, 2),
        geom(2, 5, 2, 3, 3, 1, 2),
        geom(16, 16, 6, 5, 3, 1, 0),
        // Shapes the fused f32 kernels take (whole blocks of 16 tiles, channels in
        // vectors of 16), at each NB-201 resolution: F(4x4, 3x3) at 32 and 16 pixels
        // (one, two and four vectors of input channels), F(2x2, 3x3) at 8.
        geom(32, 16, 16, 16, 3, 1, 1),
        geom(16, 32, 32, 32, 3, 1, 1),
        geom(64, 16, 16, 16, 3, 1, 1),
        geom(16, 64, 8, 8, 3, 1, 1),
    ]);
    geoms
}

#[test]
fn winograd_forward_matches_naive_f64_conv() {
    let mut rng = Rng(11);
    let mut worst = [0.0f64; 2];
    for g in winograd_geoms() {
        for n in [1, 3] {
            let (x, w) = (rng.vec(n * g.in_len()), rng.vec(g.weight_len()));
            // References from the f32-rounded data, so only arithmetic rounding counts.
            let (x, w) = (f64s(&f32s(&x)), f64s(&f32s(&w)));
            let want = naive_conv(&g, n, &x, &w);
            let bound = conv_bound(&g, n, &x, &w, false);
            let mut y64 = vec![f64::NAN; want.len()];
            conv2d_forward_with(ConvAlgo::Winograd, &g, n, &x, &w, &mut y64);
            let mut y32 = vec![f32::NAN; want.len()];
            conv2d_forward_with(ConvAlgo::Winograd, &g, n, &f32s(&x), &f32s(&w), &mut y32);
            let what = format!("{g:?} n={n}");
            check_winograd_rounding([y64, f64s(&y32)], &want, &bound, &what, &mut worst);
        }
    }
    eprintln!("winograd forward: worst error / (eps bound): {worst:?} (f64, f32)");
}

#[test]
fn winograd_backward_data_matches_naive_transpose() {
    let mut rng = Rng(12);
    let mut worst = [0.0f64; 2];
    for g in winograd_geoms() {
        for n in [1, 3] {
            let (dy, w) = (rng.vec(n * g.out_len()), rng.vec(g.weight_len()));
            let (dy, w) = (f64s(&f32s(&dy)), f64s(&f32s(&w)));
            let base = f64s(&f32s(&rng.vec(n * g.in_len())));
            let want = naive_conv_transpose(&g, n, &dy, &w);
            // The sum base + dx rounds once more, relative to |base|.
            let bound: Vec<f64> = conv_bound(&g, n, &dy, &w, true)
                .iter()
                .zip(&base)
                .map(|(s, b)| s + b.abs())
                .collect();
            let got64 = added(&base, |dx| {
                conv2d_backward_data_with(ConvAlgo::Winograd, &g, n, &dy, &w, dx)
            });
            let mut dx32 = f32s(&base);
            conv2d_backward_data_with(ConvAlgo::Winograd, &g, n, &f32s(&dy), &f32s(&w), &mut dx32);
            let got32: Vec<f64> = f64s(&dx32).iter().zip(&base).map(|(a, b)| a - b).collect();
            let what = format!("dx {g:?} n={n}");
            check_winograd_rounding([got64, got32], &want, &bound, &what, &mut worst);
        }
    }
    eprintln!("winograd backward data: worst error / (eps bound): {worst:?} (f64, f32)");
}

/// `dw[co][ci][ki][kj] = sum_{b,oy,ox} dy * x` in f64, and the same sum of absolute
/// values (the scale the rounding error is measured against).
fn naive_weight_grad(g: &ConvGeom, n: usize, x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (mut dw, mut abs) = (vec![0.0; g.weight_len()], vec![0.0; g.weight_len()]);
    for b in 0..n {
        for co in 0..g.cout {
            for ci in 0..g.cin {
                for ki in 0..g.k {
                    for kj in 0..g.k {
                        let at = ((co * g.cin + ci) * g.k + ki) * g.k + kj;
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let p = dy[((b * g.cout + co) * oh + oy) * ow + ox]
                                    * x[((b * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize];
                                dw[at] += p;
                                abs[at] += p.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (dw, abs)
}

#[test]
fn winograd_backward_weight_matches_naive_f64() {
    let mut rng = Rng(14);
    let mut worst = [0.0f64; 2];
    for g in winograd_geoms() {
        // One chunk, several chunks with a ragged last one.
        for n in [1, 3, 11] {
            let (x, dy) = (rng.vec(n * g.in_len()), rng.vec(n * g.out_len()));
            let (x, dy) = (f64s(&f32s(&x)), f64s(&f32s(&dy)));
            let base = f64s(&f32s(&rng.vec(g.weight_len())));
            let (want, abs) = naive_weight_grad(&g, n, &x, &dy);
            // Each transformed product mixes up to the 4x4 tile around a tap: the scale is
            // the sum of |dy| |x| over the whole tile, bounded by 16 x the tap's own sum
            // plus |base| for the final += .
            let bound: Vec<f64> = abs
                .iter()
                .zip(&base)
                .map(|(a, b)| 16.0 * a + b.abs())
                .collect();
            let got64 = added(&base, |dw| {
                conv2d_backward_weight_with(ConvAlgo::Winograd, &g, n, &x, &dy, dw)
            });
            let mut dw32 = f32s(&base);
            conv2d_backward_weight_with(
                ConvAlgo::Winograd,
                &g,
                n,
                &f32s(&x),
                &f32s(&dy),
                &mut dw32,
            );
            let got32: Vec<f64> = f64s(&dw32).iter().zip(&base).map(|(a, b)| a - b).collect();
            let what = format!("dw {g:?} n={n}");
            check_winograd_rounding([got64, got32], &want, &bound, &what, &mut worst);
        }
    }
    eprintln!("winograd backward weight: worst error / (eps bound): {worst:?} (f64, f32)");
}

/// The `_many` forms (several output gradients of one input, as the lockstep passes of
/// the executor call them) against one call per gradient, bit for bit, in f32 (where the
/// fused kernels share the input's transforms) and f64, for each algorithm.
#[test]
fn conv_backward_many_equals_one_call_per_gradient() {
    fn run<T: nasrank::backend::Real>(
        rng: &mut Rng,
        algo: ConvAlgo,
        g: &ConvGeom,
        to: fn(&[f64]) -> Vec<T>,
    ) {
        let (n, seeds) = (11, 3);
        let x = to(&rng.vec(n * g.in_len()));
        let w = to(&rng.vec(g.weight_len()));
        let dys: Vec<Vec<T>> = (0..seeds).map(|_| to(&rng.vec(n * g.out_len()))).collect();
        let base_w: Vec<Vec<T>> = (0..seeds).map(|_| to(&rng.vec(g.weight_len()))).collect();
        let base_x: Vec<Vec<T>> = (0..seeds).map(|_| to(&rng.vec(n * g.in_len()))).collect();
        let dy_refs: Vec<&[T]> = dys.iter().map(|d| d.as_slice()).collect();

        let mut many = base_w.clone();
        let mut refs: Vec<&mut [T]> = many.iter_mut().map(|d| d.as_mut_slice()).collect();
        conv2d_backward_weight_many_with(algo, g, n, &x, &dy_refs, &mut refs);
        let mut many_dx = base_x.clone();
        let mut refs: Vec<&mut [T]> = many_dx.iter_mut().map(|d| d.as_mut_slice()).collect();
        conv2d_backward_data_many_with(algo, g, n, &dy_refs, &w, &mut refs, true);
        // Overwriting (whatever the buffers held) equals adding to zeros.
        let mut written: Vec<Vec<T>> = (0..seeds).map(|_| to(&rng.vec(n * g.in_len()))).collect();
        let mut refs: Vec<&mut [T]> = written.iter_mut().map(|d| d.as_mut_slice()).collect();
        conv2d_backward_data_many_with(algo, g, n, &dy_refs, &w, &mut refs, false);
        for s in 0..seeds {
            let mut one = base_w[s].clone();
            conv2d_backward_weight_with(algo, g, n, &x, &dys[s], &mut one);
            assert!(
                many[s] == one,
                "dw of gradient {s}, {algo:?} {g:?} {}",
                std::any::type_name::<T>()
            );
            let mut one = base_x[s].clone();
            conv2d_backward_data_with(algo, g, n, &dys[s], &w, &mut one);
            assert!(
                many_dx[s] == one,
                "dx of gradient {s}, {algo:?} {g:?} {}",
                std::any::type_name::<T>()
            );
            let mut added = vec![T::zero(); n * g.in_len()];
            conv2d_backward_data_with(algo, g, n, &dys[s], &w, &mut added);
            assert!(
                written[s] == added,
                "dx written, gradient {s}, {algo:?} {g:?} {}",
                std::any::type_name::<T>()
            );
        }
    }
    let mut rng = Rng(21);
    let geoms = [
        // F(4x4) fused (one and four vectors of input channels), F(2x2) fused, grouped
        // Winograd (channels not in vectors), and a strided conv (im2col only).
        geom(16, 32, 32, 32, 3, 1, 1),
        geom(64, 16, 16, 16, 3, 1, 1),
        geom(16, 64, 8, 8, 3, 1, 1),
        geom(3, 5, 7, 9, 3, 1, 1),
        geom(4, 6, 9, 8, 3, 2, 1),
    ];
    for g in &geoms {
        for algo in [ConvAlgo::Auto, ConvAlgo::Winograd, ConvAlgo::Im2col] {
            run::<f32>(&mut rng, algo, g, f32s);
            run::<f64>(&mut rng, algo, g, |v| v.to_vec());
        }
    }
}

#[test]
fn conv_auto_picks_winograd_only_where_it_pays() {
    let mut rng = Rng(13);
    let run = |algo, g: &ConvGeom, x: &[f32], w: &[f32]| {
        let mut y = vec![f32::NAN; 2 * g.out_len()];
        conv2d_forward_with(algo, g, 2, x, w, &mut y);
        y
    };
    let wide = geom(16, 16, 9, 7, 3, 1, 1);
    let narrow = geom(3, 16, 9, 7, 3, 1, 1);
    for (g, auto_is_winograd) in [(wide, true), (narrow, false)] {
        let (x, w) = (
            f32s(&rng.vec(2 * g.in_len())),
            f32s(&rng.vec(g.weight_len())),
        );
        let (wino, im2col) = (
            run(ConvAlgo::Winograd, &g, &x, &w),
            run(ConvAlgo::Im2col, &g, &x, &w),
        );
        // The two round differently, so bitwise equality tells which one ran.
        assert_ne!(
            wino, im2col,
            "forced algorithms gave identical bits for {g:?}"
        );
        let auto = run(ConvAlgo::Auto, &g, &x, &w);
        assert_eq!(auto, if auto_is_winograd { wino } else { im2col }, "{g:?}");
    }
}

#[test]
#[should_panic(expected = "length of x")]
fn conv_rejects_wrong_input_length() {
    let g = GEOMS[0];
    let mut y = vec![0.0f64; 2 * g.out_len()];
    conv2d_forward(
        &g,
        2,
        &vec![0.0; g.in_len()],
        &vec![0.0; g.weight_len()],
        &mut y,
    );
}

// ---------------------------------------------------------------- batch norm

const EPS: f64 = 1e-5;

/// Shapes with batch statistics, per-image statistics and groups in between.
const BN_GEOMS: [BnGeom; 5] = [
    BnGeom {
        n: 4,
        c: 3,
        hw: 35,
        group: 4,
    },
    BnGeom {
        n: 4,
        c: 3,
        hw: 35,
        group: 1,
    },
    BnGeom {
        n: 4,
        c: 3,
        hw: 35,
        group: 2,
    },
    BnGeom {
        n: 1,
        c: 5,
        hw: 6,
        group: 1,
    },
    BnGeom {
        n: 3,
        c: 2,
        hw: 9,
        group: 3,
    },
];

/// Per-(group, channel) mean and inverse standard deviation, naive two-pass.
fn naive_stats(g: &BnGeom, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mut mean, mut inv) = (vec![], vec![]);
    for gi in 0..g.groups() {
        for ch in 0..g.c {
            let vals: Vec<f64> = (gi * g.group..(gi + 1) * g.group)
                .flat_map(|i| x[(i * g.c + ch) * g.hw..][..g.hw].to_vec())
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64;
            mean.push(m);
            inv.push(1.0 / (var + EPS).sqrt());
        }
    }
    (mean, inv)
}

/// `y = (x - mean) * inv_std * gamma + beta` with the given statistics.
fn bn_apply(
    g: &BnGeom,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    inv: &[f64],
) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(e, &v)| {
            let (i, ch) = (e / g.hw / g.c, e / g.hw % g.c);
            let s = i / g.group * g.c + ch;
            (v - mean[s]) * inv[s] * gamma[ch] + beta[ch]
        })
        .collect()
}

/// The true batch function: statistics computed from `x` itself.
fn bn_batch(g: &BnGeom, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let (mean, inv) = naive_stats(g, x);
    bn_apply(g, x, gamma, beta, &mean, &inv)
}

struct BnCase {
    x: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    mean: Vec<f64>,
    inv: Vec<f64>,
}

fn bn_case(rng: &mut Rng, g: &BnGeom) -> BnCase {
    // An offset and per-channel scale so the statistics are not trivially 0 and 1.
    let x: Vec<f64> = rng
        .vec(g.n * g.c * g.hw)
        .iter()
        .enumerate()
        .map(|(e, v)| 0.7 + v * (1.0 + (e / g.hw % g.c) as f64))
        .collect();
    let gamma: Vec<f64> = rng.vec(g.c).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = rng.vec(g.c);
    let (mut mean, mut inv) = (
        vec![f64::NAN; g.groups() * g.c],
        vec![f64::NAN; g.groups() * g.c],
    );
    let mut y = vec![f64::NAN; x.len()];
    batchnorm_forward(g, EPS, &x, &gamma, &beta, &mut y, &mut mean, &mut inv);
    BnCase {
        x,
        gamma,
        beta,
        mean,
        inv,
    }
}

#[test]
fn batchnorm_forward_matches_naive() {
    let mut rng = Rng(5);
    for g in &BN_GEOMS {
        let c = bn_case(&mut rng, g);
        let (mean, inv) = naive_stats(g, &c.x);
        let want = bn_apply(g, &c.x, &c.gamma, &c.beta, &mean, &inv);
        let (mut m, mut s) = (vec![0.0; mean.len()], vec![0.0; mean.len()]);
        let mut y = vec![f64::NAN; c.x.len()];
        batchnorm_forward(g, EPS, &c.x, &c.gamma, &c.beta, &mut y, &mut m, &mut s);
        assert_close(&y, &want, 1e-12, &format!("y {g:?}"));
        assert_close(&m, &mean, 1e-12, &format!("mean {g:?}"));
        assert_close(&s, &inv, 1e-12, &format!("inv_std {g:?}"));

        let (mut m32, mut s32) = (vec![0.0f32; mean.len()], vec![0.0f32; mean.len()]);
        let mut y32 = vec![f32::NAN; c.x.len()];
        let (g32, b32) = (f32s(&c.gamma), f32s(&c.beta));
        batchnorm_forward(
            g,
            EPS as f32,
            &f32s(&c.x),
            &g32,
            &b32,
            &mut y32,
            &mut m32,
            &mut s32,
        );
        assert_close(&f64s(&y32), &want, 1e-5, &format!("f32 y {g:?}"));
        assert_close(&f64s(&s32), &inv, 1e-5, &format!("f32 inv_std {g:?}"));
    }
}

/// Engine backward in `mode`, from non-zero gradient buffers: (dx, dgamma, dbeta) added.
fn bn_grads(rng: &mut Rng, g: &BnGeom, mode: BnGrad, c: &BnCase, r: &[f64]) -> [Vec<f64>; 3] {
    let (bx, bg, bb) = (rng.vec(c.x.len()), rng.vec(g.c), rng.vec(g.c));
    let (mut dx, mut dg, mut db) = (bx.clone(), bg.clone(), bb.clone());
    batchnorm_backward(
        g,
        mode,
        &c.x,
        &c.gamma,
        &c.mean,
        &c.inv,
        r,
        Some(&mut dx),
        &mut dg,
        &mut db,
    );
    // The data-only entry point (no parameter gradients) adds the same dx.
    let mut dx_only = bx.clone();
    batchnorm_backward_data(g, mode, &c.x, &c.gamma, &c.mean, &c.inv, r, &mut dx_only);
    assert_eq!(dx_only, dx, "batchnorm_backward_data {mode:?} {g:?}");
    let sub = |a: Vec<f64>, b: Vec<f64>| a.iter().zip(&b).map(|(a, b)| a - b).collect();
    [sub(dx, bx), sub(dg, bg), sub(db, bb)]
}

#[test]
fn batchnorm_full_backward_matches_finite_differences_of_the_batch_function() {
    let mut rng = Rng(6);
    for g in &BN_GEOMS {
        let c = bn_case(&mut rng, g);
        let r = rng.vec(c.x.len());
        let [dx, dg, db] = bn_grads(&mut rng, g, BnGrad::Full, &c, &r);
        let fdx = fd(&c.x, |x| dot(&bn_batch(g, x, &c.gamma, &c.beta), &r));
        assert_close(&dx, &fdx, 1e-6, &format!("dx {g:?}"));
        let fdg = fd(&c.gamma, |p| dot(&bn_batch(g, &c.x, p, &c.beta), &r));
        assert_close(&dg, &fdg, 1e-6, &format!("dgamma {g:?}"));
        let fdb = fd(&c.beta, |p| dot(&bn_batch(g, &c.x, &c.gamma, p), &r));
        assert_close(&db, &fdb, 1e-6, &format!("dbeta {g:?}"));
    }
}

#[test]
fn batchnorm_frozen_backward_matches_finite_differences_with_fixed_statistics() {
    let mut rng = Rng(7);
    for g in &BN_GEOMS {
        let c = bn_case(&mut rng, g);
        let r = rng.vec(c.x.len());
        let [dx, dg, db] = bn_grads(&mut rng, g, BnGrad::FrozenStats, &c, &r);
        let frozen =
            |x: &[f64], gamma: &[f64], beta: &[f64]| bn_apply(g, x, gamma, beta, &c.mean, &c.inv);
        let fdx = fd(&c.x, |x| dot(&frozen(x, &c.gamma, &c.beta), &r));
        assert_close(&dx, &fdx, 1e-6, &format!("dx {g:?}"));
        let fdg = fd(&c.gamma, |p| dot(&frozen(&c.x, p, &c.beta), &r));
        assert_close(&dg, &fdg, 1e-6, &format!("dgamma {g:?}"));
        let fdb = fd(&c.beta, |p| dot(&frozen(&c.x, &c.gamma, p), &r));
        assert_close(&db, &fdb, 1e-6, &format!("dbeta {g:?}"));

        // Without dx the parameter gradients are unchanged, and f32 agrees with f64.
        let (mut dg2, mut db2) = (vec![0.0; g.c], vec![0.0; g.c]);
        batchnorm_backward(
            g,
            BnGrad::FrozenStats,
            &c.x,
            &c.gamma,
            &c.mean,
            &c.inv,
            &r,
            None,
            &mut dg2,
            &mut db2,
        );
        assert_close(&dg2, &dg, 1e-12, "dgamma without dx");
        assert_close(&db2, &db, 1e-12, "dbeta without dx");
        for mode in [BnGrad::Full, BnGrad::FrozenStats] {
            let want = bn_grads(&mut rng, g, mode, &c, &r);
            let (mut dx32, mut dg32, mut db32) = (
                vec![0.0f32; c.x.len()],
                vec![0.0f32; g.c],
                vec![0.0f32; g.c],
            );
            let (m32, s32) = (f32s(&c.mean), f32s(&c.inv));
            batchnorm_backward(
                g,
                mode,
                &f32s(&c.x),
                &f32s(&c.gamma),
                &m32,
                &s32,
                &f32s(&r),
                Some(&mut dx32),
                &mut dg32,
                &mut db32,
            );
            assert_close(
                &f64s(&dx32),
                &want[0],
                1e-4,
                &format!("f32 dx {mode:?} {g:?}"),
            );
            assert_close(
                &f64s(&dg32),
                &want[1],
                1e-4,
                &format!("f32 dgamma {mode:?} {g:?}"),
            );
            assert_close(
                &f64s(&db32),
                &want[2],
                1e-4,
                &format!("f32 dbeta {mode:?} {g:?}"),
            );
        }
    }
}

#[test]
fn batchnorm_per_sample_param_grads_match_batched() {
    let mut rng = Rng(8);
    for g in &BN_GEOMS {
        let c = bn_case(&mut rng, g);
        let dy = rng.vec(c.x.len());
        let (mut pg, mut pb) = (rng.vec(g.n * g.c), rng.vec(g.n * g.c));
        batchnorm_param_grad_per_sample(g, &c.x, &c.mean, &c.inv, &dy, &mut pg, &mut pb);
        let (mut dg, mut db) = (vec![0.0; g.c], vec![0.0; g.c]);
        batchnorm_backward(
            g,
            BnGrad::FrozenStats,
            &c.x,
            &c.gamma,
            &c.mean,
            &c.inv,
            &dy,
            None,
            &mut dg,
            &mut db,
        );
        let colsum = |v: &[f64]| {
            (0..g.c)
                .map(|ch| (0..g.n).map(|i| v[i * g.c + ch]).sum())
                .collect::<Vec<f64>>()
        };
        assert_close(&colsum(&pg), &dg, 1e-12, &format!("sum dgamma {g:?}"));
        assert_close(&colsum(&pb), &db, 1e-12, &format!("sum dbeta {g:?}"));
        let one = BnGeom {
            n: 1,
            c: g.c,
            hw: g.hw,
            group: 1,
        };
        let len = g.c * g.hw;
        for i in 0..g.n {
            let s = i / g.group * g.c..(i / g.group + 1) * g.c;
            let (mut dg1, mut db1) = (vec![0.0; g.c], vec![0.0; g.c]);
            let (xi, dyi) = (&c.x[i * len..(i + 1) * len], &dy[i * len..(i + 1) * len]);
            batchnorm_backward(
                &one,
                BnGrad::FrozenStats,
                xi,
                &c.gamma,
                &c.mean[s.clone()],
                &c.inv[s],
                dyi,
                None,
                &mut dg1,
                &mut db1,
            );
            assert_close(
                &pg[i * g.c..(i + 1) * g.c],
                &dg1,
                1e-12,
                &format!("image {i} dgamma {g:?}"),
            );
            assert_close(
                &pb[i * g.c..(i + 1) * g.c],
                &db1,
                1e-12,
                &format!("image {i} dbeta {g:?}"),
            );
        }
    }
}

// ---------------------------------------------------------------- ReLU

#[test]
fn relu_matches_naive_and_finite_differences() {
    let mut rng = Rng(9);
    // Values kept away from the kink so finite differences are exact; the long slice spans
    // several parallel chunks.
    let away = |v: f64| if v.abs() < 0.01 { v + 0.05 } else { v };
    for len in [37, 70_001] {
        let x: Vec<f64> = rng.vec(len).into_iter().map(away).collect();
        let mut y = vec![f64::NAN; len];
        relu_forward(&x, &mut y);
        let want: Vec<f64> = x.iter().map(|&v| v.max(0.0)).collect();
        assert_close(&y, &want, 0.0, "relu forward");
        let mut y32 = vec![f32::NAN; len];
        relu_forward(&f32s(&x), &mut y32);
        assert_close(&f64s(&y32), &want, 1e-7, "relu forward f32");
        let (dy, base) = (rng.vec(len), rng.vec(len));
        let dx = added(&base, |dx| relu_backward(&x, &dy, dx));
        let want: Vec<f64> = x
            .iter()
            .zip(&dy)
            .map(|(&x, &d)| if x > 0.0 { d } else { 0.0 })
            .collect();
        assert_close(&dx, &want, 1e-15, "relu backward");
        if len < 100 {
            let fdx = fd(&x, |x| {
                let mut y = vec![0.0; len];
                relu_forward(x, &mut y);
                dot(&y, &dy)
            });
            assert_close(&dx, &fdx, 1e-8, "relu backward vs fd");
        }
    }
}

// ---------------------------------------------------------------- pooling

fn naive_avg3(n: usize, c: usize, h: usize, w: usize, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for p in 0..n * c {
        for i in 0..h {
            for j in 0..w {
                let (mut s, mut cnt) = (0.0, 0.0);
                for di in -1isize..=1 {
                    for dj in -1isize..=1 {
                        let (a, b) = (i as isize + di, j as isize + dj);
                        if a >= 0 && b >= 0 && a < h as isize && b < w as isize {
                            s += x[(p * h + a as usize) * w + b as usize];
                            cnt += 1.0;
                        }
                    }
                }
                y[(p * h + i) * w + j] = s / cnt;
            }
        }
    }
    y
}

fn naive_avg2(n: usize, c: usize, h: usize, w: usize, x: &[f64]) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0; n * c * oh * ow];
    for p in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let at = |a: usize, b: usize| x[(p * h + a) * w + b];
                y[(p * oh + i) * ow + j] = (at(2 * i, 2 * j)
                    + at(2 * i, 2 * j + 1)
                    + at(2 * i + 1, 2 * j)
                    + at(2 * i + 1, 2 * j + 1))
                    / 4.0;
            }
        }
    }
    y
}

type Fwd = fn(usize, usize, usize, usize, &[f64], &mut [f64]);
type Bwd = fn(usize, usize, usize, usize, &[f64], &mut [f64]);
type Fwd32 = fn(usize, usize, usize, usize, &[f32], &mut [f32]);

/// Checks a pooling forward against `naive` (f64 and f32) and its backward against FD.
fn check_pool(
    name: &str,
    out_hw: fn(usize, usize) -> usize,
    fwd: Fwd,
    fwd32: Fwd32,
    bwd: Bwd,
    naive: Fwd,
) {
    let mut rng = Rng(10);
    for (n, c, h, w) in [
        (2, 3, 5, 7),
        (1, 2, 1, 4),
        (3, 2, 2, 2),
        (1, 1, 4, 6),
        (1, 2, 6, 1),
    ] {
        let x = rng.vec(n * c * h * w);
        let olen = n * c * out_hw(h, w);
        let run = |x: &[f64]| {
            let mut y = vec![f64::NAN; olen];
            fwd(n, c, h, w, x, &mut y);
            y
        };
        let mut want = vec![0.0; olen];
        naive(n, c, h, w, &x, &mut want);
        let what = format!("{name} {n}x{c}x{h}x{w}");
        assert_close(&run(&x), &want, 1e-14, &what);
        let mut y32 = vec![f32::NAN; olen];
        fwd32(n, c, h, w, &f32s(&x), &mut y32);
        assert_close(&f64s(&y32), &want, 1e-6, &format!("f32 {what}"));
        let (r, base) = (rng.vec(olen), rng.vec(x.len()));
        let dx = added(&base, |dx| bwd(n, c, h, w, &r, dx));
        assert_close(
            &dx,
            &fd(&x, |x| dot(&run(x), &r)),
            1e-8,
            &format!("backward {what}"),
        );
    }
}

#[test]
fn avgpool3x3_matches_naive_and_finite_differences() {
    check_pool(
        "avgpool3x3",
        |h, w| h * w,
        avgpool3x3_forward,
        avgpool3x3_forward,
        avgpool3x3_backward,
        |n, c, h, w, x, y| y.copy_from_slice(&naive_avg3(n, c, h, w, x)),
    );
}

#[test]
fn avgpool2x2_matches_naive_and_finite_differences() {
    check_pool(
        "avgpool2x2",
        |h, w| (h / 2) * (w / 2),
        avgpool2x2_forward,
        avgpool2x2_forward,
        avgpool2x2_backward,
        |n, c, h, w, x, y| y.copy_from_slice(&naive_avg2(n, c, h, w, x)),
    );
}

#[test]
fn global_avgpool_matches_naive_and_finite_differences() {
    let mut rng = Rng(11);
    let (n, c, hw) = (3, 4, 35);
    let x = rng.vec(n * c * hw);
    let run = |x: &[f64]| {
        let mut y = vec![f64::NAN; n * c];
        global_avgpool_forward(n, c, hw, x, &mut y);
        y
    };
    let want: Vec<f64> = x
        .chunks(hw)
        .map(|p| p.iter().sum::<f64>() / hw as f64)
        .collect();
    assert_close(&run(&x), &want, 1e-14, "global forward");
    let mut y32 = vec![f32::NAN; n * c];
    global_avgpool_forward(n, c, hw, &f32s(&x), &mut y32);
    assert_close(&f64s(&y32), &want, 1e-6, "global forward f32");
    let (r, base) = (rng.vec(n * c), rng.vec(x.len()));
    let dx = added(&base, |dx| global_avgpool_backward(n, c, hw, &r, dx));
    assert_close(&dx, &fd(&x, |x| dot(&run(x), &r)), 1e-8, "global backward");
}

// ---------------------------------------------------------------- linear

#[test]
fn linear_matches_naive_and_finite_differences() {
    let mut rng = Rng(12);
    for (n, fin, fout) in [(1, 7, 3), (5, 13, 10), (3, 64, 1)] {
        let (x, w, b) = (rng.vec(n * fin), rng.vec(fout * fin), rng.vec(fout));
        let run = |x: &[f64], w: &[f64], b: Option<&[f64]>| {
            let mut y = vec![f64::NAN; n * fout];
            linear_forward(n, fin, fout, x, w, b, &mut y);
            y
        };
        let naive = |bias: bool| -> Vec<f64> {
            (0..n * fout)
                .map(|e| {
                    let (i, o) = (e / fout, e % fout);
                    let s: f64 = (0..fin).map(|f| x[i * fin + f] * w[o * fin + f]).sum();
                    s + if bias { b[o] } else { 0.0 }
                })
                .collect()
        };
        assert_close(
            &run(&x, &w, Some(&b)),
            &naive(true),
            1e-13,
            "linear with bias",
        );
        assert_close(
            &run(&x, &w, None),
            &naive(false),
            1e-13,
            "linear without bias",
        );
        let mut y32 = vec![f32::NAN; n * fout];
        linear_forward(
            n,
            fin,
            fout,
            &f32s(&x),
            &f32s(&w),
            Some(&f32s(&b)),
            &mut y32,
        );
        assert_close(&f64s(&y32), &naive(true), 1e-5, "linear f32");

        let r = rng.vec(n * fout);
        let (bx, bw, bb) = (rng.vec(x.len()), rng.vec(w.len()), rng.vec(fout));
        let (mut dx, mut dw, mut db) = (bx.clone(), bw.clone(), bb.clone());
        linear_backward(
            n,
            fin,
            fout,
            &x,
            &w,
            &r,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
        );
        let sub = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a - b).collect::<Vec<_>>();
        let fdx = fd(&x, |x| dot(&run(x, &w, Some(&b)), &r));
        assert_close(&sub(&dx, &bx), &fdx, 1e-8, "linear dx");
        let fdw = fd(&w, |w| dot(&run(&x, w, Some(&b)), &r));
        assert_close(&sub(&dw, &bw), &fdw, 1e-8, "linear dw");
        let fdb = fd(&b, |b| dot(&run(&x, &w, Some(b)), &r));
        assert_close(&sub(&db, &bb), &fdb, 1e-8, "linear db");

        // Per sample: overwritten, sums to the batch, each equals a batch of one.
        let (mut pw, mut pb) = (rng.vec(n * fout * fin), rng.vec(n * fout));
        linear_grad_per_sample(n, fin, fout, &x, &r, &mut pw, Some(&mut pb));
        let mut dw_only = vec![0.0; w.len()];
        linear_backward(n, fin, fout, &x, &w, &r, None, &mut dw_only, None);
        let mut sum = vec![0.0; w.len()];
        pw.chunks(w.len())
            .for_each(|p| sum.iter_mut().zip(p).for_each(|(s, v)| *s += v));
        assert_close(&sum, &dw_only, 1e-12, "per-sample dw sum");
        for i in 0..n {
            let (mut dwi, mut dbi) = (vec![0.0; w.len()], vec![0.0; fout]);
            let (xi, ri) = (&x[i * fin..(i + 1) * fin], &r[i * fout..(i + 1) * fout]);
            linear_backward(1, fin, fout, xi, &w, ri, None, &mut dwi, Some(&mut dbi));
            assert_close(
                &pw[i * w.len()..(i + 1) * w.len()],
                &dwi,
                1e-14,
                "per-sample dw",
            );
            assert_close(&pb[i * fout..(i + 1) * fout], &dbi, 0.0, "per-sample db");
        }
    }
}

// ---------------------------------------------------------------- loss

fn ce(n: usize, k: usize, z: &[f64], labels: &[usize], red: Reduction) -> (f64, Vec<f64>) {
    let mut d = vec![f64::NAN; z.len()];
    let l = softmax_cross_entropy(n, k, z, labels, red, &mut d);
    (l, d)
}

#[test]
fn cross_entropy_matches_naive_and_finite_differences() {
    let mut rng = Rng(13);
    let (n, k) = (4, 5);
    let z: Vec<f64> = rng.vec(n * k).iter().map(|v| 3.0 * v).collect();
    let labels = [0, 4, 2, 2];
    let naive: f64 = (0..n)
        .map(|i| {
            let row = &z[i * k..(i + 1) * k];
            -(row[labels[i]].exp() / row.iter().map(|v| v.exp()).sum::<f64>()).ln()
        })
        .sum();
    let (sum, dsum) = ce(n, k, &z, &labels, Reduction::Sum);
    let (mean, dmean) = ce(n, k, &z, &labels, Reduction::Mean);
    assert!((sum - naive).abs() < 1e-12, "sum {sum} vs {naive}");
    assert!(
        (mean - naive / n as f64).abs() < 1e-12,
        "mean {mean} vs {}",
        naive / n as f64
    );
    let scaled: Vec<f64> = dsum.iter().map(|d| d / n as f64).collect();
    assert_close(&dmean, &scaled, 1e-15, "mean gradient is sum gradient / n");
    for red in [Reduction::Sum, Reduction::Mean] {
        let (_, d) = ce(n, k, &z, &labels, red);
        assert_close(
            &d,
            &fd(&z, |z| ce(n, k, z, &labels, red).0),
            1e-8,
            &format!("{red:?} gradient"),
        );
    }
    let mut d32 = vec![f32::NAN; n * k];
    let l32 = softmax_cross_entropy(n, k, &f32s(&z), &labels, Reduction::Mean, &mut d32);
    assert!((l32 as f64 - mean).abs() < 1e-5);
    assert_close(&f64s(&d32), &dmean, 1e-6, "f32 gradient");
}

#[test]
fn cross_entropy_is_stable_for_large_logits() {
    let z = [1000.0, 999.0, 998.0, -1000.0, 1000.0, 0.0];
    let want = [
        (1.0 + (-1.0f64).exp() + (-2.0f64).exp()).ln(),
        1000.0 + (1.0 + (-1000.0f64).exp()).ln(),
    ];
    let (loss, d) = ce(2, 3, &z, &[0, 2], Reduction::Sum);
    assert!(
        (loss - want.iter().sum::<f64>()).abs() < 1e-9,
        "loss {loss}"
    );
    assert!(d.iter().all(|v| v.is_finite()));
    assert!(
        (d[5] + 1.0).abs() < 1e-12 && (d[4] - 1.0).abs() < 1e-12,
        "{d:?}"
    );
    let mut d32 = [f32::NAN; 6];
    let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    let l32 = softmax_cross_entropy(2, 3, &z32, &[0, 2], Reduction::Mean, &mut d32);
    assert!(
        l32.is_finite() && (l32 as f64 - want.iter().sum::<f64>() / 2.0).abs() < 1e-3,
        "f32 loss {l32}"
    );
    assert!(d32.iter().all(|v| v.is_finite()));
}

// ---------------------------------------------------------------- add_assign

#[test]
fn add_assign_adds_across_chunks() {
    let mut rng = Rng(14);
    for len in [5, 50_003] {
        let (a, b) = (rng.vec(len), rng.vec(len));
        let mut d = a.clone();
        add_assign(&mut d, &b);
        let want: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
        assert_close(&d, &want, 0.0, "add_assign");
    }
}

#[test]
#[should_panic(expected = "length mismatch")]
fn add_assign_rejects_length_mismatch() {
    add_assign(&mut [0.0f32; 3], &[0.0; 4]);
}

// ---------------------------------------------------------------- memory-bound forwards

/// `(n, c, h, w)` of the pools' bit-exactness tests: stage shapes, single rows and columns,
/// odd sides, many planes per task.
const POOL3_SHAPES: [(usize, usize, usize, usize); 10] = [
    (2, 16, 32, 32),
    (3, 5, 8, 8),
    (1, 3, 1, 1),
    (1, 2, 1, 5),
    (1, 2, 5, 1),
    (2, 3, 2, 2),
    (1, 1, 3, 7),
    (1, 300, 9, 9),
    (2, 4, 16, 16),
    (1, 3, 17, 15),
];

/// `got` and `want` equal bit for bit.
fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (e, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{what} at {e}: {a} vs {b}");
    }
}

/// `1 / (in-bounds taps)` at position `i` of `len`, in f32.
fn inv_taps_f32(i: usize, len: usize) -> f32 {
    1.0 / (1 + usize::from(i > 0) + usize::from(i + 1 < len)) as f32
}

/// The 3x3 box sum over each `h x w` plane of `v(p, i, j)` in f32, adding in the pools'
/// documented order: horizontal `(s[j] + s[j-1]) + s[j+1]`, then vertical
/// `(R[i] + R[i-1]) + R[i+1]`, in-bounds terms only.
fn ordered_box3_f32(
    planes: usize,
    h: usize,
    w: usize,
    v: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut out = vec![0.0f32; planes * h * w];
    for p in 0..planes {
        let hsum = |i: usize, j: usize| {
            let mut s = v(p, i, j);
            if j > 0 {
                s += v(p, i, j - 1);
            }
            if j + 1 < w {
                s += v(p, i, j + 1);
            }
            s
        };
        for i in 0..h {
            for j in 0..w {
                let mut s = hsum(i, j);
                if i > 0 {
                    s += hsum(i - 1, j);
                }
                if i + 1 < h {
                    s += hsum(i + 1, j);
                }
                out[(p * h + i) * w + j] = s;
            }
        }
    }
    out
}

/// The 3x3 average pool in f32 in the documented order: the box sum, then
/// `* (1 / cols(j)) * (1 / rows(i))`.
fn ordered_avg3_f32(n: usize, c: usize, h: usize, w: usize, x: &[f32]) -> Vec<f32> {
    let mut y = ordered_box3_f32(n * c, h, w, |p, i, j| x[(p * h + i) * w + j]);
    for (e, y) in y.iter_mut().enumerate() {
        let (i, j) = (e / w % h, e % w);
        *y = *y * inv_taps_f32(j, w) * inv_taps_f32(i, h);
    }
    y
}

#[test]
fn avgpool3x3_forward_is_bit_identical_to_the_ordered_reference() {
    let mut rng = Rng(21);
    for (n, c, h, w) in POOL3_SHAPES {
        let x = f32s(&rng.vec(n * c * h * w));
        let mut y = vec![f32::NAN; x.len()];
        avgpool3x3_forward(n, c, h, w, &x, &mut y);
        let want = ordered_avg3_f32(n, c, h, w, &x);
        assert_same_bits(&y, &want, &format!("{n}x{c}x{h}x{w}"));
    }
}

/// The 3x3 average pool's backward in f32 in the documented order: `dy` scaled by
/// `(1 / rows(i)) * (1 / cols(j))`, the box sum, then added to `dx`.
fn ordered_avg3_backward_f32(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    dy: &[f32],
    dx: &[f32],
) -> Vec<f32> {
    let scaled = |p: usize, i: usize, j: usize| {
        dy[(p * h + i) * w + j] * inv_taps_f32(i, h) * inv_taps_f32(j, w)
    };
    let sums = ordered_box3_f32(n * c, h, w, scaled);
    dx.iter().zip(&sums).map(|(d, s)| d + s).collect()
}

#[test]
fn avgpool3x3_backward_is_bit_identical_to_the_ordered_reference() {
    let mut rng = Rng(22);
    for (n, c, h, w) in POOL3_SHAPES {
        let (dy, base) = (f32s(&rng.vec(n * c * h * w)), f32s(&rng.vec(n * c * h * w)));
        let mut dx = base.clone();
        avgpool3x3_backward(n, c, h, w, &dy, &mut dx);
        let want = ordered_avg3_backward_f32(n, c, h, w, &dy, &base);
        assert_same_bits(&dx, &want, &format!("{n}x{c}x{h}x{w}"));
    }
}

/// `|got - want| <= tol * |want|` elementwise.
fn assert_rel(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs(),
            "{what}: index {i}: got {g}, want {w} (relative tol {tol})"
        );
    }
}

#[test]
fn batchnorm_forward_statistics_hold_for_a_mean_far_above_the_spread() {
    // Channel means 1e3 times their spread, and each group's first value (the one-pass
    // shift) an outlier ten spreads out: the worst case for a shifted one-pass variance.
    let mut rng = Rng(22);
    for g in [
        BnGeom {
            n: 8,
            c: 3,
            hw: 1024,
            group: 8,
        },
        BnGeom {
            n: 8,
            c: 5,
            hw: 64,
            group: 2,
        },
        BnGeom {
            n: 4,
            c: 2,
            hw: 7,
            group: 1,
        },
    ] {
        let spread = |ch: usize| 0.25 * (1 + ch) as f64;
        let mut x: Vec<f64> = rng
            .vec(g.n * g.c * g.hw)
            .iter()
            .enumerate()
            .map(|(e, v)| {
                let ch = e / g.hw % g.c;
                let sign = if ch % 2 == 0 { 1.0 } else { -1.0 };
                spread(ch) * (sign * 1e3 + v)
            })
            .collect();
        for gi in 0..g.groups() {
            for ch in 0..g.c {
                x[(gi * g.group * g.c + ch) * g.hw] += 10.0 * spread(ch);
            }
        }
        let (want_mean, want_inv) = naive_stats(&g, &x);
        let (gamma, beta) = (vec![1.0; g.c], vec![0.0; g.c]);
        let stats = g.groups() * g.c;
        let (mut mean, mut inv) = (vec![0.0; stats], vec![0.0; stats]);
        let mut y = vec![0.0; x.len()];
        batchnorm_forward(&g, EPS, &x, &gamma, &beta, &mut y, &mut mean, &mut inv);
        // f64: the mean is shift + mean deviation, within a few ulps of |mean|. inv_std: the
        // shifted sums lose log10(1 + (dev/std)^2) ~ 2.5 digits to cancellation at this
        // outlier shift on top of the summation rounding; measured <= 4e-14 relative, while
        // the same one-pass sums without the shift err by 2e-10 here. 2e-12 sits between.
        assert_rel(&mean, &want_mean, 1e-13, &format!("mean {g:?}"));
        assert_rel(&inv, &want_inv, 2e-12, &format!("inv_std {g:?}"));

        // f32 input: statistics of the rounded values, each rounded once to f32, so within
        // one f32 ulp (2^-23 relative) of the f64 two-pass statistics of the same values.
        let x32 = f32s(&x);
        let (want_mean, want_inv) = naive_stats(&g, &f64s(&x32));
        let (mut m32, mut i32) = (vec![0.0f32; stats], vec![0.0f32; stats]);
        let mut y32 = vec![0.0f32; x.len()];
        let (g32, b32) = (f32s(&gamma), f32s(&beta));
        batchnorm_forward(
            &g, EPS as f32, &x32, &g32, &b32, &mut y32, &mut m32, &mut i32,
        );
        let ulp = f64::from(f32::EPSILON);
        assert_rel(&f64s(&m32), &want_mean, ulp, &format!("f32 mean {g:?}"));
        assert_rel(&f64s(&i32), &want_inv, ulp, &format!("f32 inv_std {g:?}"));
    }
}

#[test]
fn batchnorm_forward_matches_naive_at_a_stage_shape() {
    // Many planes per task and several tasks: the parallel split and its reduction.
    let mut rng = Rng(23);
    let g = BnGeom {
        n: 32,
        c: 16,
        hw: 32 * 32,
        group: 32,
    };
    let c = bn_case(&mut rng, &g);
    let (mean, inv) = naive_stats(&g, &c.x);
    let want = bn_apply(&g, &c.x, &c.gamma, &c.beta, &mean, &inv);
    let mut y = vec![f64::NAN; c.x.len()];
    let (mut m, mut s) = (vec![0.0; g.c], vec![0.0; g.c]);
    batchnorm_forward(&g, EPS, &c.x, &c.gamma, &c.beta, &mut y, &mut m, &mut s);
    assert_close(&y, &want, 1e-12, "y");
    assert_rel(&m, &mean, 1e-12, "mean");
    assert_rel(&s, &inv, 1e-12, "inv_std");
}

/// The first-gradient ops (`relu_backward_first`, `bn_backward_data_first`) write over
/// whatever the buffer holds exactly what their accumulating forms add to a zeroed one,
/// bit for bit: NaN garbage in `dx` must not leak, and a -0 gradient must come out +0
/// (as `0 + -0` does). In f32 and f64, over several parallel chunks.
#[test]
fn first_gradient_ops_equal_adding_to_zeros_whatever_the_buffer_holds() {
    use nasrank::backend::Backend;
    fn check<T: nasrank::backend::Real>() {
        let be = CpuBackend::<T>::new();
        let mut rng = Rng(21);
        let len = 70_001;
        let t = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64_rounded).collect() };
        let mut x = t(rng.vec(len));
        x[0] = T::from_f64_rounded(1.0);
        x[1] = T::from_f64_rounded(-1.0);
        let mut dy = t(rng.vec(len));
        // A -0 gradient through an open and a closed unit.
        dy[0] = T::from_f64_rounded(-0.0);
        dy[1] = T::from_f64_rounded(-0.0);
        let (mut want, mut got) = (
            vec![T::zero(); len],
            vec![T::from_f64_rounded(f64::NAN); len],
        );
        be.relu_backward(&x, &dy, &mut want);
        be.relu_backward_first(&x, &dy, &mut got);
        let bits = |v: &[T]| {
            v.iter()
                .map(|x| x.to_f64_lossless().to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&got), bits(&want), "relu");
        for g in &BN_GEOMS {
            let c = bn_case(&mut rng, g);
            let (x, gamma, mean, inv) = (t(c.x.clone()), t(c.gamma), t(c.mean), t(c.inv));
            let dy = t(rng.vec(x.len()));
            for mode in [BnGrad::Full, BnGrad::FrozenStats] {
                let mut want = vec![T::zero(); x.len()];
                let mut got = vec![T::from_f64_rounded(f64::NAN); x.len()];
                be.bn_backward_data(g, mode, &x, &gamma, &mean, &inv, &dy, &mut want);
                be.bn_backward_data_first(g, mode, &x, &gamma, &mean, &inv, &dy, &mut got);
                assert_eq!(bits(&got), bits(&want), "bn {mode:?} {g:?}");
            }
        }
    }
    check::<f32>();
    check::<f64>();
}

/// `channel_stats` (the CPU runs the statistics side by side) writes what each
/// `channel_sums` / `channel_gram` call alone writes, bit for bit, at its own place, and
/// keeps the accumulator's other entries: raw and centred Grams, a map with itself and a
/// pixel-unshuffled view against a plain one.
#[test]
fn channel_stats_equal_the_calls_one_by_one() {
    use nasrank::backend::{Backend, ChannelStat, ChannelView};
    let be = CpuBackend::<f32>::new();
    let mut rng = Rng(31);
    let n = 3;
    let a = f32s(&rng.vec(n * 8 * 4 * 4)); // 8 channels of 4x4
    let b = f32s(&rng.vec(n * 32 * 2 * 2)); // 32 channels of 2x2
    let (va, vb) = (ChannelView::plain(8, 16), ChannelView::plain(32, 4));
    let unshuffled = ChannelView::unshuffled(8, 4, 4, 2); // 32 channels of 2x2
    let stats = [
        ChannelStat::Sums {
            a: &a,
            view: va,
            at: 1,
        },
        ChannelStat::Gram {
            a: &a,
            va,
            b: &a,
            vb: va,
            centred: false,
            at: 17,
        },
        ChannelStat::Gram {
            a: &a,
            va: unshuffled,
            b: &b,
            vb,
            centred: false,
            at: 81,
        },
        ChannelStat::Gram {
            a: &b,
            va: vb,
            b: &b,
            vb,
            centred: true,
            at: 81 + 1024,
        },
        ChannelStat::Sums {
            a: &b,
            view: vb,
            at: 81 + 2048,
        },
    ];
    let len = 81 + 2048 + 64 + 3;
    let mut want = be.alloc_acc(len);
    want.iter_mut().enumerate().for_each(|(i, v)| *v = i as f64);
    let mut got = want.clone();
    for stat in &stats {
        match *stat {
            ChannelStat::Sums { a, view, at } => be.channel_sums(a, view, n, &mut want, at),
            ChannelStat::Gram {
                a,
                va,
                b,
                vb,
                centred,
                at,
            } => be.channel_gram(a, va, b, vb, n, centred, &mut want, at),
        }
    }
    be.channel_stats(&stats, n, &mut got);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    assert_eq!(got[0], 0.0, "an entry no statistic writes is kept");
    assert_eq!(got[len - 1], (len - 1) as f64);
}
