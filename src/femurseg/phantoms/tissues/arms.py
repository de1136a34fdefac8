"""Arms lying beside the hips and thighs: humerus, radius, ulna and hand bones in soft tissue.

Never labelled. Placed once per case (:func:`place_arms`, off unless
:class:`~femurseg.phantoms.params.ArmsParams` ``probability`` draws it) from the body outline
(:mod:`body`). In trauma, whole-body and many hip scans the arms lie down along the body rather
than above the head, and then a forearm (two long bones with a thick cortex and a marrow
cavity) lies beside the hip and a hand beside or on the thigh: long and short tubular bones
that are not femur, inside or next to a femur's box.

Two poses, per arm:

* ``side``: the arm straight along the trunk; the elbow beside the waist, the forearm beside
  the hip, the hand down the outside of the thigh with the palm towards it.
* ``lap``: the elbow bent; the forearm runs from beside the waist forwards and down over the
  front of the hip, the hand lies palm down on the front of the thigh or the groin.

Each arm is a chain of tapered capsules for its outline (muscle, then fat under the skin; the
hand has little of either) and, inside it, the humerus's lower end with its condyles, the
radius and ulna side by side (the radius on the thumb side), the carpus, five metacarpals and
the fingers. The long bones get a :class:`~femurseg.phantoms.tissues.bone.LongAxis` and so a
thick cortex along their shafts; the hand bones a thin uniform one.

World RAS+ mm: +x is the patient's right, +y anterior, +z superior.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.sdf import capsule
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import ArmsParams
from femurseg.phantoms.tissues.bone import LongAxis
from femurseg.phantoms.tissues.materials import draw
from femurseg.phantoms.tissues.spine import _evaluate, empty_crop

A = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
#: ``z -> (cx, cy, a, b, fat)`` of a body profile's muscle outline at height z (mm)
OutlineAt = Callable[[float], tuple[float, float, float, float, float]]

#: the humerus drawn this far up from the elbow (its upper end lies far above any view).
HUMERUS_SHOWN_MM = 300.0
#: hand proportions, as fractions of the hand's length (wrist crease to fingertip).
CARPUS_AT = 0.1
METACARPAL_FROM, METACARPAL_TO = 0.17, 0.55
#: finger offsets across the palm (index .. little), as fractions of the hand's length.
FINGER_ACROSS = (0.13, 0.04, -0.05, -0.13)
FINGER_LENGTH = (0.4, 0.45, 0.42, 0.33)
#: the outline is checked at this many points along the forearm for overlap with the body.
CLEAR_SAMPLES = 9
#: pose names, in the order of their ``ArmsParams`` chances.
POSES = ("side", "lap")


@dataclass
class Segment:
    """A tapered capsule of the outline: ends (world mm) and muscle radii (mm) at each."""

    a: A
    b: A
    ra: float
    rb: float
    fat: float


@dataclass
class ArmBone:
    """One bone: capsules (a, b, ra, rb) smoothly joined, and its long axis or None."""

    name: str
    capsules: list[tuple[A, A, float, float]]
    axis: LongAxis | None = None


@dataclass
class Arm:
    """One arm in view: its pose, key points, outline and bones."""

    side: str
    pose: str
    elbow: A
    wrist: A
    segments: list[Segment]
    bones: list[ArmBone] = field(default_factory=list)

    def box_between(self, z_lo: float, z_hi: float) -> tuple[A, A] | None:
        """World (x, y) lower and upper bounds (mm) of the outline between two heights (each
        capsule cut to the height band grown by its radius), or None where it has none."""
        lo = np.full(2, np.inf)
        hi = -lo
        for s in self.segments:
            r = max(s.ra, s.rb) + s.fat
            za, zb = float(s.a[2]), float(s.b[2])
            if min(za, zb) - r > z_hi or max(za, zb) + r < z_lo:
                continue
            if abs(zb - za) < 1e-6:
                ends = np.array([s.a[:2], s.b[:2]])
            else:
                t = np.clip((np.array([z_lo - r, z_hi + r]) - za) / (zb - za), 0.0, 1.0)
                ends = s.a[None, :2] + t[:, None] * (s.b - s.a)[None, :2]
            lo = np.minimum(lo, ends.min(axis=0) - r)
            hi = np.maximum(hi, ends.max(axis=0) + r)
        return None if not np.isfinite(lo).all() else (lo, hi)

    def slice_box(self, z: float) -> tuple[A, A] | None:
        """World (x, y) lower and upper bounds (mm) of the outline at height z, or None."""
        return self.box_between(z, z)

    def outline(self, x: F32, y: F32, z: float) -> tuple[F32, F32]:
        """Approximate signed distances (mm, negative inside) of the muscle and of the whole
        arm (fat and skin included) on the slice at height z; x (n, 1), y (1, m) world mm.

        Each segment is a tapered capsule (:func:`~femurseg.phantoms.anatomy.sdf.capsule`); the
        whole arm is the muscle's outline grown by that segment's fat.
        """
        m = np.full((x.shape[0], y.shape[1]), 1e4, dtype=np.float32)
        b = m.copy()
        pts = np.empty((*m.shape, 3), dtype=np.float32)
        pts[..., 0], pts[..., 1], pts[..., 2] = x, y, z
        for s in self.segments:
            r = max(s.ra, s.rb) + s.fat
            if min(s.a[2], s.b[2]) - r > z or max(s.a[2], s.b[2]) + r < z:
                continue
            dm = capsule(s.a, s.b, s.ra, s.rb)(pts)
            np.minimum(m, dm, out=m)
            np.minimum(b, dm - np.float32(s.fat), out=b)
        return m, b

    def bone_crops(self, grid: RenderGrid) -> list[tuple[str, MaskCrop, LongAxis | None]]:
        """Each bone voxelised on ``grid`` (name, mask, long axis); bones off the grid left out."""
        out = []
        for bone in self.bones:
            pts = np.array([p for a, b, ra, rb in bone.capsules for p in (a, b)])
            r = max(max(ra, rb) for _, _, ra, rb in bone.capsules)
            crop = empty_crop(grid, pts.min(axis=0) - r - 2.0, pts.max(axis=0) + r + 2.0)
            if min(crop.mask.shape) == 0:
                continue
            axes = [grid.axis(d)[crop.slices[d]].astype(np.float32) for d in range(3)]
            prims = [capsule(a, b, ra, rb) for a, b, ra, rb in bone.capsules]
            got = _evaluate(prims, axes, 2.0)
            if got is None:
                continue
            sub, vals = got
            crop.mask[sub] |= vals < 0
            if crop.mask.any():
                out.append((f"arm_{self.side}_{bone.name}", crop, bone.axis))
        return out

    def to_meta(self) -> dict[str, object]:
        """The arm's pose and key points for the case record."""
        return {
            "side": self.side,
            "pose": self.pose,
            "elbow": [round(float(v), 1) for v in self.elbow],
            "wrist": [round(float(v), 1) for v in self.wrist],
        }


def _unit(v: A) -> A:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _lateral_edge(outlines: list[OutlineAt], z: float, lat: float) -> float:
    """World x (mm) of the body's outermost skin on the ``lat`` side (+1: patient right) at
    height z, over the outlines (trunk and that side's leg; fat taken 1.3 times, for its
    modulation round the outline)."""
    edge = -np.inf
    for at in outlines:
        cx, _, a, _, fat = at(z)
        if a > 1.0:
            edge = max(edge, lat * cx + a + 1.3 * fat)
    return lat * float(edge)


def _front(outlines: list[OutlineAt], x: float, z: float) -> float:
    """World y (mm) of the body's front skin at (x, z), or -inf where no outline covers x."""
    y = -np.inf
    for at in outlines:
        cx, cy, a, b, fat = at(z)
        if a <= 1.0:
            continue
        u = (x - cx) / (a + fat)
        if abs(u) < 1.0:
            y = max(y, cy + (b + 1.3 * fat) * float(np.sqrt(1.0 - u * u)))
    return float(y)


def _inside(outlines: list[OutlineAt], p: A, margin: float) -> tuple[float, A]:
    """How far (mm, > 0; 0 outside) the point p lies inside the body's outline grown by
    ``margin``, and the in-plane way out (unit (x, y, 0) from that outline's centre)."""
    worst, out = 0.0, np.zeros(3)
    for at in outlines:
        cx, cy, a, b, fat = at(float(p[2]))
        if a <= 1.0:
            continue
        ra, rb = a + 1.3 * fat + margin, b + 1.3 * fat + margin
        rho = float(np.hypot((p[0] - cx) / ra, (p[1] - cy) / rb))
        if rho < 1.0 and (1.0 - rho) * min(ra, rb) > worst:
            worst = (1.0 - rho) * min(ra, rb)
            out = _unit(np.array([p[0] - cx, p[1] - cy, 0.0]))
    return worst, out


def _bones(
    elbow: A,
    wrist: A,
    along_hand: A,
    across: A,
    palm: A,
    hand: float,
    lat: float,
    p: ArmsParams,
    rng: np.random.Generator,
) -> list[ArmBone]:
    """Humerus end, radius, ulna and hand bones for an arm with these key points and frame.

    ``across`` points from the little finger to the thumb, ``palm`` out of the palm; ``lat`` is
    +1 for the right arm (lateral is +x)."""
    fore = _unit(wrist - elbow)
    up = _unit(np.array([0.0, 0.0, 1.0]) - 0.3 * fore)  # the upper arm: up from the elbow
    shaft = draw(rng, p.humerus_radius_mm)
    top = elbow + up * HUMERUS_SHOWN_MM
    # the elbow's hinge axis: across the plane of flexion, or mediolateral when straight;
    # pointing laterally (the radial head's side)
    lateral = np.array([lat, 0.0, 0.0])
    epi = _unit(np.cross(up, fore)) if abs(float(up @ fore)) < 0.9 else lateral
    epi = epi if float(epi @ lateral) >= 0 else -epi
    half = draw(rng, p.epicondyle_mm) / 2
    humerus = ArmBone(
        "humerus",
        [
            (top, elbow + up * 40.0, shaft, shaft * 1.05),
            (elbow + up * 40.0, elbow + up * 8.0, shaft * 1.05, shaft * 1.2),
            (elbow + epi * half, elbow - epi * half, 0.55 * shaft, 0.75 * shaft),
        ],
        LongAxis(top, elbow, (0.0, 0.8)),
    )
    r_rad, r_uln = draw(rng, p.forearm_bone_radius_mm), draw(rng, p.forearm_bone_radius_mm)
    off_e, off_w = 0.45 * half, draw(rng, p.forearm_bone_gap_mm) / 2
    rad_a, rad_w = elbow + epi * off_e + fore * 8.0, wrist + across * off_w
    uln_a, uln_w = elbow - epi * off_e - fore * 15.0, wrist - across * off_w
    radius = ArmBone(
        "radius",
        [
            (rad_a, rad_a + fore * 25.0, 1.5 * r_rad, 0.9 * r_rad),
            (rad_a + fore * 25.0, rad_w - fore * 25.0, 0.9 * r_rad, 1.1 * r_rad),
            (rad_w - fore * 25.0, rad_w - fore * 2.0, 1.1 * r_rad, 1.9 * r_rad),
        ],
        LongAxis(rad_a, rad_w, (0.15, 0.8)),
    )
    ulna = ArmBone(
        "ulna",
        [
            (uln_a, uln_a + fore * 35.0, 1.9 * r_uln, 1.1 * r_uln),
            (uln_a + fore * 35.0, uln_w - fore * 10.0, 1.1 * r_uln, 0.8 * r_uln),
            (uln_w - fore * 10.0, uln_w - fore * 2.0, 0.8 * r_uln, 0.9 * r_uln),
        ],
        LongAxis(uln_a, uln_w, (0.2, 0.85)),
    )
    curl = np.deg2rad(draw(rng, p.finger_curl_deg))
    bones = [humerus, radius, ulna]
    c = wrist + along_hand * (CARPUS_AT * hand)
    carpus = [(c + across * 0.1 * hand, c - across * 0.1 * hand, 0.06 * hand, 0.055 * hand)]
    bones.append(ArmBone("carpus", carpus))
    for i, (off, flen) in enumerate(zip(FINGER_ACROSS, FINGER_LENGTH, strict=True)):
        base = wrist + along_hand * (METACARPAL_FROM * hand) + across * (0.7 * off * hand)
        knuckle = wrist + along_hand * (METACARPAL_TO * hand) + across * (off * hand)
        bend = _unit(np.cos(curl) * along_hand + np.sin(curl) * palm)
        tip = knuckle + bend * (flen * hand)
        bones.append(
            ArmBone(
                f"ray{i + 2}",
                [
                    (base, knuckle, 0.024 * hand, 0.026 * hand),
                    (knuckle + bend * 3.0, tip, 0.02 * hand, 0.013 * hand),
                ],
            )
        )
    thumb0 = wrist + along_hand * (0.12 * hand) + across * (0.1 * hand)
    thumb_dir = _unit(along_hand + 0.9 * across + 0.4 * palm)
    thumb1 = thumb0 + thumb_dir * (0.25 * hand)
    thumb2 = thumb0 + thumb_dir * (0.5 * hand)
    bones.append(
        ArmBone(
            "ray1",
            [
                (thumb0, thumb1, 0.028 * hand, 0.024 * hand),
                (thumb1 + thumb_dir * 2.0, thumb2, 0.022 * hand, 0.016 * hand),
            ],
        )
    )
    return bones


def _outline_segments(
    elbow: A, wrist: A, along_hand: A, across: A, fat: float, hand: float
) -> list[Segment]:
    """The arm's soft tissue: upper arm, forearm, palm (three capsules side by side) and
    fingers."""
    up = _unit(np.array([0.0, 0.0, 1.0]) - 0.3 * _unit(wrist - elbow))
    r_up, r_el, r_wr = hand * 0.24, hand * 0.2, hand * 0.13
    segs = [
        Segment(elbow + up * HUMERUS_SHOWN_MM, elbow, r_up, r_el, fat),
        Segment(elbow, wrist, r_el, r_wr, 0.7 * fat),
    ]
    knuckles = wrist + along_hand * (METACARPAL_TO * hand)
    for off in (-0.1, 0.0, 0.1):
        a = wrist + across * (0.6 * off * hand)
        segs.append(Segment(a, knuckles + across * (off * hand), 0.07 * hand, 0.065 * hand, 1.5))
    for off, flen in zip(FINGER_ACROSS, FINGER_LENGTH, strict=True):
        k = knuckles + across * (off * hand)
        segs.append(Segment(k, k + along_hand * (flen * hand), 0.05 * hand, 0.04 * hand, 1.0))
    return segs


def place_arms(
    legs: Mapping[str, OutlineAt],
    trunk: OutlineAt,
    landmarks: Mapping[str, npt.ArrayLike],
    p: ArmsParams,
    rng: np.random.Generator,
) -> list[Arm]:
    """Draw the arms lying down along the body for one case ([] with chance 1 - probability).

    Args:
        legs: ``side -> z -> (cx, cy, a, b, fat)`` of each leg's muscle outline.
        trunk: the same for the trunk.
        landmarks: the anatomy's landmarks (``hip_left``, ``hip_right``, ``pelvis_top``).
        p: the arm parameters.
        rng: random generator.

    Returns:
        One or two :class:`Arm`, or none.
    """
    if rng.uniform() >= p.probability:
        return []
    sides = ["left", "right"]
    if rng.uniform() < p.one_arm_probability:
        sides = [sides[int(rng.integers(2))]]
    crest = float(np.asarray(landmarks["pelvis_top"])[2])
    arms = []
    for side in sides:
        lat = 1.0 if side == "right" else -1.0
        hip = np.asarray(landmarks[f"hip_{side}"], dtype=np.float64)
        outlines = [trunk, legs[side]]
        pose = POSES[0] if rng.uniform() >= p.lap_probability else POSES[1]
        hand = draw(rng, p.hand_mm)
        fat = draw(rng, p.fat_mm)
        r_el = hand * 0.2 + fat
        gap = draw(rng, p.gap_mm)
        ez = crest + draw(rng, p.elbow_above_crest_mm)
        _, ecy, _, eb, _ = trunk(ez)
        if pose == "side":
            ey = ecy + eb * rng.uniform(-0.2, 0.35)
        else:  # the upper arm swung forwards a little, the elbow bent
            ez -= rng.uniform(0.0, 50.0)
            ey = ecy + eb * rng.uniform(0.2, 0.6)
        ex = _lateral_edge(outlines, ez, lat) + lat * (r_el + gap)
        elbow = np.array([ex, ey, ez])
        length = draw(rng, p.forearm_mm)
        if pose == "side":
            tilt = np.deg2rad(rng.uniform(0.0, 12.0))
            wz = ez - length * np.cos(tilt)
            r_wr = hand * 0.13 + 0.7 * fat
            wx = _lateral_edge(outlines, wz, lat) + lat * (r_wr + gap)
            wrist = np.array([wx, ey + rng.uniform(-15.0, 15.0), wz])
            along = _unit(np.array([lat * 0.12, rng.uniform(-0.1, 0.1), -1.0]))
            across = _unit(np.array([0.0, 1.0, 0.1]))  # thumb forwards, palm on the thigh
            palm = np.array([-lat, 0.0, 0.0])
        else:
            wz = float(hip[2]) + rng.uniform(-70.0, 10.0)
            lx, _, la, _, lfat = legs[side](wz)
            wx = lx + lat * (la + lfat) * rng.uniform(-0.4, 0.5)
            r_wr = hand * 0.13 + 0.7 * fat
            wy = _front(outlines, wx, wz) + r_wr + 0.25 * gap
            wrist = np.array([wx, wy, wz])
            ts = np.linspace(0.0, 1.0, CLEAR_SAMPLES)
            for _ in range(8):  # keep the forearm outside the body: the hand stays on the
                # thigh, the elbow moves out (the point at t moves (1 - t) as far)
                pts = elbow[None] + ts[:, None] * (wrist - elbow)[None]
                hits = [
                    (*_inside(outlines, q, r_el * (1 - t) + r_wr * t), t)
                    for q, t in zip(pts[:-1], ts[:-1], strict=True)
                ]
                deep, way, t_hit = max(hits, key=lambda h: h[0])
                if deep <= 1.0:
                    break
                elbow = elbow + way * (deep + 2.0) / max(1.0 - t_hit, 0.3)
            along = _unit(np.array([-lat * rng.uniform(0.0, 0.4), 0.0, -1.0]))
            # palm down, fingers towards the knee: the thumb lies medially
            across = _unit(np.cross(along, np.array([0.0, 1.0, 0.0])) * -lat)
            palm = np.array([0.0, -1.0, 0.0])  # palm down on the thigh
        segs = _outline_segments(elbow, wrist, along, across, fat, hand)
        bones = _bones(elbow, wrist, along, across, palm, hand, lat, p, rng)
        arms.append(Arm(side, pose, elbow, wrist, segs, bones))
    return arms
