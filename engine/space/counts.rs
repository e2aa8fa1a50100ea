//! Analytic counts of the network a cell and a macro config make: parameters, FLOPs and
//! ReLUs, counted as the benchmark counts them (every conv edge, even one whose input is
//! zero or whose output never reaches the cell output). Stages run at S, S/2 and S/4 for
//! input size S, which must be divisible by 4 for the ResNet blocks' shortcut to fit.

use super::{Cell, MacroConfig, Op, EDGES};

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
}

fn counts(cell: &Cell, cfg: &MacroConfig) -> Counts {
    let mut n = Counts::default();
    let c = cfg.channels as u64;
    let mut size = cfg.input_size as u64;
    if cfg.stem {
        n.conv(cfg.input_channels as u64, c, 3, size);
        n.bn(c);
    }
    for stage in 0..3 {
        let width = c << stage;
        if stage > 0 {
            // ResNet block: ReLU-Conv3x3 s2-BN, ReLU-Conv3x3-BN; shortcut AvgPool-Conv1x1.
            let (c_in, size_in) = (width / 2, size);
            size /= 2;
            n.relu_conv_bn(c_in, width, 3, size_in, size);
            n.relu_conv_bn(width, width, 3, size, size);
            n.conv(c_in, width, 1, size);
        }
        for _ in 0..cfg.cells_per_stage {
            for (_, ops) in EDGES.iter().zip(cell.edges) {
                for k in ops.iter().filter_map(Op::kernel) {
                    n.relu_conv_bn(width, width, k as u64, size, size);
                }
            }
        }
    }
    // lastact BN -> ReLU, global average pool, Linear with bias.
    let width = c << 2;
    let classes = cfg.classes as u64;
    n.bn(width);
    n.relu(width, size);
    n.params += width * classes + classes;
    n.flops += width * classes + classes;
    n
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
