//! The three NAS-Bench-201 datasets: shapes, class counts and input normalisation.

use std::fmt;
use std::str::FromStr;

use super::DataError;

/// A dataset of NAS-Bench-201. Every image has [`Dataset::CHANNELS`] channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dataset {
    Cifar10,
    Cifar100,
    ImageNet16_120,
}

impl Dataset {
    pub const ALL: [Dataset; 3] = [Dataset::Cifar10, Dataset::Cifar100, Dataset::ImageNet16_120];

    /// Colour channels (RGB) of every dataset.
    pub const CHANNELS: usize = 3;

    /// The name used on the command line and in the benchmark.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "cifar10",
            Dataset::Cifar100 => "cifar100",
            Dataset::ImageNet16_120 => "imagenet16-120",
        }
    }

    pub fn classes(self) -> usize {
        match self {
            Dataset::Cifar10 => 10,
            Dataset::Cifar100 => 100,
            Dataset::ImageNet16_120 => 120,
        }
    }

    /// Height and width of the (square) images.
    pub fn image_size(self) -> usize {
        match self {
            Dataset::Cifar10 | Dataset::Cifar100 => 32,
            Dataset::ImageNet16_120 => 16,
        }
    }

    /// Pixel bytes of one image: three row-major planes.
    pub fn pixels_per_image(self) -> usize {
        Self::CHANNELS * self.image_size() * self.image_size()
    }

    /// Per-channel mean of the input normalisation, on the 0..1 scale (benchmark constants / 255).
    pub fn mean(self) -> [f64; 3] {
        let m = match self {
            Dataset::Cifar10 => [125.3, 123.0, 113.9],
            Dataset::Cifar100 => [129.3, 124.1, 112.4],
            Dataset::ImageNet16_120 => [122.68, 116.66, 104.01],
        };
        m.map(|v| v / 255.0)
    }

    /// Per-channel standard deviation of the input normalisation, on the 0..1 scale.
    pub fn std(self) -> [f64; 3] {
        let s = match self {
            Dataset::Cifar10 => [63.0, 62.1, 66.7],
            Dataset::Cifar100 => [68.2, 65.4, 70.4],
            Dataset::ImageNet16_120 => [63.22, 61.26, 65.09],
        };
        s.map(|v| v / 255.0)
    }

    /// The normalised value `(byte/255 - mean)/std` of a pixel byte in `channel`.
    pub fn normalise(self, channel: usize, byte: u8) -> f32 {
        ((f64::from(byte) / 255.0 - self.mean()[channel]) / self.std()[channel]) as f32
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = DataError;

    /// Accepts the benchmark names, and `imagenet16` for ImageNet16-120 (the name of its
    /// files' folder), ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, DataError> {
        if s.eq_ignore_ascii_case("imagenet16") {
            return Ok(Dataset::ImageNet16_120);
        }
        Dataset::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| DataError::UnknownDataset(s.to_owned()))
    }
}
