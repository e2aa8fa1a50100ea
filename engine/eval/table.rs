//! Score files joined with an accuracy table, and the ranking statistics of each score.

use super::rank::{average_ranks, kendall_tau_b, spearman};
use crate::proxy::Score;
use std::collections::HashMap;
use std::path::Path;

/// Columns of a scores file that are not scores.
const META_COLUMNS: [&str; 5] = ["index", "arch", "unique", "seconds", "scored_as"];

/// A table read from CSV: its header and rows of fields.
#[derive(Debug, Clone)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(path: &Path) -> anyhow::Result<Table> {
        let mut reader = csv::Reader::from_path(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let header = reader.headers()?.iter().map(str::to_string).collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Table { header, rows })
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }
}

/// Ranking quality of one score against the accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreQuality {
    pub name: String,
    /// Archs with both a finite... any score value and an accuracy.
    pub archs: usize,
    pub spearman: f64,
    pub kendall: f64,
    /// Accuracy of the arch the score ranks first.
    pub top1_accuracy: f64,
    /// Mean accuracy of the ten archs the score ranks first.
    pub top10_mean_accuracy: f64,
}

/// Score values with `NaN` ranked worst and the direction applied: higher is better after
/// this (the NTK condition number is negated).
fn oriented(name: &str, values: &[f64]) -> Vec<f64> {
    let sign = match name.parse::<Score>() {
        Ok(score) if !score.higher_is_better() => -1.0,
        _ => 1.0,
    };
    values
        .iter()
        .map(|v| {
            if v.is_nan() {
                f64::NEG_INFINITY
            } else {
                sign * v
            }
        })
        .collect()
}

/// Quality of a score given oriented values (higher is better) and accuracies.
pub fn quality(name: &str, values: &[f64], accuracy: &[f64]) -> ScoreQuality {
    let v = oriented(name, values);
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    let top10 = &order[..order.len().min(10)];
    ScoreQuality {
        name: name.to_string(),
        archs: v.len(),
        spearman: spearman(&v, accuracy),
        kendall: kendall_tau_b(&v, accuracy),
        top1_accuracy: order.first().map_or(f64::NAN, |&i| accuracy[i]),
        top10_mean_accuracy: top10.iter().map(|&i| accuracy[i]).sum::<f64>() / top10.len() as f64,
    }
}

/// The score columns of a results file joined with an accuracy column: the archs found in
/// both, in the scores file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The metric of each joined arch.
    pub accuracy: Vec<f64>,
    /// Every score column (name, values of the joined archs).
    pub columns: Vec<(String, Vec<f64>)>,
}

/// Joins `scores` with `truth`'s `metric` column on `index`, else `arch`.
pub fn join(scores: &Table, truth: &Table, metric: &str) -> anyhow::Result<Joined> {
    let metric_col = truth.column(metric).ok_or_else(|| {
        anyhow::anyhow!(
            "the accuracy table has no column {metric:?}; it has {}",
            truth.header.join(", ")
        )
    })?;
    let key = ["index", "arch"]
        .into_iter()
        .find(|k| scores.column(k).is_some() && truth.column(k).is_some())
        .ok_or_else(|| {
            anyhow::anyhow!("the two files share neither an `index` nor an `arch` column")
        })?;
    let (sk, tk) = (scores.column(key).unwrap(), truth.column(key).unwrap());
    // Joined on the index, the two files must name the same arch there: an index means
    // another arch in another search space (a size-space file against topology-space
    // accuracies would otherwise join silently).
    let arch_columns = (scores.column("arch"), truth.column("arch"));
    let mut accuracy: HashMap<&str, (f64, &Vec<String>)> = HashMap::new();
    for r in &truth.rows {
        if let Ok(acc) = r[metric_col].parse() {
            accuracy.insert(r[tk].as_str(), (acc, r));
        }
    }
    let mut joined: Vec<(&Vec<String>, f64)> = Vec::new();
    for r in &scores.rows {
        let Some(&(acc, t)) = accuracy.get(r[sk].as_str()) else {
            continue;
        };
        if let (Some(sa), Some(ta)) = arch_columns {
            if r[sa].trim() != t[ta].trim() {
                anyhow::bail!(
                    "{key} {}: the scores file names arch {} but the accuracy table {} \
                     (files of different search spaces?)",
                    r[sk],
                    r[sa],
                    t[ta]
                );
            }
        }
        joined.push((r, acc));
    }
    if joined.len() < 3 {
        anyhow::bail!(
            "only {} archs of the scores file have an accuracy in the table (joined on {key})",
            joined.len()
        );
    }
    let acc: Vec<f64> = joined.iter().map(|(_, a)| *a).collect();
    let score_columns: Vec<(usize, &String)> = scores
        .header
        .iter()
        .enumerate()
        .filter(|(_, h)| !META_COLUMNS.contains(&h.as_str()))
        .collect();
    let parse = |col: usize| -> anyhow::Result<Vec<f64>> {
        joined
            .iter()
            .map(|(r, _)| {
                r[col].trim().parse::<f64>().map_err(|_| {
                    anyhow::anyhow!(
                        "{:?} in column {} is not a number",
                        r[col],
                        scores.header[col]
                    )
                })
            })
            .collect()
    };
    let columns = score_columns
        .into_iter()
        .map(|(col, name)| Ok((name.clone(), parse(col)?)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Joined {
        accuracy: acc,
        columns,
    })
}

/// The scores of `scores` joined with `truth`'s `metric` column (on `index`, else `arch`):
/// the quality of every score column, then of the rank ensemble of `ensemble` (if any).
/// How an ensemble combines its scores' ranks over the archs of a set (label-free: no
/// accuracy enters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ensemble {
    /// The sum of the average ranks (1 = worst).
    #[default]
    RankSum,
    /// AZ-NAS's aggregation (Lee & Ham, CVPR 2024): the sum of `ln(rank / m)` over the
    /// scores, `m` archs in the set, average ranks (1 = worst), so a score's best arch adds
    /// 0 and one bad rank weighs more than in a rank sum.
    LogRank,
}

impl Ensemble {
    pub fn name(self) -> &'static str {
        match self {
            Ensemble::RankSum => "rank-sum",
            Ensemble::LogRank => "log-rank",
        }
    }

    /// Each arch's combined value (higher is better) from the scores' values over the
    /// same archs, each oriented by its direction (NaN worst) before ranking.
    pub fn combine(self, columns: &[(&str, &[f64])]) -> Vec<f64> {
        let m = columns.first().map_or(0, |(_, v)| v.len());
        let mut out = vec![0.0; m];
        for (name, values) in columns {
            for (sum, r) in out.iter_mut().zip(average_ranks(&oriented(name, values))) {
                *sum += match self {
                    Ensemble::RankSum => r,
                    Ensemble::LogRank => (r / m as f64).ln(),
                };
            }
        }
        out
    }
}

impl std::str::FromStr for Ensemble {
    type Err = String;

    fn from_str(s: &str) -> Result<Ensemble, String> {
        [Ensemble::RankSum, Ensemble::LogRank]
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("{s:?} is not rank-sum or log-rank"))
    }
}

pub fn evaluate(
    scores: &Table,
    truth: &Table,
    metric: &str,
    ensemble: &[String],
    method: Ensemble,
) -> anyhow::Result<Vec<ScoreQuality>> {
    let Joined { accuracy, columns } = join(scores, truth, metric)?;
    let mut out: Vec<ScoreQuality> = columns
        .iter()
        .map(|(name, values)| quality(name, values, &accuracy))
        .collect();
    if !ensemble.is_empty() {
        let members = ensemble
            .iter()
            .map(|name| {
                let (c, values) = columns.iter().find(|(c, _)| c == name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--ensemble names {name:?}, which is not a score column of the scores file"
                    )
                })?;
                Ok((c.as_str(), values.as_slice()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let label = match method {
            Ensemble::RankSum => "ensemble",
            Ensemble::LogRank => "log_rank",
        };
        out.push(quality(
            &format!("{label}({})", ensemble.join("+")),
            &method.combine(&members),
            &accuracy,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(header: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    #[test]
    fn an_index_naming_another_arch_in_the_two_files_is_refused() {
        let scores = table(
            &["index", "arch", "naswot"],
            &[
                &["5", "8:8:8:8:48", "1"],
                &["6", "a", "2"],
                &["7", "b", "3"],
            ],
        );
        let truth = table(
            &["index", "arch", "acc"],
            &[&["5", "|x|", "90"], &["6", "a", "91"], &["7", "b", "92"]],
        );
        let e = join(&scores, &truth, "acc").unwrap_err().to_string();
        assert!(e.contains("index 5") && e.contains("search spaces"), "{e}");
        // The same arch under both: joined.
        let truth = table(
            &["index", "arch", "acc"],
            &[
                &["5", "8:8:8:8:48", "90"],
                &["6", "a", "91"],
                &["7", "b", "92"],
            ],
        );
        assert_eq!(join(&scores, &truth, "acc").unwrap().accuracy.len(), 3);
    }

    #[test]
    fn joins_on_index_orients_ntk_and_ranks_nan_last() {
        let scores = table(
            &["index", "arch", "unique", "naswot", "ntk", "seconds"],
            &[
                &["1", "a", "u", "3", "10", "0.1"],
                &["2", "b", "u", "2", "20", "0.1"],
                &["3", "c", "u", "1", "30", "0.1"],
                &["4", "d", "u", "NaN", "40", "0.1"],
                &["5", "e", "u", "0", "50", "0.1"],
            ],
        );
        let truth = table(
            &["index", "acc"],
            &[
                &["1", "90"],
                &["2", "80"],
                &["3", "70"],
                &["4", "50"],
                &["5", "60"],
                &["9", "99"],
            ],
        );
        let q = evaluate(
            &scores,
            &truth,
            "acc",
            &["naswot".into(), "ntk".into()],
            Ensemble::RankSum,
        )
        .unwrap();
        assert_eq!(q.len(), 3);
        // naswot: order 1,2,3,5,4(NaN) against accuracies 90,80,70,60,50: perfect.
        assert!((q[0].spearman - 1.0).abs() < 1e-12 && (q[0].kendall - 1.0).abs() < 1e-12);
        assert_eq!(q[0].top1_accuracy, 90.0);
        assert_eq!(q[0].top10_mean_accuracy, 70.0);
        // ntk: lower is better; 10..50 against 90,80,70,50,60 -> one discordant pair of 10.
        assert!((q[1].kendall - 0.8).abs() < 1e-12, "{}", q[1].kendall);
        assert_eq!(q[2].archs, 5);
        assert!(evaluate(&scores, &truth, "nope", &[], Ensemble::RankSum)
            .unwrap_err()
            .to_string()
            .contains("acc"));
    }

    /// AZ-NAS's aggregation against values worked out by hand: m = 4 archs, naswot (higher
    /// better) 1, 5, 5, NaN -> average ranks 2, 3.5, 3.5, 1 (NaN worst); ntk (lower better)
    /// 4, 3, 2, 1 -> ranks 1, 2, 3, 4. log-rank: ln(2/4) + ln(1/4), ln(3.5/4) + ln(2/4), ...
    /// A balanced arch beats one with a best and a worst rank under log-rank but not under a
    /// rank sum (arch 3 vs arch 4 here: rank sums 6.5 and 5, log-ranks -0.42 and -1.39).
    /// Catches ranks taken in the wrong direction, ln of the wrong ratio, or NaN not worst.
    #[test]
    fn log_rank_is_azns_sum_of_log_normalised_ranks() {
        let naswot = [1.0, 5.0, 5.0, f64::NAN];
        let ntk = [4.0, 3.0, 2.0, 1.0];
        let columns: [(&str, &[f64]); 2] = [("naswot", &naswot), ("ntk", &ntk)];
        let ln = |x: f64| x.ln();
        let want = [
            ln(2.0 / 4.0) + ln(1.0 / 4.0),
            ln(3.5 / 4.0) + ln(2.0 / 4.0),
            ln(3.5 / 4.0) + ln(3.0 / 4.0),
            ln(1.0 / 4.0) + ln(4.0 / 4.0),
        ];
        let got = Ensemble::LogRank.combine(&columns);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        assert_eq!(
            Ensemble::RankSum.combine(&columns),
            vec![3.0, 5.5, 6.5, 5.0]
        );
        assert_eq!("log-rank".parse(), Ok(Ensemble::LogRank));
        assert!("mean".parse::<Ensemble>().is_err());
    }
}
