//! `nasrank search`: architecture search driven by a training-free score: the arguments
//! and the report (text or JSON) over `nasrank::run::search`, which says how each strategy
//! draws and measures.

use crate::progress::Progress;
use crate::score::{parse_data, swap_regularizer};
use crate::threads::ThreadsArg;
use crate::CliError;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use nasrank::run::archs::{read_known_scores, read_pool, read_truth};
use nasrank::run::data::DataSource;
use nasrank::run::device::{parse_device, Device};
use nasrank::run::search::{SearchProgress, Strategy};
use nasrank::run::search_report::SearchRequest;
use nasrank::space::Space;
use serde_json::Value;
use std::path::PathBuf;

/// Search NAS-Bench-201 / NATS-Bench with a training-free score: random sampling (NASWOT),
/// regularized evolution, KNAS's top-k then benchmark lookup, or TE-NAS's supernet pruning.
/// `--space sss` searches the NATS-Bench size space (archs `C1:C2:C3:C4:C5`; evolution
/// mutates one width); pruning is defined on the topology space's supernet only.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank search random --samples 100 --runs 10 --truth ../shared/data/nb201/accuracy_dev.csv \\\n      \
      --from ../shared/data/nb201/accuracy_dev.csv --data cifar10:../shared/data/cifar10\n  \
    nasrank search evolution --score naswot --cycles 500\n  \
    nasrank search topk --score mgm --samples 300 --k 40 --truth acc.csv\n  \
    nasrank search prune --truth acc.csv --data cifar10:../shared/data/cifar10\n  \
    nasrank search random --space sss --samples 100 --runs 10 --from ../shared/data/nats_sss/accuracy_dev.csv \\\n      \
      --truth ../shared/data/nats_sss/accuracy_dev.csv --data cifar10:../shared/data/cifar10\n  \
    nasrank search evolution --space sss --score synflow --cycles 500\n  \
    nasrank search topk --space sss --samples 300 --k 40 --truth ../shared/data/nats_sss/accuracy_dev.csv")]
pub struct SearchArgs {
    /// The search strategy.
    #[arg(value_parser = PossibleValuesParser::new(Strategy::ALL.map(Strategy::name))
        .map(|s| s.parse::<Strategy>().expect("one of the possible values")))]
    strategy: Strategy,
    /// The search space: tss (NAS-Bench-201 / NATS-Bench topology, 15,625 archs) or sss
    /// (NATS-Bench size, 32,768 archs `C1:C2:C3:C4:C5`). `prune` and the scores defined on
    /// the topology space only (linear_regions) exit 2 with sss, as do
    /// --channels and --cells (a size-space arch gives its own widths).
    #[arg(long, default_value = "tss")]
    space: Space,
    /// The score that drives the search (default: naswot; mgm for topk; prune takes `ntk`
    /// or `ntk_exact`, the kappa it ranks with linear regions).
    #[arg(long)]
    score: Option<String>,
    /// `synthetic`, `cifar10:PATH`, `cifar100:PATH` or `imagenet16:PATH`, as for `nasrank score`.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Minibatch size of the score (default: the score's paper batch).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the weights and of the minibatch; sampling and mutation draw from seeds
    /// derived from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to compute: `cpu`, `auto`, `cuda`, `cuda:K` or `emu`, as for `nasrank score`
    /// (`cuda:all` is GPU 0 here: a search scores one arch at a time).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: Device,
    /// Channels of the first stage (default 16; 3 for prune, as TE-NAS's released code);
    /// topology space only.
    #[arg(long)]
    channels: Option<usize>,
    /// Cells per stage (default 5; 1 for prune, as TE-NAS's released code); topology space
    /// only.
    #[arg(long)]
    cells: Option<usize>,
    /// Accuracy table (CSV with an `index` or `arch` column, of the space searched) for the
    /// chosen archs' accuracies; topk picks its final arch by it and, without --from,
    /// samples from the archs it gives an accuracy.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// The accuracy column of --truth.
    #[arg(long, default_value = "cifar10_test")]
    metric: String,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Print one JSON object with the results.
    #[arg(long)]
    json: bool,
    /// random, topk: archs sampled per run (default 100 for random, 300 for topk).
    #[arg(long, short = 'n')]
    samples: Option<usize>,
    /// Scores already computed: a results file of `nasrank score` with the same score, data,
    /// seed and network; archs found there are not scored again (the others are).
    #[arg(long)]
    scores_from: Option<PathBuf>,
    /// random, topk: sample from these archs only: a file of indices or arch strings, one
    /// per line, or a CSV with an `index` (or `arch`) column such as an accuracy table.
    #[arg(long)]
    from: Option<PathBuf>,
    /// random: independent runs (different samples, same minibatch and weights).
    #[arg(long)]
    runs: Option<usize>,
    /// topk: archs kept by score before the pick by accuracy.
    #[arg(long)]
    k: Option<usize>,
    /// evolution: population size.
    #[arg(long)]
    population: Option<usize>,
    /// evolution: tournament sample size.
    #[arg(long)]
    tournament: Option<usize>,
    /// evolution: evaluations in all, the initial population included.
    #[arg(long)]
    cycles: Option<usize>,
    /// prune: weight draws each change is averaged over.
    #[arg(long)]
    repeats: Option<usize>,
    /// prune: linear-region forward passes (TE-NAS: 3).
    #[arg(long)]
    lr_batches: Option<usize>,
    /// prune: linear-region crops per forward pass (TE-NAS: 1000).
    #[arg(long)]
    lr_batch_size: Option<usize>,
    /// swap_reg as the score: its mu and sigma, as for `nasrank score` (default: the
    /// space's).
    #[arg(long, requires = "swap_sigma", allow_hyphen_values = true)]
    swap_mu: Option<f64>,
    #[arg(long, requires = "swap_mu", allow_hyphen_values = true)]
    swap_sigma: Option<f64>,
    #[command(flatten)]
    pub(crate) threads: ThreadsArg,
}

pub fn run(args: &SearchArgs) -> Result<(), CliError> {
    let mut request = SearchRequest {
        space: args.space,
        score: match &args.score {
            Some(name) => Some(name.parse().map_err(CliError::usage)?),
            None => None,
        },
        batch: args.batch,
        seed: args.seed,
        device: args.device,
        channels: args.channels,
        cells: args.cells,
        metric: args.metric.clone(),
        samples: args.samples,
        runs: args.runs,
        k: args.k,
        population: args.population,
        tournament: args.tournament,
        cycles: args.cycles,
        repeats: args.repeats,
        lr_batches: args.lr_batches,
        lr_batch_size: args.lr_batch_size,
        swap_regularizer: swap_regularizer(args.swap_mu, args.swap_sigma)?,
        // Stands for --from until the file is read, so that the options check sees it.
        pool: args.from.as_ref().map(|_| Vec::new()),
        ..SearchRequest::new(args.strategy, DataSource::parse("synthetic")?)
    };
    // Options are checked before any file is read.
    request.check_options()?;
    if let Some(path) = &args.from {
        request.pool = Some(read_pool(path, args.space)?);
    }
    if let Some(path) = &args.truth {
        request.truth = Some(read_truth(path, &args.metric, args.space)?);
    }
    if let Some(path) = &args.scores_from {
        request.known = read_known_scores(path, request.score(), args.space)?;
    }
    request.check()?;
    request.data = parse_data(&args.data)?;
    let report = request.run(&mut Bar::new(args.quiet))?;
    if args.json {
        println!("{report}");
    } else {
        print_report(&request, &report);
    }
    Ok(())
}

/// The text report of a search, drawn from its JSON report.
fn print_report(request: &SearchRequest, report: &Value) {
    let score = request.score();
    let (channels, cells) = request.network();
    let dir = if score.higher_is_better() {
        "higher"
    } else {
        "lower"
    };
    let truth = request.truth.is_some();
    let metric = &request.metric;
    let known = match request.known.len() {
        0 => String::new(),
        k => format!(" ({k} more read from --scores-from)"),
    };
    // A size-space arch brings its own widths: C and N shape topology-space nets only.
    let network = match request.space {
        Space::Tss => format!("channels {channels}, cells {cells}"),
        Space::Sss => "each arch's own widths".to_string(),
    };
    println!(
        "{} search of the {} space by {score} ({dir} is better), {network}, seed {}",
        request.strategy.name(),
        request.space,
        request.seed
    );
    let int = |v: &Value| v.as_u64().unwrap_or(0);
    let acc = |v: &Value| v["accuracy"].as_f64();
    // Key-value lines for one chosen arch.
    let say_arch = |a: &Value| {
        println!("index         {}", int(&a["index"]));
        println!("arch          {}", a["arch"].as_str().unwrap_or(""));
        // Rust's shortest decimal, as before the report was JSON; null is a NaN score.
        println!(
            "{:<13} {}",
            score.name(),
            a["score"].as_f64().unwrap_or(f64::NAN)
        );
        if truth {
            println!("{metric:<13} {}", fmt_acc(acc(a)));
        }
    };
    let table = |first: &str, rows: &[Value]| {
        println!(
            "{first:<4} {:>6} {:>14} {:>13}  arch",
            "index",
            score.name(),
            metric
        );
        for (r, a) in rows.iter().enumerate() {
            println!(
                "{:<4} {:>6} {:>14.6} {:>13}  {}",
                r + 1,
                int(&a["index"]),
                a["score"].as_f64().unwrap_or(f64::NAN),
                fmt_acc(acc(a)),
                a["arch"].as_str().unwrap_or("")
            );
        }
    };
    match request.strategy {
        Strategy::Random => {
            let runs = report["runs"].as_array().cloned().unwrap_or_default();
            println!(
                "{} archs per run from a pool of {}, {} run(s), {} archs scored{known}",
                int(&report["samples"]),
                int(&report["pool"]),
                runs.len(),
                int(&report["scored"])
            );
            table("run", &runs);
            if truth {
                println!(
                    "mean {metric} {:.2} +- {:.2} (population std) over the {} run(s) with an accuracy",
                    report["mean_accuracy"].as_f64().unwrap_or(f64::NAN),
                    report["std_accuracy"].as_f64().unwrap_or(f64::NAN),
                    runs.iter().filter(|a| acc(a).is_some()).count()
                );
            }
        }
        Strategy::Evolution => {
            println!(
                "population {}, tournament {}, {} evaluations, {} archs scored{known}",
                int(&report["population"]),
                int(&report["tournament"]),
                int(&report["cycles"]),
                int(&report["scored"])
            );
            say_arch(&report["best"]);
        }
        Strategy::Topk => {
            let k = int(&report["k"]);
            let source = match report["pool_source"].as_str() {
                Some("truth") => format!(" (the archs with a {metric} in --truth)"),
                _ => String::new(),
            };
            println!(
                "{} archs sampled from a pool of {}{source}, the {k} best by {score} kept",
                int(&report["samples"]),
                int(&report["pool"])
            );
            table("rank", report["kept"].as_array().map_or(&[], Vec::as_slice));
            match (truth, report["pick"].is_null()) {
                (false, _) => {
                    println!("no --truth: the final pick by accuracy is left to the reader")
                }
                (true, true) => {
                    println!("none of the {k} kept archs has a {metric} in --truth: no pick")
                }
                (true, false) => {
                    println!("picked by accuracy among the kept:");
                    say_arch(&report["pick"]);
                }
            }
        }
        Strategy::Prune => {
            let lr = request.lr_settings();
            println!(
                "{} repeat(s), linear regions on {} x {} crops",
                request.repeats(),
                lr.batches,
                lr.batch_size
            );
            for (r, round) in report["rounds"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let pruned: Vec<String> = round["pruned"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{} {}",
                            p["edge"].as_str().unwrap_or(""),
                            p["op"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                println!("round {}: pruned {}", r + 1, pruned.join(", "));
            }
            println!("index         {}", int(&report["index"]));
            println!("arch          {}", report["arch"].as_str().unwrap_or(""));
            if truth {
                println!("{metric:<13} {}", fmt_acc(acc(report)));
            }
        }
    }
}

fn fmt_acc(acc: Option<f64>) -> String {
    acc.map_or("-".to_string(), |a| format!("{a:.2}"))
}

/// A search's progress on standard error.
struct Bar {
    quiet: bool,
    bar: Option<Progress>,
}

impl Bar {
    fn new(quiet: bool) -> Bar {
        Bar { quiet, bar: None }
    }
}

impl SearchProgress for Bar {
    fn start(&mut self, total: usize, unit: &'static str) {
        self.bar = Some(Progress::with_unit(total, self.quiet, unit));
    }

    fn tick(&mut self) {
        if let Some(bar) = &mut self.bar {
            bar.tick();
        }
    }

    fn interrupted(&self) -> bool {
        crate::signals::received().is_some()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
