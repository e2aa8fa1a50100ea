//! Every random stream of a run, derived from the user's seed and named by purpose.

use super::SplitMix64;

/// The user's seed, and each random stream a run draws from it. Each stream is a function
/// of the seed and its purpose alone, so that adding a stream never shifts another. Most
/// streams take the seed itself, as every results file so far was made: a run's weights,
/// minibatch, Zen inputs and linear-region crops all follow `--seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seeds(pub u64);

impl Seeds {
    /// The networks' initial weights.
    pub fn weights(self) -> u64 {
        self.0
    }

    /// The weights of repeat `r` of TE-NAS's pruning (repeat 0: [`Seeds::weights`]).
    pub fn repeat_weights(self, r: usize) -> u64 {
        self.0.wrapping_add(r as u64)
    }

    /// SWAP's N(0, 1) weights of re-initialisation `r`: a generator of its own, so that no
    /// re-initialisation repeats the weights of another score.
    pub fn swap_weights(self, r: usize) -> u64 {
        let mut rng = SplitMix64::new(self.0 ^ 0x5357_4150_5357_4150);
        (0..r).for_each(|_| {
            rng.next_u64();
        });
        rng.next_u64()
    }

    /// MeCo_opt's sampled channels: a generator of its own.
    pub fn meco_channels(self) -> u64 {
        let mut rng = SplitMix64::new(self.0 ^ 0x4d45_434f_4f50_5400);
        rng.next_u64()
    }

    /// AZ-NAS's Kaiming-normal weights.
    pub fn az_weights(self) -> u64 {
        SplitMix64::new(self.0 ^ 0x415a_4e41_5357_0001).next_u64()
    }

    /// AZ-NAS's Gaussian input batch.
    pub fn az_inputs(self) -> u64 {
        SplitMix64::new(self.0 ^ 0x415a_4e41_5349_0002).next_u64()
    }

    /// AZ-NAS's Rademacher probes of the cell outputs.
    pub fn az_probes(self) -> u64 {
        SplitMix64::new(self.0 ^ 0x415a_4e41_5350_0003).next_u64()
    }

    /// The minibatch every arch sees.
    pub fn minibatch(self) -> u64 {
        self.0
    }

    /// Zen-score's Gaussian inputs and perturbation.
    pub fn zen_inputs(self) -> u64 {
        self.0
    }

    /// The linear-region crops.
    pub fn crops(self) -> u64 {
        self.0
    }

    /// Sampling and mutation of search run `run`: unrelated generators per run, none
    /// equal to the weights' seed.
    pub fn search(self, run: u64) -> u64 {
        let mut rng = SplitMix64::new(self.0 ^ run.wrapping_mul(0xd1b5_4a32_d192_ed03));
        rng.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_named_functions_of_the_seed() {
        let seeds = Seeds(5);
        assert_eq!(seeds.repeat_weights(0), seeds.weights());
        assert_ne!(seeds.repeat_weights(1), seeds.weights());
        // Search runs draw from unrelated generators, none the weights' seed.
        let runs: std::collections::HashSet<u64> = (0..1000).map(|r| seeds.search(r)).collect();
        assert_eq!(runs.len(), 1000);
        assert!(!runs.contains(&seeds.weights()));
        assert_ne!(Seeds(6).search(0), seeds.search(0));
    }
}
