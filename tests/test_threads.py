"""femurseg.threads.map_sides: the per-side helper runs what a loop would, on threads."""

from __future__ import annotations

import threading
import time

import pytest

from femurseg.threads import map_sides


def test_same_results_and_order_as_a_loop() -> None:
    keys = ["b", "a", "c"]
    for workers in (1, 2, 8):
        out = map_sides(str.upper, keys, workers)
        assert out == {"b": "B", "a": "A", "c": "C"}
        assert list(out) == keys


def test_two_workers_run_side_by_side() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def wait(key: str) -> int:
        # with one thread the second call never comes while the first waits: BrokenBarrier
        barrier.wait()
        return threading.get_ident()

    idents = map_sides(wait, ["left", "right"], 2)
    assert idents["left"] != idents["right"]
    # one worker: in the caller's thread
    assert map_sides(lambda k: threading.get_ident(), ["x"], 4) == {"x": threading.get_ident()}


def test_an_error_is_raised_as_a_loop_would() -> None:
    def boom(key: int) -> int:
        if key == 2:
            time.sleep(0.01)
            raise ValueError("side 2 failed")
        return key

    for workers in (1, 2):
        with pytest.raises(ValueError, match="side 2 failed"):
            map_sides(boom, [1, 2], workers)
