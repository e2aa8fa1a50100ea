"""Type stubs of the extension module (python/src/lib.rs); the public API is nasrank."""

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

NUM_ARCHS: int

def arch_info(arch: Union[int, str], space: str = "tss") -> Dict[str, Any]: ...
def space_columns(space: str = "tss") -> Dict[str, Union[np.ndarray, List[str]]]: ...
def score_names() -> List[str]: ...
def _panic_for_test() -> None: ...

class Scorer:
    def __init__(
        self,
        scores: Union[str, Sequence[str]],
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
    ) -> None: ...
    @property
    def columns(self) -> List[str]: ...
    def score(
        self,
        archs: Union[str, int, Iterable[Union[int, str]]],
        dedup: bool = True,
        progress: Optional[Callable[[str, int], Any]] = None,
    ) -> Dict[str, Union[np.ndarray, List[str]]]: ...

def evaluate_tables(
    scores: Tuple[List[str], List[List[str]]],
    truth: Tuple[List[str], List[List[str]]],
    metric: str = "cifar10_test",
    ensemble: Optional[List[str]] = None,
    ensemble_method: str = "rank-sum",
) -> List[Dict[str, Any]]: ...
def default_score(strategy: str) -> str: ...
def search_report(
    strategy: str,
    score: Optional[str] = None,
    data: str = "synthetic",
    batch: Optional[int] = None,
    seed: int = 0,
    device: str = "cpu",
    channels: Optional[int] = None,
    cells: Optional[int] = None,
    truth: Optional[List[Tuple[int, float]]] = None,
    metric: str = "cifar10_test",
    pool: Any = None,
    known: Optional[List[Tuple[int, float]]] = None,
    samples: Optional[int] = None,
    runs: Optional[int] = None,
    k: Optional[int] = None,
    population: Optional[int] = None,
    tournament: Optional[int] = None,
    cycles: Optional[int] = None,
    repeats: Optional[int] = None,
    lr_batches: Optional[int] = None,
    lr_batch_size: Optional[int] = None,
    progress: Optional[Callable[[str, int], Any]] = None,
    space: str = "tss",
    swap_mu: Optional[float] = None,
    swap_sigma: Optional[float] = None,
) -> str: ...
