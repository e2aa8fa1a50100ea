//! A small, self-contained generator for data sampling and synthetic inputs.
//!
//! SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit counter advanced by a fixed odd
//! constant and passed through a bijective mixer. Only integer wrapping arithmetic, so the
//! integer stream is bit-identical on every platform; no external crate to pin.

/// The SplitMix64 generator. Equal seeds give equal streams.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The golden-ratio increment of the counter.
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits (every value a multiple of 2^-53).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..bound` without modulo bias (Lemire's multiply-and-reject).
    ///
    /// # Panics
    /// If `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SplitMix64::below: empty range");
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(bound);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A pair of independent standard normal values (Box-Muller).
    ///
    /// `ln`, `sin` and `cos` come from the platform's math library, which may differ in the
    /// last bit of an f64 between platforms; the integer stream underneath does not.
    pub fn normal_pair(&mut self) -> (f64, f64) {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.next_f64()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.next_f64();
        (radius * angle.cos(), radius * angle.sin())
    }
}

/// `n` distinct positions of `0..len`, uniformly at random, in draw order (a partial
/// Fisher-Yates shuffle).
///
/// # Panics
/// If `n > len`.
pub fn sample_without_replacement(len: usize, n: usize, rng: &mut SplitMix64) -> Vec<usize> {
    assert!(n <= len, "cannot draw {n} distinct items from {len}");
    let mut pool: Vec<usize> = (0..len).collect();
    for i in 0..n {
        let j = i + rng.below((len - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    /// The published reference stream for seed 1234567 (Rosetta Code, "Splitmix64").
    #[test]
    fn matches_reference_stream() {
        let mut rng = SplitMix64::new(1_234_567);
        let expected = [
            0x599e_d017_fb08_fc85,
            0x2c73_f084_5854_0fa5,
            0x883e_bce5_a3f2_7c77,
            0x3fbe_f740_e917_7b3f,
            0xe3b8_3467_08cb_5ecd,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want);
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[rng.below(3) as usize] += 1;
        }
        assert!(seen.iter().all(|&k| (800..1200).contains(&k)), "{seen:?}");
    }
}
