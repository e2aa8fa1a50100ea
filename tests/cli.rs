//! End-to-end runs of the `nasrank` binary.

use std::process::{Command, Output};

fn nasrank(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasrank"))
        .args(args)
        .output()
        .expect("run nasrank")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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
