//! `nasrank arch`: what the engine knows about one architecture.

use crate::CliError;
use anyhow::anyhow;
use clap::Args;
use nasrank::space::{
    arch_of_index, count_flops, count_params, index_of_arch, is_dead, iso_classes, iso_key,
    relu_units, Arch, Cell, MacroConfig, NUM_ARCHS,
};

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

/// Parses a benchmark index or an arch string.
pub fn parse_arch(text: &str) -> Result<(usize, Arch), CliError> {
    let text = text.trim();
    if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
        let index: usize = text
            .parse()
            .map_err(|_| CliError::usage(anyhow!("index {text} is out of range")))?;
        let arch = arch_of_index(index).ok_or_else(|| {
            CliError::usage(anyhow!(
                "index {index} is out of range: the space has {NUM_ARCHS} archs, 0..{}",
                NUM_ARCHS - 1
            ))
        })?;
        Ok((index, arch))
    } else {
        let arch: Arch = text
            .parse()
            .map_err(|e| CliError::usage(anyhow!("bad arch string {text:?}: {e}")))?;
        Ok((index_of_arch(&arch), arch))
    }
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
    let cell = Cell::from(arch);
    let key = iso_key(&arch);
    let class_size = iso_classes()
        .into_iter()
        .find(|c| c.key == key)
        .map_or(1, |c| c.indices.len());
    let info = serde_json::json!({
        "index": index,
        "arch": arch.to_string(),
        "unique": key,
        "class_size": class_size,
        "dead": is_dead(&arch),
        "params": count_params(&cell, &config),
        "flops": count_flops(&cell, &config),
        "relu_units": relu_units(&cell, &config),
    });
    if args.json {
        println!("{info}");
    } else {
        let flops = count_flops(&cell, &config);
        println!("index       {index}");
        println!("arch        {arch}");
        println!("unique      {key}");
        println!("class size  {class_size} (isomorphic archs sharing this key)");
        println!(
            "dead        {}",
            if is_dead(&arch) {
                "yes: no non-zero path from input to output"
            } else {
                "no"
            }
        );
        println!("params      {}", count_params(&cell, &config));
        println!(
            "flops       {flops} ({:.5} M multiply-adds)",
            flops as f64 / 1e6
        );
        println!("relu units  {} per image", relu_units(&cell, &config));
    }
    Ok(())
}
