//! Analytic counts of the networks of both spaces, layer by layer: parameters, FLOPs and
//! ReLUs, counted as the benchmarks count them (every conv edge, even one whose input is
//! zero or whose output never reaches the cell output). A TSS network is a cell and a
//! macro config, an SSS network a [`SizeArch`]'s blocks. Stages run at S, S/2 and S/4 for
//! input size S, which must be divisible by 4 for the ResNet blocks' shortcut to fit.

use super::{Cell, DatasetShape, MacroConfig, Op, SizeArch, SizeBlock, EDGES, SSS_CELL};

/// Per-image totals of one network, summed layer by layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    params: u64,
    flops: u64,
    relu_units: u64,
    relu_modules: u64,
}

impl Counts {
    /// Conv k x k (no bias) from `c_in` to `c_out` channels, output `size` x `size`.
    fn conv(&mut self, c_in: u64, c_out: u64, k: u64, size: u64) {
        self.params += c_in * c_out * k * k;
        self.flops += c_in * c_out * k * k * size * size;
    }

    /// BatchNorm over `c` channels: gamma and beta.
    fn bn(&mut self, c: u64) {
        self.params += 2 * c;
    }

    /// ReLU over `c` channels of `size` x `size`.
    fn relu(&mut self, c: u64, size: u64) {
        self.relu_modules += 1;
        self.relu_units += c * size * size;
    }

    /// ReLU -> Conv -> BN, the conv ops' and the ResNet block's unit.
    fn relu_conv_bn(&mut self, c_in: u64, c_out: u64, k: u64, size_in: u64, size_out: u64) {
        self.relu(c_in, size_in);
        self.conv(c_in, c_out, k, size_out);
        self.bn(c_out);
    }

    /// Stem: Conv3x3 -> BN.
    fn stem(&mut self, c_in: u64, c_out: u64, size: u64) {
        self.conv(c_in, c_out, 3, size);
        self.bn(c_out);
    }

    /// ResNet block, stride 2: ReLU-Conv3x3 s2-BN, ReLU-Conv3x3-BN; shortcut AvgPool-Conv1x1.
    fn reduction(&mut self, c_in: u64, c_out: u64, size_in: u64) {
        let size = size_in / 2;
        self.relu_conv_bn(c_in, c_out, 3, size_in, size);
        self.relu_conv_bn(c_out, c_out, 3, size, size);
        self.conv(c_in, c_out, 1, size);
    }

    /// lastact BN -> ReLU, global average pool, Linear with bias (its bias counted as one
    /// FLOP per output, as the benchmark does).
    fn head(&mut self, c_in: u64, classes: u64, size: u64) {
        self.bn(c_in);
        self.relu(c_in, size);
        self.params += c_in * classes + classes;
        self.flops += c_in * classes + classes;
    }
}

fn counts(cell: &Cell, cfg: &MacroConfig) -> Counts {
    let mut n = Counts::default();
    let c = cfg.channels as u64;
    let mut size = cfg.input_size as u64;
    if cfg.stem {
        n.stem(cfg.input_channels as u64, c, size);
    }
    for stage in 0..3 {
        let width = c << stage;
        if stage > 0 {
            n.reduction(width / 2, width, size);
            size /= 2;
        }
        for _ in 0..cfg.cells_per_stage {
            for (_, ops) in EDGES.iter().zip(cell.edges) {
                for k in ops.iter().filter_map(Op::kernel) {
                    n.relu_conv_bn(width, width, k as u64, size, size);
                }
            }
        }
    }
    n.head(c << 2, cfg.classes as u64, size);
    n
}

/// An SSS network, block by block (spec A2-A4).
fn size_counts(arch: &SizeArch, shape: DatasetShape) -> Counts {
    let mut n = Counts::default();
    for block in arch.blocks(shape) {
        match block {
            SizeBlock::Stem { c_in, c_out, side } => n.stem(c_in as u64, c_out as u64, side as u64),
            SizeBlock::Cell { c_in, c_out, side } => {
                let (c_in, c_out, side) = (c_in as u64, c_out as u64, side as u64);
                for (&(from, _), op) in EDGES.iter().zip(SSS_CELL.ops) {
                    // Edges leaving the cell's input change the width; the others keep it.
                    let c_edge = if from == 0 { c_in } else { c_out };
                    match op {
                        Op::Conv1x1 | Op::Conv3x3 => {
                            let k = op.kernel().expect("a conv op") as u64;
                            n.relu_conv_bn(c_edge, c_out, k, side, side);
                        }
                        // Identity at equal widths, else a stride-1 FactorizedReduce:
                        // Conv1x1 -> BN with no ReLU (spec A3).
                        Op::SkipConnect if c_edge != c_out => {
                            n.conv(c_edge, c_out, 1, side);
                            n.bn(c_out);
                        }
                        Op::SkipConnect | Op::None => {}
                        Op::AvgPool3x3 => unreachable!("the SSS cell has no pool edge"),
                    }
                }
            }
            SizeBlock::Reduction {
                c_in,
                c_out,
                side_in,
            } => n.reduction(c_in as u64, c_out as u64, side_in as u64),
            SizeBlock::Head {
                c_in,
                classes,
                side,
            } => n.head(c_in as u64, classes as u64, side as u64),
        }
    }
    n
}

impl SizeArch {
    /// Learnable parameters of the SSS network for a dataset of this shape, BatchNorm
    /// gamma and beta included: the benchmark's params (in units, not millions).
    pub fn params(&self, shape: DatasetShape) -> u64 {
        size_counts(self, shape).params
    }

    /// Multiply-adds of the convolutions and the classifier (its bias one per output) for
    /// one image: the benchmark's FLOPs (in units, not millions).
    pub fn flops(&self, shape: DatasetShape) -> u64 {
        size_counts(self, shape).flops
    }
}

/// Learnable parameters, BatchNorm gamma and beta included.
pub fn count_params(cell: &Cell, cfg: &MacroConfig) -> u64 {
    counts(cell, cfg).params
}

/// Multiply-adds of the convolutions and the classifier (its bias counted as one per
/// output) for one image: the benchmark's FLOPs.
pub fn count_flops(cell: &Cell, cfg: &MacroConfig) -> u64 {
    counts(cell, cfg).flops
}

/// Scalar ReLU outputs for one image: the length of a NASWOT binary code.
pub fn relu_units(cell: &Cell, cfg: &MacroConfig) -> u64 {
    counts(cell, cfg).relu_units
}

/// ReLU layers in the network.
pub fn relu_modules(cell: &Cell, cfg: &MacroConfig) -> u64 {
    counts(cell, cfg).relu_modules
}
