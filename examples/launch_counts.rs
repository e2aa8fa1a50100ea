//! What each score asks of a GPU per arch: kernel launches, memsets, copies, transfers,
//! waits and allocations, counted on the CUDA backend's host code over the emulated
//! kernels (a [`CountingLauncher`]). On a GPU every stream operation costs a few
//! microseconds of host and launch time whatever its size, so these counts bound a
//! launch-bound score's time from below. docs/PERF.md ("GPU", "Stream operations per arch")
//! has the figures.
//!
//! ```sh
//! cargo run --release --features emu --example launch_counts -- [ARCH] [SCORES] [CHANNELS]
//! ```
//! ARCH an index (default 5256), SCORES a comma list (default naswot,ntk,ntk_exact,snip),
//! CHANNELS the first stage's width (default 2: the counts do not depend on it, only the
//! emulator's time does; 5 cells per stage, 32 x 32 synthetic images, the papers' batches).
//! Each score runs twice on one backend; the second run is printed (buffers pooled, as
//! from the second arch of a scoring run on).

use nasrank::backend::cuda::emu::EmuLauncher;
use nasrank::backend::cuda::{CountingLauncher, CudaBackend};
use nasrank::data::Dataset;
use nasrank::proxy::scorer::{score_arch, ScoreSettings};
use nasrank::proxy::Score;
use nasrank::space::{arch_of_index, MacroConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let index: usize = args.next().map_or(Ok(5256), |s| s.parse())?;
    let scores: Vec<Score> = args
        .next()
        .unwrap_or_else(|| "naswot,ntk,ntk_exact,snip".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let channels: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let arch = arch_of_index(index).ok_or_else(|| anyhow::anyhow!("no arch {index}"))?;
    let config = MacroConfig {
        channels,
        ..MacroConfig::NB201_CIFAR10
    };
    let settings = ScoreSettings::paper_defaults(config);
    let data = Dataset::Cifar10.synthetic_batch(128, 0);
    println!("arch {index}, C = {channels}, N = 5; per arch, second run on one backend");
    println!(
        "score\tlaunches\tmemsets\tcopies\tuploads\tdownloads\tstream ops\tallocations\twaits"
    );
    for score in scores {
        let be = CudaBackend::new(CountingLauncher::new(EmuLauncher::new()));
        score_arch(&be, arch, &[score], &data, &settings)?;
        be.launcher().take_counts();
        score_arch(&be, arch, &[score], &data, &settings)?;
        let c = be.launcher().take_counts();
        println!(
            "{score}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            c.total_launches(),
            c.memsets,
            c.copies,
            c.uploads,
            c.downloads,
            c.stream_operations(),
            c.allocations,
            c.waits()
        );
        let mut by_kernel: Vec<_> = c.launches.into_iter().collect();
        by_kernel.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let top: Vec<String> = by_kernel
            .iter()
            .take(6)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("\t(most launched: {})", top.join(", "));
    }
    Ok(())
}
