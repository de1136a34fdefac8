"""From coarse class probabilities (or a label map) to one world-mm box per femur side.

Left and right are decided in world coordinates: when two femurs are found, the one further
towards world +x (patient right) is the right femur, whatever the network's channels say; a
single femur takes the side the network (which sees canonical RAS+ axes) votes for, but when the
body's midline is known and the candidate lies clearly on the other side of it, the two
disagree and the candidate is not reported (most often another bone). A side without an
accepted candidate is reported as not found, never guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.detection.config import BoxRules
from femurseg.preprocessing.boxes import Box, box_iou, index_box_to_world, mask_box
from femurseg.preprocessing.grid import Grid
from femurseg.types import LABELS, SIDES, Label

log = logging.getLogger(__name__)

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


@dataclass
class _Candidate:
    mask: npt.NDArray[np.bool_]
    volume_ml: float
    score: float
    centre_x: float


#: at most this many coarse components are looked at (largest first).
MAX_PIECES = 8


def _merged(a: _Candidate, b: _Candidate) -> _Candidate:
    total = a.volume_ml + b.volume_ml
    return _Candidate(
        a.mask | b.mask,
        total,
        (a.score * a.volume_ml + b.score * b.volume_ml) / total,
        (a.centre_x * a.volume_ml + b.centre_x * b.volume_ml) / total,
    )


def _candidates(
    fg: npt.NDArray[np.float32], grid: Grid, rules: BoxRules
) -> tuple[list[_Candidate], str]:
    """Accepted femurs (largest first, at most two) and why other components were rejected.

    Every component that passes the size and score rules counts, not only the two largest: the
    largest is a femur, the largest of the rest lying at least ``min_separation_mm`` from it in
    world x is the other femur, and every other accepted component joins the femur whose
    centre is nearer in x when within ``min_separation_mm`` of it (pieces of one femur: a
    femur broken in two, or one that the coarse probability splits); any other is dropped.
    """
    comps, count = ndimage.label(fg >= rules.threshold, structure=_CONNECTIVITY)
    if count == 0:
        return [], "no voxel of the coarse scan looks like femur"
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    pieces: list[_Candidate] = []
    why = ""
    for label in np.argsort(sizes)[::-1][:MAX_PIECES]:
        if sizes[label] == 0:
            break
        mask = comps == label
        volume = float(sizes[label]) * grid.voxel_ml
        score = float(fg[mask].mean())
        if volume < rules.min_volume_ml:
            if not pieces:
                why = why or f"largest candidate {volume:.1f} ml < {rules.min_volume_ml:g} ml"
            break
        if score < rules.min_score:
            why = why or f"candidate of {volume:.0f} ml has score {score:.2f} < {rules.min_score:g}"
            continue
        centre = grid.index_to_world(np.argwhere(mask).mean(axis=0))
        pieces.append(_Candidate(mask, volume, score, float(centre[0])))
    if not pieces:
        return [], why
    femurs = [pieces[0]]
    rest = pieces[1:]
    apart = [c for c in rest if abs(c.centre_x - femurs[0].centre_x) >= rules.min_separation_mm]
    if apart:
        femurs.append(apart[0])
    anchors = [(f.centre_x, i) for i, f in enumerate(femurs)]
    for c in rest:
        # the other femur itself (femurs[1] may already hold pieces merged into it)
        if apart and c is apart[0]:
            continue
        dist, i = min((abs(c.centre_x - x), i) for x, i in anchors)
        if dist < rules.min_separation_mm:
            femurs[i] = _merged(femurs[i], c)
        else:
            log.info("stage 1: a %.0f ml piece lies apart from both femurs; dropped", c.volume_ml)
    return femurs, why


def boxes_from_probabilities(
    probs: npt.NDArray[np.float32],
    grid: Grid,
    rules: BoxRules | None = None,
    midline_x: float | None = None,
) -> dict[Label, SideDetection]:
    """Turn stage-1 class probabilities into one detection per side.

    The femur probability (left + right) is thresholded into connected components; the two
    largest that pass the size and score rules are the femurs. With two femurs, the one further
    towards world +x is the right one (patient right is +x in RAS+). With one, its side is the
    network's left/right vote over the component (the network sees the scan in canonical RAS+
    axes); when ``midline_x`` is known and the centre lies more than ``rules.side_margin_mm``
    on the other side of it, vote and position contradict each other and the candidate is
    rejected (both sides not found, with the reason). The other side is reported as not found.

    Args:
        probs: float32 (3, X, Y, Z) softmax probabilities for background, femur_left,
            femur_right on ``grid`` (canonical RAS+ axes).
        grid: the coarse grid (world RAS+ mm affine).
        rules: acceptance thresholds.
        midline_x: world x (mm) of the body's midline, None when unknown (see
            :func:`femurseg.segmentation.checks.body_midline`).

    Returns:
        ``{Label.FEMUR_LEFT: ..., Label.FEMUR_RIGHT: ...}``.
    """
    rules = rules or BoxRules()
    if probs.ndim != 4 or probs.shape[0] != len(Label) or probs.shape[1:] != grid.shape:
        raise ValueError(f"probs shape {probs.shape} must be (3, *{grid.shape})")
    fg = probs[int(Label.FEMUR_LEFT)] + probs[int(Label.FEMUR_RIGHT)]
    found, why = _candidates(fg, grid, rules)
    sides: dict[Label, tuple[_Candidate, str]] = {}
    if len(found) == 2:
        left, right = sorted(found, key=lambda c: c.centre_x)
        sides = {Label.FEMUR_LEFT: (left, "world_x"), Label.FEMUR_RIGHT: (right, "world_x")}
    elif len(found) == 1:
        c = found[0]
        vote = float(
            (probs[int(Label.FEMUR_RIGHT)][c.mask] - probs[int(Label.FEMUR_LEFT)][c.mask]).mean()
        )
        voted = Label.FEMUR_RIGHT if vote > 0 else Label.FEMUR_LEFT
        how = f"network vote {abs(vote):.2f}"
        off = None if midline_x is None else c.centre_x - midline_x
        keep = True
        if off is not None and abs(off) > rules.side_margin_mm:
            by_x = Label.FEMUR_RIGHT if off > 0 else Label.FEMUR_LEFT
            how += f", on that side of the body midline ({abs(off):.0f} mm off)"
            if by_x != voted:
                # a femur lies on its own side; a candidate the network calls the other side's
                # is most often another bone (an iliac wing, a tibia): not reported as a femur
                where = "right" if off > 0 else "left"
                why = (
                    f"the only candidate ({c.volume_ml:.0f} ml) lies {abs(off):.0f} mm on the "
                    f"patient's {where} of the body midline but the network called it "
                    f"{LABELS[voted]}: contradictory, most likely not a femur"
                )
                log.warning("stage 1: %s", why)
                keep = False
        sides = {voted: (c, how)} if keep else {}
        why = why or "only one femur in view"
    out: dict[Label, SideDetection] = {}
    for side in SIDES:
        name = LABELS[side]
        if side not in sides:
            msg = f"no {name} found: {why}; check that the scan covers the thighs"
            out[side] = SideDetection(side, False, None, 0.0, 0.0, message=msg)
            continue
        c, how = sides[side]
        box = _component_box(fg, c.mask, grid, rules.threshold)
        out[side] = SideDetection(
            side,
            True,
            box,
            c.score,
            c.volume_ml,
            truncated=_touches_fov(box, grid),
            message=f"side from {how}",
        )
    return out


#: a second pass's box is averaged in only if it overlaps the first's at least this much.
MIN_PASS_IOU = 0.5


def mean_of_passes(
    first: dict[Label, SideDetection], second: dict[Label, SideDetection], grid: Grid
) -> dict[Label, SideDetection]:
    """``first``'s detections with each found box averaged, face by face, with ``second``'s.

    ``second`` comes from a pass on a coarse grid shifted by part of a voxel (see
    :meth:`femurseg.detection.Detector.detect`): each pass places a face to within its own
    grid's sampling, so the mean of two interleaved grids halves that step. Which sides are
    found, and their scores and volumes, stay ``first``'s; a side that ``second`` does not
    find, or finds with a box overlapping ``first``'s by less than :data:`MIN_PASS_IOU`
    (another piece of bone), keeps ``first``'s box.

    Args:
        first: detections of the pass on the grid training uses.
        second: detections of the shifted pass.
        grid: ``first``'s coarse grid (for the field-of-view test of the averaged box).
    """
    out = dict(first)
    for side, det in first.items():
        other = second.get(side)
        if det.box is None or other is None or other.box is None:
            continue
        if box_iou(det.box, other.box) < MIN_PASS_IOU:
            log.info("stage 1: the shifted pass's %s box lies elsewhere; not averaged", det.name)
            continue
        lo = (np.asarray(det.box.lo) + np.asarray(other.box.lo)) / 2
        hi = (np.asarray(det.box.hi) + np.asarray(other.box.hi)) / 2
        box = Box((lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2]))
        out[side] = replace(det, box=box, truncated=_touches_fov(box, grid))
    return out


def boxes_from_labels(labels: npt.NDArray[Any], grid: Grid) -> dict[Label, Box | None]:
    """Tight world boxes of each femur label in a label map (the truth boxes for training).

    Args:
        labels: integer (X, Y, Z) label map on ``grid`` (0 background, 1 left, 2 right).
        grid: its grid (any affine: flipped, permuted or oblique).

    Returns:
        ``{side: Box or None}`` in world RAS+ mm, voxel edges included.
    """
    return {side: mask_box(labels == int(side), grid) for side in SIDES}
