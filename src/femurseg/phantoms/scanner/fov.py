"""Fields of view: which part of the body an image covers, as an output grid.

The z range of each kind is set from the anatomy's landmarks (iliac crest, femoral heads,
knees, ankles) with random margins; the in-plane extent from the body model's outline with a
random air gap (or, for ``one_leg``, around one leg only). The grid is axis-aligned RAS+; the
on-disk orientation is chosen separately when the case is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.params import FovKind, PhantomConfig
from femurseg.phantoms.tissues.body import BodyModel
from femurseg.phantoms.tissues.spine import Spine

A = npt.NDArray[np.float64]

#: smallest in-plane width (mm) of a one-leg field of view and the largest.
ONE_LEG_WIDTH_MM = (170.0, 260.0)
#: clearance (mm) between the femoral head and the top of a knee field of view.
KNEE_HEAD_CLEARANCE_MM = 40.0
#: an abdominal field of view ends between the middle of L3 and this far above L1, mm.
ABOVE_L1_MM = 20.0
#: a ``legs`` field of view ends at most this far above the lowest femoral condyle point, mm.
LEGS_CONDYLE_MM = 12.0
#: range of how much of the femoral heads' tops a ``head_tops`` field of view shows, mm.
HEAD_TOPS_MM = (3.0, 15.0)
#: range of how much of the distal femur a ``distal`` field of view shows, mm.
DISTAL_FEMUR_MM = (20.0, 60.0)


@dataclass(frozen=True)
class Fov:
    """A chosen field of view.

    Attributes:
        kind: the kind (never MIXED).
        grid: the output grid (axis-aligned RAS+).
        circle: (centre x, centre y, radius) mm of the reconstruction circle, or None.
        side: the leg a ONE_LEG field of view is centred on, else None.
    """

    kind: FovKind
    grid: RenderGrid
    circle: tuple[float, float, float] | None
    side: str | None = None

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready description."""
        g = self.grid
        return {
            "kind": self.kind.value,
            "shape": list(g.shape),
            "spacing": [round(s, 4) for s in g.spacing],
            "origin": [round(o, 3) for o in g.origin],
            "z_range_mm": [
                round(g.origin[2], 2),
                round(g.origin[2] + g.spacing[2] * (g.shape[2] - 1), 2),
            ],
            "circle": None if self.circle is None else [round(c, 2) for c in self.circle],
            "side": self.side,
        }


def choose_kind(cfg: PhantomConfig, rng: np.random.Generator) -> FovKind:
    """The configured kind, or for MIXED one drawn by ``cfg.fov_weights``."""
    if cfg.fov is not FovKind.MIXED:
        return cfg.fov
    kinds = sorted(cfg.fov_weights)
    w = np.array([cfg.fov_weights[k] for k in kinds], dtype=np.float64)
    return FovKind(kinds[int(rng.choice(len(kinds), p=w / w.sum()))])


def choose_spacing(cfg: PhantomConfig, rng: np.random.Generator) -> tuple[float, float, float]:
    """The configured spacing, or in-plane and slice spacing drawn from their ranges."""
    if cfg.spacing is not None:
        return (float(cfg.spacing[0]), float(cfg.spacing[1]), float(cfg.spacing[2]))
    s = float(np.round(rng.uniform(*cfg.inplane_spacing_mm), 4))
    return (s, s, float(rng.choice(cfg.slice_spacing_choices)))


#: the finest in-plane matrix a capped case keeps (scanners reconstruct 512, 768 or 1024).
CAPPED_MATRIX = 768


def capped_spacing(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], max_voxels: float
) -> tuple[float, float, float]:
    """``spacing``, coarsened so that the same extent holds at most ``max_voxels`` voxels.

    In-plane pixels first grow to the larger in-plane extent over :data:`CAPPED_MATRIX`; if
    that is not enough, slices thicken. A grid already within the cap keeps its spacing.
    """
    if float(np.prod(shape)) <= max_voxels:
        return spacing
    ext = np.asarray(shape, dtype=np.float64) * np.asarray(spacing)
    s_in = max(spacing[0], spacing[1], max(ext[0], ext[1]) / CAPPED_MATRIX)
    slices = max_voxels / ((ext[0] / s_in) * (ext[1] / s_in))
    s_z = max(spacing[2], ext[2] / max(slices, 1.0))
    if slices < 1.0:  # one slice at that matrix is already too many: grow all three alike
        s_in = s_z = max(s_in, s_z, float(np.cbrt(np.prod(ext) / max_voxels)))
    return (float(np.round(s_in, 4)), float(np.round(s_in, 4)), float(np.round(s_z, 4)))


def _z(anatomy: Anatomy, name: str) -> float:
    return float(np.asarray(anatomy.landmarks[name])[2])


def z_range(
    kind: FovKind, anatomy: Anatomy, rng: np.random.Generator, abdomen_top: float | None = None
) -> tuple[float, float]:
    """(bottom, top) world z (mm) of a field of view of ``kind``; a ``hip``, ``full`` or
    ``abdomen`` one ends at ``abdomen_top`` (mm) when that is given.

    The kinds with no or little femur: ``legs`` (knee to ankle, the top edge at most
    :data:`LEGS_CONDYLE_MM` above the lowest condyle point), ``abdomen`` (from above the femoral
    heads up into the lumbar spine), ``head_tops`` (the pelvis with only the top
    :data:`HEAD_TOPS_MM` of the heads) and ``distal`` (the knee with only
    :data:`DISTAL_FEMUR_MM` of femur above the condyles)."""
    u = rng.uniform
    crest = _z(anatomy, "pelvis_top")
    hip = min(_z(anatomy, "hip_left"), _z(anatomy, "hip_right"))
    hip_hi = max(_z(anatomy, "hip_left"), _z(anatomy, "hip_right"))
    knee = 0.5 * (_z(anatomy, "knee_left") + _z(anatomy, "knee_right"))
    ankle = min(_z(anatomy, "ankle_left"), _z(anatomy, "ankle_right"))
    ftop = max(_z(anatomy, "femur_top_left"), _z(anatomy, "femur_top_right"))
    fbot = min(_z(anatomy, "femur_bottom_left"), _z(anatomy, "femur_bottom_right"))
    r = max(float(np.asarray(anatomy.landmarks[f"head_radius_{s}"])[0]) for s in ("left", "right"))
    if kind is FovKind.FULL:
        lo, hi = ankle - u(0.0, 25.0), crest + u(5.0, 40.0)
        return lo, hi if abdomen_top is None else max(hi, abdomen_top)
    if kind is FovKind.HIP:
        lo, hi = hip - u(50.0, 100.0), crest + u(0.0, 60.0)
        return lo, hi if abdomen_top is None else max(hi, abdomen_top)
    if kind is FovKind.THIGHS:
        return fbot - u(10.0, 60.0), ftop + u(5.0, 40.0)
    if kind is FovKind.KNEE:
        top = min(knee + u(60.0, 150.0), hip_hi - r - KNEE_HEAD_CLEARANCE_MM)
        return knee - u(50.0, 120.0), top
    if kind is FovKind.CUT:
        shaft = u(0.2, 0.8) * (ftop - fbot) + fbot
        if u() < 0.5:  # the image starts mid-shaft and runs down past the knee
            return fbot - u(20.0, 150.0), shaft
        return shaft, crest + u(0.0, 40.0)
    head_top = max(
        _z(anatomy, f"hip_{s}") + float(np.asarray(anatomy.landmarks[f"head_radius_{s}"])[0])
        for s in ("left", "right")
    )
    if kind is FovKind.LEGS:
        # Knee to ankle; the top edge at most a little above the lowest condyle point.
        return ankle - u(0.0, 40.0), fbot + u(-25.0, LEGS_CONDYLE_MM)
    if kind is FovKind.ABDOMEN:
        lo = head_top + u(5.0, 45.0)
        hi = crest + u(20.0, 80.0) if abdomen_top is None else max(abdomen_top, crest + 20.0)
        return lo, hi
    if kind is FovKind.HEAD_TOPS:
        return head_top - u(*HEAD_TOPS_MM), crest + u(0.0, 60.0)
    if kind is FovKind.DISTAL:
        return knee - u(50.0, 150.0), fbot + u(*DISTAL_FEMUR_MM)
    if kind is FovKind.ONE_LEG:
        return z_range(
            [FovKind.FULL, FovKind.THIGHS, FovKind.KNEE][int(rng.integers(3))], anatomy, rng
        )
    raise ValueError(f"no z range for field of view kind {kind}")


def choose_fov(
    kind: FovKind,
    anatomy: Anatomy,
    body: BodyModel,
    spacing: tuple[float, float, float],
    gap_mm: tuple[float, float],
    circle: bool,
    rng: np.random.Generator,
    spine: Spine | None = None,
    abdomen_probability: float = 0.0,
    tight: tuple[float, float, float] | None = None,
) -> Fov:
    """Choose a field of view of ``kind`` and build its output grid.

    Args:
        kind: a kind other than MIXED.
        anatomy: posed bones and landmarks (world RAS+ mm).
        body: the case's body model (for the in-plane extent).
        spacing: output voxel size (x, y, z) mm.
        gap_mm: range of the air gap kept around the body in-plane, mm.
        circle: whether to show a circular reconstruction field (padding outside it).
        rng: random generator.
        spine: the lumbar spine; with it, ``hip`` and ``full`` fields of view reach up to
            L3-L1 with chance ``abdomen_probability``.
        abdomen_probability: that chance.
        tight: (chance, lowest cut, highest cut) of a field of view narrower than the body:
            its side edges cut that many mm into the body (never for ``one_leg``).
    """
    top = None
    if spine is not None and (
        kind is FovKind.ABDOMEN
        or (kind in (FovKind.HIP, FovKind.FULL) and rng.uniform() < abdomen_probability)
    ):
        chest = body.thorax
        above = ABOVE_L1_MM if chest is None else chest.reach_mm
        top = rng.uniform(float(spine.vertebrae[2].centre[2]), spine.top_z + above)
    z_lo, z_hi = z_range(kind, anatomy, rng, top)
    lo, hi = body.extent(z_lo, z_hi)
    gap = rng.uniform(*gap_mm)
    lo, hi = lo - gap, hi + gap
    cut = None
    if tight is not None and kind is not FovKind.ONE_LEG and rng.uniform() < tight[0]:
        # Narrower than the body: no air at the sides, which may cut into the hips.
        cut = gap + rng.uniform(tight[1], tight[2])
        lo[0], hi[0] = lo[0] + cut, hi[0] - cut
    # Some of the table shows below the body, not all of it.
    lo[1] = max(lo[1], body.table.y0 - rng.uniform(0.0, body.table.thickness + 10.0))
    side = None
    if kind is FovKind.ONE_LEG:
        side = "left" if rng.uniform() < 0.5 else "right"
        cx = 0.5 * (
            float(anatomy.landmarks[f"hip_{side}"][0]) + float(anatomy.landmarks[f"knee_{side}"][0])
        )
        half_w = 0.5 * rng.uniform(*ONE_LEG_WIDTH_MM)
        lo[0], hi[0] = cx - half_w, cx + half_w
    centre = (lo + hi) / 2
    half = (hi - lo) / 2
    circ: tuple[float, float, float] | None = None
    if circle:
        # A square reconstruction field with its inscribed circle, the body inside it.
        r = float(half.max())
        if side is None and cut is None:  # the whole body inside the circle
            r = max(r, body.max_radius(centre, z_lo, z_hi) + gap / 2)
        half = np.array([r, r])
        circ = (float(centre[0]), float(centre[1]), r)
    n = [max(int(np.ceil(2 * half[d] / spacing[d])), 1) for d in range(2)]
    nz = max(int(np.floor((z_hi - z_lo) / spacing[2])) + 1, 1)
    origin = (
        float(centre[0] - spacing[0] * (n[0] - 1) / 2),
        float(centre[1] - spacing[1] * (n[1] - 1) / 2),
        float(z_lo),
    )
    grid = RenderGrid((n[0], n[1], nz), spacing, origin)
    return Fov(kind, grid, circ, side)
