"""The lower chest above the lumbar spine: T12 up to T8, their ribs, lung bases and heart.

Never labelled. Placed once per case (:func:`place_thorax`, off unless
:class:`~femurseg.phantoms.params.ThoraxParams` ``probability`` draws it) from the lumbar spine
(:mod:`spine`) and the trunk outline (:mod:`body`):

* **Thoracic vertebrae** continue L1's axis upwards, a little smaller at each level, with the
  lumbar vertebra's primitives (body, pedicles, laminae, processes).
* **Ribs** leave each thoracic vertebra's transverse process, run back and out to the rib
  angle, then follow the chest wall just inside the trunk's muscle outline, falling as they go
  forward (``rib_drop`` vertebral levels at the front); T12's rib ends behind the side of the
  chest, T11's at its side, the higher ones in front of it. Each is a chain of capsules,
  rasterised into a voxel mask that :func:`femurseg.phantoms.tissues.bone.render_bone` fills
  with a thin cortex over cancellous bone.
* **Diaphragm, lungs, heart** (:class:`ThoraxPainter`, slice by slice): above the two domes
  (the left lower) the cavity is lung, lower towards the back and sides (the posterior and
  lateral recesses reach below the domes' tops), denser on the dependent (posterior) side with
  small vessels; the mediastinum in front of the spine keeps the aorta and fat; the heart lies
  on the left dome, in front: pericardial fat, myocardium and blood (contrast-enhanced when
  the case is). Below the domes the liver and spleen of the abdomen painter stay.

World RAS+ mm: +x is the patient's right.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.sdf import capsule
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import ThoraxParams
from femurseg.phantoms.tissues.materials import CaseTissues, SliceField, Tissue, draw, painter
from femurseg.phantoms.tissues.slabs import ellipse as _ellipse
from femurseg.phantoms.tissues.spine import (
    PEDICLE_MM,
    Spine,
    Vertebra,
    _evaluate,
    disc_mask,
    empty_crop,
    rasterize_vertebrae,
)

A = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]
#: ``z -> (cx, cy, a, b, fat)`` of the trunk's muscle outline at height z (mm)
TrunkAt = Callable[[float], tuple[float, float, float, float, float]]

LEVELS = ("T12", "T11", "T10", "T9", "T8")
#: per level (T12 .. T8): factor on L1's body height and on its width and depth.
HEIGHT_FACTOR = (0.95, 0.9, 0.86, 0.83, 0.8)
WIDTH_FACTOR = (0.97, 0.92, 0.86, 0.8, 0.76)
#: the back muscles' depth behind the spinous process tips (trunk outline to tip), mm, beyond
#: which come the lamina arch and the body.
BACK_TO_BODY_MM = 10.0 + 22.0
#: per level: where the rib ends, as an angle around the chest from the back (rad; pi is the
#: front midline); costal cartilage beyond it is soft tissue.
RIB_END_RAD = (1.25, 1.75, 2.35, 2.55, 2.65)
#: the rib's angle (where it turns forward), rad from the back midline.
RIB_ANGLE_RAD = 0.45
#: ribs lie this far inside the trunk's muscle outline, mm (in the chest wall).
RIB_INSET_MM = 7.0
#: capsules per rib along the chest wall.
RIB_SEGMENTS = 14
#: rib cross-section: this many times taller (z) than thick.
RIB_TALL = 1.5
#: the domes fall this much towards the sides and the back, mm (at the chest wall).
DOME_SIDE_FALL_MM = 45.0
DOME_BACK_FALL_MM = 40.0
#: mediastinum half-width as a fraction of the cavity half-width.
MEDIASTINUM_FRACTION = 0.16
#: lung density rise towards the back (dependent side), HU.
DEPENDENT_HU = 100.0
#: lung vessel texture lattice (mm) and the share of lung they fill.
LUNG_VESSEL_STEP = (3.0, 3.0, 3.0)
LUNG_VESSEL_SHARE = 0.04
#: cavity wall (chest wall muscles) between the trunk outline and the lungs, mm.
WALL_MM = 12.0


@dataclass(frozen=True)
class Rib:
    """One rib: a polyline (N, 3) world mm and its cross-section radius (mm)."""

    path: A
    radius: float


@dataclass(frozen=True)
class Thorax:
    """The lower chest of one case (world RAS+ mm).

    Attributes:
        vertebrae: T12 first.
        discs: (centre, up, half height) of the disc below each thoracic vertebra.
        ribs: both sides' ribs, T12's first.
        domes: top z of the left and right diaphragm domes.
        heart_centre, heart_axes: heart ellipsoid (x, y, z semi-axes).
        lung_hu: lung base HU.
        reach_mm: how far above L1 a view of this case may end.
    """

    vertebrae: tuple[Vertebra, ...]
    discs: tuple[tuple[A, A, float], ...]
    ribs: tuple[Rib, ...]
    domes: tuple[float, float]
    heart_centre: A
    heart_axes: A
    lung_hu: float
    reach_mm: float

    @property
    def bottom_z(self) -> float:
        """Lowest z (mm) the painter touches: the deepest recess below the lower dome."""
        return min(self.domes) - DOME_SIDE_FALL_MM - DOME_BACK_FALL_MM

    def to_meta(self) -> dict[str, object]:
        """JSON-ready, rounded."""
        return {
            "levels": [v.name for v in self.vertebrae],
            "domes_z": [round(d, 1) for d in self.domes],
            "heart_centre": [round(float(c), 1) for c in self.heart_centre],
            "heart_axes": [round(float(c), 1) for c in self.heart_axes],
            "lung_hu": round(self.lung_hu, 1),
            "reach_mm": round(self.reach_mm, 1),
            "rib_radius_mm": round(self.ribs[0].radius, 2) if self.ribs else None,
        }

    def spine_crop(self, grid: RenderGrid) -> MaskCrop:
        """The thoracic vertebrae as a voxel mask on ``grid``."""
        return rasterize_vertebrae(self.vertebrae, grid, _outline(self.vertebrae))

    def rib_crop(self, grid: RenderGrid) -> MaskCrop:
        """The ribs as a voxel mask on ``grid`` (each capsule evaluated on its own box)."""
        pts = np.concatenate([r.path for r in self.ribs])
        r_max = max(r.radius for r in self.ribs) * RIB_TALL
        crop = empty_crop(grid, pts.min(axis=0) - r_max - 2.0, pts.max(axis=0) + r_max + 2.0)
        if crop.mask.size == 0:
            return crop
        axes = [grid.axis(d)[crop.slices[d]].astype(np.float32) for d in range(3)]
        for rib in self.ribs:
            for a, b in zip(rib.path[:-1], rib.path[1:], strict=True):
                prim = capsule(a, b, rib.radius, scale=(1.0, 1.0, RIB_TALL))
                field = _evaluate([prim], axes, 0.0)
                if field is not None:
                    sub, vals = field
                    crop.mask[sub] |= vals < 0
        return crop


def _outline(vs: tuple[Vertebra, ...]) -> A:
    """Points beyond each thoracic vertebra's body and processes (its crop's extent)."""
    pts = []
    for v in vs:
        for du in (-v.half_height, v.half_height):
            for s in (-1.0, 1.0):
                pts.append(v.at(s * (0.55 * v.rx + v.transverse + 6.0), v.ry + 3.0, du))
                pts.append(v.at(s * (v.rx + 3.0), -v.ry - 35.0 - v.spinous, du - 15.0))
    return np.array(pts)


def place_thorax(
    spine: Spine,
    trunk_at: TrunkAt,
    p: ThoraxParams,
    rng: np.random.Generator,
) -> Thorax | None:
    """Draw the lower chest of one case, or None (chance ``1 - p.probability``).

    Args:
        spine: the case's lumbar spine (L1 is the last vertebra).
        trunk_at: ``z -> (cx, cy, a, b, fat)`` of the trunk's muscle outline (the body model's
            ``at`` bound to its trunk profile).
        p: the chest's parameter ranges.
        rng: random generator (its own stream: drawing nothing leaves other draws unchanged).
    """
    if not rng.uniform() < p.probability:
        return None
    l1 = spine.vertebrae[-1]
    disc = 0.8 * float(spine.discs[-1][2]) * 2.0
    verts: list[Vertebra] = []
    discs: list[tuple[A, A, float]] = []
    prev, top = l1.centre.copy(), l1.half_height
    up = l1.up.copy()
    for i, name in enumerate(LEVELS):
        hh = l1.half_height * HEIGHT_FACTOR[i] / 0.92
        w = WIDTH_FACTOR[i] / 0.87
        rise = top + disc + hh
        z = float(prev[2]) + rise
        # the thoracic bodies sit close to the back, their spinous processes under the back
        # muscles: from L1's depth the column moves there over the first two levels
        _, cy, _, b, _ = trunk_at(z)
        back = cy - b + BACK_TO_BODY_MM + l1.ry * w + l1.spinous * 1.1
        pull = min(1.0, (i + 1) / 2.0)
        y = float(prev[1]) + pull * (back - float(prev[1]))
        centre = np.array([float(l1.centre[0]), y, z])
        up = centre - prev
        up /= np.linalg.norm(up)
        ant = np.array([0.0, up[2], -up[1]])
        discs.append((prev + (top + disc / 2) * up, up.copy(), disc / 2))
        verts.append(
            Vertebra(
                name,
                centre,
                up.copy(),
                ant,
                hh,
                l1.rx * w,
                l1.ry * w,
                l1.transverse * 0.7,
                l1.spinous * 1.1,
            )
        )
        prev, top = centre, hh
    radius = draw(rng, p.rib_radius_mm)
    drop = draw(rng, p.rib_drop) * 27.0
    ribs: list[Rib] = []
    for i, v in enumerate(verts):
        end = RIB_END_RAD[i] * float(rng.uniform(0.92, 1.08))
        for s in (-1.0, 1.0):
            head = v.at(s * (0.55 * v.rx + v.transverse), -v.ry - PEDICLE_MM - 3.0, 0.0)
            pts = [head]
            for phi in np.linspace(RIB_ANGLE_RAD, end, RIB_SEGMENTS):
                f = (phi - RIB_ANGLE_RAD) / (math.pi - RIB_ANGLE_RAD)
                z = float(v.centre[2]) - drop * f
                cx, cy, a, b, _ = trunk_at(z)
                ax, by = max(a - RIB_INSET_MM, 10.0), max(b - RIB_INSET_MM, 10.0)
                pts.append(np.array([cx + s * ax * math.sin(phi), cy - by * math.cos(phi), z]))
            ribs.append(Rib(np.array(pts), radius))
    dome_r = spine.top_z + draw(rng, p.dome_above_l1_mm)
    dome_l = dome_r - draw(rng, p.left_dome_lower_mm)
    length = draw(rng, p.heart_mm)
    cx, cy, a, b, _ = trunk_at(dome_l)
    axes = np.array([0.36 * length, 0.33 * length, 0.5 * length])
    hc = np.array([cx - 0.18 * a, cy + 0.3 * b, dome_l + 0.45 * axes[2]])
    return Thorax(
        tuple(verts),
        tuple(discs),
        tuple(ribs),
        (dome_l, dome_r),
        hc,
        axes,
        draw(rng, p.lung_hu),
        draw(rng, p.reach_mm),
    )


class ThoraxPainter:
    """Paints diaphragm, lungs, mediastinum and heart of one case into axial slices."""

    def __init__(
        self, thorax: Thorax, trunk_at: TrunkAt, t: CaseTissues, vessels: SliceField
    ) -> None:
        """Args: the chest (world mm), the trunk outline ``z -> (cx, cy, a, b, fat)``, the
        tissue draw, and a :class:`SliceField` for the lung vessels."""
        self.th, self.at, self.t, self.vessels = thorax, trunk_at, t, vessels
        self.vessel_thr = float(np.quantile(vessels._coarse, 1.0 - LUNG_VESSEL_SHARE))
        vs = thorax.vertebrae
        self.vz = np.array([v.centre[2] for v in vs])
        self.vx = np.array([v.centre[0] for v in vs])
        self.vy = np.array([v.centre[1] for v in vs])
        self.vry = np.array([v.ry for v in vs])
        self.vrx = np.array([v.rx for v in vs])

    def reaches(self, z: float) -> bool:
        """Whether slice height z (mm) holds lung or heart."""
        return z > self.th.bottom_z

    def paint(
        self,
        k: int,
        z: float,
        x: F32,
        y: F32,
        cav: B,
        hu: F32,
        cls: npt.NDArray[np.uint8],
        win: tuple[int, int, int, int],
    ) -> None:
        """Paint slice k (height z mm) over a window: x (n, 1) and y (1, m) world mm, the
        cavity mask, HU and class arrays (n, m), modified in place; ``win`` is the window's
        (i0, i1, j0, j1) on the grid (for the vessel texture)."""
        th, t = self.th, self.t
        put = painter(hu, cls)
        cx, cy, a, b, _ = self.at(z)
        hw, hb = max(a - WALL_MM, 1.0), max(b - WALL_MM, 1.0)
        ux = (x - np.float32(cx)) / np.float32(hw)
        uy = (y - np.float32(cy)) / np.float32(hb)
        dome = np.where(ux < 0, np.float32(th.domes[0]), np.float32(th.domes[1]))
        # the domes fall towards the sides and, more, towards the back (the recesses)
        floor = (
            dome
            - np.float32(DOME_SIDE_FALL_MM) * np.minimum(ux * ux, 1.0)
            - np.float32(DOME_BACK_FALL_MM) * np.minimum(np.maximum(-uy, 0.0), 1.0) ** 2
        )
        above = cav & (np.float32(z) > floor)
        if not above.any():
            return
        sx = float(np.interp(z, self.vz, self.vx))
        sy = float(np.interp(z, self.vz, self.vy))
        sry = float(np.interp(z, self.vz, self.vry))
        srx = float(np.interp(z, self.vz, self.vrx))
        mw = np.float32(MEDIASTINUM_FRACTION * hw)
        # behind the vertebral bodies: the back muscles; in front, between the lungs: the
        # mediastinum; the rest of the cavity above the diaphragm: lung
        back = (
            above
            & (y < np.float32(sy - 0.4 * sry))
            & (np.abs(x - np.float32(sx)) < np.float32(srx + 0.25 * hw))
        )
        mediastinum = above & ~back & (np.abs(x - np.float32(sx)) < mw) & (y > np.float32(sy - sry))
        lung = above & ~mediastinum & ~back
        put(back, t.muscle, Tissue.MUSCLE)
        i0, i1, j0, j1 = win
        f = self.vessels.slice(k, i0, i1, j0, j1)
        dep = np.clip(-uy, 0.0, 1.0) * np.float32(DEPENDENT_HU)
        put(lung, np.float32(th.lung_hu) + dep, Tissue.GAS)
        vessel = lung & (f > np.float32(self.vessel_thr))
        put(vessel, t.blood if t.blood > t.muscle else t.muscle, Tissue.ORGAN)
        # mediastinum: fat around the descending aorta, beside the spine on the left
        put(mediastinum, t.fat, Tissue.FAT)
        ao = _ellipse(x, y, sx - 0.7 * srx, sy + 0.6 * sry, 11.0, 11.0) < 1
        put(above & ao, t.blood, Tissue.ORGAN)
        # heart on the left dome: pericardial fat, myocardium, blood
        hc, ha = th.heart_centre, th.heart_axes
        dz2 = np.float32(((z - hc[2]) / ha[2]) ** 2)
        if dz2 < 1.0:
            q = _ellipse(x, y, float(hc[0]), float(hc[1]), float(ha[0]), float(ha[1])) + dz2
            heart = above & (q < 1.0)
            myo = t.muscle + 0.3 * max(t.blood - t.muscle, 0.0)
            put(heart, t.fat, Tissue.FAT)
            put(heart & (q < 0.8), myo, Tissue.MUSCLE)
            put(heart & (q < 0.45), t.blood, Tissue.ORGAN)
        # discs between the thoracic vertebrae (the bodies are painted later as bone)
        for disc, v in zip(th.discs, th.vertebrae, strict=True):
            m = disc_mask(disc, v, z, x, y)
            if m is not None:
                put(m, t.disc, Tissue.ORGAN)
