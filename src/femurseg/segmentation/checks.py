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
* **No fibula beside it**: the femur is the thigh's only bone; the tibia has the fibula on its
  lateral, slightly posterior side, 3-30 mm from its surface, along nearly all of its length.
  A mask with a slender bone-dense companion beside its lateral side is a tibia, and is
  ``not_found``: in at least ``companion_min_mm`` of its length and ``companion_min_fraction``
  of its slices, a piece of bone not labelled femur (or of the mask apart from its main
  cross-section, where stage 2 took the fibula in too) of ``companion_area_mm2``, peaking at
  ``companion_peak_hu`` or more, ``companion_min_gap_mm`` to ``companion_gap_mm`` from the
  mask's main cross-section, ``companion_angle_deg`` from lateral towards posterior (so
  never the patella in front), with no metal that near (a fixation plate lies just there).
  Nothing else lies beside a femur like that for long: the trochanter, the condyles and the
  acetabulum have no slender bone on their lateral side, a patella, a fabella, the greater
  trochanter beside the head's top or a tibia beside flexed condyles spans a few cm at most,
  bone closer than 3 mm is the mask's own cortex that stage 2 left out, and enhanced vessels
  (the popliteal artery behind the condyles) do not reach ``companion_peak_hu``. Measured
  with ``scripts/companion_rule.py``: true phantom femurs at most 0.03 of their slices, true
  tibiae 0.73-0.88 (README, "Femur checks").
* **Above the other femur**: nothing of a femur lies above the other femur's head: both
  heads sit in the acetabula at nearly one height. Where the other side's mask is found and
  at least ``above_other_min_length_mm`` long, a mask whose lowest voxel lies more than
  ``above_other_mm`` above that mask's highest is the pelvis or spine (in a view centred on
  one hip, the sacrum or the last lumbar vertebra at the top edge), and is ``not_found`` when
  it holds under ``above_other_volume_ratio`` of the other mask's volume, else
  ``low_confidence`` (one of the two is wrong, and the larger is not removed on this alone).
* **Confidence**: a mask that passes but is small (under ``low_volume_ml``), or whose mean
  stage-2 probability is under ``min_mean_probability``, is kept and reported
  ``low_confidence`` with the reason.

Every decision carries a one-line reason for the report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
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
        companion_gap_mm: the farthest a fibula's cross-section lies from the mask, mm (the
            LLP26 legs: up to 28 mm from the tibia over its shaft, touching at the ankle and
            knee).
        companion_min_gap_mm: the nearest it may lie: bone closer to the mask is the mask's
            own bone left out of it (a cortex stage 2 missed), not a separate one; a fibula
            is 3 mm or more from the tibia but at its two joints.
        companion_min_mm: the least length of mask (mm along z) that must have a companion
            for the mask to be called a tibia.
        companion_min_fraction: and the least fraction of the mask's slices.
        companion_area_mm2: the companion's cross-section (mm^2, above ``companion_hu``),
            low and high; also at most half of the mask's cross-section in that slice.
        companion_hu: HU above which a voxel counts as bone for the companion rule.
        companion_peak_hu: least HU of a companion's brightest voxel (fibular cortex; an
            enhanced artery or a vein stays below).
        companion_metal_hu: a slice with a voxel this bright within ``companion_gap_mm`` of the
            mask never counts as having a companion (a fixation plate on the lateral cortex, its
            screws and its streaks look like a slender lateral bone).
        companion_angle_deg: directions (from the mask's centre, degrees from lateral,
            positive towards posterior) where a companion may lie: the LLP26 fibulae lie
            22-70 degrees behind lateral, and a leg turned out 30 degrees moves that to 100.
        above_other_mm: how far above the other side's found mask a mask may begin (its lowest
            voxel above that mask's highest, mm): the femoral heads' heights differ by under
            20 mm even with a tilted pelvis.
        above_other_min_length_mm: the other mask must be at least this long (mm along z).
        above_other_volume_ratio: a mask above the other is ``not_found`` when it holds less
            than this share of the other's volume, else ``low_confidence``.
        companion_step_mm: the rule looks at slices about this far apart and subsamples
            each slice to about ``companion_step_mm / 2`` (it need not see every voxel).
        companion_margin_mm: the region searched reaches this far past ``companion_gap_mm``
            (a fibula lies wholly inside it), and a piece touching its side faces is not a
            companion: something that large or long (the patient table's shell below the
            knee, a plate of bone running out of the region) is no fibula.
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
    companion_gap_mm: float = 35.0
    companion_min_gap_mm: float = 3.0
    companion_min_mm: float = 50.0
    companion_min_fraction: float = 0.5
    companion_area_mm2: tuple[float, float] = (30.0, 900.0)
    companion_hu: float = 250.0
    companion_peak_hu: float = 500.0
    companion_metal_hu: float = 2500.0
    companion_angle_deg: tuple[float, float] = (-30.0, 100.0)
    companion_step_mm: float = 3.0
    companion_margin_mm: float = 30.0
    above_other_mm: float = 40.0
    above_other_min_length_mm: float = 100.0
    above_other_volume_ratio: float = 0.5

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
        check_range("companion_gap_mm", self.companion_gap_mm, 0.0, 200.0)
        check_range("companion_min_gap_mm", self.companion_min_gap_mm, 0.0, self.companion_gap_mm)
        check_range("companion_min_mm", self.companion_min_mm, 0.0, 2000.0)
        check_range("companion_min_fraction", self.companion_min_fraction, 0.0, 1.0)
        lo, hi = self.companion_area_mm2
        check_range("companion_area_mm2", lo, 0.0, 1e5)
        check_range("companion_area_mm2", hi, lo, 1e5)
        check_range("companion_hu", self.companion_hu, -1000.0, 3000.0)
        check_range("companion_peak_hu", self.companion_peak_hu, -1000.0, 5000.0)
        check_range("companion_metal_hu", self.companion_metal_hu, -1000.0, 1e5)
        a, b = self.companion_angle_deg
        check_range("companion_angle_deg", a, -180.0, 180.0)
        check_range("companion_angle_deg", b, a, 180.0)
        check_range("companion_step_mm", self.companion_step_mm, 0.1, 20.0)
        check_range("companion_margin_mm", self.companion_margin_mm, 0.0, 500.0)
        check_range("above_other_mm", self.above_other_mm, 0.0, 2000.0)
        check_range("above_other_min_length_mm", self.above_other_min_length_mm, 0.0, 2000.0)
        check_range("above_other_volume_ratio", self.above_other_volume_ratio, 0.0, 1e3)

    def companion_says_tibia(self, run_mm: float, fraction: float) -> bool:
        """Whether a companion over ``run_mm`` of a mask and ``fraction`` of its slices (from
        :func:`companion_run`) makes the mask a tibia."""
        return run_mm >= self.companion_min_mm and fraction >= self.companion_min_fraction


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
        companion_mm: length of the mask (mm along z) with a fibula-like bone beside its
            lateral side (None when not measured).
        companion_fraction: that length's share of the mask's slices.
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
    companion_mm: float | None = None
    companion_fraction: float | None = None

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
            "companion_mm": r(self.companion_mm, 0),
            "companion_fraction": r(self.companion_fraction),
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


@dataclass(frozen=True)
class Surround:
    """The scan around one side's mask, wider than the mask in x and y, for the companion rule.

    Attributes:
        hu: HU (x, y, z) of the region.
        mask: bool, the side's mask on the region.
        labelled: bool, voxels of the region labelled any femur (either side).
        spacing: voxel size of these arrays (mm) for a region already subsampled (see
            :func:`surround_of`); None: the scan's own, and :func:`companion_run` subsamples.
    """

    hu: npt.NDArray[Any]
    mask: npt.NDArray[np.bool_]
    labelled: npt.NDArray[np.bool_]
    spacing: tuple[float, float, float] | None = None


def surround_of(
    hu: npt.NDArray[Any],
    labels: npt.NDArray[np.uint8],
    index: tuple[slice, slice, slice],
    side: Label,
    spacing: tuple[float, float, float],
    rules: FemurCheckRules,
) -> Surround:
    """The region the companion rule searches around one side's mask, subsampled as the rule
    looks at it (views of ``hu`` and ``labels``, not copies).

    Args:
        hu: the scan (x, y, z), canonical.
        labels: its label map.
        index: the side's mask extent on it.
        side: the side.
        spacing: the scan's voxel size, mm.
        rules: the thresholds (the region reaches ``companion_gap_mm + companion_margin_mm``
            past the mask in x and y).
    """
    k = companion_steps(spacing, rules)
    reach = rules.companion_gap_mm + rules.companion_margin_mm
    xy = tuple(
        slice(
            max(0, i.start - int(np.ceil(reach / sp))),
            min(n, i.stop + int(np.ceil(reach / sp))),
            kk,
        )
        for i, n, sp, kk in zip(index[:2], labels.shape[:2], spacing[:2], k[:2], strict=True)
    )
    wide = (xy[0], xy[1], slice(index[2].start, index[2].stop, k[2]))
    region = labels[wide]
    sub = (spacing[0] * k[0], spacing[1] * k[1], spacing[2] * k[2])
    return Surround(np.asarray(hu[wide]), region == int(side), region != 0, sub)


#: 2D connectivity (8 neighbours) within each axial slice of an (x, y, z) array, none across.
IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[:, :, 1] = True


def largest_piece_per_slice(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The largest 2D connected piece of ``mask`` in each axial slice (x, y, z array)."""
    parts, n = ndi.label(mask, structure=IN_PLANE)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(parts.ravel(), minlength=n + 1)[1:]
    part_z = np.array([sl[2].start for sl in ndi.find_objects(parts)], dtype=np.int64)
    ids = np.arange(1, n + 1)
    order = np.argsort(sizes, kind="stable")
    main = np.zeros(mask.shape[2], dtype=np.int64)
    main[part_z[order]] = ids[order]  # assigned smallest first: the largest wins
    return (parts > 0) & (parts == main[None, None, :])


def companion_steps(spacing: tuple[float, ...], rules: FemurCheckRules) -> tuple[int, int, int]:
    """Subsampling (x, y, z) of the companion rule: slices about ``companion_step_mm`` apart,
    pixels about half that."""
    kx, ky = (max(1, int(round(rules.companion_step_mm / 2 / sp))) for sp in spacing[:2])
    return kx, ky, max(1, int(round(rules.companion_step_mm / spacing[2])))


def companion_run(
    s: Surround, spacing: tuple[float, ...], lateral: float, rules: FemurCheckRules
) -> tuple[float, float]:
    """How much of a mask has a fibula-like bone beside its lateral side.

    Every slice about ``companion_step_mm`` apart (subsampled in-plane to half that) is
    searched for a 2D piece of unlabelled bone (above ``companion_hu``), or of the mask apart
    from its largest piece in that slice (its main cross-section), whose area lies in
    ``companion_area_mm2`` and is at most half the main cross-section, whose brightest voxel
    reaches ``companion_peak_hu``, whose nearest voxel lies ``companion_min_gap_mm`` to
    ``companion_gap_mm`` from the main cross-section (closer is the mask's own bone left out),
    and whose centre lies in ``companion_angle_deg`` from that section's centre (degrees from
    ``lateral``, the sign of world x towards this side's outside, positive towards posterior).
    A slice with metal (``companion_metal_hu``) that near the mask never counts, nor does a
    piece touching the region's side faces (``s`` should reach ``companion_gap_mm +
    companion_margin_mm`` past the mask in x and y).

    Returns:
        (mm of mask along z with such a companion, the fraction of the mask's slices that have one).
    """
    # a region from surround_of is already subsampled; a full-resolution one is here
    kx, ky, kz = companion_steps(spacing, rules) if s.spacing is None else (1, 1, 1)
    spacing = s.spacing or spacing
    mask = s.mask[::kx, ::ky, ::kz]
    have = mask.any(axis=(0, 1))
    if not have.any():
        return 0.0, 0.0
    sx, sy, sz = spacing[0] * kx, spacing[1] * ky, spacing[2] * kz
    # the mask's main cross-section per slice; its other pieces there are candidates too (a
    # stage 2 that labelled a tibia may have taken the fibula in)
    core = largest_piece_per_slice(mask)
    hu = s.hu[::kx, ::ky, ::kz]
    bone = ((hu >= rules.companion_hu) & ~s.labelled[::kx, ::ky, ::kz]) | (mask & ~core)
    bone[:, :, ~have] = False
    # distance (mm) in-plane to the main cross-section, slice by slice (none across slices)
    gap = np.full(core.shape, np.inf)
    for i in np.flatnonzero(have):  # a 2D transform per slice: 4x faster than one in 3D
        gap[:, :, i] = ndi.distance_transform_edt(~core[:, :, i], sampling=(sx, sy))
    pieces, n = ndi.label(bone, structure=IN_PLANE)
    if n == 0:
        return 0.0, 0.0
    # per-piece figures from the pieces' voxels only, sorted by piece (every piece has one)
    flat = np.flatnonzero(pieces)
    lab = pieces.ravel()[flat]
    order = np.argsort(lab, kind="stable")
    flat, lab = flat[order], lab[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    count = np.diff(np.r_[starts, lab.size]).astype(np.float64)
    xi, yi, zi = np.unravel_index(flat, pieces.shape)
    area = count * (sx * sy)
    peak = np.maximum.reduceat(np.asarray(hu[xi, yi, zi], dtype=np.float64), starts)
    near = np.minimum.reduceat(gap[xi, yi, zi], starts)
    centre_x = np.add.reduceat(xi, starts) / count
    centre_y = np.add.reduceat(yi, starts) / count
    z = zi[starts]  # a piece lies in one slice
    edge = np.zeros(n + 1, dtype=bool)
    for face in (pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]):
        edge[np.unique(face)] = True
    touches = edge[lab[starts]]
    # the main cross-section per slice: area and centre
    xs, ys = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    m_n = core.sum(axis=(0, 1)).astype(np.float64)
    safe = np.maximum(m_n, 1.0)
    m_x = np.tensordot(xs, core, axes=([0, 1], [0, 1])) / safe
    m_y = np.tensordot(ys, core, axes=([0, 1], [0, 1])) / safe
    dx = (centre_x - m_x[z]) * sx * lateral
    dy = (m_y[z] - centre_y) * sy  # + towards posterior (world -y in RAS+)
    angle = np.degrees(np.arctan2(dy, dx))
    lo, hi = rules.companion_area_mm2
    ok = (
        (area >= lo)
        & (area <= np.minimum(hi, 0.5 * m_n[z] * sx * sy))
        & ~touches
        & (peak >= rules.companion_peak_hu)
        & (near >= rules.companion_min_gap_mm)
        & (near <= rules.companion_gap_mm)
        & (angle >= rules.companion_angle_deg[0])
        & (angle <= rules.companion_angle_deg[1])
    )
    slices = np.zeros(mask.shape[2], dtype=bool)
    slices[z[ok]] = True
    metal = (hu >= rules.companion_metal_hu) & (gap <= rules.companion_gap_mm)
    slices &= have & ~metal.any(axis=(0, 1))
    return float(slices.sum() * sz), float(slices.sum() / have.sum())


def check_femur(
    side: Label,
    mask: npt.NDArray[np.bool_],
    origin_index: tuple[int, int, int],
    grid: Grid,
    midline_x: float | None,
    rules: FemurCheckRules,
    probability: npt.NDArray[np.float32] | None = None,
    hu: npt.NDArray[Any] | None = None,
    surround: Surround | None = None,
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
        surround: the scan around the mask, or None (no companion rule).
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
    comp_mm = comp_frac = None
    if surround is not None:
        lateral = 1.0 if side == Label.FEMUR_RIGHT else -1.0  # patient right is +x in RAS+
        comp_mm, comp_frac = companion_run(surround, grid.spacing, lateral, rules)
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
    if (
        comp_mm is not None
        and comp_frac is not None
        and rules.companion_says_tibia(comp_mm, comp_frac)
    ):
        hard.append(
            f"{name}: a slender bone runs beside the mask's lateral side over {comp_mm:.0f} mm "
            f"({100 * comp_frac:.0f} % of its slices), as the fibula does beside a tibia; "
            "a tibia, not a femur"
        )
    facts = dict(
        thickness_mm=thick,
        mean_probability=mean_p,
        centre_x_mm=cx,
        midline_x_mm=midline_x,
        bone_hu=bone,
        companion_mm=comp_mm,
        companion_fraction=comp_frac,
    )
    if hard:
        return FemurCheck(side, FemurStatus.NOT_FOUND, tuple(hard), ml, **facts)
    if ml < rules.low_volume_ml:
        soft.append(f"{name}: small mask ({ml:.1f} ml < {rules.low_volume_ml:g} ml)")
    if mean_p is not None and mean_p < rules.min_mean_probability:
        soft.append(
            f"{name}: mean stage-2 probability {mean_p:.2f} < {rules.min_mean_probability:g}"
        )
    status = FemurStatus.LOW_CONFIDENCE if soft else FemurStatus.FOUND
    return FemurCheck(side, status, tuple(soft), ml, **facts)


def check_pair(
    checks: dict[Label, FemurCheck],
    z_ranges: dict[Label, tuple[float, float] | None],
    rules: FemurCheckRules,
) -> dict[Label, FemurCheck]:
    """The rule between the two sides: a mask above the other femur is not a femur.

    Args:
        checks: each side's verdict from :func:`check_femur`.
        z_ranges: each side's mask extent along world z (its box's bottom and top, mm), or
            None for no mask.
        rules: thresholds (``above_other_*``).

    Returns:
        The verdicts, with a side found wholly above the other's found mask (see the module
        notes) turned ``not_found`` or ``low_confidence`` with the reason.
    """
    out = dict(checks)
    if not rules.enabled:
        return out
    sides = (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)
    for side, other in zip(sides, sides[::-1], strict=True):
        a, b = checks[side], checks[other]
        za, zb = z_ranges.get(side), z_ranges.get(other)
        if a.status is FemurStatus.NOT_FOUND or b.status is not FemurStatus.FOUND:
            continue
        if za is None or zb is None or zb[1] - zb[0] < rules.above_other_min_length_mm:
            continue
        gap = za[0] - zb[1]
        if gap <= rules.above_other_mm:
            continue
        reason = (
            f"{LABELS[side]}: the mask lies wholly {gap:.0f} mm above the top of "
            f"{LABELS[other]} (found, {zb[1] - zb[0]:.0f} mm long); no part of a femur lies "
            "above the other femur's head: the pelvis or the spine"
        )
        small = a.volume_ml < rules.above_other_volume_ratio * b.volume_ml
        status = FemurStatus.NOT_FOUND if small else FemurStatus.LOW_CONFIDENCE
        out[side] = replace(a, status=status, reasons=(*a.reasons, reason))
    return out
