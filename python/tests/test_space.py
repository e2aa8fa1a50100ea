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
