//! `nasrank._nasrank`: the Python package's bridge to the engine's run layer. It only
//! translates: Python arguments into a [`ScoreRequest`] and arch lists, rows into NumPy
//! columns, [`RunError`]s into Python exceptions. The Python side (python/nasrank) makes
//! the DataFrames and the progress bar.

use std::sync::Mutex;

use nasrank::data::DataError;
use nasrank::eval::table::{evaluate, Ensemble, Table};
use nasrank::proxy::aggregate::ScoreList;
use nasrank::proxy::swap::SwapRegularizer;
use nasrank::proxy::Score;
use nasrank::run::archs::{parse_space_arch, parse_space_archs, read_pool, ArchInfo, SizeArchInfo};
use nasrank::run::data::DataSource;
use nasrank::run::device::{parse_device, parse_storage};
use nasrank::run::score::{fill_set_columns, RowSink, ScoreProgress, ScoreRequest, Scoring};
use nasrank::run::search::{Ranking, SearchProgress, Strategy};
use nasrank::run::search_report::SearchRequest;
use nasrank::run::RunError;
use nasrank::space::{
    arch_of_index, AnyArch, DatasetShape, MacroConfig, SizeArch, Space, SpaceParseError, NUM_ARCHS,
    SSS_POSITIONS,
};
use nasrank::store::{Row, ScoredAs};
use numpy::PyArray1;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use std::collections::HashMap;

/// A run-layer error as the Python exception a user expects: bad input `ValueError` (a
/// missing file `FileNotFoundError`), a device that cannot be had or a failure during the
/// run `RuntimeError`, a stopped run `KeyboardInterrupt`.
fn py_err(e: RunError) -> PyErr {
    match e {
        RunError::Input(e) => {
            let missing = e.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<DataError>(),
                    Some(DataError::MissingFile { .. } | DataError::MissingInDir { .. })
                ) || cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
            });
            let message = format!("{e:#}");
            if missing {
                PyFileNotFoundError::new_err(message)
            } else {
                PyValueError::new_err(message)
            }
        }
        RunError::Unavailable(e) | RunError::Failed(e) => PyRuntimeError::new_err(format!("{e:#}")),
        RunError::Stopped => PyKeyboardInterrupt::new_err("stopped"),
    }
}

/// Archs of `space` from what `--archs` takes (a string) or any iterable of indices and
/// arch strings.
fn space_archs_of(space: Space, archs: &Bound<'_, PyAny>) -> PyResult<Vec<(usize, AnyArch)>> {
    if let Ok(spec) = archs.cast::<PyString>() {
        return parse_space_archs(space, &spec.to_cow()?).map_err(py_err);
    }
    let named = |text: &str| -> PyResult<(usize, AnyArch)> {
        let arch = parse_space_arch(space, text).map_err(py_err)?;
        Ok((arch.index(), arch))
    };
    if let Ok(index) = archs.extract::<i64>() {
        return Ok(vec![arch_at(space, index)?]);
    }
    let mut out = Vec::new();
    for item in archs.try_iter().map_err(|_| {
        PyValueError::new_err(
            "archs: expected an index, an arch string, an --archs specification or an iterable of indices and arch strings",
        )
    })? {
        let item = item?;
        out.push(if let Ok(text) = item.cast::<PyString>() {
            named(&text.to_cow()?)?
        } else if let Ok(index) = item.extract::<i64>() {
            arch_at(space, index)?
        } else {
            return Err(PyValueError::new_err(format!(
                "archs: {} is neither an index nor an arch string",
                item.repr()?
            )));
        });
    }
    if out.is_empty() {
        return Err(PyValueError::new_err("archs: no arch given"));
    }
    Ok(out)
}

/// The arch of `space` at a benchmark index.
fn arch_at(space: Space, index: i64) -> PyResult<(usize, AnyArch)> {
    let n = space.num_archs();
    usize::try_from(index)
        .ok()
        .and_then(|i| Some((i, space.arch_of_index(i)?)))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "index {index} is out of range: the space has {n} archs, 0..{}",
                n - 1
            ))
        })
}

/// A space name (`"tss"`, `"sss"`) as the engine's [`Space`]; another is a `ValueError`.
fn space_of(name: &str) -> PyResult<Space> {
    name.parse()
        .map_err(|e: SpaceParseError| PyValueError::new_err(format!("space: {e}")))
}

/// Score and set-score names from "a,b", "all" or a list of names.
fn scores_of(scores: &Bound<'_, PyAny>) -> PyResult<ScoreList> {
    let list = if let Ok(text) = scores.cast::<PyString>() {
        text.to_cow()?.into_owned()
    } else {
        let names: Vec<String> = scores.extract().map_err(|_| {
            PyValueError::new_err("scores: expected a comma list, \"all\" or a list of names")
        })?;
        names.join(",")
    };
    ScoreList::parse(&list).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// What the engine knows of one arch of `space`, the counts for the benchmark's CIFAR-10
/// network (NAS-Bench-201's C=16, N=5 for the topology space; the arch's own widths for
/// the size space).
#[pyfunction]
#[pyo3(signature = (arch, space="tss"))]
fn arch_info(py: Python<'_>, arch: &Bound<'_, PyAny>, space: &str) -> PyResult<Py<PyDict>> {
    let space = space_of(space)?;
    let arch = match arch.cast::<PyString>() {
        Ok(text) => parse_space_arch(space, &text.to_cow()?).map_err(py_err)?,
        Err(_) => {
            let index = arch
                .extract::<i64>()
                .map_err(|_| PyValueError::new_err("arch: expected an index or an arch string"))?;
            arch_at(space, index)?.1
        }
    };
    let d = PyDict::new(py);
    d.set_item("space", space.name())?;
    match arch {
        AnyArch::Tss(tss) => {
            let info = ArchInfo::of(arch.index(), &tss, &MacroConfig::NB201_CIFAR10);
            d.set_item("index", info.index)?;
            d.set_item("arch", info.arch)?;
            d.set_item("unique", info.unique)?;
            d.set_item("class_size", info.class_size)?;
            d.set_item("dead", info.dead)?;
            d.set_item("params", info.params)?;
            d.set_item("flops", info.flops)?;
            d.set_item("relu_units", info.relu_units)?;
        }
        AnyArch::Sss(sss) => {
            let info = SizeArchInfo::of(&sss, CIFAR10);
            d.set_item("index", info.index)?;
            d.set_item("arch", info.arch)?;
            d.set_item("unique", info.unique)?;
            d.set_item("class_size", info.class_size)?;
            d.set_item("params", info.params)?;
            d.set_item("flops", info.flops)?;
            d.set_item("widths", sss.widths().to_vec())?;
        }
    }
    Ok(d.unbind())
}

/// CIFAR-10's shape: the counts `arch_info` and `space_columns` give.
const CIFAR10: DatasetShape = DatasetShape {
    classes: 10,
    input_size: 32,
};

/// Every arch of `space` as columns, in index order.
#[pyfunction]
#[pyo3(signature = (space="tss"))]
fn space_columns(py: Python<'_>, space: &str) -> PyResult<Py<PyDict>> {
    match space_of(space)? {
        Space::Tss => tss_columns(py),
        Space::Sss => sss_columns(py),
    }
}

/// The size space's columns: index, arch, unique (the arch string), class_id (the index:
/// every arch its own class), class_size (1), params, flops, and each width `c1`..`c5`.
fn sss_columns(py: Python<'_>) -> PyResult<Py<PyDict>> {
    let infos: Vec<(SizeArch, SizeArchInfo)> = py.detach(|| {
        Space::Sss
            .archs()
            .map(|(_, arch)| match arch {
                AnyArch::Sss(sss) => (sss, SizeArchInfo::of(&sss, CIFAR10)),
                AnyArch::Tss(_) => unreachable!("the size space gives size-space archs"),
            })
            .collect()
    });
    let column =
        |f: &dyn Fn(&SizeArchInfo) -> i64| infos.iter().map(|(_, i)| f(i)).collect::<Vec<i64>>();
    let d = PyDict::new(py);
    d.set_item("index", PyArray1::from_vec(py, column(&|i| i.index as i64)))?;
    d.set_item(
        "arch",
        PyList::new(py, infos.iter().map(|(_, i)| i.arch.as_str()))?,
    )?;
    d.set_item(
        "unique",
        PyList::new(py, infos.iter().map(|(_, i)| i.unique.as_str()))?,
    )?;
    d.set_item(
        "class_id",
        PyArray1::from_vec(py, column(&|i| i.index as i64)),
    )?;
    d.set_item(
        "class_size",
        PyArray1::from_vec(py, column(&|i| i.class_size as i64)),
    )?;
    d.set_item(
        "params",
        PyArray1::from_vec(py, column(&|i| i.params as i64)),
    )?;
    d.set_item("flops", PyArray1::from_vec(py, column(&|i| i.flops as i64)))?;
    for position in 0..SSS_POSITIONS {
        let widths: Vec<i64> = infos
            .iter()
            .map(|(a, _)| a.widths()[position] as i64)
            .collect();
        d.set_item(format!("c{}", position + 1), PyArray1::from_vec(py, widths))?;
    }
    Ok(d.unbind())
}

/// The topology space's columns.
fn tss_columns(py: Python<'_>) -> PyResult<Py<PyDict>> {
    let config = MacroConfig::NB201_CIFAR10;
    let infos: Vec<ArchInfo> = py.detach(|| {
        (0..NUM_ARCHS)
            .map(|i| ArchInfo::of(i, &arch_of_index(i).expect("in range"), &config))
            .collect()
    });
    // Class ids in order of first appearance.
    let mut ids = std::collections::HashMap::new();
    let class_id: Vec<i64> = infos
        .iter()
        .map(|info| {
            let next = ids.len() as i64;
            *ids.entry(info.unique.as_str()).or_insert(next)
        })
        .collect();
    let column = |f: fn(&ArchInfo) -> i64| infos.iter().map(f).collect::<Vec<i64>>();
    let d = PyDict::new(py);
    d.set_item("index", PyArray1::from_vec(py, column(|i| i.index as i64)))?;
    d.set_item(
        "arch",
        PyList::new(py, infos.iter().map(|i| i.arch.as_str()))?,
    )?;
    d.set_item(
        "unique",
        PyList::new(py, infos.iter().map(|i| i.unique.as_str()))?,
    )?;
    d.set_item("class_id", PyArray1::from_vec(py, class_id))?;
    d.set_item(
        "class_size",
        PyArray1::from_vec(py, column(|i| i.class_size as i64)),
    )?;
    d.set_item(
        "dead",
        PyArray1::from_vec(py, infos.iter().map(|i| i.dead).collect::<Vec<bool>>()),
    )?;
    d.set_item(
        "params",
        PyArray1::from_vec(py, column(|i| i.params as i64)),
    )?;
    d.set_item("flops", PyArray1::from_vec(py, column(|i| i.flops as i64)))?;
    Ok(d.unbind())
}

/// Rows kept in memory, in the order the run writes them.
struct Rows(Vec<Row>);

impl RowSink for Rows {
    fn write(&mut self, row: &Row) -> anyhow::Result<()> {
        self.0.push(row.clone());
        Ok(())
    }
}

/// A run's progress reported to a Python callable `progress(event, n)` (`"start"` with the
/// rows to write, then `"row"` per row), and Ctrl-C: the interpreter's pending signals are
/// checked whenever the run polls, and a raised exception stops the run and is re-raised.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl PyProgress {
    fn call(&mut self, event: &str, n: usize) {
        if self.error.is_some() {
            return;
        }
        if let Some(callback) = &self.callback {
            let outcome = Python::attach(|py| callback.call1(py, (event, n)).map(drop));
            if let Err(e) = outcome {
                self.error = Some(e);
            }
        }
    }
}

impl ScoreProgress for PyProgress {
    fn start(&mut self, _kept: usize, rows: usize, _to_score: usize) {
        self.call("start", rows);
    }

    fn row(&mut self, _scored: bool) {
        self.call("row", 1);
    }

    fn interrupted(&self) -> bool {
        self.error.is_some() || Python::attach(|py| py.check_signals()).is_err()
    }
}

/// `swap_mu` and `swap_sigma`: swap_reg's regulariser, both or neither.
fn swap_regularizer_of(mu: Option<f64>, sigma: Option<f64>) -> PyResult<Option<SwapRegularizer>> {
    SwapRegularizer::from_options(mu, sigma).map_err(PyValueError::new_err)
}

/// Scores loaded once: data, minibatches and backends, for many calls (a search loop).
/// Calls from several Python threads take turns; the GIL is released while scoring.
#[pyclass(frozen, module = "nasrank._nasrank")]
struct Scorer {
    scoring: Mutex<Scoring>,
    columns: Vec<String>,
    space: Space,
}

#[pymethods]
impl Scorer {
    #[new]
    #[pyo3(signature = (scores, data="synthetic", seed=0, seeds=None, batch=None, device="cpu",
                        workers=None, storage="f32", channels=16, cells=5, space="tss",
                        swap_mu=None, swap_sigma=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        scores: &Bound<'_, PyAny>,
        data: &str,
        seed: u64,
        seeds: Option<Vec<u64>>,
        batch: Option<usize>,
        device: &str,
        workers: Option<usize>,
        storage: &str,
        channels: usize,
        cells: usize,
        space: &str,
        swap_mu: Option<f64>,
        swap_sigma: Option<f64>,
    ) -> PyResult<Self> {
        let bad = |what: &str, e: String| PyValueError::new_err(format!("{what}: {e}"));
        let swap_regularizer = swap_regularizer_of(swap_mu, swap_sigma)?;
        let space: Space = space
            .parse()
            .map_err(|e: SpaceParseError| bad("space", e.to_string()))?;
        let list = scores_of(scores)?;
        let request = ScoreRequest {
            space,
            sets: list.sets,
            seed,
            seeds: seeds.unwrap_or_default(),
            batch,
            device: parse_device(device).map_err(|e| bad("device", e))?,
            workers,
            storage: parse_storage(storage).map_err(|e| bad("storage", e))?,
            channels,
            cells,
            swap_regularizer,
            ..ScoreRequest::new(list.scores, DataSource::parse(data).map_err(py_err)?)
        };
        let scoring = py.detach(|| request.load()).map_err(py_err)?;
        Ok(Scorer {
            columns: scoring.columns(),
            scoring: Mutex::new(scoring),
            space,
        })
    }

    /// The score columns of each result, in order.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// Scores `archs`; returns the columns of `nasrank score`'s rows as a dict.
    #[pyo3(signature = (archs, dedup=true, progress=None))]
    fn score(
        &self,
        py: Python<'_>,
        archs: &Bound<'_, PyAny>,
        dedup: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyDict>> {
        let archs = space_archs_of(self.space, archs)?;
        let mut progress = PyProgress {
            callback: progress,
            error: None,
        };
        let mut rows = Rows(Vec::with_capacity(archs.len()));
        let outcome = py.detach(|| {
            let scoring = self.scoring.lock().unwrap_or_else(|e| e.into_inner());
            scoring
                .job(archs, None, dedup)
                .run(Vec::new(), &mut rows, &mut progress)
        });
        if let Some(e) = progress.error {
            return Err(e);
        }
        outcome.map_err(py_err)?;
        // Set scores rank the archs of this call.
        fill_set_columns(&mut rows.0, &self.columns).map_err(py_err)?;
        self.to_columns(py, &rows.0)
    }
}

impl Scorer {
    fn to_columns(&self, py: Python<'_>, rows: &[Row]) -> PyResult<Py<PyDict>> {
        let d = PyDict::new(py);
        d.set_item(
            "index",
            PyArray1::from_vec(py, rows.iter().map(|r| r.index as i64).collect()),
        )?;
        d.set_item(
            "arch",
            PyList::new(py, rows.iter().map(|r| r.arch.as_str()))?,
        )?;
        d.set_item(
            "unique",
            PyList::new(py, rows.iter().map(|r| r.unique.as_str()))?,
        )?;
        for (j, name) in self.columns.iter().enumerate() {
            d.set_item(
                name,
                PyArray1::from_vec(py, rows.iter().map(|r| r.values[j]).collect()),
            )?;
        }
        d.set_item(
            "seconds",
            PyArray1::from_vec(py, rows.iter().map(|r| r.seconds).collect()),
        )?;
        // The index of the arch whose scoring gave the values; -1 for a dead arch.
        let scored_as = rows.iter().map(|r| match r.scored_as {
            ScoredAs::Arch(i) => i as i64,
            ScoredAs::Dead => -1,
        });
        d.set_item("scored_as", PyArray1::from_vec(py, scored_as.collect()))?;
        Ok(d.unbind())
    }
}

/// `nasrank eval`'s table for a scores table and an accuracy table, each given as its
/// header and its rows of fields (text, as in a CSV file): one dict per score column, then
/// the ensemble's row when `ensemble` names score columns.
#[pyfunction]
#[pyo3(signature = (scores, truth, metric="cifar10_test", ensemble=None, ensemble_method="rank-sum"))]
fn evaluate_tables(
    py: Python<'_>,
    scores: (Vec<String>, Vec<Vec<String>>),
    truth: (Vec<String>, Vec<Vec<String>>),
    metric: &str,
    ensemble: Option<Vec<String>>,
    ensemble_method: &str,
) -> PyResult<Vec<Py<PyDict>>> {
    let method: Ensemble = ensemble_method
        .parse()
        .map_err(|e: String| PyValueError::new_err(format!("ensemble_method: {e}")))?;
    let table = |(header, rows): (Vec<String>, Vec<Vec<String>>)| Table { header, rows };
    let results = evaluate(
        &table(scores),
        &table(truth),
        metric,
        &ensemble.unwrap_or_default(),
        method,
    )
    .map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
    results
        .into_iter()
        .map(|q| {
            let d = PyDict::new(py);
            d.set_item("score", q.name)?;
            d.set_item("archs", q.archs)?;
            d.set_item("spearman", q.spearman)?;
            d.set_item("kendall", q.kendall)?;
            d.set_item("top1_accuracy", q.top1_accuracy)?;
            d.set_item("top10_mean_accuracy", q.top10_mean_accuracy)?;
            Ok(d.unbind())
        })
        .collect()
}

/// A search's progress reported to a Python callable `progress(event, n)` (`"start"` with
/// the steps to come, then `"tick"` per step), with Ctrl-C checked as for scoring.
struct PySearchProgress(PyProgress);

impl SearchProgress for PySearchProgress {
    fn start(&mut self, total: usize, _unit: &'static str) {
        self.0.call("start", total);
    }

    fn tick(&mut self) {
        self.0.call("tick", 1);
    }

    fn interrupted(&self) -> bool {
        ScoreProgress::interrupted(&self.0)
    }
}

/// A search's pool of archs of `space`: a file `--from` takes (indices or arch strings one
/// per line, or a CSV with an `index` or `arch` column), or what `archs` takes elsewhere.
fn pool_of(space: Space, archs: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    if let Ok(text) = archs.cast::<PyString>() {
        let text = text.to_cow()?;
        if std::path::Path::new(&*text).is_file() {
            return read_pool(std::path::Path::new(&*text), space).map_err(py_err);
        }
    }
    Ok(space_archs_of(space, archs)?
        .into_iter()
        .map(|(i, _)| i)
        .collect())
}

/// The score a strategy searches with when none is named.
#[pyfunction]
fn default_score(strategy: &str) -> PyResult<&'static str> {
    let strategy: Strategy = strategy.parse().map_err(PyValueError::new_err)?;
    Ok(strategy.default_score().name())
}

/// Runs a search; returns its report as JSON text (the object `nasrank search --json`
/// prints). Options are those of `nasrank search`; `pool` and `known` as lists.
#[pyfunction]
#[pyo3(signature = (strategy, score=None, data="synthetic", batch=None, seed=0, device="cpu",
                    channels=None, cells=None, truth=None, metric="cifar10_test", pool=None,
                    known=None, samples=None, runs=None, k=None, population=None,
                    tournament=None, cycles=None, repeats=None, lr_batches=None,
                    lr_batch_size=None, progress=None, space="tss", swap_mu=None,
                    swap_sigma=None))]
#[allow(clippy::too_many_arguments)]
fn search_report(
    py: Python<'_>,
    strategy: &str,
    score: Option<&str>,
    data: &str,
    batch: Option<usize>,
    seed: u64,
    device: &str,
    channels: Option<usize>,
    cells: Option<usize>,
    truth: Option<Vec<(i64, f64)>>,
    metric: &str,
    pool: Option<&Bound<'_, PyAny>>,
    known: Option<Vec<(i64, f64)>>,
    samples: Option<usize>,
    runs: Option<usize>,
    k: Option<usize>,
    population: Option<usize>,
    tournament: Option<usize>,
    cycles: Option<usize>,
    repeats: Option<usize>,
    lr_batches: Option<usize>,
    lr_batch_size: Option<usize>,
    progress: Option<Py<PyAny>>,
    space: &str,
    swap_mu: Option<f64>,
    swap_sigma: Option<f64>,
) -> PyResult<String> {
    let space = space_of(space)?;
    let by_index = |pairs: Vec<(i64, f64)>| -> PyResult<HashMap<usize, f64>> {
        pairs
            .into_iter()
            .map(|(i, v)| Ok((arch_at(space, i)?.0, v)))
            .collect()
    };
    let request = SearchRequest {
        space,
        score: score
            .map(|s| s.parse::<Ranking>())
            .transpose()
            .map_err(|e| PyValueError::new_err(e.to_string()))?,
        batch,
        seed,
        device: parse_device(device).map_err(|e| PyValueError::new_err(format!("device: {e}")))?,
        channels,
        cells,
        truth: truth.map(by_index).transpose()?,
        metric: metric.to_owned(),
        pool: match pool {
            Some(archs) => Some(pool_of(space, archs)?),
            None => None,
        },
        known: by_index(known.unwrap_or_default())?,
        samples,
        runs,
        k,
        population,
        tournament,
        cycles,
        repeats,
        lr_batches,
        lr_batch_size,
        swap_regularizer: swap_regularizer_of(swap_mu, swap_sigma)?,
        ..SearchRequest::new(
            strategy
                .parse::<Strategy>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
            DataSource::parse(data).map_err(py_err)?,
        )
    };
    let mut progress = PySearchProgress(PyProgress {
        callback: progress,
        error: None,
    });
    let outcome = py.detach(|| request.run(&mut progress));
    if let Some(e) = progress.0.error {
        return Err(e);
    }
    Ok(outcome.map_err(py_err)?.to_string())
}

/// Every score name, in the registry's order.
#[pyfunction]
fn score_names() -> Vec<&'static str> {
    Score::ALL.iter().map(|s| s.name()).collect()
}

/// Panics, for the test that a panic reaches Python as an exception.
#[pyfunction]
fn _panic_for_test() {
    panic!("a panic raised on purpose by nasrank._nasrank._panic_for_test");
}

#[pymodule]
fn _nasrank(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(arch_info, m)?)?;
    m.add_function(wrap_pyfunction!(space_columns, m)?)?;
    m.add_function(wrap_pyfunction!(score_names, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_tables, m)?)?;
    m.add_function(wrap_pyfunction!(search_report, m)?)?;
    m.add_function(wrap_pyfunction!(default_score, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add_class::<Scorer>()?;
    m.add("NUM_ARCHS", NUM_ARCHS)?;
    Ok(())
}
