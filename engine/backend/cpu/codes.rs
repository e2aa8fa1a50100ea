//! Bit-packed ReLU codes and their Hamming Gram matrix.
//!
//! Codes: image i of a layer with `units` ReLU units is `words = ceil(units / 64)` u64
//! words, `[n][words]`; bit b of word w is unit `64 w + b`, set where the value is > 0;
//! padding bits of the last word are 0 for every image, so they never differ.
//!
//! Hamming Gram: `K[i][j] += weight * (units - popcount(c_i ^ c_j))`, the number of units
//! on which images i and j agree (NASWOT's `c c^T + (1-c)(1-c)^T`), counted exactly in
//! u64. Rows of K are computed in parallel; each pair is visited once and mirrored.

use crate::backend::Real;
use rayon::prelude::*;

/// Words per image for `units` bits.
pub fn code_words(units: usize) -> usize {
    units.div_ceil(64)
}

/// Packs the sign bits (`x > 0`) of `n` images of `units` values each.
pub fn pack_signs<T: Real>(x: &[T], n: usize, units: usize, codes: &mut [u64]) {
    let words = code_words(units);
    assert_eq!(x.len(), n * units);
    assert_eq!(codes.len(), n * words);
    codes
        .par_chunks_mut(words)
        .zip(x.par_chunks(units))
        .for_each(|(code, values)| {
            for (word, chunk) in code.iter_mut().zip(values.chunks(64)) {
                *word = chunk
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (b, v)| acc | (u64::from(*v > T::zero()) << b));
            }
        });
}

/// Adds `weight * (units - hamming(c_i, c_j))` to `k[i][j]` (`[n][n]`, row-major).
pub fn hamming_gram_accumulate(codes: &[u64], n: usize, units: usize, weight: u64, k: &mut [u64]) {
    let words = code_words(units);
    assert_eq!(codes.len(), n * words);
    assert_eq!(k.len(), n * n);
    // Upper triangle by rows in parallel, then mirror.
    k.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        accumulate_row(codes, words, i, units as u64, weight, row);
    });
    for i in 0..n {
        for j in 0..i {
            k[i * n + j] = k[j * n + i];
        }
    }
}

/// `row[j] += weight * (units - hamming(c_i, c_j))` for `j >= i`, with the POPCNT
/// instruction where the CPU has it (chosen once per row).
fn accumulate_row(codes: &[u64], words: usize, i: usize, units: u64, weight: u64, row: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the feature was detected at run time.
            return unsafe { accumulate_row_popcnt(codes, words, i, units, weight, row) };
        }
    }
    accumulate_row_portable(codes, words, i, units, weight, row)
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

    #[test]
    fn hamming_gram_equals_float_products() {
        let (n, units) = (5, 130);
        let x: Vec<f64> = (0..n * units)
            .map(|i| ((i * 7919 + 13) % 17) as f64 - 8.0)
            .collect();
        let mut codes = vec![0; n * code_words(units)];
        pack_signs(&x, n, units, &mut codes);
        let mut k = vec![1u64; n * n];
        hamming_gram_accumulate(&codes, n, units, 2, &mut k);
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
                assert_eq!(k[i * n + j] as f64, 1.0 + 2.0 * agree, "({i}, {j})");
            }
        }
    }
}
