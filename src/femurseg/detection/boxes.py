"""From coarse class probabilities (or a label map) to one world-mm box per femur side.

Left and right are decided in world coordinates: the network sees the scan in canonical RAS+
axes, and when both sides are found, the one further towards world +x (patient right) is the
right femur, whatever the network's channels say. A side whose largest candidate is too small
or too uncertain is reported as not found, never guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.detection.config import BoxRules
from femurseg.preprocessing.boxes import Box, index_box_to_world, mask_box
from femurseg.preprocessing.grid import Grid
from femurseg.types import LABELS, Label

log = logging.getLogger(__name__)

SIDES: tuple[Label, Label] = (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class SideDetection:
    """Stage-1 result for one femur.

    Attributes:
        side: ``Label.FEMUR_LEFT`` or ``Label.FEMUR_RIGHT``.
        found: whether a femur was accepted for this side.
        box: tight world RAS+ mm box of the femur (None when not found).
        score: mean class probability over the accepted component, 0..1 (that of the best
            rejected candidate when not found, 0 if there was none).
        volume_ml: volume of the coarse component in ml.
        truncated: the box touches the scan's field of view (the femur may be cut off).
        message: one line for the report, saying why a side was not found.
    """

    side: Label
    found: bool
    box: Box | None
    score: float
    volume_ml: float
    truncated: bool = False
    message: str = ""

    @property
    def name(self) -> str:
        """``"femur_left"`` or ``"femur_right"``."""
        return LABELS[self.side]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (box in world mm)."""
        return {
            "status": "found" if self.found else "not_found",
            "score": round(self.score, 4),
            "coarse_volume_ml": round(self.volume_ml, 2),
            "box_mm": self.box.to_dict() if self.box is not None else None,
            "truncated": self.truncated,
            "message": self.message,
        }


def _crossing(
    profile: npt.NDArray[np.float32], first: int, last: int, thr: float
) -> tuple[float, float]:
    """Sub-voxel positions where ``profile`` crosses ``thr`` before ``first`` and after ``last``.

    ``profile[first]`` and ``profile[last]`` are the outermost values at or above ``thr``; the
    crossing is interpolated linearly towards the neighbour outside (or placed on the voxel edge
    at the end of the array).
    """
    n = profile.size

    def between(inner: float, outer: float) -> float:
        if inner <= outer:
            return 0.5
        return float(np.clip((inner - thr) / (inner - outer), 0.0, 1.0))

    lo = first - 0.5 if first == 0 else first - between(profile[first], profile[first - 1])
    hi = last + 0.5 if last == n - 1 else last + between(profile[last], profile[last + 1])
    return lo, hi


def _component_box(
    prob: npt.NDArray[np.float32], comp: npt.NDArray[np.bool_], grid: Grid, thr: float
) -> Box:
    """World box of a component with faces at the sub-voxel ``thr`` crossing of ``prob``."""
    lo = np.empty(3)
    hi = np.empty(3)
    masked = np.where(ndimage.binary_dilation(comp, _CONNECTIVITY), prob, 0.0)
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(comp.any(axis=other))
        profile = masked.max(axis=other)
        lo[axis], hi[axis] = _crossing(profile, int(hit[0]), int(hit[-1]), thr)
    return index_box_to_world(grid, lo, hi)


def _touches_fov(box: Box, grid: Grid) -> bool:
    idx = grid.world_to_index(box.corners())
    n = np.asarray(grid.shape)
    return bool(np.any(idx.min(axis=0) <= 0.0) or np.any(idx.max(axis=0) >= n - 1.0))


def _detect_side(
    probs: npt.NDArray[np.float32],
    argmax: npt.NDArray[np.intp],
    grid: Grid,
    side: Label,
    rules: BoxRules,
) -> SideDetection:
    name = LABELS[side]
    comps, count = ndimage.label(argmax == int(side), structure=_CONNECTIVITY)
    if count == 0:
        return SideDetection(
            side,
            False,
            None,
            0.0,
            0.0,
            message=(
                f"no {name} found: no voxel of the coarse scan looks like femur; "
                "check that the scan covers the thighs"
            ),
        )
    sizes = np.bincount(comps.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    comp = comps == best
    volume = float(sizes[best - 1]) * grid.voxel_ml
    score = float(probs[int(side)][comp].mean())
    if volume < rules.min_volume_ml:
        why = f"largest candidate {volume:.1f} ml < {rules.min_volume_ml:g} ml"
    elif score < rules.min_score:
        why = f"largest candidate ({volume:.0f} ml) has score {score:.2f} < {rules.min_score:g}"
    else:
        why = ""
    if why:
        msg = f"no {name} found: {why}; check that the scan covers the thighs"
        return SideDetection(side, False, None, score, volume, message=msg)
    box = _component_box(probs[int(side)], comp, grid, rules.threshold)
    return SideDetection(side, True, box, score, volume, truncated=_touches_fov(box, grid))


def boxes_from_probabilities(
    probs: npt.NDArray[np.float32], grid: Grid, rules: BoxRules | None = None
) -> dict[Label, SideDetection]:
    """Turn stage-1 class probabilities into one detection per side.

    Args:
        probs: float32 (3, X, Y, Z) softmax probabilities for background, femur_left,
            femur_right on ``grid`` (canonical RAS+ axes).
        grid: the coarse grid (world RAS+ mm affine).
        rules: acceptance thresholds.

    Returns:
        ``{Label.FEMUR_LEFT: ..., Label.FEMUR_RIGHT: ...}``; when both are found and the
        right box centre is not further towards world +x than the left one, the two are
        re-assigned by world x (and a warning is logged).
    """
    rules = rules or BoxRules()
    if probs.ndim != 4 or probs.shape[0] != len(Label) or probs.shape[1:] != grid.shape:
        raise ValueError(f"probs shape {probs.shape} must be (3, *{grid.shape})")
    argmax = np.argmax(probs, axis=0)
    out = {side: _detect_side(probs, argmax, grid, side, rules) for side in SIDES}
    return assign_sides_by_world_x(out)


def assign_sides_by_world_x(dets: dict[Label, SideDetection]) -> dict[Label, SideDetection]:
    """Make the right femur the one further towards world +x when both are found."""
    left, right = dets[Label.FEMUR_LEFT], dets[Label.FEMUR_RIGHT]
    if not (left.found and right.found and left.box is not None and right.box is not None):
        return dets
    if right.box.centre[0] > left.box.centre[0]:
        return dets
    log.warning(
        "stage 1 called the femur at world x=%.0f mm 'right' and the one at x=%.0f mm 'left'; "
        "re-assigned by world x (+x is patient right)",
        right.box.centre[0],
        left.box.centre[0],
    )
    return {
        Label.FEMUR_LEFT: replace(right, side=Label.FEMUR_LEFT),
        Label.FEMUR_RIGHT: replace(left, side=Label.FEMUR_RIGHT),
    }


def boxes_from_labels(labels: npt.NDArray[Any], grid: Grid) -> dict[Label, Box | None]:
    """Tight world boxes of each femur label in a label map (the truth boxes for training).

    Args:
        labels: integer (X, Y, Z) label map on ``grid`` (0 background, 1 left, 2 right).
        grid: its grid (any affine: flipped, permuted or oblique).

    Returns:
        ``{side: Box or None}`` in world RAS+ mm, voxel edges included.
    """
    return {side: mask_box(labels == int(side), grid) for side in SIDES}
