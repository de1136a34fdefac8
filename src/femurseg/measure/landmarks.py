"""Orthopaedic landmarks and measurements of one femur: torsion, lengths, axes, offset.

All points are world RAS+ millimetres (+x towards the patient's right, +y anterior, +z
superior), as in the rest of the report. Directions are taken in the femur's own frame, built
per side:

* ``up``: the reference axis pointing proximally (the mechanical axis, head centre minus knee
  centre, when both are known; else the anatomical shaft axis);
* ``medial``: towards the body's midline, perpendicular to ``up`` (world +x for the left
  femur, -x for the right one);
* ``anterior``: ``up x medial`` or its opposite, whichever points to world +y (anterior in RAS+).

Landmarks (each only when the part of the femur it needs is in view and the scan is fine
enough; see :class:`LandmarkConfig`):

* proximal: head centre and radius (the sphere fit of :mod:`.measurements`), neck axis,
  greater trochanter tip (most proximal surface point lateral of the shaft), lesser trochanter
  tip (most posteromedial surface point 20-80 mm below the head centre), proximal and distal
  shaft axes (the shaft's upper and lower halves fitted separately);
* distal (within ``condyle_mm`` of the most distal point): medial and lateral epicondyles (most
  medial and most lateral surface points), most distal points of both condyles (centre of the
  surface within 1.5 mm of the lowest point of each), most posterior
  points of both condyles (the two ends of the posterior bitangent of the condyles' outline
  seen along ``up``), knee centre (centroid of the femur's cross-section 10-20 mm above its
  most distal point, at the level of the intercondylar notch).

Measurements:

* femoral torsion by two named methods that differ in where the neck axis is taken: **Lee**
  (high neck: head centre to the centre of the neck just outside the head) and **Murphy**
  (neck base: head centre to the centre of the femur's cross-section at the lesser trochanter
  tip); each is the angle, seen along the mechanical axis, between the neck axis and the
  posterior condylar line; positive = anteversion (the neck points anteriorly);
* femoral length (head top to condyle bottom along the mechanical axis), mechanical axis
  length (head centre to knee centre), anatomical-mechanical angle, mechanical lateral distal
  femoral angle (mLDFA, coronal plane), femoral offset (head centre to the shaft axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from femurseg.config import check_range
from femurseg.measure.geometry import FloatArray, angle_deg, distance_to_line, principal_axis

#: measurement name -> (unit, method); the method is reported beside every value.
METHODS: dict[str, tuple[str, str]] = {
    "torsion_lee_deg": (
        "deg",
        "femoral torsion, high-neck method (after Lee et al.): head centre to the centre of "
        "the neck just outside the head, against the posterior condylar line, seen along the "
        "mechanical axis; positive = anteversion",
    ),
    "torsion_murphy_deg": (
        "deg",
        "femoral torsion, neck-base method (after Murphy et al.): head centre to the centre of "
        "the femoral cross-section at the lesser trochanter tip, against the posterior "
        "condylar line, seen along the mechanical axis; positive = anteversion",
    ),
    "femoral_length_mm": (
        "mm",
        "top of the head to the bottom of the condyles along the mechanical axis",
    ),
    "mechanical_axis_length_mm": ("mm", "head centre to knee centre"),
    "anatomical_mechanical_angle_deg": (
        "deg",
        "angle between the anatomical shaft axis and the mechanical axis",
    ),
    "mldfa_deg": (
        "deg",
        "mechanical lateral distal femoral angle: in the femur's frontal plane (through the "
        "mechanical axis, parallel to the posterior condylar line), between the mechanical "
        "axis (knee centre towards head centre) and the distal condylar line (most distal "
        "medial towards most distal lateral condylar point)",
    ),
    "femoral_offset_mm": ("mm", "distance from the head centre to the anatomical shaft axis"),
}

#: landmark names, in the order they are listed in files and figures.
LANDMARKS = (
    "head_centre",
    "greater_trochanter_tip",
    "lesser_trochanter_tip",
    "neck_base_centre",
    "knee_centre",
    "medial_epicondyle",
    "lateral_epicondyle",
    "medial_condyle_distal",
    "lateral_condyle_distal",
    "medial_condyle_posterior",
    "lateral_condyle_posterior",
)


@dataclass(frozen=True)
class LandmarkConfig:
    """Settings of the landmark search.

    Attributes:
        condyle_mm: height of the condylar block above the femur's most distal point.
        notch_mm: (low, high) height above the most distal point of the slab whose centroid is
            the knee centre.
        lesser_trochanter_mm: (low, high) distance below the head centre, along the shaft,
            where the lesser trochanter is searched.
        neck_base_slab_mm: thickness of the cross-section whose centre is the neck base.
        max_spacing_mm: scans with a coarser voxel (any axis) give no landmark-based value:
            the condyles' and trochanters' extreme points are then off by half a voxel or more.
        min_half_shaft_mm: least shaft length of each half for the proximal and distal
            shaft axes.
        torsion_range_deg: a torsion outside this range is withheld as implausible (adults
            measure about -25 to +60 degrees by any method): a wrong neck axis, usually from a
            mis-segmented head, not a measurement.
    """

    condyle_mm: float = 45.0
    notch_mm: tuple[float, float] = (10.0, 20.0)
    lesser_trochanter_mm: tuple[float, float] = (20.0, 80.0)
    neck_base_slab_mm: float = 4.0
    max_spacing_mm: float = 3.0
    min_half_shaft_mm: float = 30.0
    torsion_range_deg: tuple[float, float] = (-45.0, 75.0)

    def __post_init__(self) -> None:
        check_range("condyle_mm", self.condyle_mm, 10.0, 120.0)
        check_range("neck_base_slab_mm", self.neck_base_slab_mm, 0.5, 20.0)
        check_range("max_spacing_mm", self.max_spacing_mm, 0.1, 20.0)
        check_range("min_half_shaft_mm", self.min_half_shaft_mm, 5.0, 300.0)


@dataclass
class LandmarkResult:
    """Landmarks (points), axes (unit vectors) and measurements (value or reason) of a femur."""

    points: dict[str, list[float]]
    axes: dict[str, list[float]]
    values: dict[str, float | None]
    reasons: dict[str, str]


def _unit(v: FloatArray) -> FloatArray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _perp(v: FloatArray, axis: FloatArray) -> FloatArray:
    """``v`` with its component along the unit ``axis`` removed."""
    return v - (v @ axis) * axis


def femur_frame(up: FloatArray, medial_sign: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(up, medial, anterior) unit vectors of a femur (see the module docstring)."""
    up = _unit(np.asarray(up, dtype=np.float64))
    medial = _unit(_perp(np.array([medial_sign, 0.0, 0.0]), up))
    anterior = _unit(np.cross(up, medial))
    if anterior[1] < 0:
        anterior = -anterior
    return up, medial, anterior


def signed_angle_deg(u: FloatArray, ref: FloatArray, toward: FloatArray, axis: FloatArray) -> float:
    """Angle from ``ref`` to ``u`` seen along ``axis``, positive when ``u`` turns to ``toward``."""
    a = _unit(_perp(u, axis))
    r = _unit(_perp(ref, axis))
    t = _unit(_perp(toward - (toward @ r) * r, axis))
    return float(np.degrees(np.arctan2(a @ t, a @ r)))


def _posterior_bitangent(
    pts: FloatArray, centre: FloatArray, medial: FloatArray, anterior: FloatArray
) -> tuple[FloatArray, FloatArray] | None:
    """(medial, lateral) points where one line touches both condyles from behind.

    The condylar block's outline seen along the femur is the 2D convex hull of its points; the
    posterior bitangent is the hull edge that joins a medial to a lateral point and faces most
    posteriorly.
    """
    uv = np.stack([(pts - centre) @ medial, (pts - centre) @ anterior], axis=1)
    try:
        hull = ConvexHull(uv)
    except (QhullError, ValueError):
        return None
    best: tuple[float, int, int] | None = None
    centroid = uv[hull.vertices].mean(axis=0)
    for i, j in hull.simplices:
        if uv[i, 0] * uv[j, 0] >= 0:  # both ends on one side: not across the notch
            continue
        edge = uv[j] - uv[i]
        normal = np.array([edge[1], -edge[0]])
        normal /= max(float(np.linalg.norm(normal)), 1e-12)
        if normal @ (uv[i] - centroid) < 0:
            normal = -normal  # outward
        if best is None or normal[1] < best[0]:
            best = (float(normal[1]), int(i), int(j))
    if best is None or best[0] > -0.5:
        return None
    _, i, j = best
    med, lat = (i, j) if uv[i, 0] > 0 else (j, i)
    return pts[med], pts[lat]


def _shaft_line(
    pts: FloatArray, up: FloatArray, lo: float, hi: float, slab: float
) -> tuple[FloatArray, FloatArray] | None:
    """Line through the centroids of slabs of ``pts`` with ``pts @ up`` in [lo, hi]."""
    h = pts @ up
    sel = pts[(h >= lo) & (h <= hi)]
    if len(sel) < 10:
        return None
    bins = np.digitize(sel @ up, np.arange(lo, hi + slab, slab))
    centres = np.array([sel[bins == b].mean(axis=0) for b in np.unique(bins)])
    if len(centres) < 2:
        return None
    point, axis = principal_axis(centres)
    return point, axis if axis @ up > 0 else -axis


def find_landmarks(
    pts: FloatArray,
    surf: FloatArray,
    spacing: FloatArray,
    medial_sign: float,
    *,
    head: tuple[FloatArray, float] | None,
    head_why: str | None,
    neck_axis: FloatArray | None,
    shaft: tuple[FloatArray, FloatArray, float] | None,
    shaft_range: tuple[float, float] | None,
    proximal_in: bool,
    distal_in: bool,
    cfg: LandmarkConfig | None = None,
) -> LandmarkResult:
    """Landmarks and measurements of one femur (see the module docstring).

    Args:
        pts: (N, 3) world RAS+ centres of the femur's voxels.
        surf: (M, 3) world points on its surface (marching cubes).
        spacing: voxel size, mm.
        medial_sign: +1 for the left femur (medial is world +x), -1 for the right.
        head: head centre and radius, None when not found (``head_why`` says why).
        head_why: the reason there is no head.
        neck_axis: unit vector from the head centre towards the neck, or None.
        shaft: anatomical shaft (point, unit axis pointing proximally, radius), or None.
        shaft_range: (low, high) extent of the shaft along world z used for its axis.
        proximal_in: the proximal end is in view (not cut by the image edge).
        distal_in: the distal end is in view.
        cfg: search settings.
    """
    cfg = cfg or LandmarkConfig()
    points: dict[str, list[float]] = {}
    axes: dict[str, list[float]] = {}
    values: dict[str, float | None] = dict.fromkeys(METHODS)
    reasons: dict[str, str] = {}

    def omit(names: tuple[str, ...] | list[str], why: str) -> LandmarkResult:
        for n in names:
            if values.get(n) is None:
                reasons.setdefault(n, why)
        return LandmarkResult(points, axes, values, reasons)

    coarse = float(np.max(spacing))
    if coarse > cfg.max_spacing_mm:
        axis_name = "xyz"[int(np.argmax(spacing))]
        return omit(
            list(METHODS),
            f"voxel size {coarse:.2f} mm along {axis_name} is coarser than the "
            f"{cfg.max_spacing_mm:g} mm the landmarks need; use a finer reconstruction",
        )
    if shaft is None:
        if not proximal_in or not distal_in:
            end = "proximal" if not proximal_in else "distal"
            cut = f"the femur is cut at its {end} end"
            both = [n for n in METHODS if n != "femoral_offset_mm"]
            omit(both, f"{cut}; needs both the head and the condyles in view")
        return omit(list(METHODS), "no shaft axis (too little shaft in view)")
    s_point, s_axis, _ = shaft
    up0, medial0, anterior0 = femur_frame(s_axis, medial_sign)
    hc = head[0] if head is not None else None

    # ---- proximal landmarks
    if proximal_in and hc is not None:
        points["head_centre"] = hc.tolist()
        foot = s_point + ((hc - s_point) @ up0) * up0
        lateral_pts = surf[
            (surf - foot) @ medial0 < -0.3 * max(float(np.linalg.norm(hc - foot)), 1)
        ]
        if len(lateral_pts):
            points["greater_trochanter_tip"] = lateral_pts[np.argmax(lateral_pts @ up0)].tolist()
        depth = (hc - surf) @ up0
        lo, hi = cfg.lesser_trochanter_mm
        band = surf[(depth >= lo) & (depth <= hi)]
        if len(band):
            off = band - (s_point + np.outer((band - s_point) @ up0, up0))
            score = off @ _unit(medial0 - anterior0)
            lt = band[np.argmax(score)]
            points["lesser_trochanter_tip"] = lt.tolist()
            h_lt = lt @ up0
            slab = pts[np.abs(pts @ up0 - h_lt) <= cfg.neck_base_slab_mm / 2.0]
            if len(slab):
                points["neck_base_centre"] = slab.mean(axis=0).tolist()
    if shaft_range is not None:
        lo_z, hi_z = shaft_range
        mid = 0.5 * (lo_z + hi_z)
        for name, a, b in (("proximal_shaft_axis", mid, hi_z), ("distal_shaft_axis", lo_z, mid)):
            if b - a < cfg.min_half_shaft_mm:
                continue
            # heights along world z map onto the shaft axis through its point
            ha = s_point @ up0 + (a - s_point[2]) / max(up0[2], 1e-6)
            hb = s_point @ up0 + (b - s_point[2]) / max(up0[2], 1e-6)
            line = _shaft_line(pts, up0, ha, hb, 5.0)
            if line is not None:
                axes[name] = line[1].tolist()

    # ---- distal landmarks
    if distal_in:
        h_surf = surf @ up0
        bottom = float(h_surf.min())
        block = surf[h_surf <= bottom + cfg.condyle_mm]
        block_vox = pts[pts @ up0 <= bottom + cfg.condyle_mm]
        centre = block_vox.mean(axis=0)
        ml = (block - centre) @ medial0
        points["medial_epicondyle"] = block[np.argmax(ml)].tolist()
        points["lateral_epicondyle"] = block[np.argmin(ml)].tolist()
        for name, half in (("medial", ml > 0), ("lateral", ml < 0)):
            if half.any():
                # the centre of the surface within 1.5 mm of the lowest point: a single extreme
                # voxel corner would tilt the joint line by a voxel over the condyles' spacing
                part = block[half]
                h_part = part @ up0
                low = part[h_part <= h_part.min() + 1.5]
                points[f"{name}_condyle_distal"] = low.mean(axis=0).tolist()
        post = _posterior_bitangent(block, centre, medial0, anterior0)
        if post is not None:
            points["medial_condyle_posterior"] = post[0].tolist()
            points["lateral_condyle_posterior"] = post[1].tolist()
        lo, hi = cfg.notch_mm
        h_pts = pts @ up0
        notch = pts[(h_pts >= bottom + lo) & (h_pts <= bottom + hi)]
        if len(notch):
            points["knee_centre"] = notch.mean(axis=0).tolist()

    # ---- measurements
    if hc is not None:
        values["femoral_offset_mm"] = float(distance_to_line(hc[None], s_point, s_axis)[0])
    else:
        reasons["femoral_offset_mm"] = head_why or "no femoral head"
    need_both = "needs both the head and the condyles in view"
    if not proximal_in or not distal_in:
        end = "proximal" if not proximal_in else "distal"
        return omit(list(METHODS), f"the femur is cut at its {end} end; {need_both}")
    if hc is None:
        return omit(list(METHODS), head_why or "no femoral head found")
    if "knee_centre" not in points:
        return omit(list(METHODS), "no knee centre found")
    kc = np.asarray(points["knee_centre"])
    mech = _unit(hc - kc)
    axes["mechanical_axis"] = mech.tolist()
    axes["anatomical_axis"] = up0.tolist()
    up, medial, anterior = femur_frame(mech, medial_sign)
    values["mechanical_axis_length_mm"] = float(np.linalg.norm(hc - kc))
    h = surf @ up
    values["femoral_length_mm"] = float(h.max() - h.min())
    values["anatomical_mechanical_angle_deg"] = angle_deg(up0, up)
    # the femur's own frontal plane: spanned by the mechanical axis and the posterior
    # condylar line (a leg rotated on the table does not tilt it), else the world's
    frontal_normal = anterior
    if "medial_condyle_posterior" in points and "lateral_condyle_posterior" in points:
        line = np.asarray(points["medial_condyle_posterior"]) - np.asarray(
            points["lateral_condyle_posterior"]
        )
        normal = np.cross(up, _unit(_perp(line, up)))
        if float(np.linalg.norm(normal)) > 0.5:
            frontal_normal = _unit(normal)
    if "medial_condyle_distal" in points and "lateral_condyle_distal" in points:
        md = np.asarray(points["medial_condyle_distal"])
        ld = np.asarray(points["lateral_condyle_distal"])
        values["mldfa_deg"] = angle_deg(_perp(up, frontal_normal), _perp(ld - md, frontal_normal))
    else:
        reasons["mldfa_deg"] = "the most distal points of both condyles were not found"
    if "medial_condyle_posterior" not in points:
        return omit(["torsion_lee_deg", "torsion_murphy_deg"], "no posterior condylar line found")
    condylar = np.asarray(points["medial_condyle_posterior"]) - np.asarray(
        points["lateral_condyle_posterior"]
    )
    if neck_axis is not None:
        # the neck axis points from the head to the neck: the neck points the other way
        values["torsion_lee_deg"] = signed_angle_deg(-neck_axis, condylar, anterior, up)
    else:
        reasons["torsion_lee_deg"] = "no neck axis found next to the head"
    if "neck_base_centre" in points:
        base = np.asarray(points["neck_base_centre"])
        values["torsion_murphy_deg"] = signed_angle_deg(hc - base, condylar, anterior, up)
    else:
        reasons["torsion_murphy_deg"] = "no lesser trochanter found for the neck base"
    lo_t, hi_t = cfg.torsion_range_deg
    for name in ("torsion_lee_deg", "torsion_murphy_deg"):
        v = values.get(name)
        if v is not None and not lo_t <= v <= hi_t:
            values[name] = None
            reasons[name] = (
                f"torsion {v:.0f} deg is outside the plausible {lo_t:g} to {hi_t:g} deg: the "
                "neck axis is wrong (check the segmentation of the head and neck)"
            )
    return omit(list(METHODS), "not measured")


def as_items(result: LandmarkResult) -> dict[str, dict[str, Any]]:
    """``{name: {"value", "unit", "reason", "method"}}`` for the report."""
    out = {}
    for name, (unit, method) in METHODS.items():
        value = result.values.get(name)
        out[name] = {
            "value": value,
            "unit": unit,
            "reason": None if value is not None else result.reasons.get(name, "not measured"),
            "method": method,
        }
    return out
