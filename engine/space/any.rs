//! The search spaces behind one notion: which space (TSS or SSS), an arch of either, and
//! what every space knows of its archs (index order, strings, dedup keys, counts). The
//! TSS code lives in this module's other files and the SSS code in sss.rs; this layer
//! only dispatches.

use std::fmt;
use std::str::FromStr;

use super::{
    arch_of_index, count_flops, count_params, index_of_arch, Arch, ArchParseError, Cell, ClassKey,
    DatasetShape, MacroConfig, SizeArch, SizeArchParseError, NUM_ARCHS, SSS_NUM_ARCHS,
};

/// A search space of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// NAS-Bench-201 / NATS-Bench topology space: one op per cell edge, C=16, N=5.
    Tss,
    /// NATS-Bench size space: a fixed cell, five widths.
    Sss,
}

/// An unknown space name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown space {0:?}: expected tss (topology, NAS-Bench-201) or sss (size, NATS-Bench)")]
pub struct SpaceParseError(pub String);

impl Space {
    pub const ALL: [Space; 2] = [Space::Tss, Space::Sss];

    pub fn name(self) -> &'static str {
        match self {
            Space::Tss => "tss",
            Space::Sss => "sss",
        }
    }

    /// How many archs the benchmark has in this space.
    pub fn num_archs(self) -> usize {
        match self {
            Space::Tss => NUM_ARCHS,
            Space::Sss => SSS_NUM_ARCHS,
        }
    }

    /// The arch at this benchmark index, or `None` past the end of the space.
    pub fn arch_of_index(self, index: usize) -> Option<AnyArch> {
        match self {
            Space::Tss => arch_of_index(index).map(AnyArch::Tss),
            Space::Sss => SizeArch::from_index(index).map(AnyArch::Sss),
        }
    }

    /// An arch string of this space: `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` for TSS,
    /// `C1:C2:C3:C4:C5` for SSS.
    pub fn parse_arch(self, text: &str) -> Result<AnyArch, AnyArchParseError> {
        Ok(match self {
            Space::Tss => AnyArch::Tss(text.parse()?),
            Space::Sss => AnyArch::Sss(text.parse()?),
        })
    }

    /// Every arch of the space with its benchmark index, in index order.
    pub fn archs(self) -> impl Iterator<Item = (usize, AnyArch)> {
        (0..self.num_archs()).map(move |index| {
            let arch = self.arch_of_index(index).expect("index below num_archs");
            (index, arch)
        })
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Space {
    type Err = SpaceParseError;

    fn from_str(s: &str) -> Result<Space, SpaceParseError> {
        Space::ALL
            .into_iter()
            .find(|space| space.name() == s)
            .ok_or_else(|| SpaceParseError(s.to_string()))
    }
}

/// Why an arch string of a space was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnyArchParseError {
    #[error(transparent)]
    Tss(#[from] ArchParseError),
    #[error(transparent)]
    Sss(#[from] SizeArchParseError),
}

/// An arch of either space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnyArch {
    Tss(Arch),
    Sss(SizeArch),
}

impl AnyArch {
    pub fn space(&self) -> Space {
        match self {
            AnyArch::Tss(_) => Space::Tss,
            AnyArch::Sss(_) => Space::Sss,
        }
    }

    /// The arch's benchmark index in its space.
    pub fn index(&self) -> usize {
        match self {
            AnyArch::Tss(arch) => index_of_arch(arch),
            AnyArch::Sss(arch) => arch.index(),
        }
    }

    /// The key at this level of detail: archs of a space with equal keys have equal scores
    /// (in distribution over the initialisation), so a run scores one per key. Every SSS
    /// arch is its own class at every level ([`SizeArch::key`]).
    pub fn class_key(&self, level: ClassKey) -> String {
        match self {
            AnyArch::Tss(arch) => level.of(arch),
            AnyArch::Sss(arch) => arch.key(),
        }
    }

    /// Learnable parameters of the benchmark's network for a dataset of this shape.
    pub fn params(&self, shape: DatasetShape) -> u64 {
        match self {
            AnyArch::Tss(arch) => count_params(&Cell::from(*arch), &MacroConfig::nb201(shape)),
            AnyArch::Sss(arch) => arch.params(shape),
        }
    }

    /// The benchmark's FLOPs (multiply-adds per image) for a dataset of this shape.
    pub fn flops(&self, shape: DatasetShape) -> u64 {
        match self {
            AnyArch::Tss(arch) => count_flops(&Cell::from(*arch), &MacroConfig::nb201(shape)),
            AnyArch::Sss(arch) => arch.flops(shape),
        }
    }
}

impl fmt::Display for AnyArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyArch::Tss(arch) => fmt::Display::fmt(arch, f),
            AnyArch::Sss(arch) => fmt::Display::fmt(arch, f),
        }
    }
}

impl From<Arch> for AnyArch {
    fn from(arch: Arch) -> AnyArch {
        AnyArch::Tss(arch)
    }
}

impl From<&Arch> for AnyArch {
    fn from(arch: &Arch) -> AnyArch {
        AnyArch::Tss(*arch)
    }
}

impl From<SizeArch> for AnyArch {
    fn from(arch: SizeArch) -> AnyArch {
        AnyArch::Sss(arch)
    }
}

impl From<&AnyArch> for AnyArch {
    fn from(arch: &AnyArch) -> AnyArch {
        *arch
    }
}
