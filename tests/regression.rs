//! Behaviour pinned across refactors: `nasrank score` with every score and `nasrank search`
//! with every strategy print exactly what tests/golden/regression holds (written by
//! tools/make_regression.sh before the run layer and the score registry moved code around,
//! issue 21). A change meant to move values regenerates the fixtures and says so.

mod common;
use common::{nasrank, stderr, stdout};
use std::path::Path;

const NET: [&str; 9] = [
    "--channels",
    "3",
    "--cells",
    "1",
    "--batch",
    "8",
    "--threads",
    "2",
    "--quiet",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/regression")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(args: &[&str]) -> String {
    let args: Vec<&str> = args.iter().chain(&NET).copied().collect();
    let out = nasrank(&args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn score_with_every_score_prints_the_pinned_rows() {
    let printed = run(&[
        "score",
        "--archs",
        "1,7,1651,5256,1462,6111,11000",
        "--scores",
        "all",
        "--seed",
        "3",
    ]);
    let mut lines = printed.lines().map(|l| l.split(',').collect::<Vec<_>>());
    let header = lines.next().expect("a header");
    let seconds = header
        .iter()
        .position(|h| *h == "seconds")
        .expect("a seconds column");
    let without_seconds = |mut row: Vec<&str>| {
        row.remove(seconds);
        row.join(",")
    };
    let got: Vec<String> = std::iter::once(header.clone())
        .chain(lines)
        .map(without_seconds)
        .collect();
    let want = fixture("score.csv");
    let want: Vec<&str> = want.lines().collect();
    assert_eq!(got.len(), want.len(), "rows");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn every_search_strategy_prints_the_pinned_result() {
    let search = ["--seed", "5", "--json"];
    let cases: [(&str, Vec<&str>); 4] = [
        (
            "search_random.json",
            vec!["random", "-n", "12", "--runs", "2"],
        ),
        (
            "search_evolution.json",
            vec![
                "evolution",
                "--population",
                "4",
                "--tournament",
                "2",
                "--cycles",
                "10",
            ],
        ),
        ("search_topk.json", vec!["topk", "-n", "12", "--k", "3"]),
        (
            "search_prune.json",
            vec![
                "prune",
                "--repeats",
                "1",
                "--lr-batches",
                "1",
                "--lr-batch-size",
                "8",
            ],
        ),
    ];
    for (name, strategy) in cases {
        let args: Vec<&str> = ["search"]
            .iter()
            .chain(&strategy)
            .chain(&search)
            .copied()
            .collect();
        assert_eq!(run(&args), fixture(name), "{name}");
    }
}
