//! Set scores: an arch's value relative to a set of archs, combined from per-arch scores'
//! ranks over the set. AZ-NAS's aggregate (Lee & Ham, CVPR 2024) is one: the sum over its
//! four terms of `ln(rank / m)` among the `m` archs ranked together.
//!
//! A set score is not a property of one arch: it changes with the set. Where it is a
//! column (results files, the Python frames), the set is the archs of that file or call,
//! every row counted (an isomorphic copy as its own arch, as AZ-NAS ranks all 15,625);
//! a merge recomputes it over the merged rows, so shards merged give what one run gives.

use super::{Score, UnknownScore};
use crate::eval::Ensemble;

/// A score of an arch among a set of archs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetScore {
    /// The column name.
    pub name: &'static str,
    /// The per-arch scores it combines.
    pub terms: &'static [Score],
    /// How their ranks over the set combine (higher is better).
    pub method: Ensemble,
}

/// AZ-NAS: expressivity, progressivity, trainability and FLOPs (the complexity term),
/// summed log-ranks (the released `compute_az_nas_score.py` aggregation).
pub const AZ_NAS: SetScore = SetScore {
    name: "az_nas",
    terms: &[
        Score::AzExpressivity,
        Score::AzProgressivity,
        Score::AzTrainability,
        Score::Flops,
    ],
    method: Ensemble::LogRank,
};

impl SetScore {
    /// Every set score.
    pub const ALL: [SetScore; 1] = [AZ_NAS];

    /// The set score of this column name.
    pub fn named(name: &str) -> Option<SetScore> {
        SetScore::ALL.into_iter().find(|s| s.name == name.trim())
    }

    /// Each arch's value from its terms' values over the same archs: `columns[t]` holds
    /// term `t`'s values (the order of [`SetScore::terms`]).
    pub fn over(&self, columns: &[Vec<f64>]) -> Vec<f64> {
        assert_eq!(columns.len(), self.terms.len(), "one column per term");
        let named: Vec<(&str, &[f64])> = self
            .terms
            .iter()
            .zip(columns)
            .map(|(term, values)| (term.name(), values.as_slice()))
            .collect();
        self.method.combine(&named)
    }
}

/// What a `--scores` list asks: per-arch scores (with the terms of each set score, added
/// after the named ones where not named) and set scores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScoreList {
    pub scores: Vec<Score>,
    pub sets: Vec<SetScore>,
}

impl ScoreList {
    /// A comma list of score and set-score names, or `all` (every per-arch score).
    pub fn parse(list: &str) -> Result<ScoreList, UnknownScore> {
        if list.trim() == "all" {
            return Ok(ScoreList {
                scores: Score::ALL.to_vec(),
                sets: Vec::new(),
            });
        }
        let mut out = ScoreList::default();
        let mut terms = Vec::new();
        for name in list.split(',') {
            if let Some(set) = SetScore::named(name) {
                if !out.sets.contains(&set) {
                    out.sets.push(set);
                    terms.extend_from_slice(set.terms);
                }
                continue;
            }
            let score: Score = name.parse()?;
            if !out.scores.contains(&score) {
                out.scores.push(score);
            }
        }
        for term in terms {
            if !out.scores.contains(&term) {
                out.scores.push(term);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_score_brings_its_terms_after_the_named_scores() {
        let list = ScoreList::parse("naswot,az_nas,flops").unwrap();
        assert_eq!(list.sets, vec![AZ_NAS]);
        assert_eq!(
            list.scores,
            vec![
                Score::Naswot,
                Score::Flops,
                Score::AzExpressivity,
                Score::AzProgressivity,
                Score::AzTrainability,
            ]
        );
        assert!(ScoreList::parse("naswot,az").is_err());
        assert_eq!(ScoreList::parse("all").unwrap().sets, Vec::new());
    }

    #[test]
    fn az_nas_sums_log_ranks_of_its_terms() {
        // Three archs; terms ranked (1 = worst): E 1,2,3; P 3,2,1; T 2,3,1; FLOPs 1,3,2.
        let e = [0.1, 0.2, 0.3];
        let p = [3.0, 2.0, 1.0];
        let t = [5.0, 6.0, 4.0];
        let f = [10.0, 30.0, 20.0];
        let got = AZ_NAS.over(&[e.to_vec(), p.to_vec(), t.to_vec(), f.to_vec()]);
        let l = |r: f64| (r / 3.0_f64).ln();
        let want = [
            l(1.0) + l(3.0) + l(2.0) + l(1.0),
            l(2.0) + l(2.0) + l(3.0) + l(3.0),
            l(3.0) + l(1.0) + l(1.0) + l(2.0),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} {want:?}");
        }
    }
}
