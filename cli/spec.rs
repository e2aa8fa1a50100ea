//! Parsing of the `--archs` specification shared by the commands that take many archs.

use crate::CliError;
use anyhow::anyhow;
use nasrank::space::{arch_of_index, index_of_arch, Arch, NUM_ARCHS};
use std::path::Path;

/// Benchmark indices and archs named by a spec, in the order given (duplicates removed):
/// `all`; a half-open range `A..B`; a comma list of indices; one arch string; or the path of
/// a file with one index or arch string per line (blank lines and `#` comments skipped).
pub fn parse_archs(spec: &str) -> Result<Vec<(usize, Arch)>, CliError> {
    let spec = spec.trim();
    let indices: Vec<usize> = if spec == "all" {
        (0..NUM_ARCHS).collect()
    } else if let Some((a, b)) = spec.split_once("..") {
        let (a, b) = (parse_index(a)?, parse_end(b)?);
        if a >= b {
            return Err(CliError::usage(anyhow!(
                "empty range {spec:?}: start must be below end"
            )));
        }
        (a..b).collect()
    } else if spec.starts_with('|') {
        vec![parse_arch_string(spec)?]
    } else if !spec.is_empty()
        && spec
            .split(',')
            .all(|s| s.trim().chars().all(|c| c.is_ascii_digit()) && !s.trim().is_empty())
    {
        spec.split(',').map(parse_index).collect::<Result<_, _>>()?
    } else if Path::new(spec).is_file() {
        let text = std::fs::read_to_string(spec)
            .map_err(|e| CliError::usage(anyhow!("cannot read arch list {spec}: {e}")))?;
        let mut out = Vec::new();
        for (line_no, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let index = if line.starts_with('|') {
                parse_arch_string(line)
            } else {
                parse_index(line)
            }
            .map_err(|e| match e {
                CliError::Usage(e) => CliError::usage(anyhow!("{spec}:{}: {e:#}", line_no + 1)),
                other => other,
            })?;
            out.push(index);
        }
        if out.is_empty() {
            return Err(CliError::usage(anyhow!("arch list {spec} names no arch")));
        }
        out
    } else {
        return Err(CliError::usage(anyhow!(
            "--archs {spec:?} is not `all`, a range A..B, a comma list of indices, an arch string \
             or an existing file"
        )));
    };
    let mut seen = vec![false; NUM_ARCHS];
    Ok(indices
        .into_iter()
        .filter(|&i| !std::mem::replace(&mut seen[i], true))
        .map(|i| (i, arch_of_index(i).expect("checked index")))
        .collect())
}

fn parse_index(text: &str) -> Result<usize, CliError> {
    let text = text.trim();
    match text.parse::<usize>() {
        Ok(i) if i < NUM_ARCHS => Ok(i),
        _ => Err(CliError::usage(anyhow!(
            "{text:?} is not a benchmark index (0..{})",
            NUM_ARCHS - 1
        ))),
    }
}

fn parse_end(text: &str) -> Result<usize, CliError> {
    let text = text.trim();
    match text.parse::<usize>() {
        Ok(i) if i <= NUM_ARCHS => Ok(i),
        _ => Err(CliError::usage(anyhow!(
            "range end {text:?} must be at most {NUM_ARCHS}"
        ))),
    }
}

fn parse_arch_string(text: &str) -> Result<usize, CliError> {
    let arch: Arch = text
        .parse()
        .map_err(|e| CliError::usage(anyhow!("bad arch string {text:?}: {e}")))?;
    Ok(index_of_arch(&arch))
}
