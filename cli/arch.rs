//! `nasrank arch`: what the engine knows about one architecture.

use crate::CliError;
use anyhow::anyhow;
use clap::Args;
use nasrank::run::archs::{parse_arch, ArchInfo};
use nasrank::space::MacroConfig;

/// Show an architecture: index, arch string, isomorphism key and class size, counts.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank arch 6111\n  \
    nasrank arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'\n  \
    nasrank arch 123 --json --classes 100")]
pub struct ArchArgs {
    /// A benchmark index (0..15624) or an arch string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.
    arch: String,
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
    let (index, arch) = parse_arch(&args.arch)?;
    if args.classes == 0 || args.input_size == 0 || !args.input_size.is_multiple_of(4) {
        return Err(CliError::usage(anyhow!(
            "--classes must be at least 1 and --input-size a positive multiple of 4"
        )));
    }
    let config = MacroConfig {
        classes: args.classes,
        input_size: args.input_size,
        ..MacroConfig::NB201_CIFAR10
    };
    let info = ArchInfo::of(index, &arch, &config);
    if args.json {
        println!("{}", serde_json::to_string(&info).map_err(CliError::usage)?);
    } else {
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
    Ok(())
}
