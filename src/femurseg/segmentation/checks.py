"""Is this side's final mask a femur? Rules that hold whatever the networks say.

Stage 1 and stage 2 are learnt and can be wrong on scans unlike their training data: an iliac
wing or a tibia labelled femur. Each side's final mask is checked against facts of anatomy
that do not depend on the networks:

* **Size**: a femur piece worth reporting holds at least ``min_volume_ml``; less is reported
  ``not_found`` (its voxels are removed from the label map).
* **Side**: the patient's left femur lies on the patient's left of the body's midline (world
  -x in RAS+), the right one on the right. The midline is the centre of the body in the scan
  (voxels above ``body_hu``), used only where the body does not touch the field of view's left
  or right edge (else the visible body may be one leg and its centre says nothing). A mask
  whose centre lies on the wrong side by more than ``midline_margin_mm`` is ``not_found``.
* **Thickness**: every part of a femur is thick: the shaft's solid cross-section has a radius
  of 10-17 mm in adults, the head 18-28 mm, the condyles more. The largest ball that fits in
  the mask (its largest inscribed radius, from the distance transform) must reach
  ``min_thickness_mm``; a thin plate such as an iliac wing (3-8 mm thick) does not.
  Such a mask is ``not_found``.
* **Bone density**: a femur has cortex, which reads 500 HU or more even on 5 mm slices of
  osteoporotic bone (the cortex runs along the slices in the shaft, and a head or condyle
  has a shell); enhanced soft tissue does not reach that: a kidney's cortex in the
  corticomedullary phase reads 150-300 HU. A mask whose brightest ``bone_percentile`` %
  reads under ``min_bone_hu`` holds no bone-dense voxel and is ``not_found`` (an enhanced
  kidney with its fat-filled sinus looks to both networks like a bone ring around marrow).
* **Confidence**: a mask that passes but is small (under ``low_volume_ml``), or whose mean
  stage-2 probability is under ``min_mean_probability``, is kept and reported
  ``low_confidence`` with the reason.

Every decision carries a one-line reason for the report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.config import check_range
from femurseg.preprocessing.grid import Grid
from femurseg.types import LABELS, Label

#: least body (mm along y) in an x column for it to count as body when finding the midline.
BODY_COLUMN_MM = 16.0


class FemurStatus(str, enum.Enum):
    """The outcome for one side."""

    FOUND = "found"
    LOW_CONFIDENCE = "low_confidence"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class FemurCheckRules:
    """Thresholds of the femur checks (inference-time; reported, not in checkpoints).

    Attributes:
        enabled: run the checks (off: every mask stage 2 made is reported found).
        min_volume_ml: a smaller final mask is not reported as a femur.
        low_volume_ml: a mask smaller than this is reported ``low_confidence``.
        min_thickness_mm: least largest-inscribed-ball radius of a femur mask, mm.
        min_mean_probability: a mask whose mean stage-2 probability is lower is
            ``low_confidence``.
        body_hu: HU above which a voxel is body when finding the midline.
        midline_margin_mm: how far past the midline a mask's centre may lie (legs crossed,
            a rotated pelvis, a field of view centred on one leg whose midline estimate falls
            on that leg); a femur's centre lies 70-120 mm on its own side, so 30 mm leaves
            room for all of these and still rejects a bone of the other side.
        thickness_step_mm: the thickness is measured on the mask resampled to at least this
            voxel size (faster; a 2 mm step changes a 10 mm radius by well under 2 mm).
        min_bone_hu: least HU of the mask's brightest ``bone_percentile`` % (None: no
            density check, e.g. for images not in HU). The lowest of 95 femurs of 10 ml or
            more in the validation phantoms read 349 HU there (an 11 ml porotic condyle tip
            on 2.5 mm slices), the top 20 mm of the real right femoral head on 3 mm slices
            399 HU; enhanced phantom kidneys 244 HU, the real negative's kidney labelled femur
            when that scan was shifted 40 HU brighter 292 HU.
        bone_percentile: that percentile.
    """

    enabled: bool = True
    min_volume_ml: float = 10.0
    low_volume_ml: float = 40.0
    min_thickness_mm: float = 9.0
    min_mean_probability: float = 0.8
    body_hu: float = -400.0
    midline_margin_mm: float = 30.0
    thickness_step_mm: float = 2.0
    min_bone_hu: float | None = 300.0
    bone_percentile: float = 98.0

    def __post_init__(self) -> None:
        check_range("min_volume_ml", self.min_volume_ml, 0.0, 5000.0)
        check_range("low_volume_ml", self.low_volume_ml, 0.0, 5000.0)
        check_range("min_thickness_mm", self.min_thickness_mm, 0.0, 100.0)
        check_range("min_mean_probability", self.min_mean_probability, 0.0, 1.0)
        check_range("body_hu", self.body_hu, -1000.0, 500.0)
        check_range("midline_margin_mm", self.midline_margin_mm, -200.0, 200.0)
        check_range("thickness_step_mm", self.thickness_step_mm, 0.1, 10.0)
        if self.min_bone_hu is not None:
            check_range("min_bone_hu", self.min_bone_hu, -1000.0, 3000.0)
        check_range("bone_percentile", self.bone_percentile, 50.0, 100.0)


@dataclass(frozen=True)
class FemurCheck:
    """The verdict on one side's final mask.

    Attributes:
        side: the side.
        status: found, low_confidence or not_found.
        reasons: one line per rule that fired (empty when found without doubt).
        volume_ml: mask volume before the verdict.
        thickness_mm: largest inscribed-ball radius of the mask, mm (None when not measured).
        mean_probability: mean stage-2 probability over the mask (None when not known).
        bone_hu: HU of the mask's brightest ``bone_percentile`` % (None when not measured).
        centre_x_mm: world x of the mask's centre (RAS+, mm).
        midline_x_mm: world x of the body's midline, None when it could not be told.
    """

    side: Label
    status: FemurStatus
    reasons: tuple[str, ...] = ()
    volume_ml: float = 0.0
    thickness_mm: float | None = None
    mean_probability: float | None = None
    centre_x_mm: float | None = None
    midline_x_mm: float | None = None
    bone_hu: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""

        def r(v: float | None, n: int = 2) -> float | None:
            return None if v is None else round(float(v), n)

        return {
            "status": self.status.value,
            "reasons": list(self.reasons),
            "volume_ml": r(self.volume_ml),
            "thickness_mm": r(self.thickness_mm, 1),
            "mean_probability": r(self.mean_probability, 3),
            "centre_x_mm": r(self.centre_x_mm, 1),
            "midline_x_mm": r(self.midline_x_mm, 1),
            "bone_hu": r(self.bone_hu, 0),
        }


def body_midline(hu: npt.NDArray[Any], grid: Grid, body_hu: float) -> float | None:
    """World x (mm) of the body's left-right centre, or None where it cannot be told.

    The body is every voxel above ``body_hu`` on a grid subsampled to about 4 mm, in x columns
    holding at least :data:`BODY_COLUMN_MM` of it (not the table); its x extent is taken per
    axial slice and the slices' centres are averaged. None when the body touches
    the left or right edge of the image in more than a tenth of its slices (the visible body
    may be one leg, or the hips may be cut), or when there is no body.
    """
    step = [max(1, int(round(4.0 / s))) for s in grid.spacing]
    sub = hu[:: step[0], :: step[1], :: step[2]] > body_hu
    if sub.shape[0] < 3 or not sub.any():
        return None
    # (X', Z'): x columns holding body, per slice; a column needs BODY_COLUMN_MM of body
    # along y, so that the patient table (thin carbon skins) does not count as body
    need = max(1, int(round(BODY_COLUMN_MM / (grid.spacing[1] * step[1]))))
    cols = sub.sum(axis=1) >= need
    rows = np.flatnonzero(cols.any(axis=0))
    if rows.size == 0:
        return None
    cols = cols[:, rows]
    first = np.argmax(cols, axis=0)
    last = cols.shape[0] - 1 - np.argmax(cols[::-1], axis=0)
    touching = (first == 0) | (last == cols.shape[0] - 1)
    if float(np.mean(touching)) > 0.1:
        return None
    centre_i = 0.5 * (first + last).astype(np.float64) * step[0]
    # x of index i along the first axis (canonical grids are axis-aligned RAS+)
    pts = np.zeros((centre_i.size, 3))
    pts[:, 0] = centre_i
    return float(np.mean(grid.index_to_world(pts)[:, 0]))


def mask_thickness_mm(
    mask: npt.NDArray[np.bool_], spacing: tuple[float, ...], step: float
) -> float:
    """Largest inscribed-ball radius of a mask, mm (on the mask subsampled to about ``step``)."""
    k = [max(1, int(step // s)) for s in spacing]
    sub = mask[:: k[0], :: k[1], :: k[2]]
    if not sub.any():
        return 0.0
    if sub.all():
        return float("inf")
    sp = [s * kk for s, kk in zip(spacing, k, strict=True)]
    # No padding: where the mask meets the crop's face it was cut by the scan's edge (the
    # crop is the mask's tight box), and a cut face is not the bone's surface.
    d = ndi.distance_transform_edt(sub, sampling=sp)
    return float(d.max())


def check_femur(
    side: Label,
    mask: npt.NDArray[np.bool_],
    origin_index: tuple[int, int, int],
    grid: Grid,
    midline_x: float | None,
    rules: FemurCheckRules,
    probability: npt.NDArray[np.float32] | None = None,
    hu: npt.NDArray[Any] | None = None,
) -> FemurCheck:
    """Judge one side's final mask.

    Args:
        side: the side the mask is labelled as.
        mask: bool (x, y, z) crop of the canonical label map holding that side's voxels.
        origin_index: index of the crop's first voxel on ``grid``.
        grid: canonical grid of the scan (axis-aligned RAS+).
        midline_x: world x of the body's midline (mm), None when unknown.
        rules: thresholds.
        probability: stage-2 femur probability on the same crop, or None.
        hu: the scan's HU on the same crop, or None (no density check).
    """
    name = LABELS[side]
    n = int(np.count_nonzero(mask))
    ml = n * grid.voxel_ml
    if n == 0:
        return FemurCheck(side, FemurStatus.NOT_FOUND, (f"{name}: no voxel labelled",), 0.0)
    if not rules.enabled:
        return FemurCheck(side, FemurStatus.FOUND, (), ml)
    idx = np.argwhere(mask).mean(axis=0) + np.asarray(origin_index, dtype=np.float64)
    cx = float(grid.index_to_world(idx)[0])
    thick = mask_thickness_mm(mask, grid.spacing, rules.thickness_step_mm)
    mean_p = float(probability[mask].mean()) if probability is not None else None
    bone = float(np.percentile(hu[mask], rules.bone_percentile)) if hu is not None else None
    hard: list[str] = []
    soft: list[str] = []
    if ml < rules.min_volume_ml:
        hard.append(
            f"{name}: final mask {ml:.1f} ml < {rules.min_volume_ml:g} ml; too small to be "
            "reported as a femur"
        )
    if midline_x is not None:
        # patient right is +x in RAS+: the right femur lies at x > midline
        past = (midline_x - cx) if side == Label.FEMUR_RIGHT else (cx - midline_x)
        if past > rules.midline_margin_mm:
            other = "left" if side == Label.FEMUR_RIGHT else "right"
            hard.append(
                f"{name}: mask centre lies {past:.0f} mm on the patient's {other} of the body "
                "midline; not this side's femur"
            )
    if thick < rules.min_thickness_mm:
        hard.append(
            f"{name}: mask is at most {2 * thick:.0f} mm thick (largest inscribed ball radius "
            f"{thick:.1f} mm < {rules.min_thickness_mm:g} mm); a thin plate such as an iliac "
            "wing, not a femur"
        )
    if bone is not None and rules.min_bone_hu is not None and bone < rules.min_bone_hu:
        hard.append(
            f"{name}: the mask's brightest {100 - rules.bone_percentile:g} % reads {bone:.0f} HU "
            f"< {rules.min_bone_hu:g} HU: no bone-dense voxel (enhanced soft tissue such as a "
            "kidney), not a femur"
        )
    if hard:
        return FemurCheck(
            side, FemurStatus.NOT_FOUND, tuple(hard), ml, thick, mean_p, cx, midline_x, bone
        )
    if ml < rules.low_volume_ml:
        soft.append(f"{name}: small mask ({ml:.1f} ml < {rules.low_volume_ml:g} ml)")
    if mean_p is not None and mean_p < rules.min_mean_probability:
        soft.append(
            f"{name}: mean stage-2 probability {mean_p:.2f} < {rules.min_mean_probability:g}"
        )
    status = FemurStatus.LOW_CONFIDENCE if soft else FemurStatus.FOUND
    return FemurCheck(side, status, tuple(soft), ml, thick, mean_p, cx, midline_x, bone)
