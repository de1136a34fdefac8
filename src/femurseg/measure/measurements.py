"""Femur measurements per side from a label map: volume, length, head diameter, neck-shaft angle.

Every measurement is reported only when the part it needs is in view; otherwise its value is
None and ``reason`` says why (a truncated femur never gets an invented length). Frames and
units: world RAS+ millimetres, volumes in millilitres, angles in degrees.

Method (pure geometry on the mask; no landmarks from a model):

* Regions along world z (superior): the *proximal region* is the top ``proximal_region_mm`` of
  the femur (head, neck, trochanters); the *distal region* is the bottom ``distal_region_mm``
  (condyles); the *shaft* lies between (down to the cut when the distal end is out of view).
* Shaft axis: a line through the centroids of thin z-slabs of the shaft, fitted by PCA, oriented
  proximally. The long axis of the bone is taken as this anatomical shaft axis.
* Length: extent of the marching-cubes surface of the whole femur projected on the shaft axis
  (most proximal point of the head to most distal point of the condyles).
* Head: the point of the proximal region deepest inside the mask (Euclidean distance transform)
  among those medial of the shaft gives a first centre and radius; a least-squares sphere is then
  fitted to the surface points near that sphere, leaving out the cone towards the neck, and
  refined twice. Diameter = 2 x radius. When too little shaft is in view for the shaft axis
  (a scan ending at the proximal thigh), the head is still searched from a provisional axis
  (world z through the lowest third of what is in view); the neck-shaft angle is then omitted.
* Neck axis: from the head centre to the centroid of the mask in a shell 1.05 to 1.5 head radii
  around it (the neck just outside the head), away from the shaft, refined in a 45 degree cone.
  Neck-shaft angle = angle between the neck axis (head -> neck base) and the shaft axis
  pointing proximally; a normal adult femur gives about 125 to 135 degrees.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.config import check_range
from femurseg.errors import ConfigError
from femurseg.measure.geometry import (
    FloatArray,
    angle_deg,
    distance_to_line,
    fit_sphere,
    principal_axis,
    surface_points,
)
from femurseg.measure.landmarks import METHODS as LANDMARK_METHODS
from femurseg.measure.landmarks import LandmarkConfig, as_items, find_landmarks
from femurseg.measure.quality import CutEnd, IndexBoxes, edge_contact, label_crops
from femurseg.threads import map_sides
from femurseg.types import LABELS, Label, affine_spacing, affine_to_world, affine_voxel_ml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasureConfig:
    """Settings for :func:`measure_femurs`.

    Attributes:
        proximal_region_mm: height of the head/neck/trochanter region below the femur's top.
        distal_region_mm: height of the condylar region above the femur's bottom, left out of the
            shaft axis fit.
        min_shaft_mm: shorter shafts in view give no shaft axis (no neck-shaft angle).
        slab_mm: thickness of the z-slabs whose centroids define the shaft axis.
        head_radius_mm: plausible femoral head radius range (adult heads are 36-60 mm across);
            a fit outside it is omitted (often the trochanter, when the head was missed).
        max_head_fit_rms_mm: a sphere fit with a larger rms residual is omitted.
        neck_cone_deg: half angle of the cone towards the neck left out of the head fit.
        neck_shaft_range_deg: plausible neck-shaft angles; a neck axis giving one outside it
            is wrong (the angle and the high-neck torsion are omitted with the reason).
        edge_margin_voxels: mask voxels this close to an image face count as cut by it.
        landmarks: settings of the orthopaedic landmarks (see :mod:`.landmarks`).
    """

    proximal_region_mm: float = 110.0
    distal_region_mm: float = 90.0
    min_shaft_mm: float = 40.0
    slab_mm: float = 5.0
    head_radius_mm: tuple[float, float] = (16.0, 32.0)
    max_head_fit_rms_mm: float = 2.5
    neck_cone_deg: float = 60.0
    neck_shaft_range_deg: tuple[float, float] = (90.0, 170.0)
    edge_margin_voxels: int = 0
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)

    def __post_init__(self) -> None:
        check_range("proximal_region_mm", self.proximal_region_mm, 30.0, 300.0)
        check_range("distal_region_mm", self.distal_region_mm, 0.0, 300.0)
        check_range("min_shaft_mm", self.min_shaft_mm, 5.0, 500.0)
        check_range("slab_mm", self.slab_mm, 0.5, 50.0)
        lo, hi = self.head_radius_mm
        if not 0 < lo < hi:
            raise ConfigError(f"head_radius_mm={self.head_radius_mm}; expected 0 < low < high")
        check_range("max_head_fit_rms_mm", self.max_head_fit_rms_mm, 0.1, 20.0)
        check_range("neck_cone_deg", self.neck_cone_deg, 10.0, 89.0)
        lo_n, hi_n = self.neck_shaft_range_deg
        if not 0 <= lo_n < hi_n <= 180:
            rng = self.neck_shaft_range_deg
            raise ConfigError(f"neck_shaft_range_deg={rng}; expected 0 <= low < high <= 180")
        check_range("edge_margin_voxels", self.edge_margin_voxels, 0, 10)


@dataclass(frozen=True)
class Measurement:
    """One measurement of one femur.

    Attributes:
        name: e.g. ``"length_mm"``.
        value: the value, or None when omitted.
        unit: ``"ml"``, ``"mm"`` or ``"deg"``.
        reason: why it was omitted (None when measured).
        method: one line on how it is measured.
    """

    name: str
    value: float | None
    unit: str
    reason: str | None = None
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"value": self.value, "unit": self.unit, "reason": self.reason,
                "method": self.method}  # fmt: skip


@dataclass(frozen=True)
class FemurMeasurements:
    """All measurements of one femur.

    Attributes:
        side: ``"femur_left"`` or ``"femur_right"``.
        found: whether the side has any voxels.
        cut_ends: femur parts cut by the image edge (``"proximal"``, ``"shaft"``, ``"distal"``).
        items: measurements by name (``volume_in_view_ml``, ``volume_ml``, ``length_mm``,
            ``head_diameter_mm``, ``neck_shaft_angle_deg``).
        landmarks: world RAS+ mm points and unit vectors found on the way (``head_centre``,
            ``shaft_point``, ``shaft_axis``, ``neck_axis``), as lists of three floats.
    """

    side: str
    found: bool
    cut_ends: tuple[str, ...]
    items: dict[str, Measurement] = field(default_factory=dict)
    landmarks: dict[str, list[float]] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        """The value of measurement ``name`` (None when omitted or unknown)."""
        m = self.items.get(name)
        return None if m is None else m.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the report."""
        return {
            "found": self.found,
            "cut_ends": list(self.cut_ends),
            "measurements": {k: m.to_dict() for k, m in self.items.items()},
            "landmarks_ras_mm": dict(self.landmarks),
        }


_METHODS = {
    "volume_in_view_ml": "labelled voxels x voxel volume (whatever part is in view)",
    "volume_ml": "labelled voxels x voxel volume, whole femur in view",
    "length_mm": "surface extent along the shaft axis, head top to condyles",
    "head_diameter_mm": "2 x radius of a least-squares sphere fit to the head surface",
    "neck_shaft_angle_deg": "angle between neck axis (head centre -> neck) and shaft axis",
}
_UNITS = {"volume_in_view_ml": "ml", "volume_ml": "ml", "length_mm": "mm",
          "head_diameter_mm": "mm", "neck_shaft_angle_deg": "deg"}  # fmt: skip


def _m(name: str, value: float | None, reason: str | None = None) -> Measurement:
    return Measurement(name, value, _UNITS[name], None if value is not None else reason,
                       _METHODS[name])  # fmt: skip


@dataclass(frozen=True)
class _Shaft:
    point: FloatArray
    axis: FloatArray
    radius: float


def _shaft_axis(
    pts: FloatArray, lo: float, hi: float, cfg: MeasureConfig
) -> tuple[_Shaft | None, str | None]:
    """Fit the shaft line to voxel centres with world z in [lo, hi]."""
    if hi - lo < cfg.min_shaft_mm:
        return None, (
            f"only {max(hi - lo, 0.0):.0f} mm of shaft in view between the proximal and distal "
            f"regions; at least {cfg.min_shaft_mm:g} mm is needed for the shaft axis"
        )
    sel = pts[(pts[:, 2] >= lo) & (pts[:, 2] <= hi)]
    edges = np.arange(lo, hi + cfg.slab_mm, cfg.slab_mm)
    slab = np.digitize(sel[:, 2], edges)
    centres = np.array([sel[slab == s].mean(axis=0) for s in np.unique(slab)])
    if len(centres) < 2:
        return None, "too few shaft slices in view for the shaft axis"
    point, axis = principal_axis(centres)
    if axis[2] < 0.5:
        return None, (
            f"the shaft axis found is {angle_deg(axis, np.array([0.0, 0.0, 1.0])):.0f} deg from "
            "the scanner z axis; expected a femur lying roughly along z"
        )
    length = float(np.ptp(sel @ axis))
    radius = float(np.sqrt(len(sel) / max(length, 1e-6) / np.pi)) if length > 0 else 0.0
    return _Shaft(point, axis, radius), None


def _provisional_shaft(pts: FloatArray, bottom: float, top: float) -> _Shaft:
    """A stand-in shaft for the head search when too little shaft is in view: world z through
    the centroid of the bottom third of what is in view (below the head)."""
    low = pts[pts[:, 2] <= bottom + (top - bottom) / 3.0]
    height = max(float(np.ptp(low[:, 2])), 1e-6)
    radius = float(np.sqrt(len(low) / height / np.pi))
    return _Shaft(low.mean(axis=0), np.array([0.0, 0.0, 1.0]), radius)


def _head(
    ijk: npt.NDArray[np.intp],
    pts: FloatArray,
    affine: FloatArray,
    side: Label,
    shaft: _Shaft,
    top: float,
    cfg: MeasureConfig,
) -> tuple[FloatArray, float, float] | str:
    """Head centre, radius and fit rms from the femur's voxels, or why no head was measured.

    ``ijk`` (N, 3) are the femur's voxel indices and ``pts`` (N, 3) their world RAS+ centres.
    """
    prox = pts[:, 2] >= top - cfg.proximal_region_mm
    lo = ijk[prox].min(axis=0)
    hi = ijk[prox].max(axis=0) + 1
    sub = np.zeros(tuple(hi - lo), dtype=bool)
    sub[tuple((ijk[prox] - lo).T)] = True
    sub_affine = affine.copy()
    sub_affine[:3, 3] = affine_to_world(lo, affine)
    depth = ndi.distance_transform_edt(np.pad(sub, 1), sampling=affine_spacing(affine))
    depth = depth[1:-1, 1:-1, 1:-1]
    # Medial = towards the body's midline: world +x (patient right) for the left femur.
    medial = np.array([1.0 if side == Label.FEMUR_LEFT else -1.0, 0.0, 0.0])
    medial = medial - (medial @ shaft.axis) * shaft.axis
    medial /= np.linalg.norm(medial)
    sub_ijk = ijk[prox] - lo
    sub_pts = pts[prox]
    cand = (sub_pts - shaft.point) @ medial > shaft.radius
    if not cand.any():
        return "no bone medial of the shaft in the proximal region; no femoral head found"
    d = depth[tuple(sub_ijk[cand].T)]
    best = int(np.argmax(d))
    centre = sub_pts[cand][best]
    radius = float(d[best])
    surf = surface_points(sub, sub_affine)
    cos_cone = np.cos(np.radians(cfg.neck_cone_deg))
    rms = np.inf
    for _ in range(3):
        rel = surf - centre
        dist = np.linalg.norm(rel, axis=1)
        foot = shaft.point + ((centre - shaft.point) @ shaft.axis) * shaft.axis
        to_neck = (foot - centre) / max(float(np.linalg.norm(foot - centre)), 1e-6)
        band = max(0.25 * radius, 2.0 * float(affine_spacing(affine).max()))
        keep = (np.abs(dist - radius) < band) & (rel @ to_neck < cos_cone * dist)
        if keep.sum() < 20:
            return f"too few head surface points ({int(keep.sum())}) for a sphere fit"
        centre, radius, rms = fit_sphere(surf[keep])
    rlo, rhi = cfg.head_radius_mm
    if not rlo <= radius <= rhi:
        return (
            f"the sphere fitted to the head has radius {radius:.1f} mm, outside the plausible "
            f"{rlo:g} to {rhi:g} mm; the head may be replaced by an implant or mis-segmented"
        )
    if rms > cfg.max_head_fit_rms_mm:
        return (
            f"the head surface is not spherical (fit residual {rms:.1f} mm > "
            f"{cfg.max_head_fit_rms_mm:g} mm); check the segmentation of the head"
        )
    return centre, radius, rms


def _largest_piece(ijk: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Which of the voxels ``ijk`` (N, 3) form their largest 26-connected piece."""
    lo = ijk.min(axis=0)
    grid = np.zeros(tuple(ijk.max(axis=0) - lo + 1), dtype=bool)
    grid[tuple((ijk - lo).T)] = True
    comps, n = ndi.label(grid, structure=np.ones((3, 3, 3), dtype=bool))
    ids = comps[tuple((ijk - lo).T)]
    if n <= 1:
        return np.ones(len(ijk), dtype=bool)
    return ids == int(np.argmax(np.bincount(ids)[1:])) + 1


def _neck_axis(
    ijk: npt.NDArray[np.intp],
    pts: FloatArray,
    centre: FloatArray,
    radius: float,
    shaft: _Shaft,
) -> FloatArray | str:
    """Unit vector from the head centre towards the neck base, or the reason none was found.

    The neck is the bone 1.05 to 1.5 head radii from the centre: the largest connected piece
    of that shell (a small piece elsewhere, a bump of the head or a few stray voxels of the
    mask, must not decide the axis), without its voxels near the shaft axis unless they are
    most of it (a short neck runs close to the shaft).
    """
    dist = np.linalg.norm(pts - centre, axis=1)
    shell = np.flatnonzero((dist > 1.05 * radius) & (dist < 1.5 * radius))
    neck = shell[_largest_piece(ijk[shell])] if len(shell) else shell
    if len(neck) < 10:
        return (
            "no neck found next to the head (fewer than 10 connected voxels 1.05 to 1.5 head "
            "radii away)"
        )
    clear = distance_to_line(pts[neck], shaft.point, shaft.axis) > 1.3 * shaft.radius
    if clear.sum() >= max(10, 0.25 * len(neck)):
        neck = neck[clear]
    rel = pts[neck] - centre
    axis = rel.mean(axis=0)
    axis /= np.linalg.norm(axis)
    for _ in range(2):
        unit = rel / np.linalg.norm(rel, axis=1, keepdims=True)
        cone = unit @ axis > np.cos(np.radians(45.0))
        if cone.sum() < 10:
            break
        axis = rel[cone].mean(axis=0)
        axis /= np.linalg.norm(axis)
    return axis


def measure_femur(
    mask: npt.ArrayLike,
    affine: npt.ArrayLike,
    side: Label,
    config: MeasureConfig | None = None,
) -> FemurMeasurements:
    """Measure one femur.

    Args:
        mask: bool array (X, Y, Z) of the femur, canonical RAS+ axis order.
        affine: 4x4 voxel index -> world RAS+ mm.
        side: which femur (decides the medial direction: +x for the left femur).
        config: regions and plausibility limits.

    Returns:
        The measurements; each omitted one carries its reason.
    """
    cfg = config or MeasureConfig()
    m = np.asarray(mask, dtype=bool)
    a = np.asarray(affine, dtype=np.float64)
    name = LABELS[side]
    if not m.any():
        why = f"{name} not found in the label map"
        none = {k: _m(k, None, why) for k in _UNITS}
        for k, (unit, method) in LANDMARK_METHODS.items():
            none[k] = Measurement(k, None, unit, why, method)
        return FemurMeasurements(name, False, (), none, {})
    items: dict[str, Measurement] = {}
    landmarks: dict[str, list[float]] = {}
    vol = float(m.sum()) * affine_voxel_ml(a)
    contact = edge_contact(m, a, cfg.edge_margin_voxels)
    ends = contact.ends if contact else ()
    cut_text = " and ".join(e.value for e in ends)
    items["volume_in_view_ml"] = _m("volume_in_view_ml", vol)
    whole = f"the femur is cut by the image edge at its {cut_text} end"
    items["volume_ml"] = _m("volume_ml", None if ends else vol, whole)
    ijk = np.argwhere(m)
    pts = affine_to_world(ijk, a)
    top, bottom = float(pts[:, 2].max()), float(pts[:, 2].min())
    proximal_in = CutEnd.PROXIMAL not in ends
    distal_in = CutEnd.DISTAL not in ends
    shaft: _Shaft | None = None
    shaft_why: str | None = whole
    shaft_range: tuple[float, float] | None = None
    if proximal_in:
        lo = bottom + (cfg.distal_region_mm if distal_in else 0.0)
        shaft, shaft_why = _shaft_axis(pts, lo, top - cfg.proximal_region_mm, cfg)
        shaft_range = (lo, top - cfg.proximal_region_mm)
    if shaft is not None:
        landmarks["shaft_point"] = shaft.point.tolist()
        landmarks["shaft_axis"] = shaft.axis.tolist()
    surf = surface_points(m, a)
    if ends or shaft is None:
        items["length_mm"] = _m("length_mm", None, whole if ends else shaft_why)
    else:
        proj = surf @ shaft.axis
        items["length_mm"] = _m("length_mm", float(proj.max() - proj.min()))
    if not proximal_in:
        head: tuple[FloatArray, float, float] | str = whole
    else:
        # Without a shaft in view the head is still found, from a provisional axis.
        guide = shaft or _provisional_shaft(pts, bottom, top)
        head = _head(ijk, pts, a, side, guide, top, cfg)
    nsa: float | str
    neck: FloatArray | str | None = None
    if isinstance(head, str):
        items["head_diameter_mm"] = _m("head_diameter_mm", None, head)
        nsa = head
    else:
        centre, radius, _ = head
        landmarks["head_centre"] = centre.tolist()
        items["head_diameter_mm"] = _m("head_diameter_mm", 2.0 * radius)
        if shaft is None:
            nsa = str(shaft_why)
        else:
            neck = _neck_axis(ijk, pts, centre, radius, shaft)
            if isinstance(neck, str):
                nsa = neck
            else:
                nsa = angle_deg(neck, shaft.axis)
                lo_n, hi_n = cfg.neck_shaft_range_deg
                if lo_n <= nsa <= hi_n:
                    landmarks["neck_axis"] = neck.tolist()
                else:
                    nsa = (
                        f"neck-shaft angle {nsa:.0f} deg is outside the plausible {lo_n:g} to "
                        f"{hi_n:g} deg: the neck axis is wrong (check the segmentation of the "
                        "head and neck)"
                    )
                    neck = None
    if isinstance(nsa, str):
        items["neck_shaft_angle_deg"] = _m("neck_shaft_angle_deg", None, nsa)
    else:
        items["neck_shaft_angle_deg"] = _m("neck_shaft_angle_deg", nsa)
    found = find_landmarks(
        pts,
        surf,
        affine_spacing(a),
        1.0 if side == Label.FEMUR_LEFT else -1.0,
        head=None if isinstance(head, str) else (head[0], head[1]),
        head_why=head if isinstance(head, str) else None,
        neck_axis=neck if isinstance(neck, np.ndarray) else None,
        shaft=None if shaft is None else (shaft.point, shaft.axis, shaft.radius),
        shaft_range=shaft_range if shaft is not None else None,
        proximal_in=proximal_in,
        distal_in=distal_in,
        cfg=cfg.landmarks,
    )
    for key, d in as_items(found).items():
        items[key] = Measurement(key, d["value"], d["unit"], d["reason"], d["method"])
    for key, point in found.points.items():
        landmarks.setdefault(key, point)
    for key, axis in found.axes.items():
        landmarks.setdefault(key, axis)
    return FemurMeasurements(name, True, tuple(e.value for e in ends), items, landmarks)


def measure_femurs(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    config: MeasureConfig | None = None,
    *,
    boxes: IndexBoxes | None = None,
    workers: int = 1,
) -> dict[str, FemurMeasurements]:
    """Measure both femurs of a label map.

    Args:
        labels: integer label map (X, Y, Z), canonical RAS+ order, values 0/1/2.
        affine: 4x4 voxel index -> world RAS+ mm.
        config: regions and plausibility limits.
        boxes: each side's tight index box in ``labels``, when known (saves a search).
        workers: threads measuring the two femurs side by side (the same result).

    Returns:
        ``{"femur_left": FemurMeasurements, "femur_right": FemurMeasurements}``.
    """
    cfg = config or MeasureConfig()
    lab = np.asarray(labels)
    crops = label_crops(lab, affine, cfg.edge_margin_voxels + 1, boxes)

    def one(s: Label) -> FemurMeasurements:
        crop = crops[s]
        if crop is None:
            return measure_femur(np.zeros((1, 1, 1), bool), affine, s, cfg)
        sl, sub_affine = crop
        return measure_femur(lab[sl] == int(s), sub_affine, s, cfg)

    done = map_sides(one, (Label.FEMUR_LEFT, Label.FEMUR_RIGHT), workers)
    return {LABELS[s]: m for s, m in done.items()}


#: measurements that describe native hip anatomy, which an implant replaces or distorts.
HIP_GEOMETRY = (
    "head_diameter_mm",
    "neck_shaft_angle_deg",
    "torsion_lee_deg",
    "torsion_murphy_deg",
    "femoral_offset_mm",
    "femoral_length_mm",
    "mechanical_axis_length_mm",
    "anatomical_mechanical_angle_deg",
    "mldfa_deg",
)
#: landmarks placed from the head, withheld with it.
HIP_LANDMARKS = ("head_centre", "neck_axis", "neck_base_centre", "mechanical_axis")


def withhold_for_metal(measured: FemurMeasurements, metal_voxels: int) -> FemurMeasurements:
    """The measurements with the hip geometry omitted when metal was found inside the femur.

    A hip stem or nail means the head and neck are (partly) prosthetic or distorted by streaks,
    so the head centre and everything measured from it (diameter, angles, torsion, offset,
    lengths to the head) are not anatomical values; they are omitted with the reason, and the
    metal quality flag says where to look.

    Args:
        measured: one femur's measurements.
        metal_voxels: voxels at metal HU inside that femur (0 when none).
    """
    if metal_voxels <= 0 or not measured.found:
        return measured
    why = (
        f"metal suspected inside the femur ({metal_voxels} voxels): an implant makes the head "
        "and neck geometry non-anatomical; measure on the scan by hand if needed"
    )
    items = dict(measured.items)
    for name in HIP_GEOMETRY:
        if name in items and items[name].value is not None:
            items[name] = dataclasses.replace(items[name], value=None, reason=why)
    marks = {k: v for k, v in measured.landmarks.items() if k not in HIP_LANDMARKS}
    return dataclasses.replace(measured, items=items, landmarks=marks)
