//! Bit-packed ReLU codes and their Hamming Gram matrix.
//!
//! Codes: image i of a layer with `units` ReLU units is `words = ceil(units / 64)` u64
//! words, `[n][words]`; bit b of word w is unit `64 w + b`, set where the value is > 0;
//! padding bits of the last word are 0 for every image, so they never differ.
//!
//! Hamming Gram: `K[i][j] += weight * (units - popcount(c_i ^ c_j))`, the number of units
//! on which images i and j agree (NASWOT's `c c^T + (1-c)(1-c)^T`), counted exactly in
//! u64. Rows of K are computed in parallel; each pair is visited once and mirrored.
//!
//! Both are chosen per call from what the CPU has (AVX-512 compare masks and VPOPCNTQ on
//! x86-64 where detected at run time), with a portable path for the rest; every path gives
//! the same bits and counts.

use std::any::TypeId;

#[cfg(target_arch = "x86_64")]
use super::as_f32;
use crate::backend::Real;
use rayon::prelude::*;

/// Words per image for `units` bits.
pub fn code_words(units: usize) -> usize {
    units.div_ceil(64)
}

/// Packs the sign bits (`x > 0`) of `n` images of `units` values each.
pub fn pack_signs<T: Real>(x: &[T], n: usize, units: usize, codes: &mut [u64]) {
    pack_signs_with(SignPath::detect::<T>(), x, n, units, codes);
}

fn pack_signs_with<T: Real>(path: SignPath, x: &[T], n: usize, units: usize, codes: &mut [u64]) {
    let words = code_words(units);
    assert_eq!(x.len(), n * units);
    assert_eq!(codes.len(), n * words);
    codes
        .par_chunks_mut(words)
        .zip(x.par_chunks(units))
        .for_each(|(code, values)| path.pack(values, code));
}

/// How [`pack_signs`] forms a word: AVX-512 compares into a 16-lane mask for f32 where the
/// CPU has it, else bit by bit. Both give the same bits (`>` is false for NaN and -0).
#[derive(Clone, Copy, Debug, PartialEq)]
enum SignPath {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512F32,
}

impl SignPath {
    fn detect<T: Real>() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if TypeId::of::<T>() == TypeId::of::<f32>()
                && std::arch::is_x86_feature_detected!("avx512f")
            {
                return SignPath::Avx512F32;
            }
        }
        SignPath::Portable
    }

    /// One image: `values` packed into `code` (`code_words(values.len())` words).
    fn pack<T: Real>(self, values: &[T], code: &mut [u64]) {
        match self {
            SignPath::Portable => pack_portable(values, code),
            #[cfg(target_arch = "x86_64")]
            SignPath::Avx512F32 => {
                let values = as_f32(values).expect("T is f32");
                // SAFETY: the path is only chosen where avx512f was detected at run time.
                unsafe { pack_f32_avx512(values, code) }
            }
        }
    }
}

fn pack_portable<T: Real>(values: &[T], code: &mut [u64]) {
    for (word, chunk) in code.iter_mut().zip(values.chunks(64)) {
        *word = chunk
            .iter()
            .enumerate()
            .fold(0u64, |acc, (b, v)| acc | (u64::from(*v > T::zero()) << b));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_f32_avx512(values: &[f32], code: &mut [u64]) {
    use std::arch::x86_64::{_mm512_cmp_ps_mask, _mm512_loadu_ps, _mm512_setzero_ps, _CMP_GT_OQ};
    let full = values.len() / 64;
    let zero = _mm512_setzero_ps();
    for (word, chunk) in code.iter_mut().zip(values.chunks_exact(64)) {
        let mut w = 0u64;
        for (k, lanes) in chunk.chunks_exact(16).enumerate() {
            // SAFETY: `lanes` holds 16 f32; unaligned load.
            let v = unsafe { _mm512_loadu_ps(lanes.as_ptr()) };
            // Ordered `>`: false for NaN, as the portable `v > 0`.
            w |= u64::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero)) << (16 * k);
        }
        *word = w;
    }
    pack_portable(&values[full * 64..], &mut code[full..]);
}

/// Adds `weight * (units - hamming(c_i, c_j))` to `k[i][j]` (`[n][n]`, row-major).
pub fn hamming_gram_accumulate(codes: &[u64], n: usize, units: usize, weight: u64, k: &mut [u64]) {
    hamming_gram_with(Popcount::detect(), codes, n, units, weight, k);
}

/// The popcount [`hamming_gram_accumulate`] uses: AVX-512 VPOPCNTQ (eight words per
/// instruction), else the scalar POPCNT instruction, else the portable bit count.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Popcount {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Popcnt,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Popcount {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                return Popcount::Avx512;
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                return Popcount::Popcnt;
            }
        }
        Popcount::Portable
    }
}

fn hamming_gram_with(
    path: Popcount,
    codes: &[u64],
    n: usize,
    units: usize,
    weight: u64,
    k: &mut [u64],
) {
    let words = code_words(units);
    assert_eq!(codes.len(), n * words);
    assert_eq!(k.len(), n * n);
    // Upper triangle by rows in parallel, then mirror.
    k.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let units = units as u64;
        match path {
            Popcount::Portable => accumulate_row_portable(codes, words, i, units, weight, row),
            // SAFETY (both): the path is only chosen where its features were detected.
            #[cfg(target_arch = "x86_64")]
            Popcount::Popcnt => unsafe {
                accumulate_row_popcnt(codes, words, i, units, weight, row)
            },
            #[cfg(target_arch = "x86_64")]
            Popcount::Avx512 => unsafe {
                accumulate_row_avx512(codes, words, i, units, weight, row)
            },
        }
    });
    for i in 0..n {
        for j in 0..i {
            k[i * n + j] = k[j * n + i];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn accumulate_row_popcnt(
    codes: &[u64],
    words: usize,
    i: usize,
    units: u64,
    weight: u64,
    row: &mut [u64],
) {
    accumulate_row_portable(codes, words, i, units, weight, row)
}

/// `row[j] += weight * (units - hamming(c_i, c_j))` for `j >= i`: XOR and VPOPCNTQ eight
/// words at a time into eight u64 lane counts, the remainder words with POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn accumulate_row_avx512(
    codes: &[u64],
    words: usize,
    i: usize,
    units: u64,
    weight: u64,
    row: &mut [u64],
) {
    use std::arch::x86_64::{
        _mm512_add_epi64, _mm512_loadu_si512, _mm512_popcnt_epi64, _mm512_reduce_add_epi64,
        _mm512_setzero_si512, _mm512_xor_si512,
    };
    let ci = &codes[i * words..(i + 1) * words];
    let full = words / 8 * 8;
    for (j, entry) in row.iter_mut().enumerate().skip(i) {
        let cj = &codes[j * words..(j + 1) * words];
        let mut lanes = _mm512_setzero_si512();
        for (a, b) in ci[..full].chunks_exact(8).zip(cj[..full].chunks_exact(8)) {
            // SAFETY: `a` and `b` hold 8 u64 each; unaligned loads.
            let (va, vb) = unsafe {
                (
                    _mm512_loadu_si512(a.as_ptr().cast()),
                    _mm512_loadu_si512(b.as_ptr().cast()),
                )
            };
            lanes = _mm512_add_epi64(lanes, _mm512_popcnt_epi64(_mm512_xor_si512(va, vb)));
        }
        let tail: u64 = ci[full..]
            .iter()
            .zip(&cj[full..])
            .map(|(x, y)| u64::from((x ^ y).count_ones()))
            .sum();
        let differ = _mm512_reduce_add_epi64(lanes) as u64 + tail;
        *entry += weight * (units - differ);
    }
}

#[inline(always)]
fn accumulate_row_portable(
    codes: &[u64],
    words: usize,
    i: usize,
    units: u64,
    weight: u64,
    row: &mut [u64],
) {
    let ci = &codes[i * words..(i + 1) * words];
    for (j, entry) in row.iter_mut().enumerate().skip(i) {
        let cj = &codes[j * words..(j + 1) * words];
        let differ: u64 = ci
            .iter()
            .zip(cj)
            .map(|(x, y)| u64::from((x ^ y).count_ones()))
            .sum();
        *entry += weight * (units - differ);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every popcount path this CPU can run: the portable one always.
    fn popcount_paths() -> Vec<Popcount> {
        let mut paths = vec![Popcount::Portable, Popcount::detect()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            paths.push(Popcount::Popcnt);
        }
        paths
    }

    /// Every sign-packing path this CPU can run for `T`: the portable one always.
    fn sign_paths<T: Real>() -> Vec<SignPath> {
        vec![SignPath::Portable, SignPath::detect::<T>()]
    }

    #[test]
    fn hamming_gram_equals_float_products_on_every_path() {
        // 3 words (none in full 8-word blocks), 18 words (two blocks and a tail).
        for (n, units) in [(5, 130), (7, 64 * 16 + 70)] {
            let x: Vec<f64> = (0..n * units)
                .map(|i| ((i * 7919 + 13) % 17) as f64 - 8.0)
                .collect();
            let mut codes = vec![0; n * code_words(units)];
            pack_signs(&x, n, units, &mut codes);
            for path in popcount_paths() {
                let mut k = vec![1u64; n * n];
                hamming_gram_with(path, &codes, n, units, 2, &mut k);
                for i in 0..n {
                    for j in 0..n {
                        // c c^T + (1 - c)(1 - c)^T with c in {0, 1} as floats.
                        let agree: f64 = (0..units)
                            .map(|u| {
                                let ci = f64::from(u8::from(x[i * units + u] > 0.0));
                                let cj = f64::from(u8::from(x[j * units + u] > 0.0));
                                ci * cj + (1.0 - ci) * (1.0 - cj)
                            })
                            .sum();
                        assert_eq!(
                            k[i * n + j] as f64,
                            1.0 + 2.0 * agree,
                            "{path:?} ({i}, {j})"
                        );
                    }
                }
            }
        }
    }

    /// Bit `u` of image `i` set where value `u` is > 0, one bit at a time.
    fn naive_codes(x: &[f64], n: usize, units: usize) -> Vec<u64> {
        let mut codes = vec![0u64; n * code_words(units)];
        for i in 0..n {
            for u in 0..units {
                if x[i * units + u] > 0.0 {
                    codes[i * code_words(units) + u / 64] |= 1 << (u % 64);
                }
            }
        }
        codes
    }

    #[test]
    fn pack_signs_sets_exactly_the_positive_units_on_every_path() {
        let special = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-40,
            -1e-40,
        ];
        for (n, units) in [(3, 1), (2, 63), (3, 64), (2, 200), (4, 3 * 64)] {
            let x: Vec<f64> = (0..n * units)
                .map(|i| match i % 5 {
                    0 => special[(i / 5) % special.len()],
                    _ => ((i * 7919 + 13) % 17) as f64 - 8.0,
                })
                .collect();
            let want = naive_codes(&x, n, units);
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            // 1e-40 is an f32 subnormal, still > 0; the f32 signs match the f64 ones.
            for path in sign_paths::<f32>() {
                let mut codes = vec![!0; want.len()];
                pack_signs_with(path, &x32, n, units, &mut codes);
                assert_eq!(codes, want, "f32 {path:?} {n}x{units}");
            }
            for path in sign_paths::<f64>() {
                let mut codes = vec![!0; want.len()];
                pack_signs_with(path, &x, n, units, &mut codes);
                assert_eq!(codes, want, "f64 {path:?} {n}x{units}");
            }
        }
    }
}
