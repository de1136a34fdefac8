"""scripts/stage1_stray.py: stray stage-1 femur probability is counted away from the true
femurs only, in ml, with its largest piece; the command refuses to run with nothing to score."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from femurseg.preprocessing.grid import Grid
from femurseg.types import Volume

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stage1_stray.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("stage1_stray", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Probabilities:
    """Stands in for the network: femur probability given on the scan's own grid."""

    def __init__(self, fg: np.ndarray) -> None:
        self.fg = fg

    def probabilities(self, volume: Volume) -> tuple[np.ndarray, Grid]:
        p = np.zeros((3, *self.fg.shape), np.float32)
        p[1] = 0.6 * self.fg  # left + right is what counts
        p[2] = 0.3 * self.fg
        p[0] = 1.0 - p[1] - p[2]
        return p, Grid.of(volume)


def test_stray_probability_leaves_out_the_femurs_and_their_margin() -> None:
    mod = _script()
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    vol = Volume(np.zeros((40, 40, 40), np.float32), aff)
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[5:10, 5:10, 5:30] = 1
    fg = np.zeros((40, 40, 40), np.float32)
    fg[5:10, 5:10, 5:30] = 1.0  # on the femur: not stray
    fg[10:12, 5:10, 5:30] = 1.0  # touching it, within 8 mm: not stray
    fg[30:33, 30:33, 30:33] = 1.0  # 27 voxels of 8 mm3 far away
    fg[20:22, 30:32, 5:7] = 1.0  # 8 more, a second piece
    ml, largest = mod.stray_ml(_Probabilities(fg), vol, labels, 8.0)
    assert ml == pytest.approx(35 * 8 / 1000)
    assert largest == pytest.approx(27 * 8 / 1000)
    # without labels (a real negative) everything at 0.5 or more is stray
    ml, _ = mod.stray_ml(_Probabilities(fg), vol, None, 8.0)
    assert ml == pytest.approx(float(fg.sum()) * 8 / 1000)


def test_refuses_nothing_to_score() -> None:
    mod = _script()
    with pytest.raises(SystemExit) as err:
        mod.main(["--model", "a=shipped"])
    assert err.value.code == 2
