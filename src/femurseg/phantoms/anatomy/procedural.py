"""Procedural bone shapes: a random but anatomical pelvis and left limb, no mesh files needed.

Bones are blends of smooth implicit primitives (:mod:`femurseg.phantoms.anatomy.sdf`) meshed by
marching cubes, in the same LLP26 frame, position and scale as the real shape-model meshes (LPS
mm, +x patient left, +y posterior, +z superior; femur about z 790-1230, pelvis midline near x
33), so that every consumer treats the two sources alike.

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

from femurseg.phantoms.anatomy.sdf import (
    Field,
    capsule,
    ellipsoid,
    elliptic_cylinder,
    intersect,
    polyline,
    shell,
    sphere,
    stack,
)
from femurseg.phantoms.anatomy.shapes import BoneSet

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

#: Grid steps of the implicit fields, mm (finer where the bone is thin).
FEMUR_GRID_MM = 2.0
TIBIA_GRID_MM = 2.0
PATELLA_GRID_MM = 1.5
PELVIS_GRID_MM = 2.0
#: Triangles per mesh after decimation, as in the LLP26 meshes (edges of 3-6 mm).
FEMUR_FACES = 6600
TIBFIB_FACES = 6200
PATELLA_FACES = 800
PELVIS_FACES = 21000
#: Mean femur length (head top to condyles) and neck-shaft angle of the LLP26 subjects.
FEMUR_LENGTH_MM = 442.0
NECK_SHAFT_DEG = 121.0
#: Joint spaces between bones meshed from one grid (sacro-iliac, tibio-fibular), mm; more than
#: a grid step so that marching cubes keeps the bodies apart.
JOINT_GAP_MM = 3.0
SYMPHYSIS_GAP_MM = 3.0
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
    condyle_half_width: float
    pelvis_size: float


def sample_params(rng: np.random.Generator) -> ShapeParams:
    """Draw shape parameters matching the LLP26 subjects (means and spreads, see module doc)."""
    length = float(np.clip(rng.normal(FEMUR_LENGTH_MM, 17.0), 405.0, 480.0))
    size = length / FEMUR_LENGTH_MM
    # Bone thickness varies more than length between adults (LLP26 femur volume sd 16 %).
    girth = float(np.clip(rng.normal(1.0, 0.06), 0.88, 1.14))
    return ShapeParams(
        head_radius=float(np.clip(rng.normal(23.0 * size, 0.9), 20.5, 27.0)),
        neck_shaft_angle=float(np.clip(rng.normal(NECK_SHAFT_DEG, 5.0), 110.0, 134.0)),
        anteversion=float(rng.uniform(8.0, 18.0)),
        femur_length=length,
        bow=float(rng.uniform(5.0, 12.0)),
        shaft_radius=13.7 * size * girth,
        size=size,
        hip_half_width=float(np.clip(rng.normal(81.5, 2.6), 75.0, 88.0)) * size,
        condyle_half_width=float(np.clip(rng.normal(37.0, 2.0), 32.0, 43.0)) * size,
        pelvis_size=size * float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1)),
    )


def _limb_basis() -> Array:
    """3x3 matrix whose columns are the local u (lateral), v (posterior), w (up) in LLP26."""
    w = -KNEE_DIR_LLP / np.linalg.norm(KNEE_DIR_LLP)
    u = np.array([1.0, 0.0, 0.0]) - w[0] * w
    u /= np.linalg.norm(u)
    return np.column_stack([u, np.cross(w, u), w])


def _femur(p: ShapeParams) -> tuple[Field, float]:
    """Femur field in the local limb frame; returns (field, condyle sagittal radius mm)."""
    s, rh, length = p.size, p.head_radius, p.femur_length
    knee_w = -(length - rh)  # level of the distal condyle surface

    def at(f: float) -> float:  # level of a fraction of the length above the knee
        return knee_w + f * length

    rc = 21.0 * s  # sagittal radius of the condyles
    # Neck from the head centre to its base J; the shaft runs from J down to the distal
    # metaphysis D above the knee centre, so the neck-shaft angle is taken against J-D.
    neck_len = 50.0 * s
    d_w = at(0.12)
    gamma = math.radians(6.0)
    for _ in range(3):
        phi = gamma - math.radians(180.0 - p.neck_shaft_angle)
        b = math.radians(p.anteversion)
        n = np.array([math.sin(phi) * math.cos(b), math.sin(phi) * math.sin(b), math.cos(phi)])
        j = -neck_len * n
        gamma = math.atan2(j[0], j[2] - d_w)
    d = np.array([0.0, 4.0 * s, d_w])
    f = Field([-62 * s, -58 * s, knee_w - 6], [70 * s, 55 * s, rh + 6], FEMUR_GRID_MM)
    f.union(sphere([0, 0, 0], rh))
    f.union(capsule([0, 0, 0], j, 0.70 * rh, 0.82 * rh, scale=(0.9, 1.0, 1.0)), k=6.0)
    # Shaft: narrow in the middle, flaring into both metaphyses; bowed anteriorly (-v).
    fr = np.array([0.12, 0.18, 0.26, 0.36, 0.48, 0.60, 0.70, 0.78])
    gain = np.array([1.5, 1.28, 1.13, 1.03, 0.99, 1.0, 1.02, 1.1])
    t = (knee_w + fr * length - d_w) / (j[2] - d_w)  # 0 at D, 1 at J
    axis = d[None, :] + t[:, None] * (j - d)[None, :]
    axis[:, 1] -= p.bow * np.sin(np.pi * t)
    f.union(polyline(axis, p.shaft_radius * gain, scale=(0.94, 1.06, 1.0)), k=8.0)
    f.union(capsule(axis[-1], j, p.shaft_radius * gain[-1], 0.9 * rh, scale=(0.9, 1.1, 1.0)), k=8.0)
    # Trochanters: greater (lateral, posterior, above J), lesser (posteromedial, below J),
    # intertrochanteric crest between them.
    f.union(ellipsoid(j + np.array([17, 9, 10]) * s, np.array([12, 15, 21]) * s), k=7.0)
    f.union(ellipsoid(j + np.array([-9, 13, -40]) * s, np.array([8, 7, 10]) * s), k=5.0)
    f.union(
        capsule(j + np.array([16, 14, 10]) * s, j + np.array([-7, 13, -38]) * s, 6.0 * s), k=6.0
    )
    # Distal femur: two condyles (medial a little larger), intercondylar notch opening
    # posteriorly, trochlea in front with its groove, epicondyles on the sides.
    cw = knee_w + rc
    hw = p.condyle_half_width
    cr = 0.38 * hw  # medio-lateral half-thickness of one condyle
    f.union(ellipsoid([0, 2 * s, at(0.07)], np.array([0.8 * hw, 18 * s, 26 * s])), k=10.0)
    f.union(ellipsoid([0, -9 * s, cw + 8 * s], np.array([0.7 * hw, 13 * s, 22 * s])), k=8.0)
    for side, grow in ((-1.0, 1.04), (1.0, 1.0)):
        x = side * (hw - cr)
        f.union(
            capsule([x, -8 * s, cw], [x, 13 * s, cw + 2 * s], rc * grow, scale=(cr / rc, 1.0, 1.0)),
            k=5.0,
        )
        f.union(
            ellipsoid(
                [side * (hw - 0.6 * cr), 6 * s, cw + 6 * s], np.array([0.65 * cr, 14 * s, 16 * s])
            ),
            k=6.0,
        )
    f.subtract(capsule([0, 20 * s, knee_w + 9 * s], [0, 60 * s, knee_w + 14 * s], 0.28 * hw), k=3.0)
    f.subtract(capsule([0, -34 * s, cw - 6 * s], [0, -30 * s, cw + 36 * s], 9.0 * s), k=4.0)
    return f, rc


def _tibfib(p: ShapeParams, knee_w: float) -> Field:
    """Tibia and fibula field in the local limb frame; plateau 4 mm below the condyles.

    The tibia leans a little (distal end lateral and anterior) and the fibula runs
    posterolateral to it, from its head under the lateral condyle to the lateral malleolus,
    as in LLP26.
    """
    s = p.size
    top = knee_w - 4.0
    length = 0.80 * p.femur_length
    bottom = top - length

    def tib(f: float, du: float = 0.0, dv: float = 0.0) -> list[float]:  # on the tibial axis
        return [(14.0 * f + du) * s, (-2.0 - 10.0 * f + dv) * s, top - f * length]

    f = Field([-45 * s, -40 * s, bottom - 16 * s], [45 * s, 45 * s, top + 4], TIBIA_GRID_MM)
    # Plateau: two condyles, flat on top, wider medio-laterally than deep.
    f.union(ellipsoid(tib(0.03, 0, 4), np.array([37, 26, 12]) * s))
    f.union(ellipsoid(tib(0.07, 0, 2), np.array([30, 22, 18]) * s), k=6.0)
    f.union(ellipsoid(tib(0.11, 2, -17), np.array([10, 8, 15]) * s), k=6.0)  # tuberosity
    shaft = [tib(0.08), tib(0.22), tib(0.45), tib(0.75), tib(0.9)]
    f.union(polyline(shaft, np.array([21.5, 15.2, 12.4, 12.9, 17]) * s), k=10.0)
    f.union(ellipsoid(tib(0.955), np.array([21, 18, 12]) * s), k=8.0)  # pilon
    f.union(capsule(tib(0.93, -15, 2), tib(1.0, -17, 2), 7.0 * s), k=5.0)  # medial malleolus
    fib = [
        [30 * s, 30 * s, top - 0.07 * length],
        [29 * s, 24 * s, top - 0.25 * length],
        [30 * s, 18 * s, top - 0.6 * length],
        [34 * s, 8 * s, top - 0.93 * length],
        [35 * s, 6 * s, top - 1.02 * length],
    ]
    # The fibula is a separate bone: carved out of the tibia with a joint space.
    fibula = Field(f.lo, f.lo + f.h * (np.array(f.values.shape) - 1), TIBIA_GRID_MM)
    fibula.union(ellipsoid(fib[0], np.array([11, 10, 12]) * s))
    fibula.union(polyline(fib, np.array([7.5, 6.0, 6.0, 9.0, 7.5]) * s), k=4.0)
    f.subtract_field(fibula, gap=JOINT_GAP_MM)
    np.minimum(f.values, fibula.values, out=f.values)
    return f


def _patella(p: ShapeParams, femur: Field, knee_w: float, rc: float) -> Field:
    """Patella in front of the trochlea, 2.5 mm clear of the femur field."""
    s = p.size
    radii = np.array([19.5, 10.5, 20.5]) * s
    w = knee_w + rc + 22.0 * s
    # Move the patella back from far in front until it nearly touches the femur.
    ang = np.linspace(0, 2 * np.pi, 24)
    el = np.linspace(-np.pi / 2, np.pi / 2, 12)
    a, e = np.meshgrid(ang, el)
    shell_pts = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1)
    shell_pts = shell_pts.reshape(-1, 3) * radii
    v_c = -80.0 * s
    for v in np.arange(-80.0 * s, 0.0, 0.5):
        pts = shell_pts + np.array([0.0, v, w])
        if _sample(femur, pts).min() < 2.5:
            break
        v_c = v
    f = Field(
        [-24 * s, v_c - 15 * s, w - 25 * s], [24 * s, v_c + 15 * s, w + 25 * s], PATELLA_GRID_MM
    )
    f.union(ellipsoid([0, v_c, w], radii))
    return f


def _sample(field: Field, pts: Array) -> Array:
    idx = np.round((pts - field.lo) / field.h).astype(int)
    idx = np.clip(idx, 0, np.array(field.values.shape) - 1)
    return field.values[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.float64)


def _pelvis(p: ShapeParams, hip: Array) -> trimesh.Trimesh:
    """Pelvis in the LLP26 frame around the left hip centre ``hip``: three bodies like LLP26.

    Both hip bones come from one field folded about the mid-sagittal plane (mirror images,
    parted at the pubic symphysis), the sacrum from a second field on the same grid, carved
    out of the hip bones with a sacro-iliac joint space.
    """
    s, rh = p.pelvis_size, p.head_radius
    m = hip[0] - p.hip_half_width
    h = hip

    def at(dx: float, dy: float, dz: float) -> Array:  # offset from the hip, mm x size
        return h + np.array([dx, dy, dz]) * s

    def mid(dy: float, dz: float, dx: float = 0.0) -> Array:  # offset from the midline
        return np.array([m + dx * s, h[1] + dy * s, h[2] + dz * s])

    lo = [m - 150 * s, h[1] - 80 * s, h[2] - 72 * s]
    hi = [m + 150 * s, h[1] + 105 * s, h[2] + 162 * s]
    f = Field(lo, hi, PELVIS_GRID_MM, fold_x=m)
    # Iliac wing: a curved plate (part of an ellipsoid shell whose centre lies medial and
    # anterior, so the blade curves forward to the ASIS and back in to the sacrum), cut by an
    # elliptic outline seen from the side; a thicker rim runs along its crest.
    bowl_c, bowl_r = at(-10, -25, 110), np.array([66, 70, 80]) * s
    rot = np.eye(3)
    out_c, out_r = at(25, -5, 90), np.array([62, 63]) * s
    wing = intersect(
        shell(ellipsoid(bowl_c, bowl_r), 7.0 * s),
        elliptic_cylinder(out_c, out_r, axis=0, half_length=55 * s),
        k=3.0,
    )
    f.union(wing)
    th = np.linspace(0.06 * np.pi, 0.75 * np.pi, 10)
    rim_yz = np.stack([-np.cos(th) * out_r[0], np.sin(th) * out_r[1]], 1) * 0.95
    rim = np.array(
        [_on_ellipsoid(bowl_c, bowl_r, rot, out_c[1] + y, out_c[2] + z) for y, z in rim_yz]
    )
    f.union(polyline(rim, np.full(len(rim), 5.0 * s)), k=5.0)
    f.union(ellipsoid(rim[0], np.array([7, 9, 8]) * s), k=5.0)  # ASIS
    f.union(capsule(at(-8, 40, 112), at(-38, 55, 92), 10 * s, 12 * s), k=8.0)  # to the PSIS
    f.union(ellipsoid(at(-36, 46, 82), np.array([11, 14, 24]) * s), k=8.0)  # auricular part
    # Body of the ilium above the socket, and the acetabulum as a thick rim around the head.
    f.union(capsule(at(-2, 4, 12), at(-14, 22, 62), 17 * s, 13 * s), k=10.0)
    f.union(capsule(at(6, -32, 30), at(-2, -8, 14), 6 * s, 12 * s), k=8.0)  # AIIS
    f.union(sphere(h, rh + 10 * s), k=8.0)
    # Obturator ring: superior pubic ramus, pubic body, inferior ramus, ischial ramus and
    # ischium around a rounded foramen that faces antero-laterally.
    fc = at(-48, -12, -36)
    e1 = np.array([-0.55, -0.83, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.array([0.0, 0.0, 1.0])
    th = np.linspace(0.0, 2 * np.pi, 14, endpoint=False)
    ring = fc + (34 * np.cos(th))[:, None] * e1 * s + (21 * np.sin(th))[:, None] * e2 * s
    tube = (8.5 + 2.5 * np.cos(th - 0.5 * np.pi) - 1.5 * np.cos(th)) * s
    f.union(polyline(ring, tube, closed=True), k=6.0)
    f.union(ellipsoid(at(-22, 32, -55), np.array([12, 17, 14]) * s), k=7.0)  # tuberosity
    f.union(ellipsoid(mid(-42, -34, 8), np.array([11, 11, 20]) * s), k=8.0)  # pubic body
    # Pelvic brim from the pubis to the sacro-iliac joint.
    f.union(
        polyline([at(-50, -28, -20), at(-40, -2, 8), at(-36, 26, 40)], np.array([7, 8, 10]) * s),
        k=8.0,
    )
    f.subtract(sphere(at(-22, 66, 14), 24 * s), k=6.0)  # greater sciatic notch
    # Socket for the head (2 mm joint space), opened towards the neck.
    opening = np.array([0.72, -0.35, -0.6])
    opening /= np.linalg.norm(opening)
    f.subtract(sphere(h, rh + 2.0))
    f.subtract(capsule(h + opening * 0.3 * rh, h + opening * 80.0, rh + 6.0), k=2.0)
    # Sacrum: a curved, tapering plate (alae at S1) ending in a short coccyx.
    sac = Field(lo, hi, PELVIS_GRID_MM, fold_x=m)
    spine = [mid(40, 120), mid(58, 96), mid(72, 68), mid(82, 44), mid(84, 28)]
    sac.union(polyline(spine, np.array([19, 17, 14, 10, 6]) * s, scale=(1.9, 1.0, 1.0)))
    sac.union(ellipsoid(mid(46, 112, 36), np.array([24, 20, 18]) * s), k=12.0)  # ala
    sac.union(
        polyline([mid(84, 24), mid(80, 10), mid(74, 2)], np.array([5, 4, 3]) * s), k=3.0
    )  # coccyx
    f.subtract_field(sac, gap=JOINT_GAP_MM)
    # Symphysis: part the two pubic bodies at the midline.
    x = np.abs(f.axes[0] - np.float32(m))
    np.maximum(f.values, (0.5 * SYMPHYSIS_GAP_MM - x)[:, None, None], out=f.values)
    hips = f.mesh(min_volume=1000.0, face_count=PELVIS_FACES * 2 // 3)
    sacrum = sac.mesh(min_volume=1000.0, face_count=PELVIS_FACES // 3)
    return trimesh.Trimesh(*stack([hips, sacrum]), process=False)


def _on_ellipsoid(c: Array, r: Array, rot: Array, y: float, z: float) -> Array:
    """Point of the rotated ellipsoid surface with world (y, z), on its lateral (+x) side."""

    def g(x: float) -> float:
        q = (np.array([x, y, z]) - c) @ rot
        return float(np.sum((q / r) ** 2) - 1.0)

    # Bisection from the centre's x outwards (g < 0 inside, > 0 far out).
    a, b = float(c[0]), float(c[0] + 2.0 * r.max())
    if g(a) > 0:
        return np.array([a, y, z])
    for _ in range(40):
        mid_ = 0.5 * (a + b)
        a, b = (mid_, b) if g(mid_) < 0 else (a, mid_)
    return np.array([0.5 * (a + b), y, z])


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
        :class:`~femurseg.phantoms.anatomy.shapes.BoneSet` named ``procedural_<hex>`` with
        watertight meshes; the femoral head sits in the acetabulum with a 2 mm joint space.
    """
    p = sample_params(rng)
    hip = HIP_LLP + rng.normal(0.0, 3.0, size=3)
    basis = _limb_basis()
    fem, rc = _femur(p)
    knee_w = -(p.femur_length - p.head_radius)
    tib = _tibfib(p, knee_w)
    pat = _patella(p, fem, knee_w, rc)

    def to_llp(field: Field, faces: int) -> trimesh.Trimesh:
        mesh = field.mesh(min_volume=100.0, face_count=faces)
        mesh.vertices = mesh.vertices @ basis.T + hip
        return mesh

    name = f"procedural_{int(rng.integers(0, 2**32)):08x}"
    bones = BoneSet(
        name=name,
        pelvis=_pelvis(p, hip),
        femur=to_llp(fem, FEMUR_FACES),
        patella=to_llp(pat, PATELLA_FACES),
        tibfib=to_llp(tib, TIBFIB_FACES),
    )
    log.debug("procedural bones %s: %s", name, p)
    return bones
