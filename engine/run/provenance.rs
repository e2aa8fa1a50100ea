//! How a results file was made: a manifest beside it (`FILE.provenance.json`, written
//! atomically), so that `--resume` and `merge` can refuse to mix runs whose values differ,
//! and `eval` can say what it reads. The results file itself stays plain CSV (or JSON
//! lines) for pandas and friends.

use super::score::ScoreJob;
use super::RunError;
use crate::data::Batch;
use crate::proxy::Score;
use crate::space::Space;
use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One differing setting: its name, then its value in each of the two runs.
pub type Difference = (String, String, String);

/// Everything that decides a results file's values, and what is only information.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The nasrank version that wrote the file.
    pub nasrank: String,
    /// The search space (`tss`, `sss`); manifests of older nasrank have none: `tss`.
    #[serde(default = "topology_space")]
    pub space: String,
    /// The score columns, in order.
    pub scores: Vec<String>,
    /// The seeds (one, or the `--seeds` list whose mean and spread are reported).
    pub seeds: Vec<u64>,
    /// Whether each score is the mean over the seeds, with a `_std` column.
    pub spread: bool,
    /// The minibatch of each score.
    pub batch: BTreeMap<String, usize>,
    /// The dataset (`cifar10`, `cifar100`, `imagenet16-120`) or `synthetic`.
    pub data: String,
    /// A digest (FNV-1a, 64 bits) of the exact images and labels every arch saw, per seed:
    /// equal whatever path the data came from.
    pub data_digest: String,
    /// Network: first-stage channels, cells per stage, classes, input size.
    pub channels: usize,
    pub cells: usize,
    pub classes: usize,
    pub input_size: usize,
    /// Activation storage of the CUDA backend (`f32`, `f16`, `bf16`).
    pub storage: String,
    /// `swap_reg`'s regulariser (`mu=M sigma=S`), where swap_reg is a column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_regularizer: Option<String>,
    /// The shard of the run (`I/N`), if sharded.
    pub shard: Option<String>,
    /// Information only (does not change values): the data's path, the device, workers.
    pub data_path: Option<String>,
    pub device: String,
    pub workers: usize,
}

fn topology_space() -> String {
    Space::Tss.name().to_string()
}

/// The digest of minibatches: FNV-1a over each image value's bits and each label.
pub fn batches_digest(batches: &[Batch]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for batch in batches {
        for v in &batch.images {
            eat(&v.to_bits().to_le_bytes());
        }
        for &label in &batch.labels {
            eat(&(label as u64).to_le_bytes());
        }
    }
    format!("{hash:016x}")
}

impl Provenance {
    /// The provenance of a scoring job; `data` is a dataset's name (`cifar10`, ...) or
    /// `synthetic`, the rest information given by the caller.
    pub fn of_job(
        job: &ScoreJob<'_>,
        data: &str,
        data_path: Option<&Path>,
        storage: &str,
        device: &str,
    ) -> Provenance {
        let s = &job.settings;
        Provenance {
            nasrank: env!("CARGO_PKG_VERSION").to_string(),
            space: job.space.name().to_string(),
            scores: job.scores.iter().map(|s| s.name().to_string()).collect(),
            seeds: job.seeds.clone(),
            spread: job.spread,
            batch: job
                .scores
                .iter()
                .map(|&score| (score.name().to_string(), s.images_needed(&[score])))
                .collect(),
            data: data.to_string(),
            data_digest: batches_digest(job.batches),
            channels: s.config.channels,
            cells: s.config.cells_per_stage,
            classes: s.config.classes,
            input_size: s.config.input_size,
            storage: storage.to_string(),
            swap_regularizer: job
                .scores
                .contains(&Score::SwapReg)
                .then(|| s.swap_regularizer_for(job.space).to_string()),
            shard: job.shard.map(|(i, n)| format!("{i}/{n}")),
            data_path: data_path.map(|p| p.display().to_string()),
            device: device.to_string(),
            workers: job.backends.len(),
        }
    }

    /// The settings that differ between two runs: `(setting, this, other)`, first those
    /// that change values (the runs must not be mixed), then those that do not.
    /// `with_shard`: whether the shard counts (resume: yes; merge: shards differ by design).
    pub fn differences(
        &self,
        other: &Provenance,
        with_shard: bool,
    ) -> (Vec<Difference>, Vec<Difference>) {
        let (a, b) = (self.fields(), other.fields());
        let mut values = Vec::new();
        let mut info = Vec::new();
        for ((name, x, changes_values), (_, y, _)) in a.into_iter().zip(b) {
            if x == y || (name == "shard" && !with_shard) {
                continue;
            }
            if changes_values {
                values.push((name.to_string(), x, y));
            } else {
                info.push((name.to_string(), x, y));
            }
        }
        (values, info)
    }

    /// Each setting as text, and whether it changes values.
    fn fields(&self) -> Vec<(&'static str, String, bool)> {
        vec![
            ("space", self.space.clone(), true),
            ("scores", self.scores.join(","), true),
            ("seeds", show(&self.seeds), true),
            ("spread", self.spread.to_string(), true),
            ("batch", show(&self.batch), true),
            ("data", self.data.clone(), true),
            ("data_digest", self.data_digest.clone(), true),
            ("channels", self.channels.to_string(), true),
            ("cells", self.cells.to_string(), true),
            ("classes", self.classes.to_string(), true),
            ("input_size", self.input_size.to_string(), true),
            ("storage", self.storage.clone(), true),
            ("swap_regularizer", show(&self.swap_regularizer), true),
            ("shard", show(&self.shard), true),
            ("nasrank", self.nasrank.clone(), false),
            ("data_path", show(&self.data_path), false),
            ("device", self.device.clone(), false),
            ("workers", self.workers.to_string(), false),
        ]
    }

    /// One line for `eval`: the settings that decide values.
    pub fn summary(&self) -> String {
        // A size-space arch brings its own widths: C and N only shape topology-space nets.
        let network = if self.space == Space::Tss.name() {
            format!(", C={} N={}", self.channels, self.cells)
        } else {
            String::new()
        };
        let regularizer = self
            .swap_regularizer
            .as_ref()
            .map_or(String::new(), |r| format!(", swap_reg {r}"));
        format!(
            "{} space, {} seed(s) {:?}{}, data {} (digest {}){network}{regularizer}, storage {}, nasrank {}, device {}",
            self.space,
            self.scores.join(","),
            self.seeds,
            self.shard
                .as_ref()
                .map_or(String::new(), |s| format!(", shard {s}")),
            self.data,
            self.data_digest,
            self.storage,
            self.nasrank,
            self.device
        )
    }

    /// Where the manifest of `results` lives.
    pub fn path_of(results: &Path) -> PathBuf {
        let mut name = results.as_os_str().to_os_string();
        name.push(".provenance.json");
        PathBuf::from(name)
    }

    /// The manifest of `results`, `None` where there is none (a file of an older nasrank).
    pub fn read(results: &Path) -> Result<Option<Provenance>, RunError> {
        let path = Provenance::path_of(results);
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RunError::input(anyhow!("{}: {e}", path.display()))),
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                RunError::input(anyhow!(
                    "{}: not a provenance manifest: {e}",
                    path.display()
                ))
            }),
        }
    }

    /// Writes the manifest of `results` atomically (a temporary file renamed over it).
    pub fn write(&self, results: &Path) -> Result<(), RunError> {
        let path = Provenance::path_of(results);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| RunError::failed(anyhow!("{}: {e}", path.display())))
    }
}

/// Refuses, naming every setting and both values, when `old` and `new` differ in one that
/// changes values; else returns the differences that do not (to report).
pub fn check_mix(
    what: &str,
    old: &Provenance,
    new: &Provenance,
    with_shard: bool,
) -> Result<Vec<Difference>, RunError> {
    let (values, info) = old.differences(new, with_shard);
    if values.is_empty() {
        return Ok(info);
    }
    let lines: Vec<String> = values
        .iter()
        .map(|(name, a, b)| format!("{name}: {a} there, {b} here"))
        .collect();
    Err(RunError::input(anyhow!(
        "{what}: made with other settings, whose values would differ:\n  {}",
        lines.join("\n  ")
    )))
}

/// A setting as compact JSON, for comparing and printing.
fn show<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a setting serialises")
}
