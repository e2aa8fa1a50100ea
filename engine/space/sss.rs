//! The NATS-Bench size search space (SSS): one fixed cell, five widths. Archs, their
//! strings `C1:C2:C3:C4:C5`, the benchmark's index order and the network's layout
//! (shared/spec/nats_sss.md, section A).

use std::fmt;
use std::str::FromStr;

use super::{Arch, DatasetShape, Op};

/// The widths a position may take, ascending (the benchmark's candidate order).
pub const SSS_WIDTHS: [usize; 8] = [8, 16, 24, 32, 40, 48, 56, 64];

/// Positions of an SSS arch: stem and first cell, first reduction block, second cell,
/// second reduction block, third cell and head.
pub const SSS_POSITIONS: usize = 5;

/// Number of archs in the space (8^5).
pub const SSS_NUM_ARCHS: usize = 32_768;

/// The cell every SSS network uses, as a NAS-Bench-201 cell:
/// `|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|`.
pub const SSS_CELL: Arch = Arch {
    ops: [
        Op::Conv3x3,
        Op::Conv3x3,
        Op::Conv3x3,
        Op::SkipConnect,
        Op::Conv3x3,
        Op::Conv3x3,
    ],
};

/// One arch of the size space: the five widths `C1..C5`, each one of [`SSS_WIDTHS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SizeArch {
    widths: [usize; SSS_POSITIONS],
}

/// Why an SSS arch string was rejected; positions count from 1, as in `C1..C5`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeArchParseError {
    #[error(
        "expected {positions} widths separated by `:` (C1:C2:C3:C4:C5, each one of {widths}), \
         found {found}",
        positions = SSS_POSITIONS,
        widths = allowed_widths()
    )]
    PositionCount { found: usize },
    #[error(
        "position {position}: {text:?} is not a number; widths are {}",
        allowed_widths()
    )]
    NotANumber { position: usize, text: String },
    #[error(
        "position {position}: width {text} is not allowed; widths are {}",
        allowed_widths()
    )]
    BadWidth { position: usize, text: String },
}

fn allowed_widths() -> String {
    SSS_WIDTHS.map(|w| w.to_string()).join(", ")
}

impl SizeArch {
    /// The arch with these widths, or `None` if one is not in [`SSS_WIDTHS`].
    pub fn new(widths: [usize; SSS_POSITIONS]) -> Option<SizeArch> {
        widths
            .iter()
            .all(|w| SSS_WIDTHS.contains(w))
            .then_some(SizeArch { widths })
    }

    /// `C1..C5`.
    pub fn widths(&self) -> [usize; SSS_POSITIONS] {
        self.widths
    }

    /// The arch at this benchmark index, or `None` past the end: the first position is the
    /// most significant base-8 digit, each digit a candidate in ascending order.
    pub fn from_index(index: usize) -> Option<SizeArch> {
        if index >= SSS_NUM_ARCHS {
            return None;
        }
        let mut rest = index;
        let mut widths = [0; SSS_POSITIONS];
        for slot in widths.iter_mut().rev() {
            *slot = SSS_WIDTHS[rest % SSS_WIDTHS.len()];
            rest /= SSS_WIDTHS.len();
        }
        Some(SizeArch { widths })
    }

    /// The arch's benchmark index (inverse of [`SizeArch::from_index`]): the sum of
    /// `(C_k / 8 - 1) * 8^(5 - k)`.
    pub fn index(&self) -> usize {
        self.widths
            .iter()
            .fold(0, |acc, &w| acc * SSS_WIDTHS.len() + w / 8 - 1)
    }

    /// The network's blocks in forward order for a dataset of this shape (spec A2). The
    /// counts walk this list; a plan builder for SSS networks takes the same per-block
    /// widths and sides (engine/net builds TSS plans only so far).
    pub fn blocks(&self, shape: DatasetShape) -> [SizeBlock; 7] {
        let [c1, c2, c3, c4, c5] = self.widths;
        let side = shape.input_size;
        [
            SizeBlock::Stem {
                c_in: 3,
                c_out: c1,
                side,
            },
            SizeBlock::Cell {
                c_in: c1,
                c_out: c1,
                side,
            },
            SizeBlock::Reduction {
                c_in: c1,
                c_out: c2,
                side_in: side,
            },
            SizeBlock::Cell {
                c_in: c2,
                c_out: c3,
                side: side / 2,
            },
            SizeBlock::Reduction {
                c_in: c3,
                c_out: c4,
                side_in: side / 2,
            },
            SizeBlock::Cell {
                c_in: c4,
                c_out: c5,
                side: side / 4,
            },
            SizeBlock::Head {
                c_in: c5,
                classes: shape.classes,
                side: side / 4,
            },
        ]
    }

    /// The dedup key: the arch string itself. No two SSS archs compute the same function
    /// (their widths differ, so their weight shapes do), so every class has one arch.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

/// One block of an SSS network (`DynamicShapeTinyNet`, spec A2-A3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeBlock {
    /// Conv 3x3 (stride 1, no bias) from the image's channels, then BN; no ReLU.
    Stem {
        c_in: usize,
        c_out: usize,
        side: usize,
    },
    /// [`SSS_CELL`] at stride 1: edges leaving node 0 go `c_in -> c_out`, the others
    /// `c_out -> c_out`; its skip edge is a conv 1x1 + BN (no ReLU) when the widths differ.
    Cell {
        c_in: usize,
        c_out: usize,
        side: usize,
    },
    /// ResNet basic block, stride 2: ReLU-conv3x3-BN, ReLU-conv3x3-BN, plus a shortcut of
    /// avg-pool 2x2 and conv 1x1 (no BN); the output is `side_in / 2` wide.
    Reduction {
        c_in: usize,
        c_out: usize,
        side_in: usize,
    },
    /// BN, ReLU, global average pool, linear with bias.
    Head {
        c_in: usize,
        classes: usize,
        side: usize,
    },
}

impl fmt::Display for SizeArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c1, c2, c3, c4, c5] = self.widths;
        write!(f, "{c1}:{c2}:{c3}:{c4}:{c5}")
    }
}

impl FromStr for SizeArch {
    type Err = SizeArchParseError;

    /// Exactly the benchmark's spelling: five decimal widths joined by `:`, no signs,
    /// spaces or leading zeros, so that an arch has one string (its dedup key).
    fn from_str(s: &str) -> Result<SizeArch, SizeArchParseError> {
        let pieces: Vec<&str> = s.split(':').collect();
        if pieces.len() != SSS_POSITIONS {
            return Err(SizeArchParseError::PositionCount {
                found: pieces.len(),
            });
        }
        let mut widths = [0; SSS_POSITIONS];
        for (position, (slot, text)) in (1..).zip(widths.iter_mut().zip(pieces)) {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SizeArchParseError::NotANumber {
                    position,
                    text: text.to_string(),
                });
            }
            *slot = SSS_WIDTHS
                .into_iter()
                .find(|w| w.to_string() == text)
                .ok_or_else(|| SizeArchParseError::BadWidth {
                    position,
                    text: text.to_string(),
                })?;
        }
        Ok(SizeArch { widths })
    }
}

/// Every SSS arch with its benchmark index, in index order.
pub fn size_benchmark_archs() -> impl Iterator<Item = (usize, SizeArch)> {
    (0..SSS_NUM_ARCHS).map(|index| (index, SizeArch::from_index(index).expect("in range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_checked() {
        assert!(SizeArch::new([8, 16, 24, 32, 64]).is_some());
        assert!(SizeArch::new([8, 16, 24, 32, 12]).is_none());
        assert!(SizeArch::new([0, 16, 24, 32, 64]).is_none());
    }

    #[test]
    fn blocks_follow_the_spec_layout() {
        // A2: C1 stem and cell 0 at H; C2 first reduction; C3 cell 2 at H/2; C4 second
        // reduction; C5 cell 4 at H/4 and the head.
        let arch = SizeArch::new([8, 16, 24, 32, 40]).unwrap();
        let shape = DatasetShape {
            classes: 100,
            input_size: 32,
        };
        let [stem, cell0, res1, cell2, res2, cell4, head] = arch.blocks(shape);
        assert_eq!(
            stem,
            SizeBlock::Stem {
                c_in: 3,
                c_out: 8,
                side: 32
            }
        );
        assert_eq!(
            cell0,
            SizeBlock::Cell {
                c_in: 8,
                c_out: 8,
                side: 32
            }
        );
        assert_eq!(
            res1,
            SizeBlock::Reduction {
                c_in: 8,
                c_out: 16,
                side_in: 32
            }
        );
        assert_eq!(
            cell2,
            SizeBlock::Cell {
                c_in: 16,
                c_out: 24,
                side: 16
            }
        );
        assert_eq!(
            res2,
            SizeBlock::Reduction {
                c_in: 24,
                c_out: 32,
                side_in: 16
            }
        );
        assert_eq!(
            cell4,
            SizeBlock::Cell {
                c_in: 32,
                c_out: 40,
                side: 8
            }
        );
        assert_eq!(
            head,
            SizeBlock::Head {
                c_in: 40,
                classes: 100,
                side: 8
            }
        );
    }
}
