"""Displaced femoral fractures: the femur in two pieces, both labelled femur.

Hip fractures are among the commonest reasons a femur is scanned, and a femur in two pieces is
still one femur: both fragments are labelled. Drawn per femur (off unless
:class:`~femurseg.phantoms.params.FractureParams` ``probability`` draws it), three kinds:

* ``neck`` (subcapital to transcervical): cut across the neck one to one and a half head radii
  from the head's centre; the head fragment turns in the acetabulum about its own centre
  (a displaced, Garden III-IV fracture), so it stays seated while its neck stub swings away.
* ``trochanteric``: cut obliquely through the trochanteric region (between the neck's axis and
  the shaft's); the proximal fragment (head, neck, part of the trochanters) turns about the
  head's centre, mostly into varus.
* ``shaft``: cut across the diaphysis, square or oblique; the proximal fragment turns about
  the head's centre by the angle that shifts the fracture's ends by a drawn offset.

A gap of 0 mm (the pieces impacted into each other) to a few mm is left between the pieces.
The meshes are not cut: at render time the femur is voxelised twice, as posed and as turned,
and each copy is kept on its own side of the fracture plane (:func:`fractured_crop`), which
needs no capped mesh. Other uses of the femur mesh (landmarks, body outline, joint contact,
truth measurements) keep the unbroken bone; the turns are small, except the head's, which
stays in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.voxelize import MaskCrop, voxelize
from femurseg.phantoms.params import FractureParams

A = npt.NDArray[np.float64]

#: fracture kinds, in the order of ``FractureParams.kind_weights``.
KINDS = ("neck", "trochanteric", "shaft")
#: a trochanteric fracture's proximal piece reaches this far beyond the plane's point from the
#: head's centre (the greater trochanter's top), mm.
TROCHANTER_REACH_MM = 40.0


@dataclass
class Fracture:
    """One femur's fracture: the plane (a point on it and its unit normal, pointing into the
    proximal fragment), the proximal fragment's turn ``rotation`` about ``centre`` (the head's
    centre), and the gap (mm) between the fragments. The proximal fragment is the bone on the
    plane's proximal side within ``reach_mm`` of the centre (the plane runs on past the neck:
    the lesser trochanter below a neck fracture stays with the shaft)."""

    side: str
    kind: str
    origin: A
    normal: A
    centre: A
    rotation: A
    gap_mm: float
    reach_mm: float = np.inf

    def to_meta(self) -> dict[str, object]:
        """The fracture for the case record."""
        cosang = np.clip((np.trace(self.rotation) - 1.0) / 2.0, -1.0, 1.0)
        return {
            "side": self.side,
            "kind": self.kind,
            "origin": [round(float(v), 1) for v in self.origin],
            "normal": [round(float(v), 3) for v in self.normal],
            "turn_deg": round(float(np.degrees(np.arccos(cosang))), 1),
            "gap_mm": round(self.gap_mm, 2),
        }


def _unit(v: A) -> A:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _rotation(axis: A, angle: float) -> A:
    """Rotation matrix by ``angle`` (radians) about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = _unit(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _tilted(v: A, max_deg: float, rng: np.random.Generator) -> A:
    """``v`` turned by up to ``max_deg`` degrees about a random axis across it."""
    axis = _unit(np.cross(v, rng.normal(size=3)))
    return _rotation(axis, np.deg2rad(rng.uniform(-max_deg, max_deg))) @ v


def _shaft_axis(vertices: A, top: A, bottom: A) -> tuple[A, A]:
    """A point on the shaft's axis and its direction (unit, pointing proximally): centroids of
    the vertices between 30-40 % and 60-70 % of the length from the top."""
    u = _unit(top - bottom)
    s = (top - vertices) @ u / float(np.linalg.norm(top - bottom))
    hi = vertices[(s > 0.3) & (s < 0.4)].mean(axis=0)
    lo = vertices[(s > 0.6) & (s < 0.7)].mean(axis=0)
    return lo, _unit(hi - lo)


def draw_fractures(anatomy: Anatomy, p: FractureParams, rng: np.random.Generator) -> list[Fracture]:
    """Draw each femur's fracture, or none (chance ``1 - p.probability`` per femur)."""
    out = []
    lm = anatomy.landmarks
    w = np.asarray(p.kind_weights, dtype=np.float64)
    for side in ("left", "right"):
        if rng.uniform() >= p.probability:
            continue
        kind = KINDS[int(rng.choice(len(KINDS), p=w / w.sum()))]
        head = np.asarray(lm[f"hip_{side}"], dtype=np.float64)
        radius = float(lm[f"head_radius_{side}"][0])
        top = np.asarray(lm[f"femur_top_{side}"], dtype=np.float64)
        bottom = np.asarray(lm[f"femur_bottom_{side}"], dtype=np.float64)
        verts = np.asarray(anatomy.meshes[f"femur_{side}"].vertices, dtype=np.float64)
        base, up = _shaft_axis(verts, top, bottom)
        foot = base + up * float((head - base) @ up)  # the shaft axis level with the head
        neck = _unit(foot - head)  # from the head towards the shaft (lateral, a little down)
        reach = np.inf
        if kind == "neck":
            origin = head + neck * radius * rng.uniform(*p.neck_depth_radii)
            reach = float(np.linalg.norm(origin - head)) + 0.6 * radius
            normal = _tilted(-neck, 20.0, rng)
            angle = np.deg2rad(rng.uniform(*p.neck_turn_deg))
            axis = _unit(np.cross(neck, rng.normal(size=3)))
        elif kind == "trochanteric":
            origin = head + (foot - head) * rng.uniform(0.75, 0.95)
            reach = float(np.linalg.norm(origin - head)) + TROCHANTER_REACH_MM
            normal = _tilted(_unit(up - neck), 15.0, rng)
            angle = np.deg2rad(rng.uniform(*p.trochanteric_turn_deg))
            # mostly into varus: about the axis across the neck-shaft plane
            axis = _tilted(_unit(np.cross(up, neck)), 30.0, rng)
        else:
            length = float(np.linalg.norm(top - bottom))
            origin = base + up * float((top - base) @ up) - up * length * rng.uniform(0.3, 0.72)
            normal = _tilted(up, 30.0, rng)
            arm = float(np.linalg.norm(origin - head))
            angle = rng.uniform(*p.shaft_offset_mm) / max(arm, 1.0)
            axis = _unit(np.cross(origin - head, rng.normal(size=3)))
        out.append(
            Fracture(
                side,
                kind,
                origin,
                _unit(normal),
                head,
                _rotation(axis, float(angle)),
                float(rng.uniform(*p.gap_mm)),
                reach,
            )
        )
    return out


def _side_of(crop: MaskCrop, grid: RenderGrid, origin: A, normal: A) -> npt.NDArray[np.float32]:
    """Signed distance (mm) of each crop voxel centre from the plane (origin, normal)."""
    aff = grid.affine
    idx = [np.arange(s.start, s.stop, dtype=np.float64) for s in crop.slices]
    # world = aff[:3, :3] @ index + aff[:3, 3]; the distance is linear in the index
    g = aff[:3, :3].T @ normal
    c = float((aff[:3, 3] - origin) @ normal)
    d = (
        (g[0] * idx[0])[:, None, None]
        + (g[1] * idx[1])[None, :, None]
        + (g[2] * idx[2])[None, None, :]
        + c
    )
    return d.astype(np.float32)


def _near(crop: MaskCrop, grid: RenderGrid, centre: A, reach: float) -> npt.NDArray[np.bool_]:
    """Crop voxels whose centres lie within ``reach`` mm of ``centre`` (all when infinite)."""
    if not np.isfinite(reach):
        return np.ones(crop.mask.shape, dtype=bool)
    w = [grid.axis(d)[crop.slices[d]] - centre[d] for d in range(3)]
    r2 = (w[0] ** 2)[:, None, None] + (w[1] ** 2)[None, :, None] + (w[2] ** 2)[None, None, :]
    return np.asarray(r2 < reach * reach)


def fractured_crop(anatomy: Anatomy, name: str, frac: Fracture, grid: RenderGrid) -> MaskCrop:
    """The femur ``name`` in its two pieces on ``grid``: the distal piece where it was, the
    proximal one turned about the head's centre, ``gap_mm`` apart along the plane's normal."""
    mesh = anatomy.meshes[name]
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    half = frac.gap_mm / 2.0
    distal = voxelize((v, f), grid.affine, grid.shape)
    if distal.mask.size:
        d = _side_of(distal, grid, frac.origin, frac.normal)
        distal.mask[(d > -half) & _near(distal, grid, frac.centre, frac.reach_mm)] = False
    turned = (v - frac.centre) @ frac.rotation.T + frac.centre
    prox = voxelize((turned, f), grid.affine, grid.shape)
    if prox.mask.size:
        # the plane and the reach turned with the piece (the centre is on the turn's axis)
        o = frac.rotation @ (frac.origin - frac.centre) + frac.centre
        d = _side_of(prox, grid, o, frac.rotation @ frac.normal)
        prox.mask[(d < half) | ~_near(prox, grid, frac.centre, frac.reach_mm)] = False
    if not distal.mask.size:
        return prox
    if not prox.mask.size:
        return distal
    return distal.union(prox)
