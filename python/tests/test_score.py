"""nasrank.score and nasrank.Scorer: the CLI's values, shapes and dtypes, errors, the GIL,
Ctrl-C, reuse across calls and threads, progress."""

import csv
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import nasrank
from conftest import ROOT, SMALL

# Archs with a dead one (9: no path carries a value), a pair of isomorphic ones (0 and the
# later member of its class) and ordinary ones.
ARCHS = [0, 1, 9, 123, 6111]


def cli_rows(cli, archs, scores, extra=(), tmp_path=None):
    """`nasrank score` on the same options, its CSV read back."""
    out = tmp_path / "cli.csv"
    cmd = [
        str(cli), "score", "--quiet", "--archs", ",".join(map(str, archs)), "--scores", scores,
        "--channels", str(SMALL["channels"]), "--cells", str(SMALL["cells"]),
        "--batch", str(SMALL["batch"]), "--out", str(out), *extra,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def test_every_score_equals_the_cli_bit_for_bit(cli, tmp_path):
    """Every registered score through the package and through `nasrank score`, same archs
    and options: equal values (the CLI prints shortest round-trip decimals), same classes.
    Catches an option translated wrongly (seed, batch, network size, data, dedup)."""
    cols = nasrank.score(ARCHS, scores="all", frame=False, **SMALL)
    rows = cli_rows(cli, ARCHS, "all", tmp_path=tmp_path)
    names = nasrank.score_names()
    assert len(rows) == len(ARCHS)
    for k, row in enumerate(rows):
        assert int(row["index"]) == cols["index"][k]
        assert row["arch"] == cols["arch"][k]
        assert row["unique"] == cols["unique"][k]
        expected_as = -1 if row["scored_as"] == "dead" else int(row["scored_as"])
        assert cols["scored_as"][k] == expected_as
        for name in names:
            got, want = cols[name][k], float(row[name])
            assert (np.isnan(got) and np.isnan(want)) or got == want, (name, row["index"], got, want)


def test_swap_reg_takes_mu_and_sigma_as_the_cli_does(cli, tmp_path):
    """swap_mu and swap_sigma reach the regulariser: each value is swap times
    exp(-(params/1e3 - mu)^2 / sigma) computed here from its params, and equals the CLI's
    run with --swap-mu/--swap-sigma."""
    archs = [1, 123, 6111]
    cols = nasrank.score(archs, scores="swap,swap_reg,params", swap_mu=5.0, swap_sigma=20.0,
                         frame=False, **SMALL)
    theta = cols["params"] / 1e3
    want = cols["swap"] * np.exp(-((theta - 5.0) ** 2) / 20.0)
    np.testing.assert_allclose(cols["swap_reg"], want, rtol=1e-12)
    assert (cols["swap_reg"] < cols["swap"]).all()
    rows = cli_rows(cli, archs, "swap,swap_reg,params",
                    extra=("--swap-mu", "5", "--swap-sigma", "20"), tmp_path=tmp_path)
    assert [float(r["swap_reg"]) for r in rows] == list(cols["swap_reg"])


def test_seeds_data_and_no_dedup_equal_the_cli(cli, tmp_path, shared_data):
    """Several seeds (mean and _std columns), real CIFAR-10 images, every arch scored."""
    data = f"cifar10:{shared_data / 'cifar10'}"
    cols = nasrank.score(
        [0, 1, 9], scores=["naswot", "synflow"], data=data, seeds=[1, 2], dedup=False,
        frame=False, **SMALL,
    )
    rows = cli_rows(
        cli, [0, 1, 9], "naswot,synflow",
        extra=["--data", data, "--seeds", "1,2", "--no-dedup"], tmp_path=tmp_path,
    )
    for name in ["naswot", "synflow", "naswot_std", "synflow_std"]:
        want = np.array([float(r[name]) for r in rows])
        np.testing.assert_array_equal(cols[name], want)


def test_size_space_equals_the_cli(cli, tmp_path):
    """`space="sss"`: indices and `C1:..:C5` strings, every score defined there, as
    `nasrank score --space sss` gives them (8x8 synthetic images keep it fast)."""
    archs = [0, "8:24:16:40:64", 32767]
    sss_scores = [n for n in nasrank.score_names()
                  if n != "linear_regions"]
    cols = nasrank.score(archs, scores=sss_scores, space="sss", batch=4, frame=False)
    out = tmp_path / "sss.csv"
    subprocess.run(
        [str(cli), "score", "--quiet", "--space", "sss", "--archs", "0,8:24:16:40:64,32767",
         "--scores", ",".join(sss_scores), "--batch", "4", "--out", str(out)],
        check=True, capture_output=True,
    )
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["arch"] for r in rows] == ["8:8:8:8:8", "8:24:16:40:64", "64:64:64:64:64"]
    assert list(cols["arch"]) == [r["arch"] for r in rows]
    for name in sss_scores:
        got, want = cols[name], np.array([float(r[name]) for r in rows])
        assert ((np.isnan(got) & np.isnan(want)) | (got == want)).all(), name
    with pytest.raises(ValueError, match="linear_regions"):
        nasrank.Scorer("linear_regions", space="sss")
    with pytest.raises(ValueError, match="widths"):
        nasrank.score("8:8:8:8:12", space="sss")
    with pytest.raises(ValueError, match="space"):
        nasrank.Scorer("naswot", space="dss")


IMAGENET16 = ROOT / "tests" / "fixtures" / "imagenet16"


def test_imagenet16_pickles_equal_the_cli(cli, tmp_path):
    """The fake ImageNet16-120 set (tests/fixtures/imagenet16): read as the CLI reads it,
    and scored by a 120-class network."""
    data = f"imagenet16:{IMAGENET16 / 'dir'}"
    cols = nasrank.score([0, 1], scores=["naswot", "params"], data=data, frame=False, **SMALL)
    rows = cli_rows(cli, [0, 1], "naswot,params", extra=["--data", data], tmp_path=tmp_path)
    assert np.isfinite(cols["naswot"]).all()
    for name in ["naswot", "params"]:
        np.testing.assert_array_equal(cols[name], [float(r[name]) for r in rows])
    # Against CIFAR-10's 10 classes: the classifier's 16 inputs (4 channels x 4 in the last
    # stage) gain 110 outputs, each with its bias.
    cifar = nasrank.score([0, 1], scores="params", frame=False, **SMALL)
    np.testing.assert_array_equal(cols["params"] - cifar["params"], [16 * 110 + 110] * 2)


def test_bad_imagenet16_files_are_value_or_file_errors(tmp_path):
    with pytest.raises(ValueError, match="found a list"):
        nasrank.Scorer("naswot", data=f"imagenet16:{IMAGENET16 / 'bad' / 'list'}")
    with pytest.raises(FileNotFoundError, match="train_data_batch_1"):
        nasrank.Scorer("naswot", data=f"imagenet16:{tmp_path}")


def test_frame_and_dict_shapes_and_dtypes():
    pd = pytest.importorskip("pandas")
    cols = nasrank.score("0..4", scores="naswot,params", frame=False, **SMALL)
    assert list(cols) == ["index", "arch", "unique", "naswot", "params", "seconds", "scored_as"]
    assert cols["index"].dtype == np.int64 and cols["scored_as"].dtype == np.int64
    for name in ["naswot", "params", "seconds"]:
        assert cols[name].dtype == np.float64 and cols[name].shape == (4,)
    assert isinstance(cols["arch"], list) and len(cols["arch"]) == 4
    frame = nasrank.score("0..4", scores="naswot,params", **SMALL)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (4, 7)
    np.testing.assert_array_equal(frame["naswot"].to_numpy(), cols["naswot"])


def test_az_nas_ranks_the_calls_archs_and_equals_the_cli(cli, tmp_path):
    """The set score az_nas: its four terms' summed ln(rank / m) over the archs of the call
    (ranked here with numpy by counting), as the CLI writes it."""
    archs = list(range(12))
    cols = nasrank.score(archs, scores="az_nas", frame=False, **SMALL)
    terms = ["az_expressivity", "az_progressivity", "az_trainability", "flops"]
    assert list(cols)[3:8] == terms + ["az_nas"]
    m = len(archs)
    want = np.zeros(m)
    for t in terms:
        v = cols[t]
        below = (v[None, :] < v[:, None]).sum(axis=1)
        equal = (v[None, :] == v[:, None]).sum(axis=1)
        want += np.log((below + (equal + 1) / 2) / m)
    np.testing.assert_allclose(cols["az_nas"], want, rtol=0, atol=1e-12)
    rows = cli_rows(cli, archs, "az_nas", tmp_path=tmp_path)
    assert [float(r["az_nas"]) for r in rows] == list(cols["az_nas"])
    with pytest.raises(ValueError, match="set scores: az_nas"):
        nasrank.score([0], scores="az_nass", **SMALL)


def test_archs_take_every_form():
    """--archs strings, iterables of ints and of arch strings, numpy integers: the same rows."""
    arch_1 = nasrank.arch(1).arch
    forms = ["1,2", [1, 2], (i for i in [1, 2]), [arch_1, 2], np.array([1, 2])]
    results = [nasrank.score(f, scores="params", frame=False, **SMALL) for f in forms]
    for r in results:
        np.testing.assert_array_equal(r["index"], [1, 2])
        np.testing.assert_array_equal(r["params"], results[0]["params"])


def test_scorer_call_equals_many_and_is_reusable():
    scorer = nasrank.Scorer(["naswot", "synflow"], **SMALL)
    assert scorer.columns == ["naswot", "synflow"]
    many = scorer.many([1, 6111], frame=False)
    again = scorer.many([1, 6111], frame=False)
    for name in scorer.columns:
        np.testing.assert_array_equal(many[name], again[name])
    one = scorer(6111)
    assert one == {"naswot": many["naswot"][1], "synflow": many["synflow"][1]}


def test_scorer_from_several_threads_gives_the_sequential_values():
    scorer = nasrank.Scorer("naswot", **SMALL)
    archs = list(range(20, 28))
    sequential = {a: scorer(a)["naswot"] for a in archs}
    got = {}

    def work(a):
        got[a] = scorer(a)["naswot"]

    threads = [threading.Thread(target=work, args=(a,)) for a in archs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == sequential


def test_the_gil_is_released_while_scoring():
    """A Python thread counts while the main thread scores: with the GIL held for the whole
    call it could not run at all between the call's start and end."""
    scorer = nasrank.Scorer("naswot", channels=8, cells=2, batch=32)
    ticks = []
    stop = threading.Event()
    started = threading.Event()
    in_call = threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            if in_call.is_set():
                ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    started.wait()
    in_call.set()
    scorer.many("0..12", frame=False)
    in_call.clear()
    stop.set()
    t.join()
    assert len(ticks) > 10, len(ticks)


def test_ctrl_c_stops_a_long_call_with_keyboard_interrupt():
    """SIGINT during a whole-space call: KeyboardInterrupt, and the scorer still works."""
    scorer = nasrank.Scorer("naswot", **SMALL)
    # Python's own Ctrl-C handler, also where the test runs with SIGINT ignored (a
    # background job of a non-interactive shell, as CI may start it).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            scorer.many("all", dedup=False, frame=False)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert np.isfinite(scorer(1)["naswot"])


def test_progress_callback_sees_every_row_and_its_errors_propagate():
    from nasrank import _nasrank

    scorer = _nasrank.Scorer("params", **SMALL)
    events = []
    scorer.score([1, 2, 3], progress=lambda event, n: events.append((event, n)))
    assert events == [("start", 3), ("row", 1), ("row", 1), ("row", 1)]

    class Boom(Exception):
        pass

    def fail(event, n):
        if event == "row":
            raise Boom("from the callback")

    with pytest.raises(Boom):
        scorer.score([1, 2, 3], progress=fail)


def test_progress_true_draws_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    nasrank.score([1, 2], scores="params", progress=True, frame=False, **SMALL)
    assert "2/2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scores="nope"),
        dict(scores=["naswot", "nope"]),
        dict(scores=""),
        dict(batch=0),
        dict(workers=0),
        dict(channels=0),
        dict(device="tpu"),
        dict(storage="f8"),
        dict(storage="bf16"),
        dict(data="imagenet:/x"),
        dict(data="nonsense"),
        dict(scores="swap_reg", swap_mu=1.0),
        dict(scores="swap_reg", swap_mu=1.0, swap_sigma=0.0),
        dict(scores="swap", swap_mu=1.0, swap_sigma=2.0),
    ],
)
def test_bad_options_are_value_errors(kwargs):
    args = dict(scores="naswot", **SMALL)
    args.update(kwargs)
    with pytest.raises(ValueError):
        nasrank.Scorer(**args)


@pytest.mark.parametrize("archs", ["0..0", "15625", [15625], ["|x|"], [1.5], [], "no-such-file"])
def test_bad_archs_are_value_errors(archs):
    with pytest.raises(ValueError):
        nasrank.score(archs, scores="params", **SMALL)


def test_missing_data_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nasrank.Scorer("naswot", data=f"cifar10:{tmp_path / 'absent'}")


def test_a_truncated_data_file_is_a_value_error(tmp_path):
    """A CIFAR-10 file cut mid-record: a ValueError that says so, never a crash."""
    record = 1 + 3 * 32 * 32
    (tmp_path / "train.bin").write_bytes(bytes(record * 3 + 100))
    with pytest.raises(ValueError, match="truncated"):
        nasrank.Scorer("naswot", data=f"cifar10:{tmp_path / 'train.bin'}")


def test_a_device_that_cannot_be_had_is_a_runtime_error():
    """This package is built without the `cuda` feature (or the machine has no GPU)."""
    with pytest.raises(RuntimeError, match="cuda"):
        nasrank.Scorer("naswot", device="cuda:7")


def test_a_panic_becomes_an_exception():
    from nasrank import _nasrank

    with pytest.raises(BaseException) as info:
        _nasrank._panic_for_test()
    assert type(info.value).__name__ == "PanicException"
    assert "on purpose" in str(info.value)
