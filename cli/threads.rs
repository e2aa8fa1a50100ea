//! `--threads N`: the size of rayon's global pool, which every CPU kernel runs on.

use crate::CliError;
use anyhow::anyhow;
use clap::Args;

/// The `--threads` option shared by the commands that compute.
#[derive(Args, Clone, Copy, Debug)]
pub struct ThreadsArg {
    /// Worker threads of the CPU backend (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ThreadsArg {
    /// Builds rayon's global pool with `--threads` workers; without the option rayon's own
    /// default (one per core, or `RAYON_NUM_THREADS`) stands. Call before any CPU work.
    pub fn install(self) -> Result<(), CliError> {
        let Some(n) = self.threads else {
            return Ok(());
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(usize::from(n))
            .build_global()
            .map_err(|e| CliError::Run(anyhow!("cannot start {n} worker threads: {e}")))
    }
}
