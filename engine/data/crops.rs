//! Random crops of a batch's images: TE-NAS's linear-region inputs.

use super::{Batch, SplitMix64};

/// `samples` random crops of `source` (the draw: engine/proxy/linear_regions.rs's module docs, TE-NAS's released loader), as a batch of
/// `[samples][channels][crop][crop]` (labels copied from the source images).
///
/// # Panics
/// If the source is empty, smaller than the crop, or has fewer than `channels` channels.
pub fn random_crops(
    source: &Batch,
    samples: usize,
    crop: usize,
    channels: usize,
    seed: u64,
) -> Batch {
    assert!(source.n > 0, "no source images to crop");
    assert!(
        crop <= source.h && crop <= source.w && channels <= source.c,
        "a {channels}x{crop}x{crop} crop of {}x{}x{} images",
        source.c,
        source.h,
        source.w
    );
    let mut rng = SplitMix64::new(seed);
    let mut images = Vec::with_capacity(samples * channels * crop * crop);
    let mut labels = Vec::with_capacity(samples);
    let plane = source.h * source.w;
    for s in 0..samples {
        let image = source.image(s % source.n);
        let top = rng.below((source.h - crop + 1) as u64) as usize;
        let left = rng.below((source.w - crop + 1) as u64) as usize;
        let mut pool: Vec<usize> = (0..source.c).collect();
        for i in 0..channels {
            let j = i + rng.below((source.c - i) as u64) as usize;
            pool.swap(i, j);
        }
        let mut chosen = pool[..channels].to_vec();
        chosen.sort_unstable();
        for ch in chosen {
            for row in top..top + crop {
                let start = ch * plane + row * source.w + left;
                images.extend_from_slice(&image[start..start + crop]);
            }
        }
        labels.push(source.labels[s % source.n]);
    }
    Batch {
        n: samples,
        c: channels,
        h: crop,
        w: crop,
        images,
        labels,
    }
}
