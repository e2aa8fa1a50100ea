//! `nasrank arch`: what the engine knows about one architecture.

use crate::CliError;
use anyhow::anyhow;
use clap::Args;
use nasrank::run::archs::{parse_space_arch, AnyArchInfo, ArchInfo, SizeArchInfo};
use nasrank::space::{DatasetShape, Space};

/// Show an architecture: index, arch string, isomorphism key and class size, counts.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank arch 6111\n  \
    nasrank arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'\n  \
    nasrank arch 123 --json --classes 100\n  \
    nasrank arch --space sss 12\n  \
    nasrank arch --space sss 8:8:8:16:40 --classes 120 --input-size 16")]
pub struct ArchArgs {
    /// A benchmark index or an arch string of the space: for tss 0..15624 or
    /// `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; for sss 0..32767 or `C1:C2:C3:C4:C5`, each
    /// width one of 8, 16, 24, 32, 40, 48, 56, 64.
    arch: String,
    /// The search space: tss (NAS-Bench-201 / NATS-Bench topology) or sss (NATS-Bench size).
    #[arg(long, default_value_t = Space::Tss)]
    space: Space,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Classifier outputs for the counts (10 CIFAR-10, 100 CIFAR-100, 120 ImageNet16-120).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Input resolution for the counts (32 for CIFAR, 16 for ImageNet16-120).
    #[arg(long, default_value_t = 32)]
    input_size: usize,
}

pub fn run(args: &ArchArgs) -> Result<(), CliError> {
    let arch = parse_space_arch(args.space, &args.arch)?;
    if args.classes == 0 || args.input_size == 0 || !args.input_size.is_multiple_of(4) {
        return Err(CliError::usage(anyhow!(
            "--classes must be at least 1 and --input-size a positive multiple of 4"
        )));
    }
    let shape = DatasetShape {
        classes: args.classes,
        input_size: args.input_size,
    };
    let info = AnyArchInfo::of(&arch, shape);
    if args.json {
        println!("{}", serde_json::to_string(&info).map_err(CliError::usage)?);
    } else {
        match &info {
            AnyArchInfo::Tss(info) => print_tss(info),
            AnyArchInfo::Sss(info) => print_sss(info),
        }
    }
    Ok(())
}

fn print_tss(info: &ArchInfo) {
    println!("index       {}", info.index);
    println!("arch        {}", info.arch);
    println!("unique      {}", info.unique);
    println!(
        "class size  {} (isomorphic archs sharing this key)",
        info.class_size
    );
    println!(
        "dead        {}",
        if info.dead {
            "yes: no non-zero path from input to output"
        } else {
            "no"
        }
    );
    println!("params      {}", info.params);
    println!(
        "flops       {} ({:.5} M multiply-adds)",
        info.flops,
        info.flops as f64 / 1e6
    );
    println!("relu units  {} per image", info.relu_units);
}

fn print_sss(info: &SizeArchInfo) {
    println!("space       {}", info.space);
    println!("index       {}", info.index);
    println!("arch        {}", info.arch);
    println!(
        "class size  {} (no other arch computes the same function: the widths differ)",
        info.class_size
    );
    // Millions with 6 decimals, as the benchmark records them (0.067378, 7.991706).
    println!(
        "params      {} ({:.6} M)",
        info.params,
        info.params as f64 / 1e6
    );
    println!(
        "flops       {} ({:.6} M multiply-adds)",
        info.flops,
        info.flops as f64 / 1e6
    );
}
