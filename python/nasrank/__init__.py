"""nasrank: training-free scores of NAS-Bench-201 / NATS-Bench architectures on a Rust engine.

The same engine and run layer as the ``nasrank`` command: the values are the CLI's, bit for
bit, for the same archs and options.

>>> import nasrank
>>> nasrank.arch(6111).params
1073466
>>> nasrank.arch(12, space="sss").arch
'8:8:8:16:40'
>>> df = nasrank.score(range(10), scores=["naswot", "synflow"])   # doctest: +SKIP
>>> scorer = nasrank.Scorer(["naswot"], data="cifar10:../shared/data/cifar10")  # doctest: +SKIP
>>> scorer(6111)["naswot"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

from . import _nasrank
from ._nasrank import NUM_ARCHS

__all__ = ["Arch", "Scorer", "SizeArch", "arch", "evaluate", "score", "score_names", "search",
           "space", "NUM_ARCHS"]

__version__ = "0.1.0"

ArchLike = Union[int, str]
Archs = Union[str, int, Iterable[ArchLike]]
Scores = Union[str, Sequence[str]]


@dataclass(frozen=True)
class Arch:
    """One NAS-Bench-201 architecture: what the engine knows without running it.

    ``params`` and ``flops`` count the benchmark's CIFAR-10 network (C=16, N=5; FLOPs as
    multiply-adds per image, as NAS-Bench-201 reports them); ``unique`` is the isomorphism
    key (archs sharing it compute the same function) and ``class_size`` how many archs share
    it; ``dead`` says no path from input to output carries a non-zero value.
    """

    index: int
    arch: str
    unique: str
    class_size: int
    dead: bool
    params: int
    flops: int
    relu_units: int
    space: str = "tss"


@dataclass(frozen=True)
class SizeArch:
    """One NATS-Bench size-space architecture (``space="sss"``): five widths
    ``C1:C2:C3:C4:C5``, each one of 8, 16, ..., 64, around one fixed cell per stage.

    ``params`` and ``flops`` count the benchmark's CIFAR-10 network as NATS-Bench records
    them (FLOPs as multiply-adds per image); ``widths`` are ``(C1, ..., C5)``. No two
    size-space archs compute the same function, so ``unique`` is the arch string and
    ``class_size`` is 1.
    """

    index: int
    arch: str
    unique: str
    class_size: int
    params: int
    flops: int
    widths: Tuple[int, ...]
    space: str = "sss"


def arch(a: ArchLike, space: str = "tss") -> Union[Arch, SizeArch]:
    """The arch of ``space`` with benchmark index ``a`` or arch string ``a``: an ``Arch``
    for ``space="tss"`` (NAS-Bench-201 / NATS-Bench topology, indices 0..15624), a
    ``SizeArch`` for ``space="sss"`` (NATS-Bench size, indices 0..32767, strings
    ``"C1:C2:C3:C4:C5"``, index = the widths' base-8 digits, first position most
    significant).

    >>> nasrank.arch("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|").index
    1
    >>> nasrank.arch("8:8:8:16:40", space="sss").index
    12

    Raises ``ValueError`` for an index outside the space, a malformed arch string (the
    message says what is allowed) or an unknown space.
    """
    info = _nasrank.arch_info(a, space=space)
    if info["space"] == "sss":
        info["widths"] = tuple(info["widths"])
        return SizeArch(**info)
    return Arch(**info)


def score_names() -> list:
    """Every score nasrank computes, in the order of ``scores="all"``."""
    return _nasrank.score_names()


def _frame(columns: Dict[str, Any], frame: Optional[bool]):
    """A pandas DataFrame of ``columns`` when pandas is importable (or ``frame=True``),
    else the dict of NumPy arrays itself (``frame=False``)."""
    if frame is False:
        return columns
    try:
        import pandas as pd
    except ImportError:
        if frame:
            raise
        return columns
    return pd.DataFrame(columns)


def space(space: str = "tss", frame: Optional[bool] = None):
    """Every arch of ``space`` as columns, in index order, the counts for the benchmark's
    CIFAR-10 network.

    - ``space="tss"``: the 15,625 topology-space archs: ``index``, ``arch``, ``unique``,
      ``class_id`` (isomorphism classes numbered by first appearance), ``class_size``,
      ``dead``, ``params``, ``flops``.
    - ``space="sss"``: the 32,768 size-space archs: ``index``, ``arch``, ``unique`` (the
      arch string), ``class_id`` (the index: every arch its own class), ``class_size``
      (1), ``params``, ``flops``, and the widths ``c1`` .. ``c5``.

    A pandas DataFrame when pandas is importable, else a dict of NumPy arrays (``arch`` and
    ``unique`` as lists of str); ``frame=True/False`` forces one. Raises ``ValueError`` for
    an unknown space.
    """
    return _frame(_nasrank.space_columns(space=space), frame)


class _Bar:
    """``progress(event, n)`` for the engine, drawn with tqdm."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bar = None

    def __call__(self, event: str, n: int) -> None:
        if event == "start":
            self._bar = self._tqdm(total=n, unit="arch")
        elif self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _progress_bar(progress: bool) -> Optional[_Bar]:
    if not progress:
        return None
    try:
        return _Bar()
    except ImportError:
        warnings.warn("progress=True needs tqdm (pip install tqdm): no progress shown", stacklevel=3)
        return None


class Scorer:
    """Scores loaded once (data read, minibatches drawn, backend picked) for many calls,
    e.g. inside a search loop: ``scorer(arch)`` for one arch, ``scorer.many(archs)`` for
    several. The options are those of ``nasrank score``:

    - ``scores``: names (``["naswot", "synflow"]``), a comma list, or ``"all"``.
    - ``data``: ``"synthetic"`` (Gaussian inputs of CIFAR-10's shape), ``"cifar10:PATH"``,
      ``"cifar100:PATH"`` or ``"imagenet16:PATH"`` (16x16 inputs, 120 classes).
    - ``seed``: the weights' and the minibatch's seed; ``seeds``: several, each score then
      the mean over them with a ``NAME_std`` column.
    - ``batch``: one minibatch size for every score (default: each score's paper batch).
    - ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:K"``, ``"cuda:all"``, ``"auto"``, ``"emu"``;
      ``workers``: archs in flight; ``storage``: ``"f32"``, ``"bf16"``, ``"f16"`` (CUDA).
    - ``channels``, ``cells``: the network (NAS-Bench-201: 16 and 5).
    - ``space``: ``"tss"`` (NAS-Bench-201's topology space) or ``"sss"`` (NATS-Bench's size
      space: archs are indices 0..32767 or ``"C1:C2:C3:C4:C5"`` strings; ``linear_regions``
      and other ``channels``/``cells`` are refused there).
    - ``swap_mu``, ``swap_sigma``: ``swap_reg``'s regulariser
      ``exp(-(params/1e3 - swap_mu)**2 / swap_sigma)``, both or neither (default: the
      space's, docs/SCORES.md).

    The GIL is released while scoring; calls from several threads take turns. Ctrl-C stops
    a call with ``KeyboardInterrupt``. Raises ``ValueError`` for bad options,
    ``FileNotFoundError`` for missing data, ``RuntimeError`` for a device that cannot be had.

    >>> scorer = nasrank.Scorer(["naswot", "synflow"])
    >>> sorted(scorer(6111))
    ['naswot', 'synflow']
    """

    def __init__(
        self,
        scores: Scores = "naswot",
        data: str = "synthetic",
        seed: int = 0,
        seeds: Optional[Sequence[int]] = None,
        batch: Optional[int] = None,
        device: str = "cpu",
        workers: Optional[int] = None,
        storage: str = "f32",
        channels: int = 16,
        cells: int = 5,
        space: str = "tss",
        swap_mu: Optional[float] = None,
        swap_sigma: Optional[float] = None,
    ) -> None:
        self._scorer = _nasrank.Scorer(
            scores,
            data=data,
            seed=seed,
            seeds=None if seeds is None else list(seeds),
            batch=batch,
            device=device,
            workers=workers,
            storage=storage,
            channels=channels,
            cells=cells,
            space=space,
            swap_mu=swap_mu,
            swap_sigma=swap_sigma,
        )

    @property
    def columns(self) -> list:
        """The score columns of each result, in order."""
        return self._scorer.columns

    def __call__(self, a: ArchLike) -> Dict[str, float]:
        """One arch's scores, ``{name: value}``."""
        columns = self._scorer.score([a])
        return {name: float(columns[name][0]) for name in self.columns}

    def many(
        self,
        archs: Archs,
        dedup: bool = True,
        progress: bool = False,
        frame: Optional[bool] = None,
    ):
        """The rows ``nasrank score`` writes for ``archs``, as columns: ``index``, ``arch``,
        ``unique``, one column per score, ``seconds``, ``scored_as`` (the index of the arch
        whose scoring gave the values; -1 for a dead arch).

        ``archs`` takes what ``--archs`` takes (``"all"``, ``"0..100"``, ``"1,2,3"``, an arch
        string, a file of them) or any iterable of indices and arch strings. ``dedup``:
        isomorphic archs are scored once. A DataFrame when pandas is importable, else a dict
        of NumPy arrays (``frame`` forces one).
        """
        bar = _progress_bar(progress)
        try:
            columns = self._scorer.score(archs, dedup=dedup, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        return _frame(columns, frame)


def score(
    archs: Archs,
    scores: Scores = "naswot",
    data: str = "synthetic",
    batch: Optional[int] = None,
    seed: int = 0,
    device: str = "cpu",
    workers: Optional[int] = None,
    dedup: bool = True,
    progress: bool = False,
    seeds: Optional[Sequence[int]] = None,
    storage: str = "f32",
    channels: int = 16,
    cells: int = 5,
    frame: Optional[bool] = None,
    space: str = "tss",
    swap_mu: Optional[float] = None,
    swap_sigma: Optional[float] = None,
):
    """Scores ``archs`` once: ``Scorer(...).many(archs)`` (see both for the options).

    >>> df = nasrank.score("0..20", scores=["naswot", "synflow"])     # doctest: +SKIP
    >>> df.sort_values("naswot").tail(3)                              # doctest: +SKIP
    """
    scorer = Scorer(
        scores,
        data=data,
        seed=seed,
        seeds=seeds,
        batch=batch,
        device=device,
        workers=workers,
        storage=storage,
        channels=channels,
        cells=cells,
        space=space,
        swap_mu=swap_mu,
        swap_sigma=swap_sigma,
    )
    return scorer.many(archs, dedup=dedup, progress=progress, frame=frame)


def _text(value: Any) -> str:
    """A table field as text, floats in shortest round-trip form (as the CLI writes them)."""
    if isinstance(value, float):  # also NumPy's float64, whose repr names its type
        return repr(float(value))
    if hasattr(value, "item"):  # a NumPy scalar
        return _text(value.item())
    return str(value)


def _table(obj: Any, what: str):
    """(header, rows of text) of a CSV path, a pandas DataFrame or a dict of columns."""
    import csv
    import os

    if isinstance(obj, (str, os.PathLike)):
        with open(obj, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise ValueError(f"{what} {os.fspath(obj)}: empty file")
        return rows[0], rows[1:]
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # a pandas DataFrame
        obj = {name: obj[name].tolist() for name in obj.columns}
    if isinstance(obj, dict):
        header = [str(name) for name in obj]
        columns = [list(values) for values in obj.values()]
        if len({len(c) for c in columns}) > 1:
            raise ValueError(f"{what}: columns of different lengths")
        rows = [[_text(v) for v in row] for row in zip(*columns)]
        return header, rows
    raise ValueError(f"{what}: expected a CSV path, a pandas DataFrame or a dict of columns")


def evaluate(
    scores: Any,
    truth: Any,
    metric: str = "cifar10_test",
    ensemble: Optional[Sequence[str]] = None,
    frame: Optional[bool] = None,
    ensemble_method: str = "rank-sum",
):
    """The table ``nasrank eval`` prints: Spearman, Kendall tau-b, the accuracy of the arch
    each score ranks first and the mean of its top ten, for every score column of
    ``scores`` against ``truth``'s ``metric``.

    ``scores``: what ``score`` returns (a DataFrame or dict), or a results file's path;
    ``truth``: an accuracy table (path, DataFrame or dict) with an ``index`` or ``arch``
    column, e.g. ``../shared/data/nb201/accuracy_dev.csv``. Archs are joined on ``index``
    (else ``arch``); a score whose direction is "lower is better" (``ntk``) is negated, NaN
    ranks last. ``ensemble``: score columns whose ranks are combined into one more row,
    label-free: ``ensemble_method="rank-sum"`` sums them, ``"log-rank"`` sums
    ``ln(rank / archs)`` as AZ-NAS aggregates its proxies.

    >>> df = nasrank.score(truth["index"], scores=["naswot", "synflow"])   # doctest: +SKIP
    >>> nasrank.evaluate(df, truth, ensemble=["naswot", "synflow"])         # doctest: +SKIP
    """
    rows = _nasrank.evaluate_tables(
        _table(scores, "scores"),
        _table(truth, "truth"),
        metric=metric,
        ensemble=None if ensemble is None else list(ensemble),
        ensemble_method=ensemble_method,
    )
    columns = {
        name: [r[name] for r in rows]
        for name in ["score", "archs", "spearman", "kendall", "top1_accuracy", "top10_mean_accuracy"]
    }
    return _frame(columns, frame)


from . import search  # noqa: E402  (the search protocols, over the helpers above)
