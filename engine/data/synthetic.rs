//! Synthetic inputs: Gaussian images with uniform labels, for shapes without real data
//! (ImageNet16-120) and for tests that must not depend on files.

use super::{Batch, Dataset, SplitMix64};

/// A batch of standard normal pixels (already "normalised") and labels uniform in
/// `0..classes`, determined by `seed`. Pixels are drawn first, then labels.
///
/// # Panics
/// If `classes` is 0.
pub fn synthetic_batch(n: usize, c: usize, h: usize, w: usize, classes: usize, seed: u64) -> Batch {
    assert!(
        classes > 0,
        "synthetic_batch: no classes to draw labels from"
    );
    let mut rng = SplitMix64::new(seed);
    let len = n * c * h * w;
    let mut images = Vec::with_capacity(len + 1);
    while images.len() < len {
        let (a, b) = rng.normal_pair();
        images.extend([a as f32, b as f32]);
    }
    images.truncate(len);
    let labels = (0..n).map(|_| rng.below(classes as u64) as usize).collect();
    Batch {
        n,
        c,
        h,
        w,
        images,
        labels,
    }
}

impl Dataset {
    /// A synthetic batch of this dataset's image shape and class count.
    pub fn synthetic_batch(self, n: usize, seed: u64) -> Batch {
        let side = self.image_size();
        synthetic_batch(n, Self::CHANNELS, side, side, self.classes(), seed)
    }
}
