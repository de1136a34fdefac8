"""Validation Dice per femur side, shared by the three-class networks (the baselines)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.types import Label

_SIDES = {"left": Label.FEMUR_LEFT, "right": Label.FEMUR_RIGHT}


def dice_per_side(pred: npt.NDArray[Any], truth: npt.NDArray[Any]) -> dict[str, float]:
    """Dice of the left and right femur labels (keys ``left``, ``right``); a side absent in
    both prediction and truth is left out."""
    out: dict[str, float] = {}
    for name, side in _SIDES.items():
        p, t = pred == int(side), truth == int(side)
        denom = int(p.sum()) + int(t.sum())
        if denom:
            out[name] = 2.0 * float((p & t).sum()) / denom
    return out


def side_dice_metrics(
    pairs: Iterable[tuple[npt.NDArray[Any], npt.NDArray[Any]]],
) -> dict[str, float]:
    """Validation numbers of (prediction, truth) label maps, one pair per case.

    Returns:
        ``metric`` and ``val_dice`` (mean of the per-side means; 0 with no side seen) and
        ``val_dice_left`` / ``val_dice_right`` (mean over the cases where the side occurs).
    """
    per_side: dict[str, list[float]] = {name: [] for name in _SIDES}
    for pred, truth in pairs:
        for name, d in dice_per_side(pred, truth).items():
            per_side[name].append(d)
    means = {k: float(np.mean(v)) for k, v in per_side.items() if v}
    dice = float(np.mean(list(means.values()))) if means else 0.0
    return {"metric": dice, "val_dice": dice, **{f"val_dice_{k}": v for k, v in means.items()}}
