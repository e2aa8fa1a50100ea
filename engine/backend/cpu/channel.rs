//! Channel statistics of activation maps ([`Backend::channel_sums`],
//! [`Backend::channel_gram`], [`Backend::count_unequal`]): per-channel sums and constancy
//! counts, and channel Gram matrices, raw or centred, of maps read through a
//! [`ChannelView`] (a pixel-unshuffle is index arithmetic).
//!
//! Everything is in f64 on the widened values, in these orders (the CUDA kernels sum in
//! others, so the two backends agree to rounding):
//! - a channel's sum: each image's positions in order, then the images in order;
//! - the raw Gram: one f64 GEMM per image (`gemm` crate), accumulated image by image;
//! - the centred Gram: each entry one sequential sum over (image, position) of products
//!   of values less their channel's mean (each value centred once, as `torch.corrcoef`'s
//!   reference formula does), entries `(j, i)` of a map with itself mirrored from `(i, j)`
//!   (the same products).
//!
//! [`Backend::channel_sums`]: crate::backend::Backend::channel_sums
//! [`Backend::channel_gram`]: crate::backend::Backend::channel_gram
//! [`Backend::count_unequal`]: crate::backend::Backend::count_unequal

use rayon::prelude::*;

use super::gemm::{matmul, Mat, Parallelism};
use crate::backend::{ChannelView, Real};

/// The first `n` images of `a` read through `view`, widened to f64: `[n][C][positions]`.
pub fn gather<T: Real>(a: &[T], view: ChannelView, n: usize) -> Vec<f64> {
    check_images(a, view, n);
    let mut out = vec![0.0; n * view.image_len()];
    for (image, x) in out.chunks_exact_mut(view.image_len()).enumerate() {
        gather_image(a, view, image, x);
    }
    out
}

fn check_images<T>(a: &[T], view: ChannelView, n: usize) {
    let len = n * view.image_len();
    assert!(
        a.len() >= len,
        "channel view of {n} images: {} values, {len} needed",
        a.len()
    );
}

/// Image `image` of `a` read through `view`, widened to f64 into `out` (`[C][positions]`).
/// The statistics below take one image at a time into one reused buffer: gathering a
/// whole batch (megabytes of fresh f64 per map) cost more in page faults than the sums.
fn gather_image<T: Real>(a: &[T], view: ChannelView, image: usize, out: &mut [f64]) {
    let len = view.image_len();
    if view.s == 1 {
        let values = &a[image * len..(image + 1) * len];
        out.iter_mut()
            .zip(values)
            .for_each(|(o, v)| *o = v.to_f64_lossless());
        return;
    }
    let hw = view.positions();
    for (ch, row) in out.chunks_exact_mut(hw).enumerate() {
        for (p, o) in row.iter_mut().enumerate() {
            *o = a[view.index(image, ch, p)].to_f64_lossless();
        }
    }
}

/// Channel `ch` of image `image` of a gathered `[n][c][hw]` map.
fn row(x: &[f64], c: usize, hw: usize, image: usize, ch: usize) -> &[f64] {
    &x[(image * c + ch) * hw..(image * c + ch + 1) * hw]
}

/// `out[i]` = channel i's sum, `out[C + i]` = how many values of channel i differ from
/// the channel's first value in their image (`out` holds `2 C`; see
/// [`crate::backend::Backend::channel_sums`]).
pub fn channel_sums<T: Real>(a: &[T], view: ChannelView, n: usize, out: &mut [f64]) {
    let (c, hw) = (view.channels(), view.positions());
    assert_eq!(out.len(), 2 * c, "channel_sums: output length");
    check_images(a, view, n);
    let mut x = vec![0.0; view.image_len()];
    // Each channel's per-image sums, added in image order at the end.
    let mut image_sums = vec![0.0; c * n];
    let mut changes = vec![0usize; c];
    for image in 0..n {
        gather_image(a, view, image, &mut x);
        for (ch, r) in x.chunks_exact(hw).enumerate() {
            image_sums[ch * n + image] = r.iter().sum::<f64>();
            changes[ch] += r.iter().filter(|&&v| v != r[0]).count();
        }
    }
    for ch in 0..c {
        out[ch] = image_sums[ch * n..(ch + 1) * n].iter().sum::<f64>();
        out[c + ch] = changes[ch] as f64;
    }
}

/// `x` less each channel's mean over its images and positions.
fn centred(x: &[f64], c: usize, hw: usize, n: usize) -> Vec<f64> {
    let count = (n * hw) as f64;
    let mut sums = vec![0.0; 2 * c];
    channel_sums(x, ChannelView::plain(c, hw), n, &mut sums);
    let means: Vec<f64> = sums[..c].iter().map(|s| s / count).collect();
    let mut out = x.to_vec();
    for image in 0..n {
        for (ch, mean) in means.iter().enumerate() {
            let at = (image * c + ch) * hw;
            out[at..at + hw].iter_mut().for_each(|v| *v -= mean);
        }
    }
    out
}

/// The centred Gram of gathered maps (`b`: `None` for `a` with itself), written to `out`
/// (`[ca][cb]`).
fn centred_gram(
    a: &[f64],
    ca: usize,
    b: Option<(&[f64], usize)>,
    (n, hw): (usize, usize),
    out: &mut [f64],
) {
    let a = centred(a, ca, hw, n);
    let b_centred = b.map(|(b, cb)| (centred(b, cb, hw, n), cb));
    let (b, cb, symmetric) = match &b_centred {
        Some((b, cb)) => (b.as_slice(), *cb, false),
        None => (a.as_slice(), ca, true),
    };
    let dot = |i: usize, j: usize| -> f64 {
        (0..n)
            .flat_map(|image| {
                row(&a, ca, hw, image, i)
                    .iter()
                    .zip(row(b, cb, hw, image, j))
            })
            .map(|(p, q)| p * q)
            .sum()
    };
    out.par_chunks_mut(cb).enumerate().for_each(|(i, out_row)| {
        let first = if symmetric { i } else { 0 };
        for (j, o) in out_row.iter_mut().enumerate().skip(first) {
            *o = dot(i, j);
        }
    });
    if symmetric {
        for i in 0..ca {
            for j in 0..i {
                out[i * cb + j] = out[j * cb + i];
            }
        }
    }
}

/// The channel Gram of the first `n` images of `a` (through `va`) and `b` (through `vb`),
/// raw or centred, overwriting `out` (`[Ca][Cb]`; see
/// [`crate::backend::Backend::channel_gram`]).
#[allow(clippy::too_many_arguments)]
pub fn channel_gram<T: Real>(
    a: &[T],
    va: ChannelView,
    b: &[T],
    vb: ChannelView,
    n: usize,
    centred: bool,
    out: &mut [f64],
) {
    let hw = va.positions();
    assert_eq!(hw, vb.positions(), "channel_gram: positions of a and b");
    let (ca, cb) = (va.channels(), vb.channels());
    assert_eq!(out.len(), ca * cb, "channel_gram: output length");
    // A map with itself: gathered once, and (centred) only the upper triangle formed.
    let same = std::ptr::eq(a, b) && va == vb;
    if centred {
        let xa = gather(a, va, n);
        let xb = (!same).then(|| gather(b, vb, n));
        centred_gram(&xa, ca, xb.as_deref().map(|x| (x, cb)), (n, hw), out);
        return;
    }
    // Raw: `sum_i A_i B_i^T`, one f64 GEMM per image (`[C][positions]` each), on one
    // image gathered at a time.
    check_images(a, va, n);
    check_images(b, vb, n);
    if n == 0 {
        out.fill(0.0);
    }
    let mut xa = vec![0.0; va.image_len()];
    let mut xb = vec![0.0; if same { 0 } else { vb.image_len() }];
    for image in 0..n {
        gather_image(a, va, image, &mut xa);
        if !same {
            gather_image(b, vb, image, &mut xb);
        }
        let b_rows = if same { &xa } else { &xb };
        matmul(
            out,
            Mat::rows(ca, cb),
            image > 0,
            &xa,
            Mat::rows(ca, hw),
            b_rows,
            Mat::rows(cb, hw).t(),
            Parallelism::None,
        );
    }
}

/// How many positions of two equally long buffers hold different values (`!=`).
pub fn count_unequal<T: Real>(a: &[T], b: &[T]) -> usize {
    assert_eq!(a.len(), b.len(), "count_unequal: lengths");
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_f64_lossless() != y.to_f64_lossless())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_gram_sums_products_over_images_and_positions() {
        // Two images, a: 2 channels, b: 3 channels, 2 positions.
        let a: Vec<f64> = (0..8).map(|v| v as f64 - 3.0).collect();
        let b: Vec<f64> = (0..12).map(|v| (v * v) as f64 * 0.5 - 4.0).collect();
        let mut g = vec![f64::NAN; 6];
        let (va, vb) = (ChannelView::plain(2, 2), ChannelView::plain(3, 2));
        channel_gram(&a, va, &b, vb, 2, false, &mut g);
        for i in 0..2 {
            for j in 0..3 {
                let mut want = 0.0;
                for img in 0..2 {
                    for p in 0..2 {
                        want += a[img * 4 + i * 2 + p] * b[img * 6 + j * 2 + p];
                    }
                }
                assert!((g[i * 3 + j] - want).abs() < 1e-12, "({i}, {j})");
            }
        }
    }

    #[test]
    fn an_unshuffled_view_moves_each_block_offset_to_its_channel() {
        // One image, one 4x4 channel holding its own index: view channel 0 holds the
        // (0, 0) offsets of the 2x2 blocks, channel 3 the (1, 1) offsets.
        let x: Vec<f64> = (0..16).map(f64::from).collect();
        let view = ChannelView::unshuffled(1, 4, 4, 2);
        assert_eq!(view.channels(), 4);
        let out = gather(&x, view, 1);
        assert_eq!(&out[0..4], &[0.0, 2.0, 8.0, 10.0]);
        assert_eq!(&out[4..8], &[1.0, 3.0, 9.0, 11.0]);
        assert_eq!(&out[12..16], &[5.0, 7.0, 13.0, 15.0]);
    }

    #[test]
    fn sums_count_the_values_that_differ_from_each_images_first() {
        // Two images of 2 channels of 3 positions: channel 0 constant in each image (but
        // not across images), channel 1 varying once in image 1; a NaN always differs.
        let x = [
            1.0,
            1.0,
            1.0,
            /* */ 2.0,
            2.0,
            2.0, // image 0
            5.0,
            5.0,
            5.0,
            /* */ 2.0,
            3.0,
            f64::NAN, // image 1
        ];
        let mut out = [0.0; 4];
        channel_sums(&x, ChannelView::plain(2, 3), 2, &mut out);
        assert_eq!(out[0], 18.0);
        assert!(out[1].is_nan());
        assert_eq!(&out[2..], &[0.0, 2.0]);
        // Only the first image: both constant.
        channel_sums(&x, ChannelView::plain(2, 3), 1, &mut out);
        assert_eq!(out, [3.0, 6.0, 0.0, 0.0]);
    }

    #[test]
    fn the_centred_gram_is_the_covariance_times_the_count() {
        let x: Vec<f64> = (0..2 * 3 * 5)
            .map(|v| ((v * 7) % 11) as f64 - 4.5)
            .collect();
        let (n, c, hw) = (2, 3, 5);
        let mut g = vec![0.0; c * c];
        channel_gram(
            &x,
            ChannelView::plain(c, hw),
            &x,
            ChannelView::plain(c, hw),
            n,
            true,
            &mut g,
        );
        let value = |img: usize, ch: usize, p: usize| x[(img * c + ch) * hw + p];
        let mean = |ch: usize| {
            (0..n)
                .flat_map(|i| (0..hw).map(move |p| (i, p)))
                .map(|(i, p)| value(i, ch, p))
                .sum::<f64>()
                / (n * hw) as f64
        };
        for i in 0..c {
            for j in 0..c {
                let mut want = 0.0;
                for img in 0..n {
                    for p in 0..hw {
                        want += (value(img, i, p) - mean(i)) * (value(img, j, p) - mean(j));
                    }
                }
                assert!((g[i * c + j] - want).abs() < 1e-12, "({i}, {j})");
            }
        }
    }
}
