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


# ------------------------------------------------------------------ size space (sss)

SSS_NET = dict(batch=4, seed=5)
SSS_NET_ARGS = ["--batch", "4", "--seed", "5"]


def cli_sss_json(cli, args):
    out = subprocess.run([str(cli), "search", *args, "--space", "sss", *SSS_NET_ARGS,
                          "--quiet", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_sss_searches_report_what_the_cli_reports(cli, shared_data):
    """random, evolution and topk on the size space with its dev table: equal reports, with
    size-space arch strings. Catches `space` dropped or a pool/truth read as topology-space
    indices."""
    dev = str(shared_data / "nats_sss" / "accuracy_dev.csv")
    cases = [
        (nasrank.search.random, dict(samples=4, runs=2, pool=dev, truth=dev),
         ["random", "-n", "4", "--runs", "2", "--from", dev, "--truth", dev]),
        (nasrank.search.evolution, dict(population=3, tournament=2, cycles=5, truth=dev),
         ["evolution", "--population", "3", "--tournament", "2", "--cycles", "5",
          "--truth", dev]),
        (nasrank.search.topk, dict(samples=4, k=2, truth=dev, score="naswot"),
         ["topk", "-n", "4", "--k", "2", "--truth", dev, "--score", "naswot"]),
    ]
    for function, kwargs, args in cases:
        report = function(**kwargs, **SSS_NET, space="sss")
        assert report == cli_sss_json(cli, args), args[0]
        assert report["space"] == "sss"
        chosen = report.get("runs") or report.get("kept") or [report["best"]]
        for a in chosen:
            assert nasrank.arch(a["arch"], space="sss").index == a["index"]
    # topk without a pool drew from the dev table's archs, so the pick has an accuracy.
    topk = nasrank.search.topk(samples=4, k=2, truth=dev, score="naswot", **SSS_NET,
                               space="sss")
    assert topk["pool_source"] == "truth" and topk["pool"] == 2000
    assert topk["pick"]["accuracy"] is not None


def test_sss_truth_by_arch_strings_and_params_pick():
    """A truth table keyed by size-space arch strings; with ``score="params"`` the kept archs
    are the largest (spec A5: params grow with every width), the pick the most accurate of
    them."""
    chain = ["8:8:8:8:8", "16:8:8:8:8", "16:16:8:8:8", "16:16:16:8:8"]
    truth = {"arch": chain, "cifar10_test": [99.0, 80.0, 91.0, 85.0]}
    r = nasrank.search.topk(samples=4, k=2, truth=truth, score="params", space="sss")
    assert [a["arch"] for a in r["kept"]] == ["16:16:16:8:8", "16:16:8:8:8"]
    assert r["pick"]["arch"] == "16:16:8:8:8" and r["pick"]["accuracy"] == 91.0


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: nasrank.search.prune(space="sss"), "topology space's supernet only"),
        (lambda: nasrank.search.random(space="sss", score="linear_regions"),
         "not defined on the sss"),
        (lambda: nasrank.search.evolution(space="sss", score="linear_regions"),
         "not defined on the sss"),
        (lambda: nasrank.search.random(space="sss", channels=3), "--channels and --cells"),
        (lambda: nasrank.search.random(space="sss", pool=["8:8:8:8:12"]),
         "width 12 is not allowed"),
        (lambda: nasrank.search.random(space="sss", pool=[40000]), "out of range"),
        (lambda: nasrank.search.random(space="sss", truth={"arch": [ARCH_1],
                                                           "cifar10_test": [1.0]}),
         "bad sss arch string"),
        (lambda: nasrank.search.random(space="xyz"), "unknown space"),
    ],
)
def test_bad_sss_searches_are_value_errors(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


ARCH_1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_swap_reg_search_takes_mu_and_sigma_and_reports_them():
    """The regulariser reaches the search: the report records it, the chosen arch's score is
    its swap_reg from nasrank.score with the same mu and sigma, and mu/sigma without
    swap_reg as the score is a ValueError."""
    opts = dict(channels=3, cells=1, batch=8, seed=5)
    report = nasrank.search.random(samples=3, score="swap_reg", swap_mu=5.0, swap_sigma=20.0,
                                   **opts)
    assert report["swap_regularizer"] == "mu=5 sigma=20"
    best = report["runs"][0]
    scored = nasrank.score([best["index"]], scores="swap_reg", swap_mu=5.0, swap_sigma=20.0,
                           frame=False, **opts)
    assert scored["swap_reg"][0] == best["score"]
    with pytest.raises(ValueError):
        nasrank.search.random(samples=3, score="naswot", swap_mu=5.0, swap_sigma=20.0, **opts)
