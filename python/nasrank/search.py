"""The search protocols of ``nasrank search``: NASWOT's random search, regularized
evolution, KNAS's top-k and TE-NAS's supernet pruning, each returning the report that
``nasrank search --json`` prints, as a dict.

>>> dev = "../shared/data/nb201/accuracy_dev.csv"
>>> r = nasrank.search.random(samples=100, runs=10, truth=dev, pool=dev)   # doctest: +SKIP
>>> r["mean_accuracy"], r["runs"][0]["arch"]                               # doctest: +SKIP

Options common to all four, as for ``nasrank search``: ``space`` (``"tss"``, the
default, or ``"sss"``: the NATS-Bench size space, archs ``"C1:C2:C3:C4:C5"``; evolution
then mutates one width; ``prune`` is defined on the topology space only and raises
``ValueError`` for ``"sss"``, as do the scores defined there only), ``score`` (default
naswot; mgm for topk; prune takes ntk or ntk_exact), ``data``, ``batch``, ``seed``,
``device``, ``channels``, ``cells`` (default 16 and 5; 3 and 1 for prune; topology space
only), ``truth`` (an accuracy table of the space: a path, DataFrame or dict with an
``index`` or ``arch`` column) with ``metric``, ``scores_from`` (scores computed already:
what ``nasrank.score`` returned or a results file; archs found there are not scored again)
and ``progress`` (a tqdm bar). ``random``, ``evolution`` and ``topk`` also take
``swap_mu``, ``swap_sigma`` when the score is ``swap_reg`` (as ``nasrank.score``; the report
then has ``swap_regularizer``). Every report has ``space``. Errors are those of
``nasrank.score``; Ctrl-C stops a search with ``KeyboardInterrupt``.

>>> sss = "../shared/data/nats_sss/accuracy_dev.csv"
>>> r = nasrank.search.topk(space="sss", truth=sss)                        # doctest: +SKIP
>>> r["pool_source"], r["pick"]["arch"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from . import _nasrank

__all__ = ["random", "evolution", "topk", "prune"]


def _pairs(table: Any, column: str, what: str, space: str) -> List[Tuple[int, float]]:
    """(benchmark index in ``space``, value of ``column``) for every row of a table with an
    ``index`` or ``arch`` column; rows whose value is not a number are left out."""
    from . import _table, arch

    header, rows = _table(table, what)
    if column not in header:
        raise ValueError(f"{what} has no column {column!r}; it has {', '.join(header)}")
    col = header.index(column)
    if "index" in header:
        key = header.index("index")
        index_of = int
    elif "arch" in header:
        key = header.index("arch")
        index_of = lambda text: arch(text, space=space).index  # noqa: E731
    else:
        raise ValueError(f"{what} has neither an `index` nor an `arch` column")
    out = []
    for row in rows:
        try:
            value = float(row[col])
        except ValueError:
            continue
        out.append((index_of(row[key]), value))
    return out


def _pool(pool: Any) -> Any:
    """A DataFrame's archs by its ``index`` (else ``arch``) column; anything else as given."""
    if hasattr(pool, "columns"):
        name = "index" if "index" in pool.columns else "arch"
        return list(pool[name])
    return pool


def _run(strategy: str, score: Optional[str], truth: Any, metric: str, scores_from: Any,
         progress: bool, space: str, **options: Any) -> Dict[str, Any]:
    from . import _progress_bar

    name = score or _nasrank.default_score(strategy)
    truth_pairs = None if truth is None else _pairs(truth, metric, "truth", space)
    known = None if scores_from is None else _pairs(scores_from, name, "scores_from", space)
    if options.get("pool") is not None:
        options["pool"] = _pool(options["pool"])
    bar = _progress_bar(progress)
    try:
        text = _nasrank.search_report(strategy, score=score, truth=truth_pairs, metric=metric,
                                      known=known, progress=bar, space=space, **options)
    finally:
        if bar is not None:
            bar.close()
    return json.loads(text)


def random(samples: Optional[int] = None, runs: Optional[int] = None, pool: Any = None,
           score: Optional[str] = None, data: str = "synthetic", batch: Optional[int] = None,
           seed: int = 0, device: str = "cpu", channels: Optional[int] = None,
           cells: Optional[int] = None, truth: Any = None, metric: str = "cifar10_test",
           scores_from: Any = None, progress: bool = False,
           space: str = "tss", swap_mu: Optional[float] = None,
           swap_sigma: Optional[float] = None) -> Dict[str, Any]:
    """NASWOT's random search: per run, the best by ``score`` of ``samples`` archs (100)
    drawn from ``pool`` (an accuracy table, a file of archs, a list; default the whole
    space); ``runs`` runs (1). Report: ``runs`` (index, arch, score, accuracy per run),
    ``mean_accuracy``, ``std_accuracy``, ``scored``."""
    return _run("random", score, truth, metric, scores_from, progress, space, samples=samples,
                runs=runs, pool=pool, data=data, batch=batch, seed=seed, device=device,
                channels=channels, cells=cells, swap_mu=swap_mu, swap_sigma=swap_sigma)


def evolution(population: Optional[int] = None, tournament: Optional[int] = None,
              cycles: Optional[int] = None, score: Optional[str] = None,
              data: str = "synthetic", batch: Optional[int] = None, seed: int = 0,
              device: str = "cpu", channels: Optional[int] = None,
              cells: Optional[int] = None, truth: Any = None, metric: str = "cifar10_test",
              scores_from: Any = None, progress: bool = False,
              space: str = "tss", swap_mu: Optional[float] = None,
              swap_sigma: Optional[float] = None) -> Dict[str, Any]:
    """Regularized evolution with ``score`` as the fitness (a mutation changes one edge's op
    in the topology space, one width in the size space). Report: ``best`` (index, arch,
    score, accuracy), ``scored``."""
    return _run("evolution", score, truth, metric, scores_from, progress, space,
                population=population, tournament=tournament, cycles=cycles, data=data,
                batch=batch, seed=seed, device=device, channels=channels, cells=cells,
                swap_mu=swap_mu, swap_sigma=swap_sigma)


def topk(samples: Optional[int] = None, k: Optional[int] = None, pool: Any = None,
         score: Optional[str] = None, data: str = "synthetic", batch: Optional[int] = None,
         seed: int = 0, device: str = "cpu", channels: Optional[int] = None,
         cells: Optional[int] = None, truth: Any = None, metric: str = "cifar10_test",
         scores_from: Any = None, progress: bool = False,
         space: str = "tss", swap_mu: Optional[float] = None,
         swap_sigma: Optional[float] = None) -> Dict[str, Any]:
    """KNAS's top-k: the ``k`` (40) best by ``score`` (mgm) of ``samples`` (300) archs, then
    the most accurate of them by ``truth``. Without ``pool`` but with ``truth``, the archs
    are drawn from those ``truth`` gives an accuracy (``pool_source`` says which). Report:
    ``kept``, ``pick``, ``pool``, ``pool_source``."""
    return _run("topk", score, truth, metric, scores_from, progress, space, samples=samples, k=k,
                pool=pool, data=data, batch=batch, seed=seed, device=device,
                channels=channels, cells=cells, swap_mu=swap_mu, swap_sigma=swap_sigma)


def prune(repeats: Optional[int] = None, lr_batches: Optional[int] = None,
          lr_batch_size: Optional[int] = None, score: Optional[str] = None,
          data: str = "synthetic", batch: Optional[int] = None, seed: int = 0,
          device: str = "cpu", channels: Optional[int] = None, cells: Optional[int] = None,
          truth: Any = None, metric: str = "cifar10_test",
          progress: bool = False, space: str = "tss") -> Dict[str, Any]:
    """TE-NAS's pruning of the supernet by kappa (``score``: ntk or ntk_exact) and linear
    regions; the topology space's supernet only (``space="sss"`` raises ``ValueError``).
    Report: ``rounds`` (candidates and what each round pruned), ``index``, ``arch``,
    ``accuracy``."""
    return _run("prune", score, truth, metric, None, progress, space, repeats=repeats,
                lr_batches=lr_batches, lr_batch_size=lr_batch_size, data=data, batch=batch,
                seed=seed, device=device, channels=channels, cells=cells)
