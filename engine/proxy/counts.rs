//! params and flops: the benchmark's counts of the arch (engine/space/counts.rs), whatever
//! the plan prunes: every conv edge counts, even one whose input is zero, and BN gamma and
//! beta and the classifier bias count as parameters. Raw counts (the benchmark's tables
//! divide by 1e6); flops are multiply-adds per image.

use crate::space::{count_flops, count_params, Cell, MacroConfig};

/// Parameters of the network `cell` and `config` make.
pub fn params(cell: &Cell, config: &MacroConfig) -> f64 {
    count_params(cell, config) as f64
}

/// Multiply-adds per image of the network `cell` and `config` make.
pub fn flops(cell: &Cell, config: &MacroConfig) -> f64 {
    count_flops(cell, config) as f64
}
