//! Rank correlations between a score and benchmark accuracy.
//!
//! Spearman's rho is Pearson's correlation of average ranks (ties share the mean of their
//! ranks); Kendall's tau-b counts concordant and discordant pairs with the tie correction
//! of Kendall (1945), by Knight's O(n log n) merge-sort method.

/// Average ranks (1-based), ties sharing the mean of the ranks they span. NaNs rank last.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson's correlation; NaN when either side is constant or shorter than 2.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation (ties averaged).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&average_ranks(a), &average_ranks(b))
}

/// Kendall's tau-b.
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len();
    if n < 2 {
        return f64::NAN;
    }
    let pairs = (n * (n - 1) / 2) as f64;
    // Sort by a, then b: ties in a form runs; ties in both form sub-runs.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| a[i].total_cmp(&a[j]).then(b[i].total_cmp(&b[j])));
    let tied_pairs = |eq: &dyn Fn(usize, usize) -> bool| -> f64 {
        let (mut total, mut run) = (0.0, 1.0);
        for k in 1..n {
            if eq(idx[k - 1], idx[k]) {
                run += 1.0;
            } else {
                total += run * (run - 1.0) / 2.0;
                run = 1.0;
            }
        }
        total + run * (run - 1.0) / 2.0
    };
    let ties_a = tied_pairs(&|i, j| a[i] == a[j]);
    let ties_ab = tied_pairs(&|i, j| a[i] == a[j] && b[i] == b[j]);
    // Discordant pairs = swaps needed to sort by b (merge sort counts them).
    let mut seq: Vec<f64> = idx.iter().map(|&i| b[i]).collect();
    let swaps = merge_count(&mut seq);
    let ties_b = {
        let mut run = 1.0;
        let mut total = 0.0;
        for k in 1..n {
            if seq[k] == seq[k - 1] {
                run += 1.0;
            } else {
                total += run * (run - 1.0) / 2.0;
                run = 1.0;
            }
        }
        total + run * (run - 1.0) / 2.0
    };
    let concordant_minus_discordant = pairs - ties_a - ties_b + ties_ab - 2.0 * swaps as f64;
    concordant_minus_discordant / ((pairs - ties_a) * (pairs - ties_b)).sqrt()
}

/// Sorts `v` ascending, returning the number of inversions (pairs out of order).
fn merge_count(v: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = merge_count(&mut v[..mid]) + merge_count(&mut v[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[j] < v[i] {
            merged.push(v[j]);
            count += (mid - i) as u64;
            j += 1;
        } else {
            merged.push(v[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&merged);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook O(n^2) tau-b.
    fn naive_tau_b(a: &[f64], b: &[f64]) -> f64 {
        let (mut s, mut ta, mut tb, mut pairs) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..a.len() {
            for j in i + 1..a.len() {
                let (da, db) = (a[i] - a[j], b[i] - b[j]);
                pairs += 1.0;
                s += (da.signum() * db.signum()) * f64::from(da != 0.0 && db != 0.0);
                ta += f64::from(da == 0.0);
                tb += f64::from(db == 0.0);
            }
        }
        s / ((pairs - ta) * (pairs - tb)).sqrt()
    }

    #[test]
    fn kendall_matches_the_naive_definition_with_ties() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 7) as f64
        };
        let a: Vec<f64> = (0..300).map(|_| next()).collect();
        let b: Vec<f64> = (0..300).map(|_| next()).collect();
        assert!((kendall_tau_b(&a, &b) - naive_tau_b(&a, &b)).abs() < 1e-12);
        let c: Vec<f64> = a.iter().map(|x| x * 2.0 + 1.0).collect();
        assert!((kendall_tau_b(&a, &c) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_known_values() {
        // Classic example: ranks differ by d = (0, 0, 1, -1, 0): rho = 1 - 6*2/(5*24) = 0.9.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [10.0, 20.0, 40.0, 30.0, 50.0];
        assert!((spearman(&a, &b) - 0.9).abs() < 1e-12);
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
        let rev: Vec<f64> = a.iter().map(|x| -x).collect();
        assert!((spearman(&a, &rev) + 1.0).abs() < 1e-12);
    }
}
