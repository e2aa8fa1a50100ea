//! Inputs that name archs: the `--archs` specification, pools and accuracy tables keyed
//! by `index` or `arch`, and scores read back from a results file.

use super::provenance::Provenance;
use super::search::Ranking;
use super::RunError;
use crate::eval::table::Table;
use crate::space::{
    arch_of_index, count_flops, count_params, index_of_arch, is_dead, iso_classes, iso_key,
    relu_units, AnyArch, Arch, Cell, DatasetShape, MacroConfig, SizeArch, Space,
};
use anyhow::anyhow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// One arch named by a benchmark index (`6111`) or an arch string
/// (`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`).
pub fn parse_arch(text: &str) -> Result<(usize, Arch), RunError> {
    let text = text.trim();
    let index = if text.starts_with('|') {
        parse_arch_string(text)?
    } else {
        parse_index(text)?
    };
    Ok((index, arch_of_index(index).expect("checked index")))
}

/// One arch of `space` named by a benchmark index or an arch string of that space: for TSS
/// what [`parse_arch`] reads; for SSS an index (`12`) or `C1:C2:C3:C4:C5` (`8:8:8:16:40`).
pub fn parse_space_arch(space: Space, text: &str) -> Result<AnyArch, RunError> {
    let text = text.trim();
    match space {
        Space::Tss => parse_arch(text).map(|(_, arch)| AnyArch::Tss(arch)),
        Space::Sss if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            let index = parse_index_in(space, text)?;
            Ok(space.arch_of_index(index).expect("checked index"))
        }
        Space::Sss => space
            .parse_arch(text)
            .map_err(|e| RunError::input(anyhow!("bad {space} arch string {text:?}: {e}"))),
    }
}

/// What the engine knows of one arch of either space without running it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum AnyArchInfo {
    Tss(ArchInfo),
    Sss(SizeArchInfo),
}

impl AnyArchInfo {
    /// The counts are for the benchmark's network on a dataset of `shape`.
    pub fn of(arch: &AnyArch, shape: DatasetShape) -> AnyArchInfo {
        match arch {
            AnyArch::Tss(tss) => {
                AnyArchInfo::Tss(ArchInfo::of(arch.index(), tss, &MacroConfig::nb201(shape)))
            }
            AnyArch::Sss(sss) => AnyArchInfo::Sss(SizeArchInfo::of(sss, shape)),
        }
    }
}

/// What the engine knows of one SSS arch without running it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SizeArchInfo {
    /// Always [`Space::Sss`]: says which space a JSON object describes.
    pub space: Space,
    pub index: usize,
    pub arch: String,
    /// The dedup key, the arch string itself: no other SSS arch computes the same function.
    pub unique: String,
    /// Always 1.
    pub class_size: usize,
    /// For the network on a dataset of the given shape, as the benchmark counts them
    /// (weights, BN affine, the classifier with its bias; FLOPs as multiply-adds of the
    /// convs and the classifier per image).
    pub params: u64,
    pub flops: u64,
}

impl SizeArchInfo {
    pub fn of(arch: &SizeArch, shape: DatasetShape) -> SizeArchInfo {
        SizeArchInfo {
            space: Space::Sss,
            index: arch.index(),
            arch: arch.to_string(),
            unique: arch.key(),
            class_size: 1,
            params: arch.params(shape),
            flops: arch.flops(shape),
        }
    }
}

/// What the engine knows of one arch without running it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ArchInfo {
    pub index: usize,
    pub arch: String,
    /// The isomorphism key: archs sharing it compute the same function.
    pub unique: String,
    /// How many archs of the space share the key.
    pub class_size: usize,
    /// No path from input to output carries a non-zero value.
    pub dead: bool,
    /// For the network of `config` (NAS-Bench-201's counting: weights, BN affine and the
    /// classifier; FLOPs as multiply-adds per image).
    pub params: u64,
    pub flops: u64,
    /// ReLU units one image passes through.
    pub relu_units: u64,
}

impl ArchInfo {
    pub fn of(index: usize, arch: &Arch, config: &MacroConfig) -> ArchInfo {
        let cell = Cell::from(*arch);
        let unique = iso_key(arch);
        let class_size = class_sizes().get(&unique).copied().unwrap_or(1);
        ArchInfo {
            index,
            arch: arch.to_string(),
            class_size,
            dead: is_dead(arch),
            params: count_params(&cell, config),
            flops: count_flops(&cell, config),
            relu_units: relu_units(&cell, config),
            unique,
        }
    }
}

/// Each isomorphism key's class size, counted once per process.
pub fn class_sizes() -> &'static HashMap<String, usize> {
    static SIZES: OnceLock<HashMap<String, usize>> = OnceLock::new();
    SIZES.get_or_init(|| {
        iso_classes()
            .into_iter()
            .map(|c| (c.key, c.indices.len()))
            .collect()
    })
}

/// Benchmark indices and archs named by a spec, in the order given (duplicates removed):
/// `all`; a half-open range `A..B`; a comma list of indices and arch strings; or the path
/// of a file with one index or arch string per line (blank lines and `#` comments skipped).
pub fn parse_archs(spec: &str) -> Result<Vec<(usize, Arch)>, RunError> {
    Ok(parse_space_archs(Space::Tss, spec)?
        .into_iter()
        .map(|(index, arch)| match arch {
            AnyArch::Tss(arch) => (index, arch),
            AnyArch::Sss(_) => unreachable!("a topology-space spec gives topology-space archs"),
        })
        .collect())
}

/// [`parse_archs`] for the archs of `space` (arch strings of that space:
/// `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` or `C1:C2:C3:C4:C5`).
pub fn parse_space_archs(space: Space, spec: &str) -> Result<Vec<(usize, AnyArch)>, RunError> {
    let spec = spec.trim();
    let num_archs = space.num_archs();
    // An arch string of the space, not an index (SSS strings hold `:`, TSS ones start `|`).
    let is_arch_string = |text: &str| text.starts_with('|') || text.contains(':');
    let index_of = |text: &str| -> Result<usize, RunError> {
        let text = text.trim();
        if is_arch_string(text) {
            Ok(parse_space_arch(space, text)?.index())
        } else {
            parse_index_in(space, text)
        }
    };
    let indices: Vec<usize> = if spec == "all" {
        (0..num_archs).collect()
    } else if let Some((a, b)) = spec.split_once("..") {
        let (a, b) = (parse_index_in(space, a)?, parse_end(space, b)?);
        if a >= b {
            return Err(RunError::input(anyhow!(
                "empty range {spec:?}: start must be below end"
            )));
        }
        (a..b).collect()
    } else if !Path::new(spec).is_file()
        && spec.split(',').all(|s| {
            let s = s.trim();
            !s.is_empty() && (is_arch_string(s) || s.chars().all(|c| c.is_ascii_digit()))
        })
    {
        spec.split(',').map(index_of).collect::<Result<_, _>>()?
    } else if Path::new(spec).is_file() {
        let text = std::fs::read_to_string(spec)
            .map_err(|e| RunError::input(anyhow!("cannot read arch list {spec}: {e}")))?;
        let mut out = Vec::new();
        for (line_no, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let index = index_of(line).map_err(|e| match e {
                RunError::Input(e) => RunError::input(anyhow!("{spec}:{}: {e:#}", line_no + 1)),
                other => other,
            })?;
            out.push(index);
        }
        if out.is_empty() {
            return Err(RunError::input(anyhow!("arch list {spec} names no arch")));
        }
        out
    } else {
        return Err(RunError::input(anyhow!(
            "--archs {spec:?} is not `all`, a range A..B, a comma list of indices, an arch string \
             or an existing file"
        )));
    };
    let mut seen = vec![false; num_archs];
    Ok(indices
        .into_iter()
        .filter(|&i| !std::mem::replace(&mut seen[i], true))
        .map(|i| (i, space.arch_of_index(i).expect("checked index")))
        .collect())
}

fn parse_index(text: &str) -> Result<usize, RunError> {
    parse_index_in(Space::Tss, text)
}

fn parse_index_in(space: Space, text: &str) -> Result<usize, RunError> {
    let text = text.trim();
    let num_archs = space.num_archs();
    match text.parse::<usize>() {
        Ok(i) if i < num_archs => Ok(i),
        Ok(i) => Err(RunError::input(anyhow!(
            "index {i} is out of range: the space has {num_archs} archs, 0..{}",
            num_archs - 1
        ))),
        _ => Err(RunError::input(anyhow!(
            "{text:?} is not a benchmark index (0..{})",
            num_archs - 1
        ))),
    }
}

fn parse_end(space: Space, text: &str) -> Result<usize, RunError> {
    let text = text.trim();
    let num_archs = space.num_archs();
    match text.parse::<usize>() {
        Ok(i) if i <= num_archs => Ok(i),
        _ => Err(RunError::input(anyhow!(
            "range end {text:?} must be at most {num_archs}"
        ))),
    }
}

fn parse_arch_string(text: &str) -> Result<usize, RunError> {
    let arch: Arch = text
        .parse()
        .map_err(|e| RunError::input(anyhow!("bad arch string {text:?}: {e}")))?;
    Ok(index_of_arch(&arch))
}

/// Accuracy by benchmark index of `space` from a CSV with an `index` (else `arch`) column;
/// cells that are not numbers are left out.
pub fn read_truth(
    path: &Path,
    metric: &str,
    space: Space,
) -> Result<HashMap<usize, f64>, RunError> {
    let table = Table::read(path).map_err(RunError::input)?;
    let col = table.column(metric).ok_or_else(|| {
        RunError::input(anyhow!(
            "{}: no column {metric:?} (it has {}); choose one with --metric",
            path.display(),
            table.header.join(", ")
        ))
    })?;
    let indices = table_indices(&table, path, space)?;
    Ok(indices
        .into_iter()
        .zip(&table.rows)
        .filter_map(|(i, row)| Some((i, row[col].trim().parse().ok()?)))
        .collect())
}

/// The space an evaluation's tables are of: `asked` (`--space`), else the one the scores
/// file's provenance manifest records, else none checked (`None`). Every row of both tables
/// must be an arch of that space ([`table_indices`]), and the manifest must agree with
/// `asked`.
pub fn check_eval_space(
    asked: Option<Space>,
    made: Option<&Provenance>,
    tables: [(&Table, &Path); 2],
) -> Result<Option<Space>, RunError> {
    let recorded = match made {
        Some(p) => Some(p.space.parse::<Space>().map_err(|e| {
            RunError::input(anyhow!(
                "{}: bad space in its provenance manifest: {e}",
                tables[0].1.display()
            ))
        })?),
        None => None,
    };
    if let (Some(asked), Some(recorded)) = (asked, recorded) {
        if asked != recorded {
            return Err(RunError::input(anyhow!(
                "{} holds {recorded} archs (its provenance manifest), not {asked} (--space)",
                tables[0].1.display()
            )));
        }
    }
    let Some(space) = asked.or(recorded) else {
        return Ok(None);
    };
    for (table, path) in tables {
        if table.column("index").is_some() || table.column("arch").is_some() {
            table_indices(table, path, space)?;
        }
    }
    Ok(Some(space))
}

/// The benchmark index in `space` of every row of a table with an `index` or `arch`
/// column. Where both are present, each row's arch must be the arch at its index (so a
/// table of the other space is refused rather than read as indices of this one).
pub fn table_indices(table: &Table, path: &Path, space: Space) -> Result<Vec<usize>, RunError> {
    let bad = |line: usize, what: &str, e: String| {
        RunError::input(anyhow!("{}:{}: {what}: {e}", path.display(), line + 2))
    };
    let num_archs = space.num_archs();
    let arch_col = table.column("arch");
    let arch_at = |line: usize, text: &str| -> Result<AnyArch, RunError> {
        space.parse_arch(text.trim()).map_err(|e| {
            bad(
                line,
                &format!("bad {space} arch string {:?}", text.trim()),
                e.to_string(),
            )
        })
    };
    if let Some(col) = table.column("index") {
        table
            .rows
            .iter()
            .enumerate()
            .map(|(line, row)| {
                let index = match row[col].trim().parse::<usize>() {
                    Ok(i) if i < num_archs => i,
                    _ => {
                        return Err(bad(
                            line,
                            "bad index",
                            format!(
                                "{:?} is not in 0..{num_archs} (the {space} space's indices)",
                                row[col]
                            ),
                        ))
                    }
                };
                if let Some(a) = arch_col {
                    let arch = arch_at(line, &row[a])?;
                    if arch.index() != index {
                        return Err(bad(
                            line,
                            "index and arch disagree",
                            format!(
                                "arch {} is index {} of the {space} space, not {index}",
                                row[a].trim(),
                                arch.index()
                            ),
                        ));
                    }
                }
                Ok(index)
            })
            .collect()
    } else if let Some(col) = arch_col {
        table
            .rows
            .iter()
            .enumerate()
            .map(|(line, row)| Ok(arch_at(line, &row[col])?.index()))
            .collect()
    } else {
        Err(RunError::input(anyhow!(
            "{}: a CSV needs an `index` or `arch` column (it has {})",
            path.display(),
            table.header.join(", ")
        )))
    }
}

/// The pool of `--from`: a CSV (its first line holds a comma) with an `index` or `arch`
/// column, or one index or arch string of `space` per line. Duplicates removed, order kept.
pub fn read_pool(path: &Path, space: Space) -> Result<Vec<usize>, RunError> {
    if !path.is_file() {
        return Err(RunError::input(anyhow!(
            "--from {}: no such file",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::input(anyhow!("cannot read {}: {e}", path.display())))?;
    let first = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty());
    let indices: Vec<usize> = if first.is_some_and(|l| l.contains(',')) {
        let table = Table::read(path).map_err(RunError::input)?;
        table_indices(&table, path, space)?
    } else {
        let spec = path
            .to_str()
            .ok_or_else(|| RunError::input(anyhow!("--from {}: not UTF-8", path.display())))?;
        parse_space_archs(space, spec)?
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    };
    let mut seen = vec![false; space.num_archs()];
    let pool: Vec<usize> = indices
        .into_iter()
        .filter(|&i| !std::mem::replace(&mut seen[i], true))
        .collect();
    if pool.is_empty() {
        return Err(RunError::input(anyhow!(
            "--from {} names no arch",
            path.display()
        )));
    }
    Ok(pool)
}

/// The `score` column of a results file of `space`, by benchmark index. A file whose
/// provenance manifest records another space, an index outside the space, or (with an
/// `arch` column) an arch that is not the space's arch at its index is refused: its values
/// would be read as other archs' scores.
pub fn read_known_scores(
    path: &Path,
    score: Ranking,
    space: Space,
) -> Result<HashMap<usize, f64>, RunError> {
    let Ranking::Arch(score) = score else {
        return Err(RunError::input(anyhow!(
            "--scores-from {}: {score} is a set score: a file's column ranks that file's \
             archs, a search ranks its own sample; search without --scores-from",
            path.display()
        )));
    };
    if let Some(made) = Provenance::read(path)? {
        if made.space != space.name() {
            return Err(RunError::input(anyhow!(
                "--scores-from {}: scores of the {} space (its provenance manifest), not of \
                 the {space} space searched",
                path.display(),
                made.space
            )));
        }
    }
    let table = Table::read(path).map_err(RunError::input)?;
    let (Some(_), Some(column)) = (table.column("index"), table.column(score.name())) else {
        return Err(RunError::input(anyhow!(
            "--scores-from {}: needs `index` and `{score}` columns; it has {}",
            path.display(),
            table.header.join(",")
        )));
    };
    let indices = table_indices(&table, path, space)
        .map_err(|e| RunError::input(anyhow!("--scores-from: {e:#}")))?;
    indices
        .into_iter()
        .zip(&table.rows)
        .map(|(index, row)| {
            let value = row[column].parse().map_err(|_| {
                RunError::input(anyhow!("--scores-from {}: bad row {row:?}", path.display()))
            })?;
            Ok((index, value))
        })
        .collect()
}
