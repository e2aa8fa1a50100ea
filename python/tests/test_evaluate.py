"""nasrank.evaluate against `nasrank eval --json` on the same files."""

import csv
import json
import subprocess

import numpy as np
import pytest

import nasrank
from conftest import SMALL


def dev_indices(shared_data, n):
    with open(shared_data / "nb201" / "accuracy_dev.csv", newline="") as f:
        return [int(r["index"]) for r, _ in zip(csv.DictReader(f), range(n))]


def test_evaluate_equals_the_cli(cli, shared_data, tmp_path):
    """The same scores evaluated by the CLI from its results file and by the package from
    the DataFrame `score` returns, from that file's path and from a dict: equal tables.
    Catches a float turned into text with too few digits, a lost NaN, a wrong join."""
    truth = shared_data / "nb201" / "accuracy_dev.csv"
    archs = dev_indices(shared_data, 25)
    out = tmp_path / "scores.csv"
    subprocess.run(
        [str(cli), "score", "--quiet", "--archs", ",".join(map(str, archs)),
         "--scores", "naswot,ntk,synflow", "--channels", "4", "--cells", "1", "--batch", "8",
         "--out", str(out)],
        check=True, capture_output=True,
    )
    cli_rows = [json.loads(line) for line in subprocess.run(
        [str(cli), "eval", "--scores", str(out), "--truth", str(truth), "--json",
         "--ensemble", "naswot,synflow"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()]
    frame = nasrank.score(archs, scores="naswot,ntk,synflow", **SMALL)
    for scores in [frame, str(out), nasrank.score(archs, scores="naswot,ntk,synflow", frame=False, **SMALL)]:
        table = nasrank.evaluate(scores, truth, ensemble=["naswot", "synflow"], frame=False)
        assert table["score"] == [r["score"] for r in cli_rows]
        for key in ["archs", "spearman", "kendall", "top1_accuracy", "top10_mean_accuracy"]:
            np.testing.assert_array_equal(np.array(table[key], dtype=float),
                                          np.array([r[key] for r in cli_rows], dtype=float))
    # AZ-NAS's log-rank aggregation, through both front ends.
    cli_log = [json.loads(line) for line in subprocess.run(
        [str(cli), "eval", "--scores", str(out), "--truth", str(truth), "--json",
         "--ensemble", "naswot,ntk,synflow", "--ensemble-method", "log-rank"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()][-1]
    row = nasrank.evaluate(frame, truth, ensemble=["naswot", "ntk", "synflow"],
                           ensemble_method="log-rank", frame=False)
    assert row["score"][-1] == cli_log["score"] == "log_rank(naswot+ntk+synflow)"
    assert row["spearman"][-1] == cli_log["spearman"]


def test_evaluate_errors(shared_data):
    truth = shared_data / "nb201" / "accuracy_dev.csv"
    scores = {"index": [48, 50, 52, 53], "naswot": [1.0, 2.0, 3.0, 4.0]}
    with pytest.raises(ValueError, match="no column"):
        nasrank.evaluate(scores, truth, metric="nope")
    with pytest.raises(ValueError, match="ensemble"):
        nasrank.evaluate(scores, truth, ensemble=["synflow"])
    with pytest.raises(FileNotFoundError):
        nasrank.evaluate(scores, truth.parent / "absent.csv")
    with pytest.raises(ValueError):
        nasrank.evaluate(42, truth)
    with pytest.raises(ValueError, match="log-rank"):
        nasrank.evaluate(scores, truth, ensemble=["naswot"], ensemble_method="mean")
