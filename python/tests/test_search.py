"""nasrank.search against `nasrank search --json` with the same options."""

import json
import subprocess

import pytest

import nasrank

NET = dict(channels=3, cells=1, batch=8, seed=5)
NET_ARGS = ["--channels", "3", "--cells", "1", "--batch", "8", "--seed", "5"]


def cli_json(cli, args):
    out = subprocess.run([str(cli), "search", *args, *NET_ARGS, "--quiet", "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_every_strategy_reports_what_the_cli_reports(cli, shared_data):
    """The four protocols with a truth table and a pool: equal reports (chosen archs,
    scores, accuracies, counts). Catches an option translated wrongly or dropped."""
    dev = str(shared_data / "nb201" / "accuracy_dev.csv")
    cases = [
        (nasrank.search.random, dict(samples=12, runs=2, pool=dev, truth=dev),
         ["random", "-n", "12", "--runs", "2", "--from", dev, "--truth", dev]),
        (nasrank.search.evolution, dict(population=4, tournament=2, cycles=10, truth=dev),
         ["evolution", "--population", "4", "--tournament", "2", "--cycles", "10", "--truth", dev]),
        (nasrank.search.topk, dict(samples=12, k=3, pool=dev, truth=dev, score="naswot"),
         ["topk", "-n", "12", "--k", "3", "--from", dev, "--truth", dev, "--score", "naswot"]),
        (nasrank.search.prune, dict(repeats=1, lr_batches=1, lr_batch_size=8, truth=dev),
         ["prune", "--repeats", "1", "--lr-batches", "1", "--lr-batch-size", "8", "--truth", dev]),
    ]
    for function, kwargs, args in cases:
        assert function(**kwargs, **NET) == cli_json(cli, args), args[0]


def test_pools_and_truth_take_frames_and_lists(shared_data):
    pd = pytest.importorskip("pandas")
    dev = shared_data / "nb201" / "accuracy_dev.csv"
    frame = pd.read_csv(dev)
    from_path = nasrank.search.random(samples=10, pool=str(dev), truth=str(dev), **NET)
    from_frame = nasrank.search.random(samples=10, pool=frame, truth=frame, **NET)
    from_list = nasrank.search.random(samples=10, pool=list(frame["index"]), truth=frame, **NET)
    assert from_path == from_frame == from_list
    assert from_path["runs"][0]["accuracy"] is not None


def test_scores_from_skips_known_archs_and_keeps_the_result():
    """Scores computed once with `nasrank.score` are not computed again by the search."""
    pool = list(range(40))
    fresh = nasrank.search.random(samples=20, pool=pool, **NET)
    known = nasrank.score(pool, scores="naswot", frame=False, **NET)
    again = nasrank.search.random(samples=20, pool=pool, scores_from=known, **NET)
    assert again["runs"] == fresh["runs"]
    assert fresh["scored"] > 0 and again["scored"] == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: nasrank.search.topk(samples=5, k=9),
        lambda: nasrank.search.random(samples=0),
        lambda: nasrank.search.random(samples=20000),
        lambda: nasrank.search.prune(score="naswot"),
        lambda: nasrank.search.random(score="nope"),
        lambda: nasrank.search.random(truth={"index": [1]}, metric="cifar10_test"),
    ],
)
def test_bad_searches_are_value_errors(call):
    with pytest.raises(ValueError):
        call()
