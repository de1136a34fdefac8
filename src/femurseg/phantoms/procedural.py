"""Procedural bone shapes: a random but anatomical pelvis and left limb, no mesh files needed.

Bones are blends of smooth implicit primitives (:mod:`femurseg.phantoms.sdf`) meshed by marching
cubes, in the same LLP26 frame, position and scale as the real shape-model meshes (LPS mm, +x
patient left, +y posterior, +z superior; femur about z 790-1230, pelvis midline near x 33), so
that every consumer treats the two sources alike.

The limb is built in a local frame (u lateral, v posterior, w up along the femoral mechanical
axis, origin at the femoral head centre) and then turned into the LLP26 posture; the pelvis is
built straight in the LLP26 frame, mirror-symmetric about its mid-sagittal plane.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import trimesh

from femurseg.phantoms.sdf import Field, capsule, ellipsoid, polyline, sphere
from femurseg.phantoms.shapes import BoneSet

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

#: Grid step of the implicit fields, mm.
GRID_MM = 1.75
#: Femoral head centre and limb directions of LLP26_01, which the procedural limb copies.
HIP_LLP = np.array([114.0, 0.0, 1208.0])
KNEE_DIR_LLP = np.array([-40.0, 54.0, -410.0])


@dataclass(frozen=True)
class ShapeParams:
    """Random shape parameters (mm and degrees)."""

    head_radius: float
    neck_shaft_angle: float
    anteversion: float
    femur_length: float
    bow: float
    shaft_radius: float
    size: float
    hip_half_width: float


def sample_params(rng: np.random.Generator) -> ShapeParams:
    """Draw shape parameters within adult ranges."""
    length = float(rng.uniform(400.0, 480.0))
    size = length / 440.0
    return ShapeParams(
        head_radius=float(np.clip(rng.normal(23.5 * size, 0.8), 22.0, 25.0)),
        neck_shaft_angle=float(rng.uniform(125.0, 135.0)),
        anteversion=float(rng.uniform(10.0, 15.0)),
        femur_length=length,
        bow=float(rng.uniform(5.0, 12.0)),
        shaft_radius=float(rng.uniform(12.0, 14.0)) * math.sqrt(size),
        size=size,
        hip_half_width=float(rng.uniform(76.0, 86.0)) * size,
    )


def _limb_basis() -> Array:
    """3x3 matrix whose columns are the local u (lateral), v (posterior), w (up) in LLP26."""
    w = -KNEE_DIR_LLP / np.linalg.norm(KNEE_DIR_LLP)
    u = np.array([1.0, 0.0, 0.0]) - w[0] * w
    u /= np.linalg.norm(u)
    return np.column_stack([u, np.cross(w, u), w])


def _femur(p: ShapeParams) -> tuple[Field, float]:
    """Femur field in the local limb frame; returns (field, condyle sagittal radius mm)."""
    s, rh = p.size, p.head_radius
    knee_w = -(p.femur_length - rh)  # level of the distal condyle surface
    rc = 21.0 * s  # sagittal radius of the condyles
    # Shaft from the neck base J down to the distal metaphysis D, directly above the knee.
    neck_len = 55.0 * s
    gamma = math.radians(6.0)
    for _ in range(3):
        phi = gamma - math.radians(180.0 - p.neck_shaft_angle)
        b = math.radians(p.anteversion)
        n = np.array([math.sin(phi) * math.cos(b), math.sin(phi) * math.sin(b), math.cos(phi)])
        j = -neck_len * n
        d_w = knee_w + 75.0 * s
        gamma = math.atan2(j[0], j[2] - d_w)
    d = np.array([0.0, 6.0 * s, d_w])
    f = Field([-70 * s, -60 * s, knee_w - 6], [75 * s, 60 * s, rh + 6], GRID_MM)
    f.union(sphere([0, 0, 0], rh))
    f.union(capsule([0, 0, 0], j, 0.68 * rh, 0.8 * rh), k=6.0)
    # Anterior bow: the shaft bulges forward (-v) between J and D.
    t = np.linspace(0.0, 1.0, 7)
    axis = j[None, :] + t[:, None] * (d - j)[None, :]
    axis[:, 1] -= p.bow * np.sin(np.pi * t)
    radii = p.shaft_radius * (1.0 + 0.3 * np.exp(-t / 0.12) + 0.35 * t ** 6)
    f.union(polyline(axis, radii), k=10.0)
    f.union(ellipsoid(j + np.array([4, 4, -6]) * s, np.array([24, 20, 30]) * s), k=8.0)
    f.union(ellipsoid(j + np.array([16, 8, 16]) * s, np.array([13, 17, 22]) * s), k=8.0)  # GT
    f.union(ellipsoid(j + np.array([-10, 12, -42]) * s, np.array([9, 8, 11]) * s), k=6.0)  # LT
    # Distal femur: metaphysis, trochlea, two condyles, intercondylar notch, trochlear groove.
    cw = knee_w + rc
    f.union(ellipsoid([0, 4 * s, cw + 24 * s], np.array([34, 26, 42]) * s), k=10.0)
    f.union(ellipsoid([0, -12 * s, cw + 12 * s], np.array([30, 14, 26]) * s), k=8.0)
    for side in (-1.0, 1.0):
        x = side * 21.0 * s
        f.union(capsule([x, -10 * s, cw], [x, 14 * s, cw], rc, scale=(0.62, 1.0, 1.0)), k=6.0)
    f.subtract(capsule([0, 4 * s, knee_w + 6 * s], [0, 45 * s, knee_w + 6 * s], 8.5 * s), k=3.0)
    f.subtract(capsule([0, -34 * s, cw - 4 * s], [0, -30 * s, cw + 40 * s], 9.0 * s), k=4.0)
    return f, rc


def _tibfib(p: ShapeParams, knee_w: float) -> Field:
    """Tibia and fibula field in the local limb frame; plateau 4 mm below the condyles."""
    s = p.size
    top = knee_w - 4.0
    bottom = top - 0.82 * p.femur_length
    f = Field([-50 * s, -40 * s, bottom - 25 * s], [50 * s, 45 * s, top + 4], GRID_MM)
    f.union(ellipsoid([0, 4 * s, top - 13 * s], np.array([38, 27, 13]) * s))
    f.union(ellipsoid([3 * s, -16 * s, top - 38 * s], np.array([11, 9, 16]) * s), k=6.0)
    shaft = [[0, 6 * s, top - 25 * s], [0, 4 * s, top - 110 * s], [-2 * s, 5 * s, bottom + 70 * s],
             [-3 * s, 6 * s, bottom + 30 * s]]
    f.union(polyline(shaft, np.array([24, 14, 12, 17]) * s), k=12.0)
    f.union(ellipsoid([-3 * s, 6 * s, bottom + 18 * s], np.array([24, 21, 16]) * s), k=8.0)
    f.union(capsule([-19 * s, 7 * s, bottom + 25 * s], [-21 * s, 9 * s, bottom - 3 * s],
                    7.0 * s), k=5.0)  # medial malleolus
    fib = [[31 * s, 24 * s, top - 34 * s], [30 * s, 24 * s, top - 120 * s],
           [31 * s, 22 * s, bottom + 30 * s], [30 * s, 20 * s, bottom - 8 * s]]
    f.union(ellipsoid(fib[0], np.array([11, 11, 12]) * s), k=0.0)
    f.union(polyline(fib, np.array([7.5, 6.0, 6.5, 9.0]) * s), k=4.0)
    return f


def _patella(p: ShapeParams, femur: Field, knee_w: float, rc: float) -> Field:
    """Patella in front of the trochlea, 2.5 mm clear of the femur field."""
    s = p.size
    radii = np.array([21.0, 11.0, 22.0]) * s
    w = knee_w + rc + 22.0 * s
    # Move the patella back from far in front until it nearly touches the femur.
    ang = np.linspace(0, 2 * np.pi, 24)
    el = np.linspace(-np.pi / 2, np.pi / 2, 12)
    a, e = np.meshgrid(ang, el)
    shell = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)
    shell = shell * radii
    v_c = -80.0 * s
    for v in np.arange(-80.0 * s, 0.0, 0.5):
        pts = shell + np.array([0.0, v, w])
        if _sample(femur, pts).min() < 2.5:
            break
        v_c = v
    f = Field([-26 * s, v_c - 16 * s, w - 27 * s], [26 * s, v_c + 16 * s, w + 27 * s], GRID_MM)
    f.union(ellipsoid([0, v_c, w], radii))
    return f


def _sample(field: Field, pts: Array) -> Array:
    idx = np.round((pts - field.lo) / field.h).astype(int)
    idx = np.clip(idx, 0, np.array(field.values.shape) - 1)
    return field.values[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.float64)


def _pelvis(p: ShapeParams, hip: Array) -> Field:
    """Mirror-symmetric pelvis in the LLP26 frame around the left hip centre ``hip``."""
    s, rh = p.size, p.head_radius
    m = hip[0] - p.hip_half_width
    h = hip

    def at(dx: float, dy: float, dz: float) -> Array:  # offset from the hip, mm x size
        return h + np.array([dx, dy, dz]) * s

    def mid(dy: float, dz: float, dx: float = 0.0) -> Array:  # offset from the midline
        return np.array([m + dx * s, h[1] + dy * s, h[2] + dz * s])

    f = Field([m - 160 * s, h[1] - 85 * s, h[2] - 90 * s],
              [m + 160 * s, h[1] + 120 * s, h[2] + 175 * s], 2.0, fold_x=m)
    # Ilium: wing facing antero-laterally, flaring out at the crest; thick column above the cup.
    rot = _rot_z(-35.0) @ _rot_y(-22.0)
    wing_c, wing_r = at(8, 8, 92), np.array([6.5, 74, 62]) * s
    f.union(ellipsoid(wing_c, wing_r, rot=rot))
    f.union(capsule(at(0, 6, 10), at(-22, 34, 78), 17 * s, 13 * s), k=8.0)
    # Iliac crest: a thicker rim along the wing's upper edge, from ASIS to PSIS.
    th = np.linspace(0.1 * np.pi, 0.95 * np.pi, 8)
    rim = wing_c + (np.stack([0 * th, -np.cos(th) * wing_r[1], np.sin(th) * wing_r[2]], 1)
                    * 0.97) @ rot.T
    f.union(polyline(rim, np.full(len(rim), 6.5 * s)), k=6.0)
    # Acetabulum: a thick shell around the head, open antero-infero-laterally.
    f.union(sphere(h, rh + 11 * s), k=8.0)
    # Ischium and tuberosity, pubic rami and body (the obturator foramen is the gap between).
    f.union(capsule(at(-6, 16, -14), at(-16, 30, -62), 13 * s, 11 * s), k=8.0)
    f.union(ellipsoid(at(-16, 33, -66), np.array([12, 15, 16]) * s), k=6.0)
    f.union(capsule(at(-10, -16, -6), mid(-40, -26, 9), 9 * s, 8 * s), k=6.0)
    f.union(ellipsoid(mid(-36, -42, 10), np.array([9, 11, 20]) * s), k=6.0)
    f.union(capsule(mid(-30, -56, 12), at(-20, 28, -70), 7 * s, 8 * s), k=6.0)
    # Sacrum on the midline, wide at S1 and tapering to the coccyx, tilted back.
    f.union(capsule(mid(62, 92), mid(96, 10), 22 * s, 8 * s, scale=(2.2, 1.0, 1.0)), k=10.0)
    # Carve the socket for the head (2 mm joint space) and open it towards the neck.
    opening = np.array([0.72, -0.35, -0.6])
    opening /= np.linalg.norm(opening)
    f.subtract(sphere(h, rh + 2.0))
    f.subtract(capsule(h + opening * 0.3 * rh, h + opening * 80.0, rh + 6.0), k=2.0)
    return f


def _rot_z(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(deg: float) -> Array:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def procedural_boneset(rng: np.random.Generator) -> BoneSet:
    """Random anatomical pelvis and left limb in the LLP26 frame (LPS mm).

    Varies size (femur 400-480 mm), femoral head radius (22-25 mm), neck-shaft angle
    (125-135 deg), anteversion (10-15 deg), anterior bow, shaft width and hip spacing.

    Args:
        rng: random generator; the same seed gives the same bones.

    Returns:
        :class:`~femurseg.phantoms.shapes.BoneSet` named ``procedural_<hex>`` with watertight
        meshes; the femoral head sits in the acetabulum with a 2 mm joint space.
    """
    p = sample_params(rng)
    hip = HIP_LLP + rng.normal(0.0, 3.0, size=3)
    basis = _limb_basis()
    fem, rc = _femur(p)
    knee_w = -(p.femur_length - p.head_radius)
    tib = _tibfib(p, knee_w)
    pat = _patella(p, fem, knee_w, rc)

    def to_llp(field: Field) -> trimesh.Trimesh:
        mesh = field.mesh()
        mesh.vertices = mesh.vertices @ basis.T + hip
        return mesh

    name = f"procedural_{int(rng.integers(0, 2**32)):08x}"
    bones = BoneSet(
        name=name,
        pelvis=_pelvis(p, hip).mesh(min_volume=100.0),
        femur=to_llp(fem),
        patella=to_llp(pat),
        tibfib=to_llp(tib),
    )
    log.debug("procedural bones %s: %s", name, p)
    return bones
