//! The search spaces. This module holds the NAS-Bench-201 / NATS-Bench topology space
//! (TSS): ops, cells, archs, the benchmark's index order, the isomorphism key and analytic
//! counts; sss.rs the NATS-Bench size space (SSS); any.rs the [`Space`] both are seen
//! through ([`AnyArch`]: index order, strings, dedup keys, counts of either).

use std::fmt;

mod any;
mod counts;
mod index;
mod iso;
mod parse;
mod sss;

pub use any::{AnyArch, AnyArchParseError, Space, SpaceParseError};
pub use counts::{count_flops, count_params, relu_modules, relu_units};
pub use index::{arch_of_index, benchmark_archs, index_of_arch};
pub use iso::{
    codes_classes, codes_key, is_dead, iso_classes, iso_key, modules_classes, modules_key,
    structure_classes, structure_key, ArchClass, ClassKey,
};
pub use parse::ArchParseError;
pub use sss::{
    size_benchmark_archs, SizeArch, SizeArchParseError, SizeBlock, SSS_CELL, SSS_NUM_ARCHS,
    SSS_POSITIONS, SSS_WIDTHS,
};

/// A cell operation, in the benchmark's list order (the op index used everywhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    None = 0,
    SkipConnect = 1,
    Conv1x1 = 2,
    Conv3x3 = 3,
    AvgPool3x3 = 4,
}

impl Op {
    /// All ops in list order.
    pub const ALL: [Op; 5] = [
        Op::None,
        Op::SkipConnect,
        Op::Conv1x1,
        Op::Conv3x3,
        Op::AvgPool3x3,
    ];

    /// The op's name as it appears in arch strings.
    pub fn name(self) -> &'static str {
        match self {
            Op::None => "none",
            Op::SkipConnect => "skip_connect",
            Op::Conv1x1 => "nor_conv_1x1",
            Op::Conv3x3 => "nor_conv_3x3",
            Op::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Op> {
        Op::ALL.get(i).copied()
    }

    /// Conv ops carry a ReLU -> Conv -> BN chain with weights.
    pub fn is_conv(self) -> bool {
        matches!(self, Op::Conv1x1 | Op::Conv3x3)
    }

    /// Kernel size of a conv op.
    pub fn kernel(self) -> Option<usize> {
        match self {
            Op::Conv1x1 => Some(1),
            Op::Conv3x3 => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of nodes in a cell (node 0 is the input, node 3 the output).
pub const NODES: usize = 4;

/// The 6 edges `(from, to)` in arch-string order.
pub const EDGES: [(usize, usize); 6] = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)];

/// Number of architectures in the topology space (5^6).
pub const NUM_ARCHS: usize = 15_625;

/// One architecture: one op per edge, edges in [`EDGES`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch {
    pub ops: [Op; 6],
}

/// A set of ops on one edge (bit i = op with index i); the edge's output is the sum of
/// its ops' outputs. Supernets (TE-NAS pruning) carry several ops per edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct OpSet(pub u8);

impl OpSet {
    pub const EMPTY: OpSet = OpSet(0);

    pub fn single(op: Op) -> OpSet {
        OpSet(1 << op.index())
    }

    pub fn from_ops(ops: &[Op]) -> OpSet {
        OpSet(ops.iter().fold(0, |m, op| m | (1 << op.index())))
    }

    pub fn contains(self, op: Op) -> bool {
        self.0 & (1 << op.index()) != 0
    }

    pub fn insert(&mut self, op: Op) {
        self.0 |= 1 << op.index();
    }

    pub fn remove(&mut self, op: Op) {
        self.0 &= !(1 << op.index());
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The ops in the set, in list order.
    pub fn iter(self) -> impl Iterator<Item = Op> {
        Op::ALL.into_iter().filter(move |op| self.contains(*op))
    }
}

/// A cell genotype where each edge carries a set of ops: an [`Arch`] is the case of one op
/// per edge; the TE-NAS supernet starts with every op but `none` on every edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    pub edges: [OpSet; 6],
}

impl Cell {
    /// Every edge carries all ops but `none` (the TE-NAS starting supernet).
    pub fn full_supernet() -> Cell {
        Cell {
            edges: [OpSet::from_ops(&[Op::SkipConnect, Op::Conv1x1, Op::Conv3x3, Op::AvgPool3x3]);
                6],
        }
    }

    /// The arch this cell is, when every edge carries exactly one op.
    pub fn as_arch(&self) -> Option<Arch> {
        let mut ops = [Op::None; 6];
        for (slot, set) in ops.iter_mut().zip(self.edges) {
            if set.len() != 1 {
                return None;
            }
            *slot = set.iter().next()?;
        }
        Some(Arch { ops })
    }
}

impl From<Arch> for Cell {
    fn from(arch: Arch) -> Cell {
        Cell {
            edges: arch.ops.map(OpSet::single),
        }
    }
}

/// What a dataset fixes of a benchmark network, in either space: the classifier's outputs
/// and the input side (10 and 32 for CIFAR-10, 100 and 32 for CIFAR-100, 120 and 16 for
/// ImageNet16-120).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatasetShape {
    pub classes: usize,
    pub input_size: usize,
}

/// The macro skeleton around the cells (TinyNetwork of NAS-Bench-201).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacroConfig {
    /// Channels of the first stage (C); stages have C, 2C, 4C.
    pub channels: usize,
    /// Cells per stage (N); 3 stages, with a ResNet reduction block between stages.
    pub cells_per_stage: usize,
    /// Classifier outputs.
    pub classes: usize,
    /// Input images are `3 x input_size x input_size`.
    pub input_size: usize,
    /// Input channels (3 for images; 1 for the TE-NAS linear-region setting).
    pub input_channels: usize,
    /// With the stem conv + BN; without, the cells see the input directly
    /// (then `input_channels` must equal `channels`).
    pub stem: bool,
}

impl MacroConfig {
    /// NAS-Bench-201 as the benchmark was trained: C=16, N=5, 32x32 CIFAR-10.
    pub const NB201_CIFAR10: MacroConfig = MacroConfig {
        channels: 16,
        cells_per_stage: 5,
        classes: 10,
        input_size: 32,
        input_channels: 3,
        stem: true,
    };

    /// The same network with another number of classes.
    pub fn with_classes(self, classes: usize) -> MacroConfig {
        MacroConfig { classes, ..self }
    }

    /// NAS-Bench-201's network (C=16, N=5) for a dataset of this shape.
    pub fn nb201(shape: DatasetShape) -> MacroConfig {
        MacroConfig {
            classes: shape.classes,
            input_size: shape.input_size,
            ..MacroConfig::NB201_CIFAR10
        }
    }
}
