"""Shape variety of the femur beyond its source subject: torsion, bowing, length, neck-shaft
angle and smooth local bumps, applied to the femur mesh before it is posed.

The 23 LLP26 training subjects (and the procedural bones) cover only part of the adult range of
femoral torsion (about -10 to +40 degrees), neck-shaft angle (about 115-145), length and
bowing. Each femur is therefore deformed by a smooth map in its own (left-limb, LPS) frame,
with the mechanical axis ``a`` from the knee centre K to the head centre H and ``s`` the
position along it (0 at K, 1 at H):

- **torsion**: a twist about the mechanical axis growing from 0 below ``s`` = 0.25 to the full
  angle above ``s`` = 0.8, so the condyles stay where the tibia is seated and the head, neck
  and trochanters turn rigidly (the head centre lies on the axis and does not move);
- **neck-shaft angle**: the head and neck turned about an antero-posterior axis through the
  neck base, blended to nothing over the neck; the head stays a sphere, its centre moves;
- **length**: the shaft stretched along the axis between ``s`` = 0.2 and 0.8 (ends rigid), so
  the knee-to-head distance changes by the factor;
- **bowing**: the shaft moved anteriorly by a sine bump that vanishes at both ends;
- **bumps**: a few Gaussian displacements of up to a millimetre or two on the shaft.

Every displacement is smooth and small against its length scale, so the mesh stays watertight
and does not fold; the label map is still the deformed mesh scan-converted, so it stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from femurseg.config import check_range

Array = npt.NDArray[np.float64]

#: shaft window (fractions of the knee-to-head distance) where twist and stretch happen.
SHAFT_S = (0.2, 0.8)
#: the neck base lies this many head radii from the head centre.
NECK_BASE_RADII = 2.3
#: the neck-shaft rotation is full within this many head radii of the head centre and fades
#: to nothing at the neck base.
NECK_FULL_RADII = 1.3
#: length scale of the local bumps, mm.
BUMP_SIGMA_MM = 30.0
#: number of local bumps.
N_BUMPS = 4


@dataclass(frozen=True)
class FemurShape:
    """How one femur is deformed (all zero: unchanged).

    Attributes:
        torsion_deg: extra twist of the proximal femur about the mechanical axis, degrees
            (-60..60; drawn -12..12, larger when a torsion is imposed); positive turns the
            neck anteriorly (more anteversion) for either leg.
        neck_shaft_deg: change of the neck-shaft angle, degrees (-10..10); positive is valgus.
        length_factor: femur length along the mechanical axis, relative (0.75..1.3; drawn
            0.95..1.05, further when a length is imposed).
        bow_mm: anterior displacement of the mid-shaft, mm (-5..10).
        bumps_mm: amplitude of the smooth local bumps, mm (0..3).
        seed: where the bumps sit and point.
    """

    torsion_deg: float = 0.0
    neck_shaft_deg: float = 0.0
    length_factor: float = 1.0
    bow_mm: float = 0.0
    bumps_mm: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("torsion_deg", self.torsion_deg, -60.0, 60.0)
        check_range("neck_shaft_deg", self.neck_shaft_deg, -10.0, 10.0)
        check_range("length_factor", self.length_factor, 0.75, 1.3)
        check_range("bow_mm", self.bow_mm, -5.0, 10.0)
        check_range("bumps_mm", self.bumps_mm, 0.0, 3.0)
        check_range("seed", self.seed, 0, 2**31 - 1)


def sample_femur_shape(rng: np.random.Generator) -> FemurShape:
    """A random femur shape: torsion -12..12 deg, neck-shaft -6..6 deg, length 0.95..1.05,
    bowing -2..6 mm, bumps 0..1.5 mm."""
    return FemurShape(
        torsion_deg=float(rng.uniform(-12.0, 12.0)),
        neck_shaft_deg=float(rng.uniform(-6.0, 6.0)),
        length_factor=float(rng.uniform(0.95, 1.05)),
        bow_mm=float(rng.uniform(-2.0, 6.0)),
        bumps_mm=float(rng.uniform(0.0, 1.5)),
        seed=int(rng.integers(2**31 - 1)),
    )


def _rotate(pts: Array, axis: Array, centre: Array, angles: Array) -> Array:
    """Rotate each point about the line (centre, unit axis) by its own angle (radians)."""
    d = pts - centre
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    k = np.broadcast_to(axis, d.shape)
    return centre + d * c + np.cross(k, d) * s + k * (d @ axis)[:, None] * (1.0 - c)


def _smoothstep(x: Array, lo: float, hi: float) -> Array:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def deform_femur(
    verts: Array,
    head: Array,
    head_radius: float,
    knee: Array,
    ml_axis: Array,
    shape: FemurShape,
) -> tuple[Array, Array]:
    """Deform femur vertices; return them and the moved head centre.

    Args:
        verts: (N, 3) vertices, mm, in the limb's LPS frame.
        head: head centre (3,); head_radius: mm.
        knee: knee centre (3,).
        ml_axis: lateral direction of the knee (a left limb's +x in LPS).
        shape: the deformation.

    Returns:
        ``(verts, head)`` after the deformation.
    """
    v = np.asarray(verts, dtype=np.float64).copy()
    h = np.asarray(head, dtype=np.float64).copy()
    k = np.asarray(knee, dtype=np.float64)
    a = h - k
    length = float(np.linalg.norm(a))
    a /= length
    e = np.asarray(ml_axis, dtype=np.float64)
    e = e - (e @ a) * a
    e /= np.linalg.norm(e)  # lateral, perpendicular to the axis
    ap = np.cross(a, e)
    ap /= np.linalg.norm(ap)
    # anterior in LPS is -y; orient the AP axis that way
    anterior = ap if ap[1] < 0 else -ap

    # 1. neck-shaft angle: rotate head and neck about an AP axis through the neck base
    if shape.neck_shaft_deg:
        shaft_top = v[np.abs(((v - k) @ a) / length - 0.78) < 0.03].mean(axis=0)
        towards = shaft_top - h
        towards -= (towards @ anterior) * anterior
        towards /= np.linalg.norm(towards)
        pivot = h + towards * NECK_BASE_RADII * head_radius
        axis = np.cross(towards, a)
        axis -= (axis @ towards) * towards
        axis /= np.linalg.norm(axis)
        # valgus (+) raises the head: it turns away from the shaft, towards +a
        sign = 1.0 if (np.cross(axis, h - pivot) @ a) > 0 else -1.0
        dist = np.linalg.norm(v - h, axis=1)
        w = 1.0 - _smoothstep(dist, NECK_FULL_RADII * head_radius, NECK_BASE_RADII * head_radius)
        ang = sign * math.radians(shape.neck_shaft_deg) * w
        v = _rotate(v, axis, pivot, ang)
        h = _rotate(h[None], axis, pivot, np.array([sign * math.radians(shape.neck_shaft_deg)]))[0]

    s = ((v - k) @ a) / length

    # 2. torsion about the mechanical axis (K to the original H line; H is on it)
    if shape.torsion_deg:
        # positive: the neck (medial, towards the head) turns anteriorly
        sign = 1.0 if (np.cross(a, -e) @ anterior) > 0 else -1.0
        ang = sign * math.radians(shape.torsion_deg) * _smoothstep(s, 0.25, 0.8)
        v = _rotate(v, a, k, ang)
        h = _rotate(h[None], a, k, np.array([sign * math.radians(shape.torsion_deg)]))[0]

    window = np.sin(np.pi * np.clip((s - 0.1) / 0.75, 0.0, 1.0))

    # 3. bowing and 4. bumps on the shaft only
    if shape.bow_mm:
        v += window[:, None] * shape.bow_mm * anterior
    if shape.bumps_mm:
        rng = np.random.default_rng(shape.seed)
        for _ in range(N_BUMPS):
            off = rng.normal(size=3) * 10.0
            c = k + a * length * rng.uniform(*SHAFT_S) + off - (off @ a) * a
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            amp = shape.bumps_mm * rng.uniform(0.5, 1.0)
            g = np.exp(-np.sum((v - c) ** 2, axis=1) / (2.0 * BUMP_SIGMA_MM**2))
            v += (window * g * amp)[:, None] * d

    # 5. length: stretch the shaft along the axis; everything above it moves rigidly
    if shape.length_factor != 1.0:
        ramp = np.clip((s - SHAFT_S[0]) / (SHAFT_S[1] - SHAFT_S[0]), 0.0, 1.0)
        shift = (shape.length_factor - 1.0) * length
        v += (ramp * shift)[:, None] * a
        h = h + shift * a
    return v, h
