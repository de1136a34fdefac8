"""The lumbar spine (L5 up to L1) standing on the sacrum, in world RAS+ mm; never labelled.

The vertebrae follow a circular arc in the mid-sagittal plane: it leaves the S1 endplate
along the endplate's normal (tilted anteriorly by the sacral slope) and turns back by the
lordosis angle by L1. Each vertebra is a blend of implicit primitives (see
:mod:`femurseg.phantoms.anatomy.sdf`) in its own frame (``up`` along the arc, ``ant`` towards the
belly, +x lateral): a body with rounded rims, pedicles, laminae, a spinous process, transverse
processes and articular processes. The primitives are evaluated straight on the render grid
(no mesh), giving a voxel mask that :func:`femurseg.phantoms.tissues.bone.render_bone` fills with a
cortical shell over cancellous bone. The discs between the bodies are soft tissue, painted by
the abdomen renderer (:mod:`femurseg.phantoms.tissues.abdomen`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.sdf import Points, Primitive, capsule, ellipsoid, smin
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import TrunkParams
from femurseg.phantoms.tissues.materials import draw

A = npt.NDArray[np.float64]

LEVELS = ("L5", "L4", "L3", "L2", "L1")
#: per-level factors (L5 .. L1) of body height, body width/depth, and process lengths.
HEIGHT_FACTOR = (1.0, 1.02, 1.0, 0.96, 0.92)
WIDTH_FACTOR = (1.1, 1.05, 1.0, 0.93, 0.87)
TRANSVERSE_FACTOR = (0.8, 0.95, 1.2, 1.0, 0.75)
SPINOUS_FACTOR = (0.85, 1.0, 1.05, 1.0, 0.95)
#: half-width of the sacrum's midline band searched for the S1 endplate, mm; depth below its
#: top taken as the endplate, mm.
MIDLINE_BAND_MM = 15.0
ENDPLATE_BAND_MM = 10.0
#: rounding of the vertebral body's rims, mm; blend radius of the processes, mm.
RIM_MM = 3.0
BLEND_MM = 2.5
#: distance from the vertebral body's back to the pedicle-lamina junction and to the base of
#: the spinous process, mm.
PEDICLE_MM = 10.0
ARCH_MM = 22.0
#: samples of the spine's arc (its points are integrated numerically along them).
ARC_SAMPLES = 121


@dataclass(frozen=True)
class Vertebra:
    """One lumbar vertebra's frame and size (world RAS+ mm).

    Attributes:
        name: L1..L5.
        centre: centre of the body, (3,).
        up: unit axis of the body (cranial), (3,), in the y-z plane.
        ant: unit anterior direction perpendicular to ``up``, (3,).
        half_height, rx, ry: body half height, medio-lateral and antero-posterior semi-axes.
        transverse, spinous: process lengths.
    """

    name: str
    centre: A
    up: A
    ant: A
    half_height: float
    rx: float
    ry: float
    transverse: float
    spinous: float

    def at(self, dx: float, da: float, du: float) -> A:
        """World point at (lateral, anterior, cranial) offsets from the body centre (mm)."""
        return self.centre + np.array([dx, 0.0, 0.0]) + da * self.ant + du * self.up


@dataclass(frozen=True)
class Spine:
    """The lumbar spine of one case: vertebrae L5..L1 and the discs below each of them.

    Attributes:
        vertebrae: L5 first.
        discs: (centre, up, half height) of the disc below each vertebra (L5-S1 first).
        s1_top: centre of the S1 endplate, (3,).
    """

    vertebrae: tuple[Vertebra, ...]
    discs: tuple[tuple[A, A, float], ...]
    s1_top: A

    @property
    def top_z(self) -> float:
        """Highest world z (mm) of the vertebral bodies (L1's upper endplate)."""
        v = self.vertebrae[-1]
        return float(v.centre[2] + v.half_height * v.up[2] + v.ry * abs(v.up[1]))

    def outline_points(self) -> A:
        """(N, 3) points on the outer extent of every vertebra (body rim, process tips)."""
        return vertebra_outline(self.vertebrae)

    def rasterize(self, grid: RenderGrid) -> MaskCrop:
        """The vertebrae as a voxel mask on ``grid`` (voxel centres inside a primitive blend)."""
        return rasterize_vertebrae(self.vertebrae, grid)


def vertebra_outline(vertebrae: tuple[Vertebra, ...]) -> A:
    """(N, 3) points on the outer extent of the vertebrae (body rim, process tips)."""
    pts = []
    for v in vertebrae:
        for du in (-v.half_height, v.half_height):
            for th in np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False):
                pts.append(v.at(v.rx * math.cos(th), v.ry * math.sin(th), du))
        back = -v.ry - ARCH_MM
        for s in (-1.0, 1.0):
            pts.append(v.at(s * (0.55 * v.rx + v.transverse), -v.ry - PEDICLE_MM, 0.0))
        pts.append(v.at(0.0, back - v.spinous, -0.35 * v.half_height))
    return np.array(pts)


def rasterize_vertebrae(
    vertebrae: tuple[Vertebra, ...], grid: RenderGrid, outline: A | None = None
) -> MaskCrop:
    """Vertebrae as a voxel mask on ``grid`` (voxel centres inside a primitive blend), over
    the part of the grid within 10 mm of ``outline`` (default :func:`vertebra_outline`)."""
    pts = vertebra_outline(vertebrae) if outline is None else outline
    crop = empty_crop(grid, pts.min(axis=0) - 10.0, pts.max(axis=0) + 10.0)
    if min(crop.mask.shape) == 0:
        return crop
    axes = [grid.axis(d)[crop.slices[d]].astype(np.float32) for d in range(3)]
    for v in vertebrae:
        field = _evaluate(_vertebra(v), axes, BLEND_MM)
        if field is not None:
            sub, vals = field
            crop.mask[sub] |= vals < 0
    return crop


def empty_crop(grid: RenderGrid, lo: A, hi: A) -> MaskCrop:
    """An all-False mask over the part of ``grid`` between world points lo and hi (mm)."""
    sl = []
    for d in range(3):
        ax = grid.axis(d)
        a = int(np.searchsorted(ax, lo[d]))
        b = int(np.searchsorted(ax, hi[d]))
        sl.append(slice(a, max(a, b)))
    slices = (sl[0], sl[1], sl[2])
    shape = tuple(s.stop - s.start for s in slices)
    return MaskCrop(np.zeros(shape, dtype=bool), slices, grid.shape)


def disc_mask(
    disc: tuple[A, A, float], v: Vertebra, z: float, x: Points, y: Points
) -> npt.NDArray[np.bool_] | None:
    """Where slice height z (mm) cuts the disc ``(centre, up, half height)`` below vertebra
    ``v`` (its cross-section is the vertebral body's), over x (n, 1) and y (1, m) world mm;
    None when the slice misses it."""
    c, up, hh = disc
    if abs(z - c[2]) > hh + v.ry:
        return None
    # In the disc's frame: y' along its anterior axis, height along up.
    ant = np.array([0.0, up[2], -up[1]])
    dy, dz = y - np.float32(c[1]), np.float32(z - c[2])
    qu = dy * np.float32(up[1]) + dz * np.float32(up[2])
    qa = dy * np.float32(ant[1]) + dz * np.float32(ant[2])
    q = ((x - np.float32(c[0])) / np.float32(v.rx)) ** 2 + (qa / np.float32(v.ry)) ** 2
    return (q < 1.0) & (np.abs(qu) < np.float32(hh + 1.0))


def _evaluate(
    prims: list[Primitive], axes: list[npt.NDArray[np.float32]], k: float
) -> tuple[tuple[slice, slice, slice], Points] | None:
    """Smooth union of ``prims`` over the part of the crop (axes: world coordinates) they
    reach; returns the sub-box and its values, or None when they miss the crop."""
    los = np.array([p.bounds[0] for p in prims]) - k  # type: ignore[attr-defined]
    his = np.array([p.bounds[1] for p in prims]) + k  # type: ignore[attr-defined]
    sub = []
    for d in range(3):
        a = int(np.searchsorted(axes[d], los[:, d].min()))
        b = int(np.searchsorted(axes[d], his[:, d].max()))
        if b <= a:
            return None
        sub.append(slice(a, b))
    x, y, z = (axes[d][sub[d]] for d in range(3))
    p = np.stack(np.meshgrid(x, y, z, indexing="ij"), axis=-1)
    out = np.full(p.shape[:3], 1e3, dtype=np.float32)
    for f in prims:
        out = smin(out, f(p), k)
    return (sub[0], sub[1], sub[2]), out


def _body(v: Vertebra) -> Primitive:
    """Vertebral body: an elliptic cylinder along ``up`` with rims rounded by RIM_MM."""
    c = v.centre.astype(np.float32)
    up = v.up.astype(np.float32)
    ant = v.ant.astype(np.float32)
    rx, ry, hh = np.float32(v.rx), np.float32(v.ry), np.float32(v.half_height)
    rr = np.float32(RIM_MM)

    def f(p: Points) -> Points:
        q = p - c
        qx, qa, qu = q[..., 0], q @ ant, q @ up
        rho = np.sqrt((qx / rx) ** 2 + (qa / ry) ** 2)
        dr = (rho - 1.0) * min(rx, ry) + rr
        dh = np.abs(qu) - hh + rr
        out = np.sqrt(np.maximum(dr, 0.0) ** 2 + np.maximum(dh, 0.0) ** 2)
        return out + np.minimum(np.maximum(dr, dh), 0.0) - rr

    r = float(np.hypot(max(v.rx, v.ry), v.half_height)) + 1.0
    f.bounds = (c - r, c + r)  # type: ignore[attr-defined]
    return f


def _vertebra(v: Vertebra) -> list[Primitive]:
    hh, rx, ry = v.half_height, v.rx, v.ry
    back = -ry - ARCH_MM
    prims: list[Primitive] = [_body(v)]
    for s in (-1.0, 1.0):
        ped_a = v.at(s * 0.55 * rx, -0.7 * ry, 0.2 * hh)
        ped_b = v.at(s * 0.55 * rx, -ry - PEDICLE_MM, 0.15 * hh)
        prims.append(capsule(ped_a, ped_b, 5.0, 4.5, scale=(0.9, 1.0, 1.3)))
        prims.append(capsule(ped_b, v.at(0.0, back, 0.0), 3.5, scale=(1.0, 1.0, 2.2)))
        prims.append(
            capsule(
                ped_b,
                v.at(s * (0.55 * rx + v.transverse), -ry - PEDICLE_MM - 3.0, 0.1 * hh),
                4.5,
                3.0,
                scale=(1.0, 0.8, 1.4),
            )
        )
        prims.append(
            ellipsoid(v.at(s * 0.62 * rx, -ry - PEDICLE_MM - 4.0, 0.55 * hh), [5.0, 6.0, 7.0])
        )
        prims.append(ellipsoid(v.at(s * 0.45 * rx, back + 4.0, -0.6 * hh), [5.0, 6.0, 7.0]))
    tip = v.at(0.0, back - v.spinous, -0.35 * hh)
    prims.append(capsule(v.at(0.0, back + 2.0, 0.0), tip, 4.0, 4.5, scale=(0.7, 1.0, 2.4)))
    return prims


def _s1_endplate(anatomy: Anatomy) -> A:
    """Centre of the S1 endplate: the top of the pelvis mesh's midline band (the sacrum)."""
    pv = np.asarray(anatomy.meshes["pelvis"].vertices)
    cx = float(anatomy.landmarks["pelvis_centre"][0])
    band = pv[np.abs(pv[:, 0] - cx) < MIDLINE_BAND_MM]
    hip_z = float(anatomy.landmarks["hip_left"][2])
    band = band[band[:, 2] > hip_z]
    if len(band) == 0:  # no sacrum in the mesh: stand the spine behind the crest's midpoint
        top = np.asarray(anatomy.landmarks["pelvis_top"], dtype=np.float64)
        return np.array([cx, float(anatomy.landmarks["pelvis_centre"][1]) - 40.0, top[2] - 40.0])
    z_top = float(band[:, 2].max())
    plate = band[band[:, 2] > z_top - ENDPLATE_BAND_MM]
    return np.array([cx, float(plate[:, 1].mean()), z_top - 0.5 * ENDPLATE_BAND_MM])


def place_spine(anatomy: Anatomy, p: TrunkParams, rng: np.random.Generator) -> Spine:
    """Draw and place L5..L1 on the sacrum of a posed anatomy.

    Args:
        anatomy: posed bones in world RAS+ mm (the pelvis mesh holds the sacrum).
        p: the spine's parameter ranges.
        rng: random generator.

    Returns:
        The case's :class:`Spine`.
    """
    scale = float(anatomy.meta.get("scale", 1.0))
    h = draw(rng, p.body_height_mm) * scale
    disc = draw(rng, p.disc_height_mm) * scale
    w = draw(rng, p.body_width_mm) * scale / 2
    d = draw(rng, p.body_depth_mm) * scale / 2
    slope = math.radians(draw(rng, p.sacral_slope_deg))
    lordosis = math.radians(draw(rng, p.lordosis_deg))
    trans = draw(rng, p.transverse_mm) * scale
    spin = draw(rng, p.spinous_mm) * scale
    s1 = _s1_endplate(anatomy)
    length = 5 * (h + disc)
    # The arc's tangent leans anteriorly by the sacral slope at S1 and turns back evenly by
    # the lordosis angle by the top of L1, which brings L3 over the hip centres as in real
    # spines.
    ss = np.linspace(0.0, 1.2 * length, ARC_SAMPLES)
    th = slope - lordosis * np.clip(ss / length, 0.0, 1.0)
    ds = ss[1] - ss[0]
    ys = np.concatenate([[0.0], np.cumsum(0.5 * (np.sin(th[1:]) + np.sin(th[:-1])) * ds)])
    zs = np.concatenate([[0.0], np.cumsum(0.5 * (np.cos(th[1:]) + np.cos(th[:-1])) * ds)])

    def frame(s: float) -> tuple[A, A]:
        a = float(np.interp(s, ss, th))
        return np.array([0.0, math.sin(a), math.cos(a)]), np.array([0.0, math.cos(a), -math.sin(a)])

    def point(s: float) -> A:
        return s1 + np.array([0.0, float(np.interp(s, ss, ys)), float(np.interp(s, ss, zs))])

    # The endplate's posterior edge is higher than its centre: lift the start to clear it.
    start = d * math.sin(slope) * 0.5
    verts, discs = [], []
    s = start
    for i, level in enumerate(LEVELS):
        hi = h * HEIGHT_FACTOR[i] / 2
        up, _ = frame(s + disc / 2)
        discs.append((point(s + disc / 2), up, disc / 2))
        s += disc + hi
        up, ant = frame(s)
        verts.append(
            Vertebra(
                level,
                point(s),
                up,
                ant,
                hi,
                w * WIDTH_FACTOR[i],
                d * WIDTH_FACTOR[i],
                trans * TRANSVERSE_FACTOR[i],
                spin * SPINOUS_FACTOR[i],
            )
        )
        s += hi
    return Spine(tuple(verts), tuple(discs), s1)
