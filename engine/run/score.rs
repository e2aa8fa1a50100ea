//! Scoring a set of archs: each class of archs known to score equal scored once, shards,
//! resume, archs in flight on every backend (and the host's scores on host threads beside
//! GPU workers), rows written in input order.

use super::data::DataSource;
use super::device::{AnyBackend, Device, Storage};
use super::RunError;
use crate::backend::cpu::CpuBackend;
use crate::data::{Batch, Seeds};
use crate::proxy::aggregate::SetScore;
use crate::proxy::registry::WorkerCache;
use crate::proxy::scorer::{score_arch_or_dead_values_kept, ScoreSettings};
use crate::proxy::swap::SwapRegularizer;
use crate::proxy::Score;
use crate::space::{AnyArch, ClassKey, Space};
use crate::store::{self, Format, Row, ScoredAs};
use crate::with_backend;
use anyhow::{anyhow, Context};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What scoring is asked to do, before anything is loaded: the options of `nasrank score`
/// and of the Python package's `score` and `Scorer`.
#[derive(Clone, Debug)]
pub struct ScoreRequest {
    /// The search space of the archs to score (`tss`: NAS-Bench-201's topology space).
    pub space: Space,
    pub scores: Vec<Score>,
    /// Set scores, columns after the scores' (their terms must be among `scores`:
    /// [`ScoreList::parse`] adds them).
    pub sets: Vec<SetScore>,
    pub data: DataSource,
    /// Channels of the first stage (NAS-Bench-201: 16) and cells per stage (5).
    pub channels: usize,
    pub cells: usize,
    /// One minibatch size for every score (None: each score's paper batch).
    pub batch: Option<usize>,
    /// The seed of the weights and of the minibatch.
    pub seed: u64,
    /// Several seeds instead of `seed`: each score becomes its mean over them, followed by
    /// its spread (`NAME_std` columns). Empty: `seed` alone, no spread columns.
    pub seeds: Vec<u64>,
    pub device: Device,
    /// Archs in flight (None: the device's default, [`Device::backends`]).
    pub workers: Option<usize>,
    pub storage: Storage,
    /// `swap_reg`'s mu and sigma (None: the space's default, `SwapRegularizer::space_default`).
    pub swap_regularizer: Option<SwapRegularizer>,
}

impl ScoreRequest {
    /// The request with the defaults of `nasrank score` (NAS-Bench-201's network, seed 0,
    /// the CPU) for these scores on this data.
    pub fn new(scores: Vec<Score>, data: DataSource) -> ScoreRequest {
        ScoreRequest {
            space: Space::Tss,
            scores,
            sets: Vec::new(),
            data,
            channels: 16,
            cells: 5,
            batch: None,
            seed: 0,
            seeds: Vec::new(),
            device: Device::Cpu,
            workers: None,
            storage: Storage::F32,
            swap_regularizer: None,
        }
    }

    /// Checks the request, picks the backends and draws the minibatches: what every run of
    /// it shares.
    pub fn load(self) -> Result<Scoring, RunError> {
        if self.scores.is_empty() {
            return Err(RunError::input(anyhow!("no score asked")));
        }
        if self.channels == 0 || self.cells == 0 {
            return Err(RunError::input(anyhow!(
                "--channels and --cells must be at least 1"
            )));
        }
        if self.batch == Some(0) {
            return Err(RunError::input(anyhow!("--batch must be at least 1")));
        }
        if self.workers == Some(0) {
            return Err(RunError::input(anyhow!("--workers must be at least 1")));
        }
        if let Some((set, term)) = self.sets.iter().find_map(|set| {
            let missing = set.terms.iter().find(|t| !self.scores.contains(t))?;
            Some((set.name, missing))
        }) {
            return Err(RunError::input(anyhow!(
                "{set} needs {term} among the scores"
            )));
        }
        check_space(self.space, &self.scores, self.channels, self.cells)?;
        let backends = self.device.backends(self.workers, self.storage)?;
        check_swap_regularizer(self.swap_regularizer, &self.scores)?;
        let mut settings = self
            .data
            .settings(self.channels, self.cells, self.batch, self.seed);
        settings.swap_regularizer = self.swap_regularizer;
        settings
            .check(&self.scores)
            .map_err(|e| RunError::input(anyhow!(e)))?;
        let spread = !self.seeds.is_empty();
        let seeds = if spread { self.seeds } else { vec![self.seed] };
        // One minibatch per seed, shared by every arch.
        let images = settings.images_needed(&self.scores);
        let batches = seeds
            .iter()
            .map(|&seed| self.data.minibatch(images, Seeds(seed).minibatch()))
            .collect::<Result<Vec<Batch>, RunError>>()?;
        Ok(Scoring {
            space: self.space,
            scores: self.scores,
            sets: self.sets,
            settings,
            seeds,
            batches,
            spread,
            backends,
            data: self.data,
            worker_caches: Mutex::new(Vec::new()),
        })
    }
}

/// Whether `scores` and a network of `channels` and `cells` (the topology space's
/// shape; defaults 16 and 5) can be asked of archs of `space`: each score must be defined
/// there, and a size-space arch brings its own widths.
pub fn check_space(
    space: Space,
    scores: &[Score],
    channels: usize,
    cells: usize,
) -> Result<(), RunError> {
    if let Some(score) = scores.iter().find(|s| !s.info().spaces.contains(&space)) {
        return Err(RunError::input(anyhow!(
            "{score} is not defined on the {space} space (it scores the topology space only)"
        )));
    }
    if space == Space::Sss && (channels, cells) != (16, 5) {
        return Err(RunError::input(anyhow!(
            "--channels and --cells shape the topology space's network; a size-space arch \
             gives its own widths"
        )));
    }
    Ok(())
}

/// A regulariser of `swap_reg` given only where swap_reg is among `scores`.
pub fn check_swap_regularizer(
    given: Option<SwapRegularizer>,
    scores: &[Score],
) -> Result<(), RunError> {
    if given.is_some() && !scores.contains(&Score::SwapReg) {
        return Err(RunError::input(anyhow!(
            "mu and sigma (--swap-mu, --swap-sigma) set swap_reg's regulariser, and \
             swap_reg is not among the scores"
        )));
    }
    Ok(())
}

/// A loaded scoring set-up: scores, settings, minibatches and backends, ready to score any
/// set of archs any number of times.
pub struct Scoring {
    pub space: Space,
    pub scores: Vec<Score>,
    pub sets: Vec<SetScore>,
    pub settings: ScoreSettings,
    pub seeds: Vec<u64>,
    pub batches: Vec<Batch>,
    pub spread: bool,
    pub backends: Vec<AnyBackend>,
    pub data: DataSource,
    /// What each worker keeps from arch to arch (per seed), kept from one job to the next:
    /// a caller that scores one arch per job (the Python `Scorer` in a search loop) still
    /// resumes where consecutive archs share blocks. Emptied when a job fails.
    pub worker_caches: Mutex<Vec<Vec<WorkerCache>>>,
}

impl Scoring {
    /// A run of these archs (`shard`, `dedup`: see [`ScoreJob`]).
    pub fn job(
        &self,
        archs: Vec<(usize, AnyArch)>,
        shard: Option<(usize, usize)>,
        dedup: bool,
    ) -> ScoreJob<'_> {
        ScoreJob {
            space: self.space,
            archs,
            scores: self.scores.clone(),
            sets: self.sets.clone(),
            settings: self.settings.clone(),
            seeds: self.seeds.clone(),
            batches: &self.batches,
            spread: self.spread,
            shard,
            dedup,
            backends: &self.backends,
            worker_caches: &self.worker_caches,
        }
    }

    /// The score columns of the rows (see [`column_names`]).
    pub fn columns(&self) -> Vec<String> {
        column_names(&self.scores, &self.sets, self.spread)
    }
}

/// A scoring run: which archs, which scores, how, on which backends.
pub struct ScoreJob<'a> {
    /// The space of the archs.
    pub space: Space,
    /// (benchmark index, arch), in the order rows are written.
    pub archs: Vec<(usize, AnyArch)>,
    pub scores: Vec<Score>,
    /// Set scores: NaN in the rows a run writes, filled over the whole file by
    /// [`complete_set_columns`] once it is complete.
    pub sets: Vec<SetScore>,
    pub settings: ScoreSettings,
    /// The seeds of the weights, each with its minibatch (`batches`, in the same order).
    pub seeds: Vec<u64>,
    pub batches: &'a [Batch],
    /// Report each score's mean over the seeds, then its spread (`NAME_std` columns).
    pub spread: bool,
    /// Score only shard I of N (I from 1): classes are dealt to shards round-robin.
    pub shard: Option<(usize, usize)>,
    /// Score one arch per class of archs known to score equal, and copy its row to the
    /// others (false: score every arch).
    pub dedup: bool,
    /// One worker per backend ([`super::device::Device::backends`]).
    pub backends: &'a [AnyBackend],
    /// The workers' caches, taken for the run and put back after it ([`Scoring`]).
    pub worker_caches: &'a Mutex<Vec<Vec<WorkerCache>>>,
}

/// Where a run's rows go, one at a time, in input order.
pub trait RowSink {
    fn write(&mut self, row: &Row) -> anyhow::Result<()>;
}

/// What a run reports as it goes.
pub trait ScoreProgress {
    /// The run starts: `kept` rows were kept from a resumed file, `rows` are to be written,
    /// `to_score` of them scored (the others copy a row of their class).
    fn start(&mut self, kept: usize, rows: usize, to_score: usize);
    /// A row was written; `scored` says whether it was scored or copied.
    fn row(&mut self, scored: bool);
    /// Whether the caller wants the run to stop: it then writes no further row, lets each
    /// worker finish the arch it holds, and returns [`RunError::Stopped`]. Polled between
    /// rows and at least every 100 ms.
    fn interrupted(&self) -> bool {
        false
    }
}

/// The score columns of a run's rows: the scores, then with `spread` each one's `_std`,
/// then the set scores.
pub fn column_names(scores: &[Score], sets: &[SetScore], spread: bool) -> Vec<String> {
    let mut names: Vec<String> = scores.iter().map(|s| s.name().to_string()).collect();
    if spread {
        names.extend(scores.iter().map(|s| format!("{}_std", s.name())));
    }
    names.extend(sets.iter().map(|s| s.name.to_string()));
    names
}

/// Fills the set-score columns among `columns` (the rows' value columns) over `rows`:
/// each set score ranks the rows' archs among themselves (every row, copies of isomorphic
/// archs included). Columns that are not set scores are left as they are.
pub fn fill_set_columns(rows: &mut [Row], columns: &[String]) -> Result<(), RunError> {
    for (at, name) in columns.iter().enumerate() {
        let Some(set) = SetScore::named(name) else {
            continue;
        };
        let terms = set
            .terms
            .iter()
            .map(|term| {
                let col = columns
                    .iter()
                    .position(|c| c == term.name())
                    .ok_or_else(|| {
                        RunError::input(anyhow!("{name} needs a {term} column, which is missing"))
                    })?;
                Ok(rows.iter().map(|r| r.values[col]).collect())
            })
            .collect::<Result<Vec<Vec<f64>>, RunError>>()?;
        let values = set.over(&terms);
        for (row, value) in rows.iter_mut().zip(values) {
            row.values[at] = value;
        }
    }
    Ok(())
}

/// Fills the set-score columns of the results file at `path` (value columns `columns`)
/// over all of its rows, replacing the file (written beside it, then renamed): the last
/// step of a run that asked set scores, after every row is in.
pub fn complete_set_columns(
    path: &Path,
    format: Format,
    columns: &[String],
) -> Result<(), RunError> {
    if !columns.iter().any(|c| SetScore::named(c).is_some()) {
        return Ok(());
    }
    let (mut rows, _) = store::read_rows(path, format, columns).map_err(RunError::input)?;
    fill_set_columns(&mut rows, columns)?;
    store::replace_rows(path, format, columns, &rows).map_err(|e| RunError::Failed(e.into()))
}

impl ScoreJob<'_> {
    /// Scores the archs and writes their rows to `sink` in input order, except those whose
    /// benchmark index is among `done` (rows kept from an interrupted run, which also stand
    /// for their classes). On a failure the rows written so far stand.
    pub fn run(
        &self,
        done: Vec<Row>,
        sink: &mut dyn RowSink,
        progress: &mut dyn ScoreProgress,
    ) -> Result<(), RunError> {
        let (scores, settings, seeds, batches) =
            (&self.scores, &self.settings, &self.seeds, self.batches);
        let backends = self.backends;
        // Classes: archs whose scores are known equal (score-aware keys, see docs/USAGE.md).
        let class_key = scores
            .iter()
            .map(|s| s.class_key())
            .max()
            .unwrap_or(ClassKey::Function);
        let key_of = |arch: &AnyArch| -> String {
            if self.dedup {
                arch.class_key(class_key)
            } else {
                arch.to_string()
            }
        };
        let mut class_of: HashMap<String, usize> = HashMap::new();
        let mut work: Vec<(usize, AnyArch, String)> = Vec::new();
        for &(index, arch) in &self.archs {
            let key = key_of(&arch);
            let next = class_of.len();
            let class = *class_of.entry(key.clone()).or_insert(next);
            if self.shard.is_none_or(|(i, n)| class % n == i - 1) {
                work.push((index, arch, key));
            }
        }
        let done_indices: HashSet<usize> = done.iter().map(|r| r.index).collect();
        let mut known: HashMap<String, Row> = HashMap::new();
        for row in done {
            known
                .entry(key_of(
                    &self
                        .space
                        .parse_arch(&row.arch)
                        .map_err(|e| RunError::input(anyhow!("a kept row: {e}")))?,
                ))
                .or_insert(row);
        }
        let todo: Vec<&(usize, AnyArch, String)> = work
            .iter()
            .filter(|(i, _, _)| !done_indices.contains(i))
            .collect();

        // Scored by a worker: the first arch of each class not known yet; every other row
        // copies its class's row, written once that is.
        let mut seen: HashSet<&str> = known.keys().map(String::as_str).collect();
        let jobs: Vec<usize> = (0..todo.len())
            .filter(|&p| seen.insert(todo[p].2.as_str()))
            .collect();
        // The asked scores in parts, each part computed by workers of its own. On a GPU the
        // host's scores (synflow in f64, params, flops) run on host threads beside the GPU
        // workers, so that no stream waits on the CPU (docs/PERF.md, "GPU"); elsewhere one
        // part holds every score.
        let on_gpu = !backends.iter().any(|be| matches!(be, AnyBackend::Cpu(_)));
        let (host_scores, device_scores): (Vec<Score>, Vec<Score>) = if on_gpu {
            scores.iter().partition(|s| s.runs_on_host())
        } else {
            (Vec::new(), scores.clone())
        };
        let parts: Vec<&[Score]> = [&device_scores[..], &host_scores[..]]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect();
        // Where each asked score's value is: (part, position in the part).
        let place: Vec<(usize, usize)> = scores
            .iter()
            .map(|score| {
                parts
                    .iter()
                    .enumerate()
                    .find_map(|(p, part)| Some((p, part.iter().position(|s| s == score)?)))
                    .expect("every score is in a part")
            })
            .collect();
        // `kept`: what the worker keeps from arch to arch, one per seed (its own minibatch).
        let score_part = |be: &AnyBackend,
                          index: usize,
                          arch: &AnyArch,
                          part: &[Score],
                          kept: &mut [WorkerCache]|
         -> Result<PartValues, RunError> {
            let start = Instant::now();
            let mut per_seed = Vec::with_capacity(seeds.len());
            let mut all_dead = false;
            for ((&seed, batch), kept) in seeds.iter().zip(batches).zip(kept) {
                let settings = ScoreSettings {
                    seed,
                    ..settings.clone()
                };
                let (values, dead) = with_backend!(be, be => score_arch_or_dead_values_kept(
                    be, arch, part, batch, &settings, kept
                ))
                .with_context(|| format!("scoring arch {index} with seed {seed}"))
                .map_err(RunError::Failed)?;
                per_seed.push(values);
                all_dead = dead;
            }
            Ok(PartValues {
                per_seed,
                dead: all_dead,
                seconds: start.elapsed().as_secs_f64(),
            })
        };
        // An arch's row once every part of it is known.
        let assemble = |index: usize, arch: &AnyArch, known_parts: Vec<PartValues>| -> Row {
            let per_seed: Vec<Vec<f64>> = (0..seeds.len())
                .map(|k| {
                    place
                        .iter()
                        .map(|&(p, j)| known_parts[p].per_seed[k][j])
                        .collect()
                })
                .collect();
            let mut values = if !self.spread {
                per_seed[0].clone()
            } else {
                mean_and_std(&per_seed)
            };
            values.extend(self.sets.iter().map(|_| f64::NAN));
            Row {
                index,
                arch: arch.to_string(),
                unique: arch.class_key(ClassKey::Function),
                values,
                seconds: known_parts.iter().map(|v| v.seconds).sum(),
                scored_as: if known_parts.iter().all(|v| v.dead) {
                    ScoredAs::Dead
                } else {
                    ScoredAs::Arch(index)
                },
            }
        };

        progress.start(work.len() - todo.len(), todo.len(), jobs.len());
        let next_job: Vec<AtomicUsize> = parts.iter().map(|_| AtomicUsize::new(0)).collect();
        let stop = AtomicBool::new(false);
        type PartResult = (usize, usize, Result<PartValues, RunError>);
        let (sender, results) = mpsc::channel::<PartResult>();
        // No more workers than archs to score, so that a few archs (one, from a search loop)
        // get the cores of the workers that would have none.
        let backends = &backends[..backends.len().min(jobs.len()).max(1)];
        let pools = cpu_worker_pools(backends)?;
        // Workers: every backend on the first part; on a GPU with host scores asked, host
        // threads on the cores the GPU workers leave.
        let host = AnyBackend::Cpu(CpuBackend::new());
        let mut workers: Vec<(&AnyBackend, Option<&rayon::ThreadPool>, usize)> = backends
            .iter()
            .zip(&pools)
            .map(|(be, pool)| (be, pool.as_ref(), 0))
            .collect();
        if !host_scores.is_empty() {
            if device_scores.is_empty() {
                workers.clear();
            }
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let host_workers = cores.saturating_sub(workers.len()).max(1);
            let host_part = parts.len() - 1;
            workers.extend((0..host_workers).map(|_| (&host, None, host_part)));
        }
        // Each worker's caches from the last job (fresh ones for a worker it did not have).
        let mut caches = std::mem::take(&mut *lock(self.worker_caches));
        let space = self.space;
        caches.resize_with(workers.len(), || {
            seeds
                .iter()
                .map(|_| WorkerCache::for_space(space))
                .collect()
        });
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(workers.len());
            for ((be, pool, p), mut kept) in workers.into_iter().zip(caches) {
                let sender = sender.clone();
                let (jobs, todo, next_job, stop, score_part, part) =
                    (&jobs, &todo, &next_job[p], &stop, &score_part, parts[p]);
                handles.push(scope.spawn(move || {
                    let work = move || {
                        while !stop.load(Ordering::Relaxed) {
                            let Some(&pos) = jobs.get(next_job.fetch_add(1, Ordering::Relaxed))
                            else {
                                break;
                            };
                            let (index, arch, _) = todo[pos];
                            if sender
                                .send((pos, p, score_part(be, *index, arch, part, &mut kept)))
                                .is_err()
                            {
                                break;
                            }
                        }
                        kept
                    };
                    match pool {
                        Some(pool) => pool.install(work),
                        None => work(),
                    }
                }));
            }
            drop(sender);
            // Parts known of archs whose row is not complete yet.
            let mut partial: HashMap<usize, Vec<Option<PartValues>>> = HashMap::new();
            // Rows in input order: each as soon as it and every row before it are known.
            let mut ready: HashMap<usize, Row> = HashMap::new();
            let mut written = 0;
            let outcome = 'rows: loop {
                while written < todo.len() {
                    let (index, arch, key) = todo[written];
                    let scored = ready.remove(&written);
                    let costly = scored.is_some();
                    let row = if let Some(row) = scored {
                        known.insert(key.clone(), row.clone());
                        row
                    } else if let Some(rep) = known.get(key) {
                        Row {
                            index: *index,
                            arch: arch.to_string(),
                            unique: arch.class_key(ClassKey::Function),
                            values: rep.values.clone(),
                            seconds: 0.0,
                            scored_as: rep.scored_as,
                        }
                    } else {
                        break;
                    };
                    if let Err(e) = sink.write(&row) {
                        break 'rows Err(RunError::Failed(e));
                    }
                    progress.row(costly);
                    written += 1;
                }
                if written == todo.len() {
                    break Ok(());
                }
                if progress.interrupted() {
                    break Err(RunError::Stopped);
                }
                let next = match results.recv_timeout(Duration::from_millis(100)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Err(mpsc::RecvError),
                    Ok(next) => Ok(next),
                };
                match next {
                    Ok((pos, p, Ok(values))) => {
                        let slots = partial
                            .entry(pos)
                            .or_insert_with(|| parts.iter().map(|_| None).collect());
                        slots[p] = Some(values);
                        if slots.iter().all(Option::is_some) {
                            let known_parts =
                                partial.remove(&pos).expect("just filled").into_iter();
                            let (index, arch, _) = todo[pos];
                            let row = assemble(*index, arch, known_parts.flatten().collect());
                            ready.insert(pos, row);
                        }
                    }
                    Ok((_, _, Err(e))) => break Err(e),
                    Err(_) => break Err(RunError::failed(anyhow!("every scoring worker stopped"))),
                }
            };
            // Workers finish the arch they hold, then stop; the rows written so far stand.
            stop.store(true, Ordering::Relaxed);
            let kept: Vec<Vec<WorkerCache>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect();
            // After a failure what a worker kept may be half-made: the next job starts afresh.
            if outcome.is_ok() {
                *lock(self.worker_caches) = kept;
            }
            outcome
        })?;
        Ok(())
    }
}

/// The workers' caches; a panic in another job leaves them as they were (they are only
/// replaced whole).
fn lock(caches: &Mutex<Vec<Vec<WorkerCache>>>) -> std::sync::MutexGuard<'_, Vec<Vec<WorkerCache>>> {
    caches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per score, the mean over seeds, then per score the sample standard deviation (NaN for
/// one seed); a NaN or infinite value makes its score's mean and spread NaN or infinite.
fn mean_and_std(per_seed: &[Vec<f64>]) -> Vec<f64> {
    let k = per_seed.len() as f64;
    let scores = per_seed[0].len();
    let mean: Vec<f64> = (0..scores)
        .map(|j| per_seed.iter().map(|v| v[j]).sum::<f64>() / k)
        .collect();
    let std = (0..scores).map(|j| {
        (per_seed
            .iter()
            .map(|v| (v[j] - mean[j]).powi(2))
            .sum::<f64>()
            / (k - 1.0))
            .sqrt()
    });
    mean.iter().copied().chain(std).collect()
}

/// The values of one part of an arch's scores.
struct PartValues {
    /// Per seed, the part's values in its order.
    per_seed: Vec<Vec<f64>>,
    /// Whether every value was a dead value.
    dead: bool,
    seconds: f64,
}

/// Several CPU workers split the cores: each runs its kernels on a rayon pool of its own
/// share of the `--threads` pool, so that archs run side by side instead of every kernel
/// forking over all cores (whose joins leave cores idle). GPU workers and a lone CPU worker
/// use the global pool.
fn cpu_worker_pools(backends: &[AnyBackend]) -> Result<Vec<Option<rayon::ThreadPool>>, RunError> {
    let is_cpu = |be: &AnyBackend| matches!(be, AnyBackend::Cpu(_));
    let workers = backends.iter().filter(|be| is_cpu(be)).count();
    let threads = rayon::current_num_threads();
    let mut pools = Vec::with_capacity(backends.len());
    let mut k = 0;
    for be in backends {
        if !is_cpu(be) || workers < 2 {
            pools.push(None);
            continue;
        }
        // The first `threads % workers` workers take one thread more, so all are used.
        let share = (threads / workers + usize::from(k < threads % workers)).max(1);
        k += 1;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(share)
            .build()
            .map_err(|e| RunError::failed(anyhow!("a worker's thread pool: {e}")))?;
        pools.push(Some(pool));
    }
    Ok(pools)
}

/// `I/N` with 1 <= I <= N (`--shard`).
pub fn parse_shard(text: &str) -> Result<(usize, usize), RunError> {
    let bad = || {
        RunError::input(anyhow!(
            "--shard {text:?}: expected I/N with 1 <= I <= N (for example 3/8)"
        ))
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The shard of a Slurm job-array task from its variables (`var` looks one up):
/// `SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN` (default 0) gives shard
/// `ID - MIN + 1` of `SLURM_ARRAY_TASK_COUNT`; `None` outside a job array.
pub fn shard_of_slurm_task(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<(usize, usize)>, RunError> {
    let number = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
    let (Some(id), Some(count)) = (
        number("SLURM_ARRAY_TASK_ID"),
        number("SLURM_ARRAY_TASK_COUNT"),
    ) else {
        return Ok(None);
    };
    let min = number("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
    let shard = (id + 1 - min.min(id + 1), count);
    if shard.0 == 0 || shard.0 > count {
        return Err(RunError::input(anyhow!(
            "Slurm array task {id} (min {min}, count {count}) gives no shard in 1..={count}; pass --shard I/N"
        )));
    }
    Ok(Some(shard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slurm(vars: &[(&str, &str)]) -> Result<Option<(usize, usize)>, RunError> {
        shard_of_slurm_task(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// `--array=0-7` gives shards 1..=8 of 8; `--array=1-8` the same through the minimum;
    /// a task past the count, or a minimum above the id, is refused; no variables, no shard.
    #[test]
    fn slurm_tasks_map_to_shards() {
        let task = |id: &str, min: &str| {
            slurm(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", min),
                ("SLURM_ARRAY_TASK_COUNT", "8"),
            ])
        };
        assert_eq!(task("0", "0").unwrap(), Some((1, 8)));
        assert_eq!(task("7", "0").unwrap(), Some((8, 8)));
        assert_eq!(task("1", "1").unwrap(), Some((1, 8)));
        assert_eq!(task("8", "1").unwrap(), Some((8, 8)));
        assert!(task("8", "0").is_err());
        assert!(task("2", "3").is_err());
        assert_eq!(
            slurm(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ])
            .unwrap(),
            Some((4, 4))
        );
        assert_eq!(slurm(&[]).unwrap(), None);
    }

    #[test]
    fn shards_parse_as_i_of_n() {
        assert_eq!(parse_shard("3/8").unwrap(), (3, 8));
        assert_eq!(parse_shard(" 1 / 1 ").unwrap(), (1, 1));
        for bad in ["0/4", "5/4", "3", "a/b", "1/0", ""] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
