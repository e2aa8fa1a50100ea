//! `nasrank search`: architecture search driven by a training-free score: the arguments
//! and the report (text or JSON) over `nasrank::run::search`, which says how each strategy
//! draws and measures.

use crate::progress::Progress;
use crate::score::parse_data;
use crate::threads::ThreadsArg;
use crate::CliError;
use anyhow::anyhow;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use nasrank::data::Seeds;
use nasrank::proxy::linear_regions::ReleasedSettings;
use nasrank::proxy::Score;
use nasrank::run::archs::{read_known_scores, read_pool, read_truth};
use nasrank::run::device::{parse_device, Device};
use nasrank::run::search::{SearchJob, SearchProgress, Searched, Strategy};
use nasrank::search::evolution::EvolutionSettings;
use nasrank::search::prune::Round;
use nasrank::search::random::mean_std;
use nasrank::search::topk::pick_by_accuracy;
use nasrank::space::{arch_of_index, index_of_arch, EDGES, NUM_ARCHS};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// Search NAS-Bench-201 with a training-free score: random sampling (NASWOT), regularized
/// evolution, KNAS's top-k then benchmark lookup, or TE-NAS's supernet pruning.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nasrank search random --samples 100 --runs 10 --truth ../shared/data/nb201/accuracy_dev.csv \\\n      \
      --from ../shared/data/nb201/accuracy_dev.csv --data cifar10:../shared/data/cifar10\n  \
    nasrank search evolution --score naswot --cycles 500\n  \
    nasrank search topk --score mgm --samples 300 --k 40 --truth acc.csv\n  \
    nasrank search prune --truth acc.csv --data cifar10:../shared/data/cifar10")]
pub struct SearchArgs {
    /// The search strategy.
    #[arg(value_parser = PossibleValuesParser::new(Strategy::ALL.map(Strategy::name))
        .map(|s| s.parse::<Strategy>().expect("one of the possible values")))]
    strategy: Strategy,
    /// The score that drives the search (default: naswot; mgm for topk; prune takes `ntk`
    /// or `ntk_exact`, the kappa it ranks with linear regions).
    #[arg(long)]
    score: Option<String>,
    /// `synthetic`, `cifar10:PATH` or `cifar100:PATH`, as for `nasrank score`.
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
    /// Channels of the first stage (default 16; 3 for prune, as TE-NAS's released code).
    #[arg(long)]
    channels: Option<usize>,
    /// Cells per stage (default 5; 1 for prune, as TE-NAS's released code).
    #[arg(long)]
    cells: Option<usize>,
    /// Accuracy table (CSV with an `index` or `arch` column) for the chosen archs'
    /// accuracies; topk picks its final arch by it.
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
    #[command(flatten)]
    pub(crate) threads: ThreadsArg,
}

pub fn run(args: &SearchArgs) -> Result<(), CliError> {
    check_options(args)?;
    let score: Score = match &args.score {
        Some(name) => name.parse().map_err(CliError::usage)?,
        None => args.strategy.default_score(),
    };
    args.strategy.check_score(score)?;
    let truth = match &args.truth {
        Some(path) => Some(read_truth(path, &args.metric)?),
        None => None,
    };
    let pool = match &args.from {
        Some(path) => read_pool(path)?,
        None => (0..NUM_ARCHS).collect(),
    };
    // Sample sizes are checked before any data is read.
    if matches!(args.strategy, Strategy::Random | Strategy::Topk) {
        let n = samples(args);
        check_samples(n, &pool)?;
        let k = args.k.unwrap_or(40);
        if args.strategy == Strategy::Topk && k > n {
            return Err(CliError::usage(anyhow!(
                "--k {k} exceeds --samples {n}: it keeps k of the sample"
            )));
        }
    }
    let prune = args.strategy == Strategy::Prune;
    let channels = args.channels.unwrap_or(if prune { 3 } else { 16 });
    let cells = args.cells.unwrap_or(if prune { 1 } else { 5 });
    let data = parse_data(&args.data)?;
    let be = args.device.backend()?;
    let settings = data.settings(channels, cells, args.batch, args.seed);
    settings
        .check(&args.strategy.scores_needed(score))
        .map_err(|e| CliError::usage(anyhow!(e)))?;
    let batch = data.minibatch(
        settings.images_needed(&args.strategy.scores_needed(score)),
        Seeds(args.seed).minibatch(),
    )?;
    let known = match &args.scores_from {
        Some(path) => read_known_scores(path, score)?,
        None => HashMap::new(),
    };
    let ctx = Ctx {
        args,
        job: SearchJob {
            backend: &be,
            score,
            batch: &batch,
            settings: &settings,
            known,
        },
        truth: truth.as_ref(),
    };
    let result = match args.strategy {
        Strategy::Random => run_random(&ctx, &pool)?,
        Strategy::Evolution => run_evolution(&ctx)?,
        Strategy::Topk => run_topk(&ctx, &pool)?,
        Strategy::Prune => run_prune(&ctx)?,
    };
    if args.json {
        println!("{result}");
    }
    Ok(())
}

/// A search and what its report needs.
struct Ctx<'a> {
    args: &'a SearchArgs,
    job: SearchJob<'a>,
    truth: Option<&'a HashMap<usize, f64>>,
}

impl Ctx<'_> {
    /// How many scores came from `--scores-from`, for the summary line.
    fn known_note(&self) -> String {
        match self.job.known.len() {
            0 => String::new(),
            k => format!(" ({k} more read from --scores-from)"),
        }
    }

    fn accuracy(&self, index: usize) -> Option<f64> {
        self.truth.and_then(|t| t.get(&index).copied())
    }

    /// Printed only without --json (which prints one object at the end).
    fn say(&self, line: impl AsRef<str>) {
        if !self.args.json {
            println!("{}", line.as_ref());
        }
    }

    fn header(&self) {
        let dir = if self.job.score.higher_is_better() {
            "higher"
        } else {
            "lower"
        };
        self.say(format!(
            "{} search by {} ({dir} is better), channels {}, cells {}, seed {}",
            self.args.strategy.name(),
            self.job.score,
            self.job.settings.config.channels,
            self.job.settings.config.cells_per_stage,
            self.job.settings.seed
        ));
    }

    fn arch_json(&self, index: usize, value: f64) -> Value {
        json!({
            "index": index,
            "arch": arch_of_index(index).expect("benchmark index").to_string(),
            "score": value,
            "accuracy": self.accuracy(index),
        })
    }

    /// Key-value lines for one chosen arch.
    fn say_arch(&self, index: usize, value: f64) {
        self.say(format!("index         {index}"));
        self.say(format!(
            "arch          {}",
            arch_of_index(index).expect("benchmark index")
        ));
        self.say(format!("{:<13} {value}", self.job.score.name()));
        if self.truth.is_some() {
            self.say(format!(
                "{:<13} {}",
                self.args.metric,
                fmt_acc(self.accuracy(index))
            ));
        }
    }
}

fn fmt_acc(acc: Option<f64>) -> String {
    acc.map_or("-".to_string(), |a| format!("{a:.2}"))
}

/// Options that belong to other strategies, and zero counts, are bad usage.
fn check_options(args: &SearchArgs) -> Result<(), CliError> {
    use Strategy::*;
    let owned: [(&str, bool, &[Strategy]); 10] = [
        ("--samples", args.samples.is_some(), &[Random, Topk]),
        ("--from", args.from.is_some(), &[Random, Topk]),
        ("--runs", args.runs.is_some(), &[Random]),
        ("--k", args.k.is_some(), &[Topk]),
        ("--population", args.population.is_some(), &[Evolution]),
        ("--tournament", args.tournament.is_some(), &[Evolution]),
        ("--cycles", args.cycles.is_some(), &[Evolution]),
        ("--repeats", args.repeats.is_some(), &[Prune]),
        ("--lr-batches", args.lr_batches.is_some(), &[Prune]),
        ("--lr-batch-size", args.lr_batch_size.is_some(), &[Prune]),
    ];
    for (name, given, strategies) in owned {
        if given && !strategies.contains(&args.strategy) {
            return Err(CliError::usage(anyhow!(
                "{name} does not apply to the {} strategy",
                args.strategy.name()
            )));
        }
    }
    for (name, value) in [
        ("--samples", args.samples),
        ("--runs", args.runs),
        ("--k", args.k),
        ("--population", args.population),
        ("--tournament", args.tournament),
        ("--cycles", args.cycles),
        ("--repeats", args.repeats),
        ("--lr-batches", args.lr_batches),
        ("--lr-batch-size", args.lr_batch_size),
        ("--batch", args.batch),
        ("--channels", args.channels),
        ("--cells", args.cells),
    ] {
        if value == Some(0) {
            return Err(CliError::usage(anyhow!("{name} must be at least 1")));
        }
    }
    Ok(())
}

/// Archs sampled per run: `--samples`, else the paper's (NASWOT 100, KNAS 300).
fn samples(args: &SearchArgs) -> usize {
    args.samples.unwrap_or(if args.strategy == Strategy::Topk {
        300
    } else {
        100
    })
}

fn check_samples(n: usize, pool: &[usize]) -> Result<(), CliError> {
    if n > pool.len() {
        return Err(CliError::usage(anyhow!(
            "--samples {n} exceeds the {} archs to sample from",
            pool.len()
        )));
    }
    Ok(())
}

fn run_random(ctx: &Ctx, pool: &[usize]) -> Result<Value, CliError> {
    let n = samples(ctx.args);
    let runs = ctx.args.runs.unwrap_or(1);
    let Searched {
        result: chosen,
        scored,
    } = ctx
        .job
        .random(pool, n, runs, &mut Bar::new(ctx.args.quiet))?;
    let accs: Vec<f64> = chosen
        .iter()
        .filter_map(|&(i, _)| ctx.accuracy(i))
        .collect();
    let (mean, std) = mean_std(&accs);
    ctx.header();
    ctx.say(format!(
        "{n} archs per run from a pool of {}, {runs} run(s), {scored} archs scored{}",
        pool.len(),
        ctx.known_note()
    ));
    ctx.say(format!(
        "{:<4} {:>6} {:>14} {:>13}  arch",
        "run",
        "index",
        ctx.job.score.name(),
        ctx.args.metric
    ));
    for (r, &(i, v)) in chosen.iter().enumerate() {
        ctx.say(format!(
            "{:<4} {:>6} {:>14.6} {:>13}  {}",
            r + 1,
            i,
            v,
            fmt_acc(ctx.accuracy(i)),
            arch_of_index(i).expect("benchmark index")
        ));
    }
    if ctx.truth.is_some() {
        ctx.say(format!(
            "mean {} {mean:.2} +- {std:.2} (population std) over the {} run(s) with an accuracy",
            ctx.args.metric,
            accs.len()
        ));
    }
    Ok(json!({
        "strategy": "random",
        "score": ctx.job.score.name(),
        "samples": n,
        "pool": pool.len(),
        "scored": scored,
        "metric": ctx.truth.map(|_| ctx.args.metric.clone()),
        "runs": chosen.iter().map(|&(i, v)| ctx.arch_json(i, v)).collect::<Vec<_>>(),
        "mean_accuracy": ctx.truth.map(|_| mean),
        "std_accuracy": ctx.truth.map(|_| std),
    }))
}

fn run_evolution(ctx: &Ctx) -> Result<Value, CliError> {
    let defaults = EvolutionSettings::default();
    let settings = EvolutionSettings {
        population: ctx.args.population.unwrap_or(defaults.population),
        sample: ctx.args.tournament.unwrap_or(defaults.sample),
        cycles: ctx.args.cycles.unwrap_or(defaults.cycles),
    };
    let Searched {
        result: best,
        scored,
    } = ctx.job.evolution(settings, &mut Bar::new(ctx.args.quiet))?;
    let index = index_of_arch(&best.arch);
    ctx.header();
    ctx.say(format!(
        "population {}, tournament {}, {} evaluations, {scored} archs scored{}",
        settings.population,
        settings.sample,
        settings.cycles,
        ctx.known_note()
    ));
    ctx.say_arch(index, best.fitness);
    Ok(json!({
        "strategy": "evolution",
        "score": ctx.job.score.name(),
        "population": settings.population,
        "tournament": settings.sample,
        "cycles": settings.cycles,
        "scored": scored,
        "metric": ctx.truth.map(|_| ctx.args.metric.clone()),
        "best": ctx.arch_json(index, best.fitness),
    }))
}

fn run_topk(ctx: &Ctx, pool: &[usize]) -> Result<Value, CliError> {
    let n = samples(ctx.args);
    let k = ctx.args.k.unwrap_or(40);
    let Searched { result, scored } = ctx.job.topk(pool, n, k, &mut Bar::new(ctx.args.quiet))?;
    let pick = ctx
        .truth
        .and_then(|_| pick_by_accuracy(&result.kept, |i| ctx.accuracy(i)));
    ctx.header();
    ctx.say(format!(
        "{n} archs sampled from a pool of {}, the {k} best by {} kept",
        pool.len(),
        ctx.job.score
    ));
    ctx.say(format!(
        "{:<4} {:>6} {:>14} {:>13}  arch",
        "rank",
        "index",
        ctx.job.score.name(),
        ctx.args.metric
    ));
    for (r, &(i, v)) in result.kept.iter().enumerate() {
        ctx.say(format!(
            "{:<4} {:>6} {:>14.6} {:>13}  {}",
            r + 1,
            i,
            v,
            fmt_acc(ctx.accuracy(i)),
            arch_of_index(i).expect("benchmark index")
        ));
    }
    match (ctx.truth, pick) {
        (None, _) => ctx.say("no --truth: the final pick by accuracy is left to the reader"),
        (Some(_), None) => ctx.say(format!(
            "none of the {k} kept archs has a {} in --truth: no pick",
            ctx.args.metric
        )),
        (Some(_), Some((i, _))) => {
            ctx.say("picked by accuracy among the kept:");
            let value = result.kept.iter().find(|(j, _)| *j == i).expect("kept").1;
            ctx.say_arch(i, value);
        }
    }
    let picked = pick.map(|(i, _)| {
        let value = result.kept.iter().find(|(j, _)| *j == i).expect("kept").1;
        ctx.arch_json(i, value)
    });
    Ok(json!({
        "strategy": "topk",
        "score": ctx.job.score.name(),
        "samples": n,
        "k": k,
        "pool": pool.len(),
        "scored": scored,
        "metric": ctx.truth.map(|_| ctx.args.metric.clone()),
        "kept": result.kept.iter().map(|&(i, v)| ctx.arch_json(i, v)).collect::<Vec<_>>(),
        "pick": picked,
    }))
}

fn run_prune(ctx: &Ctx) -> Result<Value, CliError> {
    let repeats = ctx.args.repeats.unwrap_or(3);
    let lr = ReleasedSettings {
        batches: ctx.args.lr_batches.unwrap_or(3),
        batch_size: ctx.args.lr_batch_size.unwrap_or(1000),
        ..ReleasedSettings::default()
    };
    let (cell, rounds) = ctx.job.prune(repeats, &lr, &mut Bar::new(ctx.args.quiet))?;
    let arch = cell.as_arch().expect("pruning ends with one op per edge");
    let index = index_of_arch(&arch);
    ctx.header();
    ctx.say(format!(
        "{repeats} repeat(s), linear regions on {} x {} crops",
        lr.batches, lr.batch_size
    ));
    for (r, round) in rounds.iter().enumerate() {
        let pruned: Vec<String> = round
            .pruned
            .iter()
            .map(|&(e, op)| format!("{}->{} {op}", EDGES[e].0, EDGES[e].1))
            .collect();
        ctx.say(format!("round {}: pruned {}", r + 1, pruned.join(", ")));
    }
    ctx.say(format!("index         {index}"));
    ctx.say(format!("arch          {arch}"));
    if ctx.truth.is_some() {
        ctx.say(format!(
            "{:<13} {}",
            ctx.args.metric,
            fmt_acc(ctx.accuracy(index))
        ));
    }
    Ok(json!({
        "strategy": "prune",
        "kappa": ctx.job.score.name(),
        "repeats": repeats,
        "metric": ctx.truth.map(|_| ctx.args.metric.clone()),
        "rounds": rounds.iter().map(round_json).collect::<Vec<_>>(),
        "index": index,
        "arch": arch.to_string(),
        "accuracy": ctx.accuracy(index),
    }))
}

fn round_json(round: &Round) -> Value {
    let edge = |e: usize| format!("{}->{}", EDGES[e].0, EDGES[e].1);
    json!({
        "candidates": round.candidates.iter().map(|c| json!({
            "edge": edge(c.edge),
            "op": c.op.name(),
            "kappa_change": c.kappa_change,
            "regions_change": c.regions_change,
            "kappa_rank": c.kappa_rank,
            "regions_rank": c.regions_rank,
        })).collect::<Vec<_>>(),
        "pruned": round.pruned.iter().map(|&(e, op)| json!({"edge": edge(e), "op": op.name()})).collect::<Vec<_>>(),
    })
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
