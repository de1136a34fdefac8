"""Osteophytes: bony spurs and lips at the margins of the hip, knee and patellofemoral joints.

Osteoarthritis, the commonest reason for a full-leg CT before a hip or knee replacement, grows
bone at the edges of the joint surfaces: a ring at the femoral head-neck junction and the
acetabular rim, lips on the condyles, the tibial plateau and the patella. They are bone of the
bone they grow from (a femur's osteophytes are femur in a reference mask, a tibia's are not),
and they narrow the dark gap between two bones that a network may use to tell them apart.

Each osteophyte is a flattened ellipsoid ("blob") attached to a bone's surface where the
surface lies :data:`MARGIN_MM` from the neighbouring bone of a joint: the rim around the
contact, not its centre (cartilage there) and not far from it. A blob's reach out of the
surface stays under half the local distance to the neighbour, so it never touches the other
bone. Blobs join their bone's mask before it is painted (cortex over cancellous bone, like the
rest of the bone), and a femur's blobs join its label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh
from scipy.spatial import cKDTree

from femurseg.phantoms.anatomy.model import JOINTS, Anatomy, joint_bones
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import OsteophyteParams

A64 = npt.NDArray[np.float64]

#: a surface point is on a joint's margin when it lies this far (mm) from the neighbour.
MARGIN_MM = (3.0, 14.0)
#: distances to a neighbour are taken to points this far apart (mm) on its surface...
SURFACE_STEP_MM = 0.7
#: ...at most this many (a pelvis is about 0.1 m^2 of surface)...
MAX_SURFACE_POINTS = 400_000
#: ...placed by this fixed seed (the case's own draws stay independent of it).
SURFACE_SEED = 20251
#: a blob's reach out of the surface (its centre's offset plus its radius along the surface
#: normal) stays under this share of the local distance to the neighbour.
REACH_SHARE = 0.5
#: radius along the surface normal as a share of the blob's radius along the surface (a lip).
FLATNESS = 0.6
#: the blob's centre sits this share of its normal radius outside the surface: 0 puts it on
#: the surface, half of it sunk into the bone, so it grows out of the cortex on a broad base.
OFFSET_SHARE = 0.0


@dataclass(frozen=True)
class Blob:
    """One osteophyte: a solid ellipsoid in world RAS+ mm.

    Attributes:
        bone: the mesh key of the bone it belongs to (e.g. ``femur_left``).
        joint: ``hip``, ``knee`` or ``patellofemoral``.
        centre: world mm, shape (3,).
        axes: 3x3 rotation, columns the ellipsoid's axes (the last one the surface normal).
        radii: semi-axes (mm) along those columns.
    """

    bone: str
    joint: str
    centre: A64
    axes: A64
    radii: A64

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "bone": self.bone,
            "joint": self.joint,
            "centre_mm": [round(float(v), 2) for v in self.centre],
            "radii_mm": [round(float(v), 2) for v in self.radii],
        }


def _frame(normal: A64, rng: np.random.Generator) -> A64:
    """A rotation whose last column is ``normal``, turned at random about it."""
    n = normal / max(float(np.linalg.norm(normal)), 1e-9)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    w = np.cross(n, u)
    a = rng.uniform(0.0, 2.0 * np.pi)
    u, w = np.cos(a) * u + np.sin(a) * w, -np.sin(a) * u + np.cos(a) * w
    return np.column_stack([u, w, n])


def draw_osteophytes(
    anatomy: Anatomy, params: OsteophyteParams, rng: np.random.Generator
) -> list[Blob]:
    """The osteophytes of one case (none unless the case draws osteoarthritis).

    With chance ``params.probability`` the case is osteoarthritic; then each joint of each leg
    is affected with chance ``params.joint_probability`` and grows ``params.count`` blobs per
    bone of the joint, of radius ``params.radius_mm`` along the surface (smaller where the
    neighbour is near), at random points of the joint's margin.
    """
    if params.probability <= 0.0 or rng.random() >= params.probability:
        return []
    blobs: list[Blob] = []
    trees: dict[str, cKDTree] = {}

    def tree(name: str) -> cKDTree:
        # points spread over the neighbour's surface about every SURFACE_STEP_MM (its
        # vertices alone can lie far apart on flat stretches and overstate the distance)
        if name not in trees:
            mesh = anatomy.meshes[name]
            count = int(min(float(mesh.area) / SURFACE_STEP_MM**2, MAX_SURFACE_POINTS))
            pts, _ = trimesh.sample.sample_surface(mesh, count, seed=SURFACE_SEED)
            both = np.concatenate([np.asarray(mesh.vertices), np.asarray(pts)])
            trees[name] = cKDTree(both.astype(np.float64))
        return trees[name]

    for side in ("left", "right"):
        for joint in JOINTS:
            if rng.random() >= params.joint_probability:
                continue
            femur, partner = joint_bones(joint, side)
            # each bone of the joint grows spurs on its margin facing the other
            for bone, other in ((femur, partner), (partner, femur)):
                if bone not in anatomy.meshes or other not in anatomy.meshes:
                    continue
                mesh = anatomy.meshes[bone]
                verts = np.asarray(mesh.vertices, dtype=np.float64)
                dist, _ = tree(other).query(verts)
                rim = np.flatnonzero((dist >= MARGIN_MM[0]) & (dist <= MARGIN_MM[1]))
                if rim.size == 0:
                    continue
                normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
                n = int(rng.integers(params.count[0], params.count[1] + 1))
                for idx in rng.choice(rim, size=min(n, rim.size), replace=False):
                    d = float(dist[idx])
                    # reach = (OFFSET_SHARE + 1) * FLATNESS * r <= REACH_SHARE * d
                    r_most = REACH_SHARE * d / ((1.0 + OFFSET_SHARE) * FLATNESS)
                    r = min(float(rng.uniform(*params.radius_mm)), r_most)
                    if r < params.radius_mm[0] * 0.5:
                        continue
                    normal = normals[idx]
                    rn = FLATNESS * r
                    centre = verts[idx] + OFFSET_SHARE * rn * normal
                    along = r * rng.uniform(0.7, 1.3)
                    blobs.append(
                        Blob(bone, joint, centre, _frame(normal, rng), np.array([along, r, rn]))
                    )
    return blobs


def blob_mask(
    blobs: list[Blob], affine: npt.ArrayLike, shape: tuple[int, int, int]
) -> MaskCrop | None:
    """The blobs' union at the voxel centres of an axis-aligned grid with positive spacing (a
    :class:`~femurseg.phantoms.anatomy.grid.RenderGrid`'s affine), as a crop over their
    bounding box (None when no blob reaches the grid)."""
    a = np.asarray(affine, dtype=np.float64)
    step = np.diag(a)[:3]
    origin = a[:3, 3]
    if not blobs:
        return None
    lo_w = np.min([b.centre - b.radii.max() for b in blobs], axis=0)
    hi_w = np.max([b.centre + b.radii.max() for b in blobs], axis=0)
    i0 = (lo_w - origin) / step
    i1 = (hi_w - origin) / step
    lo = np.maximum(np.floor(np.minimum(i0, i1)), 0).astype(int)
    hi = np.minimum(np.ceil(np.maximum(i0, i1)) + 1, np.asarray(shape)).astype(int)
    if np.any(hi <= lo):
        return None
    axes = [origin[d] + step[d] * np.arange(lo[d], hi[d]) for d in range(3)]
    mask = np.zeros(tuple(hi - lo), dtype=bool)
    for b in blobs:
        blo = np.maximum(np.floor((b.centre - b.radii.max() - origin) / step) - lo, 0)
        bhi = np.ceil((b.centre + b.radii.max() - origin) / step) + 1 - lo
        bhi = np.minimum(bhi, mask.shape)
        if np.any(bhi <= blo):
            continue
        sl = tuple(slice(int(blo[d]), int(bhi[d])) for d in range(3))
        x, y, z = np.meshgrid(*(axes[d][sl[d]] - b.centre[d] for d in range(3)), indexing="ij")
        rel = np.stack([x, y, z], axis=-1) @ b.axes  # coordinates along the blob's axes
        mask[sl] |= np.sum((rel / b.radii) ** 2, axis=-1) <= 1.0
    if not mask.any():
        return None
    slices = tuple(slice(int(lo[d]), int(hi[d])) for d in range(3))
    return MaskCrop(mask, slices, tuple(int(s) for s in shape))  # type: ignore[arg-type]


def with_blobs(crop: MaskCrop, blobs: MaskCrop | None) -> MaskCrop:
    """``crop`` united with ``blobs`` (both on the same grid), over their joint bounding box."""
    if blobs is None:
        return crop
    if crop.count == 0:
        return blobs
    return crop.union(blobs)
