//! Minibatches: normalised NCHW tensors, drawn from an [`ImageSet`] by seed.

use super::{DataError, Dataset, ImageSet, SplitMix64};

/// A minibatch in NCHW layout, ready for a network's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// `n * c * h * w` values, image-major, then channel, row, column.
    pub images: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<usize>,
}

impl Batch {
    /// The `c * h * w` values of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let size = self.c * self.h * self.w;
        &self.images[i * size..(i + 1) * size]
    }
}

impl ImageSet {
    /// The images at `records`, in that order, normalised by the dataset's mean and std.
    pub fn batch(&self, records: &[usize]) -> Result<Batch, DataError> {
        if let Some(&record) = records.iter().find(|&&r| r >= self.len) {
            return Err(DataError::RecordOutOfRange {
                record,
                len: self.len,
            });
        }
        // One table per channel: 768 divisions instead of one per pixel.
        let table: Vec<[f32; 256]> = (0..Dataset::CHANNELS)
            .map(|ch| std::array::from_fn(|b| self.dataset.normalise(ch, b as u8)))
            .collect();
        let side = self.dataset.image_size();
        let plane = side * side;
        let mut images = Vec::with_capacity(records.len() * self.dataset.pixels_per_image());
        for &record in records {
            for (ch, pixels) in self.image(record).chunks_exact(plane).enumerate() {
                images.extend(pixels.iter().map(|&b| table[ch][usize::from(b)]));
            }
        }
        Ok(Batch {
            n: records.len(),
            c: Dataset::CHANNELS,
            h: side,
            w: side,
            images,
            labels: records
                .iter()
                .map(|&r| usize::from(self.labels[r]))
                .collect(),
        })
    }

    /// `n` distinct images drawn by `seed`, from all records or only from `subset`
    /// (e.g. the NAS-Bench-201 train half, see [`super::read_nb201_train_records`]).
    ///
    /// A partial Fisher-Yates shuffle of the candidate records with [`SplitMix64`]: the
    /// same seed and candidates give the same batch on every platform.
    pub fn sample(
        &self,
        n: usize,
        seed: u64,
        subset: Option<&[usize]>,
    ) -> Result<Batch, DataError> {
        let mut pool: Vec<usize> = match subset {
            Some(records) => {
                let mut seen = vec![false; self.len];
                for &record in records {
                    match seen.get_mut(record) {
                        None => {
                            return Err(DataError::RecordOutOfRange {
                                record,
                                len: self.len,
                            })
                        }
                        Some(true) => return Err(DataError::DuplicateRecord { record }),
                        Some(flag) => *flag = true,
                    }
                }
                records.to_vec()
            }
            None => (0..self.len).collect(),
        };
        if n > pool.len() {
            return Err(DataError::NotEnoughImages {
                requested: n,
                available: pool.len(),
            });
        }
        let mut rng = SplitMix64::new(seed);
        for i in 0..n {
            let j = i + rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }
        self.batch(&pool[..n])
    }
}
