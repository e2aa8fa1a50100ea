//! End-to-end runs of the `nasrank` binary.

mod common;

use common::{nasrank, stderr, stdout, under_ci};
use std::collections::HashMap;
use std::process::Command;

#[test]
fn arch_by_index_shows_the_spec_counts() {
    let out = nasrank(&["arch", "6111"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // nb201.md: index 6111 has 1,073,466 params.
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["params", "1073466"]),
        "{text}"
    );
}

#[test]
fn arch_json_by_string_round_trips_to_the_index() {
    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let out = nasrank(&["arch", arch, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // nb201.md: this is benchmark index 1, 802,426 params, 113.95137 M FLOPs.
    assert_eq!(v["index"], 1);
    assert_eq!(v["arch"], arch);
    assert_eq!(v["params"], 802_426);
    assert_eq!(v["flops"], 113_951_370);
    assert_eq!(v["relu_units"], 143_360 * 3 + 40_960);
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, needle) in [
        (vec!["arch", "15625"], "out of range"),
        (
            vec![
                "arch",
                "|nor_conv_3x3~0|+|conv~0|none~1|+|none~0|none~1|none~2|",
            ],
            "conv",
        ),
        (
            vec![
                "arch",
                "|nor_conv_3x3~0|+|none~1|none~1|+|none~0|none~1|none~2|",
            ],
            "~0",
        ),
        (vec!["arch"], "required"),
        (vec!["frobnicate"], "unrecognized"),
    ] {
        let out = nasrank(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stdout(&out).is_empty(), "{args:?} printed to stdout");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn sss_arch_by_index_shows_the_benchmark_counts() {
    let out = nasrank(&["arch", "--space", "sss", "12"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let fields = |name: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .find(|f| f.first().is_some_and(|first| first == name))
            .unwrap_or_else(|| panic!("no {name} line in {text}"))
    };
    // nats_sss.md A1, A5: index 12 is 8:8:8:16:40, 0.067378 M params, 7.991706 M FLOPs.
    assert_eq!(fields("index")[1], "12", "{text}");
    assert_eq!(fields("arch")[1], "8:8:8:16:40", "{text}");
    assert_eq!(fields("params")[1..3], ["67378", "(0.067378"], "{text}");
    assert_eq!(fields("flops")[1..3], ["7991706", "(7.991706"], "{text}");
}

#[test]
fn sss_arch_json_by_string_for_imagenet16() {
    let out = nasrank(&[
        "arch",
        "--space",
        "sss",
        "8:8:40:32:40",
        "--json",
        "--classes",
        "120",
        "--input-size",
        "16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // nats_sss.md A5: index 284, ImageNet16-120 0.149344 M params, 5.461816 M FLOPs.
    assert_eq!(v["space"], "sss");
    assert_eq!(v["index"], 284);
    assert_eq!(v["arch"], "8:8:40:32:40");
    assert_eq!(v["params"], 149_344);
    assert_eq!(v["flops"], 5_461_816);
    assert_eq!(v["class_size"], 1);
}

#[test]
fn bad_sss_archs_exit_2_with_what_is_allowed() {
    let allowed = "8, 16, 24, 32, 40, 48, 56, 64";
    for (arch, needles) in [
        ("8:8:8:8", vec!["expected 5 widths", "found 4", allowed]),
        ("8:8:8:8:12", vec!["width 12 is not allowed", allowed]),
        ("64:64:64:64:72", vec!["width 72 is not allowed", allowed]),
        ("32768", vec!["out of range", "32768 archs"]),
        (
            "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            vec!["bad sss arch string", "expected 5 widths"],
        ),
    ] {
        let out = nasrank(&["arch", "--space", "sss", arch]);
        assert_eq!(out.status.code(), Some(2), "{arch}");
        assert!(stdout(&out).is_empty(), "{arch} printed to stdout");
        for needle in needles {
            assert!(stderr(&out).contains(needle), "{arch}: {}", stderr(&out));
        }
    }
    // An SSS string is not a TSS arch, and the space must be one of the two.
    let out = nasrank(&["arch", "8:8:8:16:40"]);
    assert_eq!(out.status.code(), Some(2));
    let out = nasrank(&["arch", "--space", "nb201", "12"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("tss") && stderr(&out).contains("sss"),
        "{}",
        stderr(&out)
    );
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nasrank-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn score_writes_one_row_per_arch_with_the_spec_counts() {
    let out = temp_path("counts.csv");
    let run = nasrank(&[
        "score",
        "--archs",
        "1,6111",
        "--scores",
        "params,flops",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "index,arch,unique,params,flops,seconds,scored_as");
    assert_eq!(lines.len(), 3);
    let row: Vec<&str> = lines[2].split(',').collect();
    // nb201.md: index 6111 has 1,073,466 params.
    assert_eq!((row[0], row[3]), ("6111", "1073466"));
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((row[0], row[3], row[4]), ("1", "802426", "113951370"));
}

#[test]
fn score_bad_inputs_exit_2_and_leave_no_file() {
    let out = temp_path("never.csv");
    let _ = std::fs::remove_file(&out);
    let o = out.to_str().unwrap();
    for (args, needle) in [
        (
            vec![
                "score",
                "--archs",
                "0..3",
                "--scores",
                "naswot,bogus",
                "--out",
                o,
            ],
            "bogus",
        ),
        (vec!["score", "--archs", "5..2", "--out", o], "empty range"),
        (
            vec!["score", "--archs", "|nor_conv_3x3~0|+|x~0|", "--out", o],
            "bad arch",
        ),
        (
            vec![
                "score",
                "--archs",
                "0..2",
                "--data",
                "cifar10:/no/such/dir",
                "--out",
                o,
            ],
            "/no/such/dir",
        ),
        (
            vec![
                "score",
                "--archs",
                "0..2",
                "--data",
                "mnist:/tmp",
                "--out",
                o,
            ],
            "mnist",
        ),
        (
            vec![
                "score", "--archs", "0..2", "--device", "cuda:99", "--out", o,
            ],
            "--device cuda:99: ",
        ),
        (
            vec!["score", "--archs", "0..2", "--device", "tpu", "--out", o],
            "cuda:K",
        ),
        (
            vec![
                "score",
                "--archs",
                "0..2",
                "--scores",
                "swap",
                "--swap-mu",
                "1",
                "--swap-sigma",
                "2",
                "--out",
                o,
            ],
            "swap_reg is not among the scores",
        ),
        (
            vec![
                "score",
                "--archs",
                "0..2",
                "--scores",
                "swap_reg",
                "--swap-mu",
                "1",
                "--swap-sigma",
                "-2",
                "--out",
                o,
            ],
            "sigma > 0",
        ),
        (
            vec![
                "score",
                "--archs",
                "0..2",
                "--scores",
                "swap_reg",
                "--swap-mu",
                "1",
                "--out",
                o,
            ],
            "--swap-sigma",
        ),
    ] {
        let run = nasrank(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
        assert!(stderr(&run).contains(needle), "{args:?}: {}", stderr(&run));
        assert!(!out.exists(), "{args:?} left a file behind");
    }
}

/// swap_reg with a given regulariser: each row's value is its swap times
/// exp(-(params/1e3 - mu)^2 / sigma) of its own params column, the manifest records mu and
/// sigma, and a resume with another mu is refused.
#[test]
fn swap_reg_takes_mu_and_sigma_and_records_them() {
    let out = temp_path("swap_reg.csv");
    let o = out.to_str().unwrap();
    let args = |mu: &'static str| {
        vec![
            "score",
            "--archs",
            "1,7,6111",
            "--scores",
            "swap,swap_reg,params",
            "--channels",
            "3",
            "--cells",
            "1",
            "--batch",
            "8",
            "--swap-mu",
            mu,
            "--swap-sigma",
            "20",
            "--out",
            o,
            "--quiet",
        ]
    };
    let run = nasrank(&args("5"));
    assert!(run.status.success(), "{}", stderr(&run));
    let rows = csv_cells(&std::fs::read_to_string(&out).unwrap());
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let (swap, reg, params) = (col("swap"), col("swap_reg"), col("params"));
    for row in &rows[1..] {
        let value = |i: usize| row[i].parse::<f64>().unwrap();
        let theta = value(params) / 1e3;
        let want = value(swap) * (-(theta - 5.0) * (theta - 5.0) / 20.0).exp();
        assert!(
            (value(reg) - want).abs() <= 1e-12 * want,
            "{row:?}: swap_reg {} vs {want}",
            value(reg)
        );
        assert!(value(reg) < value(swap), "{row:?}: a factor below 1");
    }
    let manifest = std::fs::read_to_string(format!("{o}.provenance.json")).unwrap();
    assert!(manifest.contains("\"mu=5 sigma=20\""), "{manifest}");
    let mut resumed = args("6");
    resumed.push("--resume");
    let run = nasrank(&resumed);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("swap_regularizer"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn eval_reports_the_rank_correlation_of_each_column() {
    let scores = temp_path("eval_scores.csv");
    let truth = temp_path("eval_truth.csv");
    std::fs::write(
        &scores,
        "index,arch,unique,good,bad,seconds\n1,a,u,1,3,0\n2,b,u,2,2,0\n3,c,u,3,1,0\n",
    )
    .unwrap();
    std::fs::write(&truth, "index,arch,cifar10_test\n1,a,50\n2,b,60\n3,c,70\n").unwrap();
    let run = nasrank(&[
        "eval",
        "--scores",
        scores.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let rows: Vec<serde_json::Value> = stdout(&run)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["score"], "good");
    assert_eq!(rows[0]["spearman"], 1.0);
    assert_eq!(rows[1]["spearman"], -1.0);
    assert_eq!(rows[0]["top1_accuracy"], 70.0);
    let bad = nasrank(&[
        "eval",
        "--scores",
        scores.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--metric",
        "cifar100_test",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("cifar100_test"));
}

/// Rows of a results file without the timing column, for comparing runs.
fn rows_without_seconds(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let seconds = header.iter().position(|h| *h == "seconds").unwrap();
    text.lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(seconds);
            f.join(",")
        })
        .collect()
}

#[test]
fn shards_merged_equal_one_run_and_merge_names_what_is_missing_or_twice() {
    let one = temp_path("one.csv");
    let args = [
        "score",
        "--archs",
        "0..60",
        "--scores",
        "params,flops",
        "--quiet",
    ];
    let run = nasrank(&[&args[..], &["--out", one.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let shards: Vec<std::path::PathBuf> = (1..=3)
        .map(|i| temp_path(&format!("shard{i}.csv")))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let spec = format!("{}/3", i + 1);
        let run = nasrank(
            &[
                &args[..],
                &["--shard", &spec, "--out", shard.to_str().unwrap()],
            ]
            .concat(),
        );
        assert!(run.status.success(), "{}", stderr(&run));
    }
    let merged = temp_path("merged.csv");
    let files: Vec<&str> = shards.iter().map(|p| p.to_str().unwrap()).collect();
    let run = nasrank(
        &[
            &["merge"],
            &files[..],
            &["--archs", "0..60", "--out", merged.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let mut a = rows_without_seconds(&one);
    let mut b = rows_without_seconds(&merged);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Dedup copies values inside a class, marked by scored_as.
    assert!(a
        .iter()
        .skip(1)
        .any(|r| !r.starts_with(&format!("{},", r.rsplit(',').next().unwrap()))));

    let run = nasrank(&[
        "merge",
        files[0],
        files[1],
        "--archs",
        "0..60",
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("missing"), "{}", stderr(&run));
    let run = nasrank(&[
        "merge",
        files[0],
        files[0],
        files[1],
        files[2],
        "--archs",
        "0..60",
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("more than once"), "{}", stderr(&run));
    for bad in ["0/3", "4/3", "x", "1/0"] {
        let run = nasrank(&[
            "score", "--archs", "0..3", "--scores", "params", "--shard", bad,
        ]);
        assert_eq!(run.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn a_run_cut_anywhere_and_resumed_equals_an_uninterrupted_run() {
    let full = temp_path("full.csv");
    let args = [
        "score",
        "--archs",
        "100..130",
        "--scores",
        "flops,params",
        "--quiet",
    ];
    let run = nasrank(&[&args[..], &["--out", full.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let bytes = std::fs::read(&full).unwrap();
    let expected = rows_without_seconds(&full);
    // A kill can leave any prefix: cut at the header, mid-line and at line ends.
    for cut in [
        0,
        10,
        60,
        bytes.len() / 3,
        bytes.len() / 2 + 7,
        bytes.len() - 1,
    ] {
        let part = temp_path(&format!("cut{cut}.csv"));
        std::fs::write(&part, &bytes[..cut]).unwrap();
        let run = nasrank(&[&args[..], &["--out", part.to_str().unwrap(), "--resume"]].concat());
        assert!(run.status.success(), "cut {cut}: {}", stderr(&run));
        assert_eq!(rows_without_seconds(&part), expected, "cut at byte {cut}");
    }
}

#[test]
fn score_all_on_a_tiny_network_gives_every_column() {
    let out = temp_path("all.jsonl");
    let run = nasrank(&[
        "score",
        "--archs",
        "1,0",
        "--scores",
        "all",
        "--channels",
        "2",
        "--cells",
        "1",
        "--batch",
        "4",
        "--format",
        "jsonl",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("synthetic"),
        "the synthetic-data notice is missing"
    );
    // Every score of the registry, as a finite JSON number: on these two live archs none
    // is NaN or infinite, so a "NaN" string, a null or a missing column fails (issue 27).
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        for name in [
            "naswot",
            "ntk",
            "ntk_exact",
            "mgm",
            "mgm_trace",
            "mgm_eig",
            "linear_regions",
            "linear_regions_net",
            "synflow",
            "snip",
            "grad_norm",
            "grasp",
            "fisher",
            "jacob_cov",
            "zico",
            "zen",
            "params",
            "flops",
        ] {
            let value = row[name].as_f64();
            assert!(
                value.is_some_and(f64::is_finite),
                "{name}: {} in {line}",
                row[name]
            );
        }
    }
}

#[test]
fn seeds_give_the_mean_and_spread_of_single_seed_runs() {
    let base = [
        "score",
        "--archs",
        "1",
        "--scores",
        "synflow,params",
        "--channels",
        "2",
        "--cells",
        "1",
        "--quiet",
    ];
    let value = |extra: &[&str]| -> Vec<f64> {
        let run = nasrank(&[&base[..], extra].concat());
        assert!(run.status.success(), "{}", stderr(&run));
        let text = stdout(&run);
        let row = text.lines().nth(1).unwrap().to_string();
        row.split(',').skip(3).map(|v| v.parse().unwrap()).collect()
    };
    let single: Vec<f64> = (0..3)
        .map(|s| value(&["--seed", &s.to_string()])[0])
        .collect();
    let multi = value(&["--seeds", "0,1,2"]);
    let mean = single.iter().sum::<f64>() / 3.0;
    let std = (single.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    // Columns: synflow, params, synflow_std, params_std, seconds, scored_as.
    assert!(
        (multi[0] - mean).abs() <= 1e-9 * mean.abs(),
        "{multi:?} vs {single:?}"
    );
    assert!(
        (multi[2] - std).abs() <= 1e-9 * std.abs(),
        "{multi:?} vs {single:?}"
    );
    assert_eq!(multi[3], 0.0, "params do not depend on the seed");
    assert!(std > 0.0);
}

/// Starts `nasrank ARGS --out OUT` (OUT removed first) and returns once OUT holds `lines`
/// lines (the header counts), failing if the run ends before: a signal or a kill sent then
/// lands mid-run, never after the end.
fn spawn_until_lines(args: &[&str], out: &std::path::Path, lines: usize) -> std::process::Child {
    let _ = std::fs::remove_file(out);
    spawn_more_until_lines(args, out, lines)
}

/// As [`spawn_until_lines`], keeping what OUT holds (for `--resume` runs).
fn spawn_more_until_lines(
    args: &[&str],
    out: &std::path::Path,
    lines: usize,
) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasrank"))
        .args(args)
        .args(["--out", out.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while std::fs::read_to_string(out).map_or(0, |t| t.lines().count()) < lines {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {lines} lines were written");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child
}

#[test]
fn a_run_killed_mid_way_resumes_to_the_uninterrupted_result() {
    let args = [
        "score",
        "--archs",
        "0..150",
        "--scores",
        "naswot,params",
        "--channels",
        "4",
        "--cells",
        "1",
        "--batch",
        "16",
        "--quiet",
    ];
    let full = temp_path("kill-full.csv");
    let run = nasrank(&[&args[..], &["--out", full.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let killed = temp_path("kill-part.csv");
    // Kill once some rows are on disk, as a scheduler's SIGKILL would. The run has ~140
    // rows to go then, so it cannot have finished: a kill that lands after the end fails
    // the test instead of quietly checking a finished file (issue 27).
    let mut child = spawn_until_lines(&args, &killed, 12);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before the kill");
    let rows_at_kill = std::fs::read_to_string(&killed).unwrap().lines().count();
    assert!(rows_at_kill < 151, "killed after every row was written");
    let run = nasrank(&[&args[..], &["--out", killed.to_str().unwrap(), "--resume"]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(rows_without_seconds(&killed), rows_without_seconds(&full));
}

#[test]
fn a_closed_output_pipe_ends_the_run_quietly() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasrank"))
        .args([
            "score", "--archs", "0..2000", "--scores", "params", "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one chunk, then close the pipe as `| head -1` does.
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    // Ended by SIGPIPE, as `cat` would be: no exit code, no error message.
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc_sigpipe()),
            "{:?}: {err}",
            out.status
        );
    }
}

/// SIGPIPE's number on the platforms CI and users run (Linux, macOS).
#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

/// The score columns of a CSV written to standard output, by row (header row first).
fn csv_cells(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn threads_one_and_two_give_the_same_scores() {
    let run = |threads: &str| {
        let out = nasrank(&[
            "score",
            "--archs",
            "1,6111,300",
            "--scores",
            "naswot,ntk,ntk_exact,mgm,fisher,jacob_cov,zico,zen,synflow,snip,grad_norm,grasp",
            "--channels",
            "4",
            "--cells",
            "1",
            "--batch",
            "16",
            "--threads",
            threads,
            "--quiet",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        csv_cells(&stdout(&out))
    };
    let (one, two) = (run("1"), run("2"));
    assert_eq!(one.len(), 4);
    let header = &one[0];
    for (a, b) in one[1..].iter().zip(&two[1..]) {
        for (col, name) in header.iter().enumerate().take(header.len() - 2).skip(3) {
            assert_eq!(a[col], b[col], "{name} of arch {}", a[0]);
        }
    }
}

#[test]
fn several_workers_write_the_rows_of_one_worker_in_input_order() {
    // 0..40 holds isomorphic archs (rows copied from their class's first) and dead ones.
    let run = |workers: &str| {
        let out = temp_path(&format!("workers-{workers}.csv"));
        let run = nasrank(&[
            "score",
            "--archs",
            "0..40",
            "--scores",
            "naswot,synflow,params",
            "--channels",
            "4",
            "--cells",
            "1",
            "--batch",
            "8",
            "--workers",
            workers,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{workers}: {}", stderr(&run));
        rows_without_seconds(&out)
    };
    let one = run("1");
    assert_eq!(one.len(), 41);
    assert_eq!(run("3"), one);
    for bad in ["--workers=0", "--workers=many"] {
        let out = nasrank(&["score", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("--workers"), "{}", stderr(&out));
    }
}

#[test]
fn storage_other_than_f32_needs_the_cuda_backend_and_bad_names_exit_2() {
    for (args, needle) in [
        (&["score", "--storage", "f16"][..], "only the CUDA backend"),
        (
            &["score", "--storage", "bf16", "--device", "cpu"][..],
            "only the CUDA backend",
        ),
        (&["score", "--storage", "f8"][..], "f32, f16 or bf16"),
        (
            &["bench", "scores", "--storage", "bf16"][..],
            "only the CUDA backend",
        ),
        (
            &["bench", "kernels", "--storage", "f16"][..],
            "only the CUDA backend",
        ),
    ] {
        let out = nasrank(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn threads_zero_or_not_a_number_exit_2() {
    for bad in ["--threads=0", "--threads=two", "--threads=-1"] {
        for command in ["score", "search"] {
            let args: Vec<&str> = if command == "search" {
                vec!["search", "random", bad]
            } else {
                vec!["score", bad]
            };
            let out = nasrank(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert!(stderr(&out).contains("--threads"), "{}", stderr(&out));
            assert!(stdout(&out).is_empty());
        }
    }
}

#[test]
fn dead_archs_take_their_dead_values_and_are_marked() {
    // Arch 10 is dead (no path from the cell input to its output); arch 1 is not.
    let run = |scores: &str| {
        let out = nasrank(&[
            "score",
            "--archs",
            "10,1",
            "--scores",
            scores,
            "--channels",
            "2",
            "--cells",
            "1",
            "--batch",
            "4",
            "--quiet",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        csv_cells(&stdout(&out))
    };
    let rows = run("synflow,zen,ntk");
    assert_eq!(rows[1][0], "10");
    assert_eq!(rows[1][3..6], ["0", "-inf", "NaN"]);
    assert_eq!(rows[1].last().unwrap(), "dead");
    assert_eq!(rows[2].last().unwrap(), "1");
    // naswot has no dead value: the dead arch is scored, and marked as itself.
    let rows = run("synflow,naswot");
    assert_eq!(rows[1][3], "0");
    assert_eq!(rows[1].last().unwrap(), "10");
}

#[test]
fn progress_is_plain_lines_off_a_terminal_and_quiet_silences_it() {
    let args = [
        "score",
        "--archs",
        "1,2,3",
        "--scores",
        "params",
        "--channels",
        "2",
        "--cells",
        "1",
    ];
    let out = nasrank(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    // Off a terminal: no bar or carriage returns, a plain line at the end with the rate.
    assert!(!err.contains('\r'), "{err:?}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("3/3 archs, ") && last.contains("archs/s") && last.contains("eta 0 s"),
        "{err}"
    );
    let quiet = nasrank(&[&args[..], &["--quiet"]].concat());
    assert!(quiet.status.success());
    assert!(!stderr(&quiet).contains("archs"), "{}", stderr(&quiet));
    // Equal rows, up to the measured `seconds` (the next-to-last column).
    let without_seconds = |text: &str| {
        let mut rows = csv_cells(text);
        rows.iter_mut().for_each(|r| {
            r.remove(r.len() - 2);
        });
        rows
    };
    assert_eq!(
        without_seconds(&stdout(&quiet)),
        without_seconds(&stdout(&out))
    );
}

/// A results file of three scores over 12 archs and an accuracy table for them.
fn plot_inputs(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let scores = temp_path(&format!("plot-{tag}.csv"));
    let run = nasrank(&[
        "score",
        "--archs",
        "1..13",
        "--scores",
        "params,flops,synflow",
        "--channels",
        "2",
        "--cells",
        "1",
        "--quiet",
        "--out",
        scores.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let truth = temp_path(&format!("plot-{tag}-acc.csv"));
    let mut table = String::from("index,cifar10_test\n");
    for i in 1..13 {
        table.push_str(&format!("{i},{}\n", 80.0 + (i * 7 % 13) as f64));
    }
    std::fs::write(&truth, table).unwrap();
    (scores, truth)
}

#[test]
fn eval_plot_png_has_the_signature_and_one_panel_per_score_in_a_grid() {
    let (scores, truth) = plot_inputs("png");
    let png = temp_path("plot.png");
    let _ = std::fs::remove_file(&png);
    let out = nasrank(&[
        "eval",
        "--scores",
        scores.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(bytes[..8], [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);
    assert_eq!(&bytes[12..16], b"IHDR");
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    // docs/USAGE.md: 420 x 340 pixels per panel; three panels make a 2 x 2 grid.
    assert_eq!((be32(&bytes[16..20]), be32(&bytes[20..24])), (840, 680));
}

#[test]
fn eval_plot_svg_titles_every_panel_and_other_extensions_exit_2() {
    let (scores, truth) = plot_inputs("svg");
    let svg = temp_path("plot.svg");
    let args = |plot: &str| {
        nasrank(&[
            "eval",
            "--scores",
            scores.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
            "--plot",
            plot,
        ])
    };
    let out = args(svg.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.trim_start().starts_with("<svg") || text.starts_with("<?xml"));
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(
        text.matches("<text").count(),
        text.matches("</text>").count()
    );
    for score in ["params", "flops", "synflow"] {
        let title = format!("{score}: Spearman");
        assert_eq!(text.matches(&title).count(), 1, "{score}");
    }
    assert_eq!(
        text.matches("cifar10_test").count(),
        3,
        "metric axis labels"
    );
    for bad in ["plot.jpg", "plot", "plot.png.txt"] {
        let path = temp_path(bad);
        let _ = std::fs::remove_file(&path);
        let out = args(path.to_str().unwrap());
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains(".png or .svg"), "{}", stderr(&out));
        assert!(stdout(&out).is_empty() && !path.exists(), "{bad}");
    }
}

#[test]
fn bench_kernels_prints_one_json_object_per_primitive_and_shape() {
    let out = nasrank(&[
        "bench",
        "kernels",
        "--batch",
        "2",
        "--repeat",
        "1",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for kernel in [
        "conv3x3 forward",
        "conv3x3 backward-data",
        "conv3x3 backward-weight",
        "conv1x1 forward",
        "batch norm forward",
        "avg pool 3x3 forward",
        "relu + code packing",
        "hamming gram",
    ] {
        let shapes: Vec<&str> = rows
            .iter()
            .filter(|r| r["kernel"] == kernel)
            .map(|r| r["shape"].as_str().unwrap())
            .collect();
        assert_eq!(shapes.len(), 3, "{kernel}: one row per stage shape");
    }
    assert!(rows.iter().any(|r| r["kernel"] == "gradient gram"));
    assert!(rows.iter().any(|r| r["shape"] == "2x64x8x8"));
    for r in &rows {
        assert!(r["seconds"].as_f64().unwrap() >= 0.0, "{r}");
        assert!(r["gbytes_per_s"].is_number(), "{r}");
    }
}

#[test]
fn bench_scores_prints_a_row_per_arch_and_score_and_refuses_other_devices() {
    let out = nasrank(&[
        "bench",
        "scores",
        "--archs",
        "1,2",
        "--scores",
        "naswot,synflow",
        "--channels",
        "2",
        "--cells",
        "1",
        "--batch",
        "4",
        "--repeat",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>()[..3],
        ["index", "score", "seconds"]
    );
    assert_eq!(lines.len(), 1 + 4 + 2, "{text}");
    for line in &lines[1..5] {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            ["1", "2"].contains(&f[0]) && ["naswot", "synflow"].contains(&f[1]),
            "{line}"
        );
        assert!(
            f[2].parse::<f64>().unwrap() >= 0.0 && f[3].starts_with('|'),
            "{line}"
        );
    }
    assert!(lines[5].starts_with("mean naswot") && lines[6].starts_with("mean synflow"));
    for device in ["cuda:7", "tpu"] {
        let out = nasrank(&["bench", "kernels", "--device", device, "--repeat", "1"]);
        // Only a machine with 8 GPUs may run cuda:7; never `tpu`, never under CI (no GPU).
        if out.status.success() && device == "cuda:7" && !under_ci() {
            eprintln!("NOTICE: bench --device {device} ran here: refusal not checked");
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{device}");
        assert!(stderr(&out).contains("--device") && stdout(&out).is_empty());
    }
    let out = nasrank(&["bench", "scores", "--repeat", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_command_help_has_examples_of_itself() {
    for command in [
        vec!["arch"],
        vec!["score"],
        vec!["search"],
        vec!["eval"],
        vec!["merge"],
        vec!["bench"],
        vec!["bench", "kernels"],
        vec!["bench", "scores"],
    ] {
        let out = nasrank(&[&command[..], &["--help"]].concat());
        assert!(out.status.success(), "{command:?}");
        let text = stdout(&out);
        let examples = text
            .split_once("Examples:")
            .unwrap_or_else(|| panic!("{command:?} --help has no examples:\n{text}"))
            .1;
        let invocation = format!("nasrank {}", command.join(" "));
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with(&invocation)),
            "{command:?}: no example starts with {invocation:?}"
        );
    }
}

/// `--device` refusals: a GPU that is not there (no driver, no GPU, or too few GPUs, or a
/// build without the `cuda` feature) is bad usage with the reason, for score and search.
#[test]
fn a_cuda_device_that_is_not_there_exits_2_with_the_reason() {
    let reasons = [
        "without the `cuda` feature",
        "no NVIDIA driver",
        "sees no GPU",
        "there is no GPU 7",
    ];
    for command in ["score", "search"] {
        let mut args = vec![command];
        if command == "search" {
            args.extend(["random", "--samples", "2"]);
        }
        for device in ["cuda:7", "cuda:all"] {
            let mut args = args.clone();
            args.extend(["--device", device, "--quiet"]);
            let run = nasrank(&args);
            let err = stderr(&run);
            if run.status.success() && !under_ci() {
                // A CUDA build on a machine with the GPUs: nothing to refuse (CI has none).
                eprintln!("NOTICE: --device {device} worked here: refusal not checked");
                continue;
            }
            assert_eq!(run.status.code(), Some(2), "{command}: {err}");
            assert!(
                err.contains(&format!("--device {device}: ")),
                "{command}: {err}"
            );
            let reasons = if device == "cuda:7" {
                &reasons[..]
            } else {
                &reasons[..3]
            };
            assert!(reasons.iter().any(|r| err.contains(r)), "{command}: {err}");
        }
    }
}

/// The CUDA backend's host code on emulated kernels scores like the CPU backend, and on a
/// GPU backend the host's scores (synflow, params) run on host threads beside the device
/// workers: the rows are the CPU backend's, in the same order, host values bit for bit,
/// device values (forward codes, a backward pass) up to rounding, for two seeds, a dead
/// arch and host scores asked between device scores.
#[cfg(feature = "emu")]
#[test]
fn device_emu_rows_join_host_and_device_scores_like_the_cpu() {
    let scores = "synflow,naswot,params,snip";
    let run_on = |device: &str| {
        let out = temp_path(&format!("split-{device}.csv"));
        let run = nasrank(&[
            "score",
            "--archs",
            "1651,7,1,1652",
            "--scores",
            scores,
            "--seeds",
            "0,1",
            "--channels",
            "2",
            "--cells",
            "1",
            "--batch",
            "4",
            "--device",
            device,
            "--workers",
            "2",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{device}: {}", stderr(&run));
        std::fs::read_to_string(out).unwrap()
    };
    let (cpu, emu) = (run_on("cpu"), run_on("emu"));
    let (cpu, emu): (Vec<&str>, Vec<&str>) = (cpu.lines().collect(), emu.lines().collect());
    assert_eq!(cpu[0], emu[0]);
    assert_eq!((cpu.len(), emu.len()), (5, 5));
    let header: Vec<&str> = cpu[0].split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (c, e) in cpu[1..].iter().zip(&emu[1..]) {
        let (c, e): (Vec<&str>, Vec<&str>) = (c.split(',').collect(), e.split(',').collect());
        assert_eq!(c[..3], e[..3], "index, arch, unique");
        assert_eq!(c[column("scored_as")], e[column("scored_as")]);
        for name in ["synflow", "params", "synflow_std", "params_std"] {
            assert_eq!(c[column(name)], e[column(name)], "{name} of row {}", c[0]);
        }
        for name in ["naswot", "snip", "naswot_std", "snip_std"] {
            let (x, y): (f64, f64) = (
                c[column(name)].parse().unwrap(),
                e[column(name)].parse().unwrap(),
            );
            assert!(
                x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-4 * x.abs().max(1e-12),
                "{name} of row {}: cpu {x}, emu {y}",
                c[0]
            );
        }
    }
    // Seeds 0 and 1 draw different weights: the spread of a scored arch is not zero.
    let row7: Vec<&str> = emu[2].split(',').collect();
    assert_ne!(row7[column("synflow_std")].parse::<f64>().unwrap(), 0.0);
}

/// Without the `emu` feature, `--device emu` is refused with the way to get it.
#[cfg(not(feature = "emu"))]
#[test]
fn device_emu_needs_the_emu_feature() {
    let run = nasrank(&["score", "--archs", "1", "--device", "emu", "--quiet"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("--features emu"), "{}", stderr(&run));
}

/// `merge` refuses, with exit 2, a message naming the problem and no merged file: shards
/// with different score columns, rows outside `--archs`, a torn last line, a JSON-lines
/// shard (merge reads CSV); and merges the same shards when nothing is wrong (issue 27).
/// Catches a merge that writes a file before checking, or accepts any of these.
#[test]
fn merge_refuses_mixed_extra_torn_and_jsonl_shards_and_writes_nothing() {
    let net = ["--channels", "2", "--cells", "1", "--batch", "4", "--quiet"];
    let shard = |name: &str, scores: &str, shard: &str, format: &str| {
        let path = temp_path(name);
        let _ = std::fs::remove_file(&path);
        let mut args = vec![
            "score", "--archs", "0..6", "--scores", scores, "--shard", shard,
        ];
        args.extend(["--format", format, "--out", path.to_str().unwrap()]);
        args.extend(net);
        let run = nasrank(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        path
    };
    let a = shard("merge-a.csv", "params", "1/2", "csv");
    let b = shard("merge-b.csv", "params", "2/2", "csv");
    let other = shard("merge-flops.csv", "flops", "2/2", "csv");
    let jsonl = shard("merge-b.jsonl", "params", "2/2", "jsonl");
    let torn = temp_path("merge-torn.csv");
    let text = std::fs::read_to_string(&b).unwrap();
    std::fs::write(&torn, &text[..text.len() - 5]).unwrap();
    let merged = temp_path("merge-out.csv");
    let merge = |files: &[&std::path::Path], archs: &str| {
        let _ = std::fs::remove_file(&merged);
        let mut args = vec!["merge"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        args.extend(["--archs", archs, "--out", merged.to_str().unwrap()]);
        nasrank(&args)
    };
    for (files, archs, says) in [
        (vec![&a, &other], "0..6", "score columns"),
        (vec![&a, &b], "0..4", "outside --archs"),
        (vec![&a, &torn], "0..6", "torn"),
        (vec![&a, &jsonl], "0..6", "not a nasrank results header"),
    ] {
        let files: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
        let run = merge(&files, archs);
        assert_eq!(run.status.code(), Some(2), "{says}: {}", stderr(&run));
        assert!(stderr(&run).contains(says), "{says}: {}", stderr(&run));
        assert!(!merged.exists(), "{says}: a merged file was written");
    }
    let run = merge(&[&a, &b], "0..6");
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(&merged).unwrap().lines().count(), 7);
}

/// A failure during a run (here: standard output is a full device) exits 1, not 2, with
/// the reason (issue 27: exit code 1 was never tested).
#[test]
fn a_write_failure_during_a_run_exits_1() {
    let full = std::fs::File::create("/dev/full");
    let Ok(full) = full else {
        assert!(
            !under_ci(),
            "no /dev/full under CI: exit code 1 not checked"
        );
        eprintln!("NOTICE: no /dev/full here: exit code 1 not checked");
        return;
    };
    let run = Command::new(env!("CARGO_BIN_EXE_nasrank"))
        .args(["score", "--archs", "0..3", "--scores", "params", "--quiet"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("cannot write results"),
        "{}",
        stderr(&run)
    );
}

/// One writer per results file (issue 25): a second run given the `--out` of a running one
/// exits 2 naming the holder's pid and leaves the first run's rows alone; once the first is
/// killed (SIGKILL, no clean-up), `--resume` takes the file over. Catches a lock taken
/// after the file is truncated, or one that outlives its process.
#[test]
fn a_second_run_on_the_same_out_is_refused_and_a_killed_ones_lock_is_gone() {
    let out = temp_path("locked.csv");
    let first_args = [
        "score", "--archs", "0..400", "--scores", "naswot", "--quiet",
    ];
    let mut first = spawn_until_lines(&first_args, &out, 3);
    let second = nasrank(&[
        "score",
        "--archs",
        "0..3",
        "--scores",
        "params",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    let header = std::fs::read_to_string(&out).unwrap();
    assert!(header.starts_with("index,arch,unique,naswot,"), "{header}");
    first.kill().unwrap();
    first.wait().unwrap();
    let resumed = nasrank(
        &[
            &first_args[..2],
            &["0..5", "--scores", "naswot", "--quiet", "--resume", "--out"],
            &[out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
}

/// SIGTERM, what Slurm sends at the time limit (issue 25): the run writes no further row,
/// exits 143 with the way to resume, leaves no torn line, and `--resume` then gives the
/// uninterrupted run's rows. Catches a handler that dies mid-row, exits 0, or loses rows.
#[cfg(unix)]
#[test]
fn sigterm_stops_a_run_cleanly_and_it_resumes_to_the_whole_result() {
    let args = [
        "score",
        "--archs",
        "0..200",
        "--scores",
        "naswot",
        "--channels",
        "8",
        "--cells",
        "2",
        "--batch",
        "32",
        "--quiet",
    ];
    let full = temp_path("term-full.csv");
    let run = nasrank(&[&args[..], &["--out", full.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let stopped = temp_path("term-part.csv");
    let child = spawn_until_lines(&args, &stopped, 4);
    // SAFETY: signalling a child process of this test.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("SIGTERM") && err.contains("--resume"), "{err}");
    let text = std::fs::read_to_string(&stopped).unwrap();
    assert!(text.ends_with('\n') && text.lines().count() < 201, "{text}");
    let run = nasrank(&[&args[..], &["--out", stopped.to_str().unwrap(), "--resume"]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(rows_without_seconds(&stopped), rows_without_seconds(&full));
}

/// Provenance (issue 25): `score --out` writes a manifest beside the file; `--resume` with
/// a setting that changes values (here the seed) exits 2 naming it and both values, the
/// file untouched; one that does not (workers) is allowed and reported; `merge` refuses
/// shards of different seeds and writes nothing, merges matching ones with a manifest of
/// no shard; `eval` says how its file was made. Catches resume or merge mixing two runs.
#[test]
fn provenance_refuses_to_mix_runs_and_eval_reports_it() {
    let net = ["--channels", "2", "--cells", "1", "--batch", "4", "--quiet"];
    let score = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["score", "--archs", "0..6", "--scores", "params,naswot"];
        args.extend(net);
        args.extend(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        nasrank(&args)
    };
    let file = temp_path("prov.csv");
    let _ = std::fs::remove_file(&file);
    assert!(score(&file, &[]).status.success());
    let manifest = std::path::PathBuf::from(format!("{}.provenance.json", file.display()));
    let text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(text["seeds"], serde_json::json!([0]));
    assert_eq!(text["channels"], 2);
    let before = std::fs::read(&file).unwrap();
    let run = score(&file, &["--seed", "2", "--resume"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("seeds: [0] there, [2] here"),
        "{}",
        stderr(&run)
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the file was touched"
    );
    let run = score(&file, &["--workers", "1", "--resume"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("workers was"), "{}", stderr(&run));

    let (a, b) = (temp_path("prov-a.csv"), temp_path("prov-b.csv"));
    assert!(score(&a, &["--shard", "1/2"]).status.success());
    assert!(score(&b, &["--shard", "2/2", "--seed", "3"])
        .status
        .success());
    let merged = temp_path("prov-merged.csv");
    let _ = std::fs::remove_file(&merged);
    let merge = || {
        nasrank(&[
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--archs",
            "0..6",
            "--out",
            merged.to_str().unwrap(),
        ])
    };
    let run = merge();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("seeds"), "{}", stderr(&run));
    assert!(!merged.exists());
    assert!(score(&b, &["--shard", "2/2"]).status.success());
    let run = merge();
    assert!(run.status.success(), "{}", stderr(&run));
    let merged_manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.provenance.json", merged.display())).unwrap(),
    )
    .unwrap();
    assert!(merged_manifest["shard"].is_null());

    let truth = temp_path("prov-truth.csv");
    std::fs::write(
        &truth,
        "index,cifar10_test\n0,50\n1,60\n2,70\n3,65\n4,55\n5,58\n",
    )
    .unwrap();
    let run = nasrank(&[
        "eval",
        "--scores",
        merged.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("digest"), "{}", stderr(&run));
}

/// The crash test at real size (issue 25, item 6): the paper's network (C=16, N=5, NASWOT
/// on 128 images) over 24 archs, stopped three times at different points (SIGKILL, SIGTERM,
/// SIGKILL), each time resumed, gives the uninterrupted run's rows. Catches a resume that
/// loses, repeats or reorders rows after any kind of stop.
#[cfg(unix)]
#[test]
fn a_real_size_run_stopped_three_times_resumes_to_the_uninterrupted_result() {
    let args = ["score", "--archs", "0..24", "--scores", "naswot", "--quiet"];
    let full = temp_path("crash-full.csv");
    let run = nasrank(&[&args[..], &["--out", full.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let part = temp_path("crash-part.csv");
    let resume: Vec<&str> = args.iter().copied().chain(["--resume"]).collect();
    for (k, (lines, signal)) in [(4, libc::SIGKILL), (10, libc::SIGTERM), (17, libc::SIGKILL)]
        .into_iter()
        .enumerate()
    {
        let mut child = if k == 0 {
            spawn_until_lines(&args, &part, lines)
        } else {
            spawn_more_until_lines(&resume, &part, lines)
        };
        // SAFETY: signalling a child process of this test.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        assert!(!status.success(), "stop {k}: the run was not stopped");
        let text = std::fs::read_to_string(&part).unwrap();
        assert!(
            text.lines().count() < 25,
            "stop {k}: every row was written already"
        );
    }
    let run = nasrank(&[&resume[..], &["--out", part.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(rows_without_seconds(&part), rows_without_seconds(&full));
}

/// A results file's columns by name, parsed as numbers.
fn numeric_columns(path: &std::path::Path) -> HashMap<String, Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let mut columns: HashMap<String, Vec<f64>> = HashMap::new();
    for line in lines {
        for (name, field) in header.iter().zip(line.split(',')) {
            if let Ok(v) = field.parse::<f64>() {
                columns.entry(name.clone()).or_default().push(v);
            }
        }
    }
    columns
}

/// `az_nas` is filled once the file is complete, over all of its rows (AZ-NAS's sum of
/// `ln(rank / m)`, checked here by counting); shards merged, and a run resumed, give the
/// values of one run over the same archs.
#[test]
fn az_nas_column_ranks_the_files_archs_and_merges_as_one_run() {
    let base = [
        "score",
        "--scores",
        "naswot,az_nas",
        "--channels",
        "4",
        "--cells",
        "1",
        "--batch",
        "8",
        "--quiet",
    ];
    let one = temp_path("az_one.csv");
    let run = nasrank(
        &[
            &base[..],
            &["--archs", "0..16", "--out", one.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let cols = numeric_columns(&one);
    let m = cols["az_nas"].len();
    assert_eq!(m, 16);
    // Rank by counting (1 = worst, ties averaged), each term higher-is-better; -inf ranks
    // below every finite value.
    let rank = |values: &[f64], i: usize| {
        let below = values.iter().filter(|&&v| v < values[i]).count() as f64;
        let equal = values.iter().filter(|&&v| v == values[i]).count() as f64;
        below + (equal + 1.0) / 2.0
    };
    for i in 0..m {
        let want: f64 = [
            "az_expressivity",
            "az_progressivity",
            "az_trainability",
            "flops",
        ]
        .iter()
        .map(|t| (rank(&cols[*t], i) / m as f64).ln())
        .sum();
        let got = cols["az_nas"][i];
        assert!((got - want).abs() < 1e-12, "row {i}: {got} vs {want}");
    }
    // Shards: each file ranks its own archs until merged.
    let shards: Vec<std::path::PathBuf> = (1..=2)
        .map(|i| temp_path(&format!("az_shard{i}.csv")))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let spec = format!("{}/2", i + 1);
        let args = [
            "--archs",
            "0..16",
            "--shard",
            &spec,
            "--out",
            shard.to_str().unwrap(),
        ];
        let run = nasrank(&[&base[..], &args[..]].concat());
        assert!(run.status.success(), "{}", stderr(&run));
    }
    // A shard ranks its own 8 archs: its values are not those of the same archs in one run.
    let shard = numeric_columns(&shards[0]);
    let differ = shard["index"]
        .iter()
        .zip(&shard["az_nas"])
        .filter(|&(&i, &v)| v != cols["az_nas"][i as usize])
        .count();
    assert!(
        differ > 0,
        "a shard's az_nas equals one run's on all its archs"
    );
    let merged = temp_path("az_merged.csv");
    let files: Vec<&str> = shards.iter().map(|p| p.to_str().unwrap()).collect();
    let run = nasrank(
        &[
            &["merge"],
            &files[..],
            &["--archs", "0..16", "--out", merged.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(rows_without_seconds(&merged), rows_without_seconds(&one));
    // Resumed: the first half kept, the rest scored, the column over all 16.
    let resumed = temp_path("az_resumed.csv");
    let path = resumed.to_str().unwrap();
    let run = nasrank(&[&base[..], &["--archs", "0..8", "--out", path]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let run = nasrank(&[&base[..], &["--archs", "0..16", "--out", path, "--resume"]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(rows_without_seconds(&resumed), rows_without_seconds(&one));
}

/// `eval --space`: both tables must hold archs of the space (default: the one the scores
/// file's manifest records), and the manifest must agree with the flag; exit 2 otherwise.
#[test]
fn eval_checks_both_tables_are_of_the_space() {
    let scores = temp_path("eval_space_scores.csv");
    let run = nasrank(&[
        "score",
        "--space",
        "sss",
        "--archs",
        "0,1,2",
        "--scores",
        "params",
        "--quiet",
        "--out",
        scores.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let sss_truth = temp_path("eval_space_sss.csv");
    std::fs::write(
        &sss_truth,
        "index,arch,cifar10_test\n0,8:8:8:8:8,80\n1,8:8:8:8:16,81\n2,8:8:8:8:24,82\n",
    )
    .unwrap();
    let tss_truth = temp_path("eval_space_tss.csv");
    std::fs::write(
        &tss_truth,
        "index,arch,cifar10_test\n0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|,80\n",
    )
    .unwrap();
    let eval = |truth: &std::path::Path, space: Option<&str>| {
        let mut args = vec![
            "eval",
            "--scores",
            scores.to_str().unwrap(),
            "--truth",
            truth.to_str().unwrap(),
        ];
        if let Some(space) = space {
            args.extend(["--space", space]);
        }
        nasrank(&args)
    };
    let ok = eval(&sss_truth, Some("sss"));
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("params"), "{}", stdout(&ok));
    let wrong_flag = eval(&sss_truth, Some("tss"));
    assert_eq!(wrong_flag.status.code(), Some(2));
    assert!(
        stderr(&wrong_flag).contains("not tss"),
        "{}",
        stderr(&wrong_flag)
    );
    // The manifest says sss: a table of topology-space strings is refused by default.
    let wrong_table = eval(&tss_truth, None);
    assert_eq!(wrong_table.status.code(), Some(2));
    assert!(
        stderr(&wrong_table).contains("bad sss arch string"),
        "{}",
        stderr(&wrong_table)
    );
}
