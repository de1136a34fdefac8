"""Running the same work for each side on threads.

The per-side steps after stage 2 (edge refinement, the femur checks, the measurements) spend
most of their time in numpy and scipy calls that release the GIL, so on a two-core machine the
two femurs run side by side. The results are the same as one after the other: each call only
reads shared arrays, or writes voxels of its own side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def map_sides(fn: Callable[[K], V], keys: Iterable[K], workers: int = 1) -> dict[K, V]:
    """``{key: fn(key)}`` for each key, on up to ``workers`` threads (1: in this thread).

    An exception raised by ``fn`` is raised here, as a plain loop would.
    """
    todo = list(keys)
    n = max(1, min(int(workers), len(todo)))
    if n == 1:
        return {k: fn(k) for k in todo}
    with ThreadPoolExecutor(n) as pool:
        return dict(zip(todo, pool.map(fn, todo), strict=True))
