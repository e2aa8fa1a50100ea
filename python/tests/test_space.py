"""nasrank.arch and nasrank.space against the benchmark's own facts (the spec's anchor
values and the oracle file ../shared/data/nb201/archs.csv)."""

import csv

import numpy as np
import pytest

import nasrank

ARCH_1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_arch_by_index_and_by_string_is_the_benchmarks_arch_1():
    """../shared/spec/nb201.md: index 1 is ARCH_1 with 802,426 params and 113.95137 M FLOPs.
    Catches a wrong index order, a wrong field, or a string lookup that disagrees with the
    index lookup."""
    by_index = nasrank.arch(1)
    by_string = nasrank.arch(ARCH_1)
    assert by_index == by_string
    assert by_index.index == 1
    assert by_index.arch == ARCH_1
    assert by_index.params == 802_426
    assert by_index.flops == 113_951_370
    assert by_index.dead is False


def test_known_indices_from_the_spec():
    assert nasrank.arch(9).arch == "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    assert nasrank.arch(123).arch == "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"


@pytest.mark.parametrize(
    "bad",
    [15625, -1, "|nor_conv_3x3~0|+|conv~0|none~1|+|none~0|none~1|none~2|", "|x|", "abc", 1.5, None],
)
def test_a_bad_arch_is_a_value_error(bad):
    with pytest.raises(ValueError):
        nasrank.arch(bad)


def test_space_matches_the_oracle_file(shared_data):
    """Every index, arch string and isomorphism key equal to archs.csv; 6,466 classes whose
    sizes add up; 341 dead archs (the spec's counts)."""
    cols = nasrank.space(frame=False)
    with open(shared_data / "nb201" / "archs.csv", newline="") as f:
        oracle = list(csv.DictReader(f))
    assert len(oracle) == nasrank.NUM_ARCHS == 15625
    np.testing.assert_array_equal(cols["index"], np.arange(15625))
    assert cols["arch"] == [r["arch"] for r in oracle]
    assert cols["unique"] == [r["unique"] for r in oracle]
    assert len(set(cols["unique"])) == 6466
    assert cols["class_id"].max() + 1 == 6466
    _, first, counts = np.unique(cols["class_id"], return_index=True, return_counts=True)
    np.testing.assert_array_equal(cols["class_size"][first], counts)
    assert int(cols["dead"].sum()) == 341


def test_space_dtypes_and_frame():
    cols = nasrank.space(frame=False)
    for name in ["index", "class_id", "class_size", "params", "flops"]:
        assert cols[name].dtype == np.int64, name
        assert cols[name].shape == (15625,)
    assert cols["dead"].dtype == np.bool_
    assert cols["params"][1] == 802_426
    pd = pytest.importorskip("pandas")
    frame = nasrank.space()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(cols)
    assert frame.shape == (15625, 8)


# ------------------------------------------------------------------ size space (sss)

# ../shared/spec/nats_sss.md A1: widths, five positions, first position most significant.
WIDTHS = [8, 16, 24, 32, 40, 48, 56, 64]


def spec_string(index):
    return ":".join(str(WIDTHS[(index >> (3 * (4 - k))) & 7]) for k in range(5))


@pytest.mark.parametrize(
    "index, text, params, flops",
    [
        # Spec A5, CIFAR-10 (params and FLOPs in units: the spec's millions x 1e6).
        (0, "8:8:8:8:8", 11_714, 4_481_114),
        (11, "8:8:8:16:32", 49_202, 6_840_650),
        (12, "8:8:8:16:40", 67_378, 7_991_706),
        (284, "8:8:40:32:40", 144_834, 21_827_994),
        (32767, "64:64:64:64:64", 713_674, 274_399_882),
    ],
)
def test_sss_arch_by_index_and_by_string_matches_the_spec(index, text, params, flops):
    by_index = nasrank.arch(index, space="sss")
    by_string = nasrank.arch(text, space="sss")
    assert by_index == by_string
    assert isinstance(by_index, nasrank.SizeArch)
    assert (by_index.index, by_index.arch, by_index.space) == (index, text, "sss")
    assert by_index.widths == tuple(int(w) for w in text.split(":"))
    assert (by_index.params, by_index.flops) == (params, flops)
    assert (by_index.unique, by_index.class_size) == (text, 1)


def test_the_topology_space_is_still_the_default():
    assert nasrank.arch(12) == nasrank.arch(12, space="tss")
    assert nasrank.arch(12).space == "tss"
    assert nasrank.arch(12).arch != nasrank.arch(12, space="sss").arch


@pytest.mark.parametrize(
    "bad, needle",
    [
        (32768, "out of range"),
        (-1, "out of range"),
        ("8:8:8:8", "expected 5 widths"),
        ("8:8:8:8:12", "width 12 is not allowed"),
        ("8:8:8:8:08", "width 08 is not allowed"),
        ("8:8:x:8:8", "not a number"),
        (ARCH_1, "bad sss arch string"),
        ("abc", "bad sss arch string"),
        (1.5, "expected an index or an arch string"),
    ],
)
def test_a_bad_sss_arch_is_a_value_error_with_the_engines_message(bad, needle):
    with pytest.raises(ValueError, match=needle):
        nasrank.arch(bad, space="sss")


def test_an_unknown_space_is_a_value_error():
    with pytest.raises(ValueError, match="unknown space"):
        nasrank.arch(1, space="nb301")
    with pytest.raises(ValueError, match="unknown space"):
        nasrank.space(space="nb301")


def test_sss_space_columns_follow_the_spec_index_order():
    cols = nasrank.space(space="sss", frame=False)
    n = 32768
    np.testing.assert_array_equal(cols["index"], np.arange(n))
    assert cols["arch"] == [spec_string(i) for i in range(n)]
    assert cols["unique"] == cols["arch"]
    np.testing.assert_array_equal(cols["class_id"], np.arange(n))
    assert (cols["class_size"] == 1).all()
    for k in range(5):
        want = [WIDTHS[(i >> (3 * (4 - k))) & 7] for i in range(n)]
        np.testing.assert_array_equal(cols[f"c{k + 1}"], want)
    for name in ["index", "class_id", "class_size", "params", "flops", "c1"]:
        assert cols[name].dtype == np.int64, name
    # Spec A5: the smallest and largest networks are indices 0 and 32767.
    assert cols["params"].argmin() == 0 and cols["params"].argmax() == n - 1
    assert cols["flops"][12] == 7_991_706
    pd = pytest.importorskip("pandas")
    frame = nasrank.space(space="sss")
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (n, 12)


def test_sss_params_equal_the_dev_tables(shared_data):
    """../shared/data/nats_sss/accuracy_dev.csv holds the benchmark's params (10-class
    head) of 2,000 archs: nasrank.space and nasrank.arch give the same, at the same index
    and string."""
    cols = nasrank.space(space="sss", frame=False)
    with open(shared_data / "nats_sss" / "accuracy_dev.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2000
    for r in rows:
        i = int(r["index"])
        assert cols["arch"][i] == r["arch"]
        assert cols["params"][i] == int(r["params"])
    a = nasrank.arch(rows[0]["arch"], space="sss")
    assert a.params == int(rows[0]["params"])
