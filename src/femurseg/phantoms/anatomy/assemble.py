"""Pose and assemble bone sets into one lower body in world RAS+ mm.

Pipeline (all in the pelvis subject's LPS frame until the last step):

1. Hip centres: the left one is the pelvis subject's own femoral head centre; the right one is
   its mirror image across the pelvis mid-sagittal plane, refined onto the real right acetabulum.
   ``hip_spacing`` widens or narrows the pelvis medio-laterally about that plane.
2. Each acetabulum is fitted to a sphere of the seated head's radius plus a joint gap: carved
   where the head sinks into the pelvis (shape models let it; CT shows a joint space), and its
   roof closed onto a head smaller than the pelvis subject's own (a real socket is congruent
   with its head).
3. Each limb (a left limb; the right one is posed as a left limb and mirrored last): the tibia
   and fibula are seated below the condyles with a knee gap, the knee is flexed about the
   condyles' medio-lateral axis (patella by a fraction of it), the limb is turned so that its
   hip-ankle line points straight down (neutral), then rotated about the femoral head by internal
   rotation, abduction and flexion, and its head is moved onto the hip centre.
4. LPS -> RAS+ (x -> -x, y -> -y), origin at the pelvis centre, then the global scale.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh
from trimesh import remesh

from femurseg.config import check_range, to_dict
from femurseg.phantoms.anatomy.contact import DistanceField, clearance_shift
from femurseg.phantoms.anatomy.deform import FemurShape, deform_femur, sample_femur_shape
from femurseg.phantoms.anatomy.landmarks import LimbLandmarks, limb_landmarks, mirrored_hip_centre
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.shapes import BoneSet

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

#: Clearance between femoral head and acetabulum, mm (hip cartilage, both sides together).
HIP_GAP_MM = 2.0
#: Thinnest acetabular floor left where a head sank through the pelvis wall, mm.
SOCKET_WALL_MM = 2.0
#: Socket surface this far beyond the seated head is drawn onto it (twice as far, part way), mm.
SOCKET_PULL_MM = 6.0
#: Longest pelvis edge before carving the sockets, mm.
SOCKET_EDGE_MM = 6.0
#: Clearance between femoral condyles and tibial plateau, mm (cartilage and menisci).
KNEE_GAP_MM = 4.0
#: Clearance between patella and femoral trochlea, mm.
PATELLA_GAP_MM = 2.5
#: Grid step of the femur distance field used to seat tibia and patella, mm.
KNEE_FIELD_MM = 2.0
#: Fraction of the knee flexion angle by which the patella turns about the condyle axis.
PATELLA_FLEXION_RATIO = 0.6


@dataclass(frozen=True)
class LegPose:
    """Joint angles of one leg, degrees, relative to the neutral supine pose.

    Neutral: hip-ankle line straight along -z (superior-inferior), knee extended, the subject's
    own femoral torsion. Signs are anatomical, the same for both legs.

    Attributes:
        hip_flexion: + brings the knee anteriorly (-20..60 allowed).
        hip_abduction: + moves the knee away from the midline (-15..30).
        hip_rotation: internal (+) / external (-) rotation about the limb's long axis (-45..45).
        knee_flexion: + brings the ankle posteriorly (0..90).
        femur: how this leg's femur is deformed before posing (torsion, neck-shaft angle,
            length, bowing; see :mod:`femurseg.phantoms.anatomy.deform`).
    """

    hip_flexion: float = 0.0
    hip_abduction: float = 0.0
    hip_rotation: float = 0.0
    knee_flexion: float = 0.0
    femur: FemurShape = field(default_factory=FemurShape)

    def __post_init__(self) -> None:
        check_range("hip_flexion", self.hip_flexion, -20.0, 60.0)
        check_range("hip_abduction", self.hip_abduction, -15.0, 30.0)
        check_range("hip_rotation", self.hip_rotation, -45.0, 45.0)
        check_range("knee_flexion", self.knee_flexion, 0.0, 90.0)


@dataclass(frozen=True)
class Pose:
    """Pose of the whole lower body.

    Attributes:
        left: the patient's left leg.
        right: the patient's right leg.
        hip_spacing: change of the distance between the hip centres, mm (-20..20), made by
            scaling the pelvis medio-laterally about its mid-sagittal plane.
        scale: global size factor applied to everything (0.8..1.25).
        hip_gap: clearance between femoral head and acetabulum, mm (0.3..5): hip cartilage,
            both sides together; a real head sits 2-4 mm from the socket's bone, which a
            3 mm slice blurs away.
        knee_gap: clearance between condyles and tibial plateau, mm (0.5..8): cartilage and
            menisci.
        patella_gap: clearance between patella and trochlea, mm (0.5..6).
    """

    left: LegPose = field(default_factory=LegPose)
    right: LegPose = field(default_factory=LegPose)
    hip_spacing: float = 0.0
    scale: float = 1.0
    hip_gap: float = HIP_GAP_MM
    knee_gap: float = KNEE_GAP_MM
    patella_gap: float = PATELLA_GAP_MM

    def __post_init__(self) -> None:
        check_range("hip_spacing", self.hip_spacing, -20.0, 20.0)
        check_range("scale", self.scale, 0.8, 1.25)
        check_range("hip_gap", self.hip_gap, 0.3, 5.0)
        check_range("knee_gap", self.knee_gap, 0.5, 8.0)
        check_range("patella_gap", self.patella_gap, 0.5, 6.0)


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random pose of a supine CT patient with legs near extended.

    Hip flexion -5..15 deg (half the knee flexion -3..+5, so the heel stays on the table),
    abduction -5..12 (the two legs together at least -2, so that the ankles stay apart),
    rotation -20..25, knee flexion 0..25 (0 for 30 % of legs), hip spacing -8..8 mm,
    scale 0.88..1.12; joint clearances hip 0.8..3 mm, knee 1.5..5 mm, patella 1..3.5 mm, then
    each femur's shape (:func:`~femurseg.phantoms.anatomy.deform.sample_femur_shape`), drawn
    last, so the angles of a seed do not depend on them.
    """

    def leg(abd: float) -> LegPose:
        knee = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.0, 25.0))
        # The heel rests on the table: a straight leg lies nearly flat, and a bent knee (knee
        # pillow) lifts the thigh by about half the knee angle.
        lo = max(-5.0, 0.5 * knee - 3.0)
        hi = min(15.0, 0.5 * knee + 5.0)
        return LegPose(
            hip_flexion=float(rng.uniform(lo, hi)),
            hip_abduction=abd,
            hip_rotation=float(rng.uniform(-20.0, 25.0)),
            knee_flexion=knee,
        )

    while True:
        abd = rng.uniform(-5.0, 12.0, size=2)
        if abd.sum() >= -2.0:
            break
    left, right = leg(float(abd[0])), leg(float(abd[1]))
    spacing, scale = float(rng.uniform(-8.0, 8.0)), float(rng.uniform(0.88, 1.12))
    gaps = (
        float(rng.uniform(0.8, 3.0)),
        float(rng.uniform(1.5, 5.0)),
        float(rng.uniform(1.0, 3.5)),
    )
    left = dataclasses.replace(left, femur=sample_femur_shape(rng))
    right = dataclasses.replace(right, femur=sample_femur_shape(rng))
    return Pose(
        left=left,
        right=right,
        hip_spacing=spacing,
        scale=scale,
        hip_gap=gaps[0],
        knee_gap=gaps[1],
        patella_gap=gaps[2],
    )


def rotation(axis: npt.ArrayLike, degrees: float) -> Array:
    """3x3 right-handed rotation matrix by ``degrees`` about ``axis`` (any length > 0)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


def _align(u: Array, v: Array) -> Array:
    """Smallest rotation taking unit vector u onto unit vector v."""
    c = float(np.clip(u @ v, -1.0, 1.0))
    axis = np.cross(u, v)
    if np.linalg.norm(axis) < 1e-9:
        return np.eye(3) if c > 0 else rotation([1.0, 0.0, 0.0], 180.0)
    return rotation(axis, math.degrees(math.acos(c)))


def _about(r: Array, centre: Array, pts: Array) -> Array:
    return (pts - centre) @ r.T + centre


def _carve_socket(v: Array, normals: Array, centre: Array, radius: float) -> Array:
    """Fit an acetabulum to the seated head: a socket congruent with a ball of ``radius``.

    Vertices inside the ball are pushed onto its surface. Where the head went right through a
    thin wall, the wall's far surface (normals pointing away from the centre) goes to
    ``radius + SOCKET_WALL_MM`` so that the wall keeps its orientation instead of folding onto
    the socket surface.

    The socket is also closed onto a head smaller than the pelvis subject's own (the limb comes
    from another subject, or the right socket is a refined mirror image): surface that faces the
    centre from the dome and the upper walls and lies up to SOCKET_PULL_MM beyond the ball is
    drawn onto it, and surface up to twice that far part of the way (smoothly, so the rim does not
    step). Without this, half the phantoms' heads sat 5-9 mm from the roof of their socket, a
    dark joint space that a real hip, 2-4 mm of cartilage blurred on 3 mm slices, never shows.
    The floor below the centre (the acetabular fossa) is left as the pelvis has it.
    """
    d = v - centre
    dist = np.linalg.norm(d, axis=1)
    safe = np.maximum(dist, 1e-9)
    far = np.einsum("ij,ij->i", normals, d) > 0
    target = np.where(far, radius + SOCKET_WALL_MM, radius)
    inside = (dist < target) & (dist > 1e-9)
    out = v.copy()
    out[inside] = centre + d[inside] * (target[inside] / dist[inside])[:, None]
    # closing: weight by how squarely the surface faces the centre and how high it lies
    facing = -np.einsum("ij,ij->i", normals, d) / safe
    up = d[:, 2] / safe
    w = np.clip((facing - 0.3) / 0.4, 0.0, 1.0) * np.clip((up + 0.1) / 0.4, 0.0, 1.0)
    e = dist - radius
    m = SOCKET_PULL_MM
    pull = np.where(e <= m, e, e * (2.0 * m - e) / m)
    pull = np.where((e > 0.0) & (e < 2.0 * m) & ~inside, pull * w, 0.0)
    close = pull > 0.0
    out[close] = centre + d[close] * ((dist[close] - pull[close]) / dist[close])[:, None]
    return out


@dataclass
class _Limb:
    """Left-limb vertices in the limb subject's frame while being posed."""

    femur: Array
    patella: Array
    tibfib: Array
    points: dict[str, Array]


def _seat_knee(
    limb: _Limb,
    bones: BoneSet,
    lm: LimbLandmarks,
    knee_deg: float,
    knee_gap: float = KNEE_GAP_MM,
    patella_gap: float = PATELLA_GAP_MM,
) -> None:
    """Seat tibia and patella on the femur with joint gaps, then flex the knee (in place)."""
    fv = limb.femur
    along = (fv - lm.femur_bottom) @ lm.femur_axis
    distal = fv[along < 90.0]
    lo, hi = distal.min(axis=0) - 25.0, distal.max(axis=0) + 25.0
    field_ = DistanceField(fv, bones.femur.faces, lo, hi, spacing=KNEE_FIELD_MM)

    def shift(verts: Array, direction: Array, gap: float, reach: float) -> Array:
        near = verts[np.all((verts > lo - reach) & (verts < hi + reach), axis=1)]
        if len(near) == 0:
            return np.zeros(3)
        return clearance_shift(field_, near[::2], gap, direction, max_shift=reach)

    ankle = lm.ankle_centre.copy()
    t = shift(limb.tibfib, lm.ankle_centre - lm.knee_centre, knee_gap, 60.0)
    limb.tibfib = limb.tibfib + t
    ankle += t
    if knee_deg:
        r = rotation(lm.knee_axis, knee_deg)
        limb.tibfib = _about(r, lm.knee_pivot, limb.tibfib)
        ankle = _about(r, lm.knee_pivot, ankle)
        t = shift(limb.tibfib, ankle - lm.knee_pivot, knee_gap, 20.0)
        limb.tibfib = limb.tibfib + t
        ankle += t
        limb.patella = _about(
            rotation(lm.knee_axis, PATELLA_FLEXION_RATIO * knee_deg), lm.knee_pivot, limb.patella
        )
    limb.points["ankle"] = ankle
    out = limb.patella.mean(axis=0) - lm.knee_pivot
    out -= (out @ lm.knee_axis) * lm.knee_axis
    limb.patella = limb.patella + shift(limb.patella, out, patella_gap, 20.0)


def _pose_limb(
    bones: BoneSet, lm: LimbLandmarks, leg: LegPose, hip: Array, pose: Pose | None = None
) -> _Limb:
    """Pose one left limb and put its femoral head centre at ``hip`` (LPS mm)."""
    limb = _Limb(
        femur=np.asarray(bones.femur.vertices, dtype=np.float64).copy(),
        patella=np.asarray(bones.patella.vertices, dtype=np.float64).copy(),
        tibfib=np.asarray(bones.tibfib.vertices, dtype=np.float64).copy(),
        points={
            "hip": lm.head_centre,
            "knee": lm.knee_centre,
            "ankle": lm.ankle_centre,
            "femur_top": lm.femur_top,
            "femur_bottom": lm.femur_bottom,
        },
    )
    p = pose or Pose()
    if leg.femur != FemurShape():
        limb.femur, head = deform_femur(
            limb.femur, lm.head_centre, lm.head_radius, lm.knee_centre, lm.knee_axis, leg.femur
        )
        top = limb.femur[np.argmax(limb.femur @ lm.femur_axis)]
        lm = dataclasses.replace(lm, head_centre=head, femur_top=top)
        limb.points["hip"], limb.points["femur_top"] = head, top
    _seat_knee(limb, bones, lm, leg.knee_flexion, p.knee_gap, p.patella_gap)
    # Neutral: hip-ankle line of the extended limb straight down; then the hip rotations.
    r0 = _align(_unit(lm.ankle_centre - lm.head_centre), np.array([0.0, 0.0, -1.0]))
    r = (
        rotation([1.0, 0.0, 0.0], -leg.hip_flexion)
        @ rotation([0.0, 1.0, 0.0], -leg.hip_abduction)
        @ rotation([0.0, 0.0, 1.0], -leg.hip_rotation)
        @ r0
    )
    c = lm.head_centre
    limb.femur = _about(r, c, limb.femur) - c + hip
    limb.patella = _about(r, c, limb.patella) - c + hip
    limb.tibfib = _about(r, c, limb.tibfib) - c + hip
    limb.points = {k: _about(r, c, p) - c + hip for k, p in limb.points.items()}
    return limb


def _unit(v: Array) -> Array:
    return v / np.linalg.norm(v)


def assemble(pelvis_source: BoneSet, left: BoneSet, right: BoneSet, pose: Pose) -> Anatomy:
    """Build a posed lower body from shape subjects.

    Args:
        pelvis_source: subject giving the pelvis (and, through its own femur, the hip centres).
        left: subject giving the patient's left limb (femur, patella, tibia + fibula).
        right: subject whose LEFT limb is mirrored to make the patient's right limb.
        pose: joint angles, hip spacing and global scale.

    Returns:
        :class:`~femurseg.phantoms.anatomy.model.Anatomy` in world RAS+ mm, origin at the pelvis
        centre, with every landmark listed there plus ``acetabulum_left``/``_right``.
    """
    lm_p = limb_landmarks(pelvis_source)
    lm_l = lm_p if left is pelvis_source else limb_landmarks(left)
    lm_r = lm_p if right is pelvis_source else limb_landmarks(right)
    m = lm_p.pelvis_mid_x
    hip_l = lm_p.head_centre.copy()
    hip_r = mirrored_hip_centre(pelvis_source.pelvis, hip_l, m)
    width = hip_l[0] - hip_r[0]
    sx = (width + pose.hip_spacing) / width
    # Shape-model pelves have triangles up to ~25 mm; split them so that the carved socket is
    # round (a 6 mm chord on a 25 mm sphere dips 0.2 mm).
    pv, pf = remesh.subdivide_to_size(
        pelvis_source.pelvis.vertices, pelvis_source.pelvis.faces, max_edge=SOCKET_EDGE_MM
    )
    normals = np.asarray(trimesh.Trimesh(pv, pf, process=False).vertex_normals)
    for p in (pv, hip_l, hip_r):
        p[..., 0] = m + (p[..., 0] - m) * sx
    pv = _carve_socket(pv, normals, hip_l, lm_l.head_radius + pose.hip_gap)
    pv = _carve_socket(pv, normals, hip_r, lm_r.head_radius + pose.hip_gap)

    limb_l = _pose_limb(left, lm_l, pose.left, hip_l, pose)
    mirror_hip_r = hip_r * np.array([-1.0, 1.0, 1.0]) + np.array([2.0 * m, 0.0, 0.0])
    limb_r = _pose_limb(right, lm_r, pose.right, mirror_hip_r, pose)

    def mirror(v: Array) -> Array:
        out = np.array(v, dtype=np.float64, copy=True)
        out[..., 0] = 2.0 * m - out[..., 0]
        return out

    centre = lm_p.pelvis_centre.copy()
    centre[0] = m
    flip = np.array([-1.0, -1.0, 1.0])

    def world(v: Array) -> Array:
        return (v - centre) * flip * pose.scale

    def mesh(v: Array, faces: npt.NDArray[np.int64], mirrored: bool) -> trimesh.Trimesh:
        f = np.asarray(faces)[:, ::-1] if mirrored else np.asarray(faces)
        verts = world(mirror(v) if mirrored else v)
        return trimesh.Trimesh(verts, f.copy(), process=False)

    meshes = {
        "pelvis": mesh(pv, pf, False),
        "femur_left": mesh(limb_l.femur, left.femur.faces, False),
        "femur_right": mesh(limb_r.femur, right.femur.faces, True),
        "patella_left": mesh(limb_l.patella, left.patella.faces, False),
        "patella_right": mesh(limb_r.patella, right.patella.faces, True),
        "tibfib_left": mesh(limb_l.tibfib, left.tibfib.faces, False),
        "tibfib_right": mesh(limb_r.tibfib, right.tibfib.faces, True),
    }
    landmarks: dict[str, Array] = {}
    for side, limb, lm in (("left", limb_l, lm_l), ("right", limb_r, lm_r)):
        pts = limb.points if side == "left" else {k: mirror(p) for k, p in limb.points.items()}
        landmarks[f"hip_{side}"] = world(pts["hip"])
        landmarks[f"head_radius_{side}"] = np.array([lm.head_radius * pose.scale, 0.0, 0.0])
        landmarks[f"knee_{side}"] = world(pts["knee"])
        landmarks[f"ankle_{side}"] = world(pts["ankle"])
        landmarks[f"femur_top_{side}"] = world(pts["femur_top"])
        landmarks[f"femur_bottom_{side}"] = world(pts["femur_bottom"])
    landmarks["acetabulum_left"] = world(hip_l)
    landmarks["acetabulum_right"] = world(hip_r)
    landmarks["pelvis_centre"] = world(centre)
    wp = meshes["pelvis"].vertices
    landmarks["pelvis_top"] = np.asarray(wp[np.argmax(wp[:, 2])], dtype=np.float64)
    meta: dict[str, Any] = {
        "subjects": {"pelvis": pelvis_source.name, "left": left.name, "right": right.name},
        "pose": to_dict(pose),
        "scale": pose.scale,
        "head_radius_mm": {"left": lm_l.head_radius, "right": lm_r.head_radius},
        "frame": "RAS+ mm, origin at pelvis centre",
    }
    return Anatomy(meshes=meshes, landmarks=landmarks, meta=meta)
