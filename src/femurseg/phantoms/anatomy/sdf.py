"""Implicit-surface toolkit for procedural bones: primitives, smooth blends, meshing.

Every primitive is a (approximate, Lipschitz <= 1 near the surface) signed distance in mm,
negative inside. A :class:`Field` samples the blend of many primitives on a regular grid,
evaluating each one only inside its own bounding box (plus the blend radius), which keeps a
whole bone to a fraction of a second; :meth:`Field.mesh` turns it into a watertight mesh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import trimesh
from skimage.measure import marching_cubes

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]
Points = npt.NDArray[np.float32]
Primitive = Callable[[Points], Points]


def smin(a: Points, b: Points, k: float) -> Points:
    """Smooth minimum (polynomial) of two distance fields with blend radius ``k`` mm."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (k * 0.25)


def ellipsoid(centre: npt.ArrayLike, radii: npt.ArrayLike, rot: Array | None = None) -> Primitive:
    """Ellipsoid with semi-axes ``radii`` (mm) along the columns of ``rot`` (identity if None)."""
    c = np.asarray(centre, dtype=np.float32)
    r = np.asarray(radii, dtype=np.float32)
    m = np.eye(3, dtype=np.float32) if rot is None else np.asarray(rot, dtype=np.float32)

    def f(p: Points) -> Points:
        q = (p - c) @ m
        k0 = np.linalg.norm(q / r, axis=-1)
        k1 = np.linalg.norm(q / (r * r), axis=-1)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)

    f.bounds = _box(c, float(r.max()))  # type: ignore[attr-defined]
    return f


def capsule(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    ra: float,
    rb: float | None = None,
    scale: npt.ArrayLike = (1.0, 1.0, 1.0),
) -> Primitive:
    """Segment a-b swept by a sphere whose radius goes from ``ra`` to ``rb`` (mm).

    ``scale`` stretches the cross-section per world axis (e.g. (2, 1, 1): twice as wide in x).
    """
    s = np.asarray(scale, dtype=np.float32)
    pa = np.asarray(a, dtype=np.float32)
    pb = np.asarray(b, dtype=np.float32)
    rb_ = ra if rb is None else rb
    ba = (pb - pa) / s
    denom = float(ba @ ba) or 1.0
    smin_ = float(s.min())

    def f(p: Points) -> Points:
        q = (p - pa) / s
        t = np.clip(q @ ba / denom, 0.0, 1.0)
        d = np.linalg.norm(q - t[..., None] * ba, axis=-1) - (ra + (rb_ - ra) * t)
        return d * smin_

    lo = np.minimum(pa, pb) - max(ra, rb_) * s
    hi = np.maximum(pa, pb) + max(ra, rb_) * s
    f.bounds = (lo, hi)  # type: ignore[attr-defined]
    return f


def polyline(
    points: npt.ArrayLike,
    radii: npt.ArrayLike,
    scale: npt.ArrayLike = (1.0, 1.0, 1.0),
    closed: bool = False,
) -> list[Primitive]:
    """Tapered capsules along a polyline: (N, 3) points and (N,) radii, mm.

    :meth:`Field.union` joins the capsules of one list with a hard minimum (one smooth tube,
    no bulge at the joints) before blending the tube in. ``closed`` adds the segment from the
    last point back to the first (a ring). ``scale`` as for :func:`capsule`.
    """
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    if closed:
        p, r = np.vstack([p, p[:1]]), np.append(r, r[0])
    return [
        capsule(p[i], p[i + 1], float(r[i]), float(r[i + 1]), scale=scale)
        for i in range(len(p) - 1)
    ]


def shell(prim: Primitive, thickness: float) -> Primitive:
    """Hollow version of a primitive: a wall of ``thickness`` mm centred on its surface."""
    half = 0.5 * thickness

    def f(p: Points) -> Points:
        return np.abs(prim(p)) - np.float32(half)

    lo, hi = prim.bounds  # type: ignore[attr-defined]
    f.bounds = (lo - half, hi + half)  # type: ignore[attr-defined]
    return f


def intersect(a: Primitive, b: Primitive, k: float = 0.0) -> Primitive:
    """The part of ``a`` inside ``b`` (smooth maximum with rounding radius ``k`` mm)."""

    def f(p: Points) -> Points:
        return -smin(-a(p), -b(p), k)

    (alo, ahi), (blo, bhi) = a.bounds, b.bounds  # type: ignore[attr-defined]
    f.bounds = (np.maximum(alo, blo), np.minimum(ahi, bhi))  # type: ignore[attr-defined]
    return f


def elliptic_cylinder(
    centre: npt.ArrayLike, radii: npt.ArrayLike, axis: int, half_length: float
) -> Primitive:
    """Capped elliptic cylinder along world ``axis`` (0, 1, 2) with the other two semi-axes
    ``radii`` (2,) mm, ``half_length`` mm each side of ``centre`` (approximate distance)."""
    c = np.asarray(centre, dtype=np.float32)
    r = np.asarray(radii, dtype=np.float32)
    other = [i for i in range(3) if i != axis]

    def f(p: Points) -> Points:
        q = (p - c)[..., other]
        k0 = np.linalg.norm(q / r, axis=-1)
        k1 = np.linalg.norm(q / (r * r), axis=-1)
        side = k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
        return np.maximum(side, np.abs(p[..., axis] - c[axis]) - half_length)

    ext = np.full(3, half_length, dtype=np.float64)
    ext[other] = r
    f.bounds = (c - ext, c + ext)  # type: ignore[attr-defined]
    return f


def sphere(centre: npt.ArrayLike, radius: float) -> Primitive:
    """Sphere of ``radius`` mm."""
    c = np.asarray(centre, dtype=np.float32)

    def f(p: Points) -> Points:
        return np.linalg.norm(p - c, axis=-1) - radius

    f.bounds = _box(c, radius)  # type: ignore[attr-defined]
    return f


def _box(c: npt.NDArray[np.float32], r: float) -> tuple[Array, Array]:
    return np.asarray(c - r, dtype=np.float64), np.asarray(c + r, dtype=np.float64)


class Field:
    """A distance field sampled on a regular grid (axis-aligned, spacing ``h`` mm).

    Args:
        lo: (3,) lower corner, mm.
        hi: (3,) upper corner, mm.
        h: grid spacing, mm.
        fold_x: if given, x is folded about this plane (x -> |x - fold_x| + fold_x) before
            primitives are evaluated, making the shape mirror-symmetric.
    """

    def __init__(
        self, lo: npt.ArrayLike, hi: npt.ArrayLike, h: float, fold_x: float | None = None
    ) -> None:
        self.lo = np.asarray(lo, dtype=np.float64)
        self.h = float(h)
        n = np.ceil((np.asarray(hi, dtype=np.float64) - self.lo) / h).astype(int) + 1
        self.axes = [(self.lo[i] + h * np.arange(n[i])).astype(np.float32) for i in range(3)]
        self.values = np.full(tuple(n), 1e3, dtype=np.float32)
        self.fold_x = fold_x

    def _block(
        self, bounds: tuple[Array, Array], margin: float
    ) -> tuple[tuple[slice, ...], Points]:
        lo, hi = bounds
        if self.fold_x is not None:
            # A primitive on the +x side also appears mirrored on the -x side.
            ext = max(abs(lo[0] - self.fold_x), abs(hi[0] - self.fold_x))
            lo = np.array([self.fold_x - ext, lo[1], lo[2]])
            hi = np.array([self.fold_x + ext, hi[1], hi[2]])
        sl = []
        for i in range(3):
            a = int(np.clip(np.floor((lo[i] - margin - self.lo[i]) / self.h), 0, len(self.axes[i])))
            b = int(
                np.clip(np.ceil((hi[i] + margin - self.lo[i]) / self.h) + 1, 0, len(self.axes[i]))
            )
            sl.append(slice(a, b))
        x, y, z = (self.axes[i][sl[i]] for i in range(3))
        if self.fold_x is not None:
            x = np.abs(x - np.float32(self.fold_x)) + np.float32(self.fold_x)
        pts = np.stack(np.meshgrid(x, y, z, indexing="ij"), axis=-1)
        return tuple(sl), pts

    def union(self, prims: Primitive | list[Primitive], k: float = 0.0) -> None:
        """Blend primitives in (smooth union with radius ``k`` mm).

        A list (e.g. from :func:`polyline`) is one body: its members are joined by a hard
        minimum first, and the group is then blended in with radius ``k``.
        """
        if not isinstance(prims, list):
            prims = [prims]
        if len(prims) == 1:
            sl, pts = self._block(prims[0].bounds, k + 2 * self.h)  # type: ignore[attr-defined]
            if pts.size:
                self.values[sl] = smin(self.values[sl], prims[0](pts), k)
            return
        los = np.array([f.bounds[0] for f in prims])  # type: ignore[attr-defined]
        his = np.array([f.bounds[1] for f in prims])  # type: ignore[attr-defined]
        gsl, _ = self._block((los.min(axis=0), his.max(axis=0)), k + 2 * self.h)
        group = np.full(self.values[gsl].shape, 1e3, dtype=np.float32)
        for f in prims:
            sl, pts = self._block(f.bounds, k + 2 * self.h)  # type: ignore[attr-defined]
            if pts.size:
                local = tuple(
                    slice(a.start - g.start, a.stop - g.start) for a, g in zip(sl, gsl, strict=True)
                )
                group[local] = np.minimum(group[local], f(pts))
        self.values[gsl] = smin(self.values[gsl], group, k)

    def subtract(self, prims: Primitive | list[Primitive], k: float = 0.0) -> None:
        """Carve primitives out (smooth subtraction with radius ``k`` mm)."""
        for f in prims if isinstance(prims, list) else [prims]:
            sl, pts = self._block(f.bounds, k + 2 * self.h)  # type: ignore[attr-defined]
            if pts.size:
                self.values[sl] = -smin(-self.values[sl], f(pts), k)

    def subtract_field(self, other: Field, gap: float = 0.0) -> None:
        """Carve another field on the same grid out of this one, leaving ``gap`` mm between.

        A field holds true distances only within two grid steps of its primitives (elsewhere
        it reads 1e3), so ``gap`` may not exceed ``2 * h``.
        """
        if gap > 2.0 * self.h:
            raise ValueError(
                f"subtract_field gap {gap} mm > 2 grid steps ({2 * self.h} mm); distances are "
                "only sampled that far from each primitive; use a smaller gap or a coarser grid"
            )
        if other.values.shape != self.values.shape or not np.allclose(other.lo, self.lo):
            raise ValueError(
                f"subtract_field needs the same grid; got shapes {other.values.shape} and "
                f"{self.values.shape}, corners {other.lo} and {self.lo}; build both fields "
                "with the same lo, hi and h"
            )
        np.maximum(self.values, gap - other.values, out=self.values)

    def mesh(
        self, min_volume: float | None = None, face_count: int | None = None
    ) -> trimesh.Trimesh:
        """Watertight mesh of the zero level set (outward normals), grid frame mm.

        If ``min_volume`` is given, bodies smaller than that (mm^3; blend artefacts) are dropped.
        If ``face_count`` is given, the mesh is decimated to about that many triangles
        (:func:`decimate`).
        """
        vol = np.pad(self.values, 1, constant_values=1e3)
        verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(self.h,) * 3)
        verts = verts.astype(np.float64) + self.lo - self.h
        m = trimesh.Trimesh(verts, faces, process=False)
        if signed_volume(m) < 0:  # guard: the winding must give outward normals
            m.invert()
        if min_volume is not None:
            parts = bodies(m)
            if len(parts) > 1:
                keep = [b for b in parts if signed_volume(b) >= min_volume]
                m = trimesh.Trimesh(*stack(keep), process=False)
        if face_count is not None:
            m = decimate(m, face_count)
        return m


def decimate(mesh: trimesh.Trimesh, faces: int) -> trimesh.Trimesh:
    """Quadric edge-collapse decimation to about ``faces`` triangles, kept watertight.

    Marching cubes gives even, fine triangles (about four per voxel face crossed); shape-model
    meshes have edges a few mm long. Each body is decimated on its own with a share of
    ``faces`` proportional to its area; a body whose decimated surface comes out open,
    inverted or split keeps its original triangles.

    Args:
        mesh: watertight mesh, one or more bodies.
        faces: wanted total number of triangles.

    Returns:
        A new mesh with the same bodies.
    """
    import fast_simplification

    if len(mesh.faces) <= faces:
        return mesh
    out = []
    parts = bodies(mesh)
    total = float(sum(b.area for b in parts))
    for b in parts:
        want = max(int(round(faces * b.area / total)), 64)
        # Collapsing a thin wall far can fold it onto itself; then decimate less.
        for target in (want, int(1.5 * want), 2 * want, 3 * want, 5 * want):
            if len(b.faces) <= target:
                break
            v, f = fast_simplification.simplify(
                np.asarray(b.vertices, dtype=np.float32),
                np.asarray(b.faces, dtype=np.int64),
                target_reduction=1.0 - target / len(b.faces),
            )
            d = _drop_face_pairs(np.asarray(v, dtype=np.float64), np.asarray(f))
            if d.is_watertight and signed_volume(d) > 0 and len(bodies(d)) == 1:
                b = d
                break
            log.debug("decimation to %d faces left a body open or split; retrying", target)
        out.append(b)
    return trimesh.Trimesh(*stack(out), process=False)


def _drop_face_pairs(v: Array, f: npt.NDArray[np.int64]) -> trimesh.Trimesh:
    """Mesh without back-to-back face pairs (edge collapse can fold a thin wall onto itself)."""
    key = np.sort(f, axis=1)
    _, inv, count = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    f = f[count[inv.ravel()] == 1]
    used, idx = np.unique(f, return_inverse=True)
    return trimesh.Trimesh(v[used], idx.reshape(-1, 3), process=False)


def signed_volume(mesh: trimesh.Trimesh) -> float:
    """Enclosed volume, mm^3 (negative for inward normals); cheaper than ``mesh.volume``."""
    t = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def bodies(mesh: trimesh.Trimesh) -> list[trimesh.Trimesh]:
    """Connected bodies of a mesh (faces sharing vertices), a fast ``mesh.split``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(mesh.faces)
    n = len(mesh.vertices)
    a = np.concatenate([f[:, 0], f[:, 1]])
    b = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    if count == 1:
        return [mesh]
    face_label = label[f[:, 0]]
    out = []
    v = np.asarray(mesh.vertices)
    for i in range(count):
        fi = f[face_label == i]
        if len(fi) == 0:
            continue
        used, inv = np.unique(fi, return_inverse=True)
        out.append(trimesh.Trimesh(v[used], inv.reshape(-1, 3), process=False))
    return out


def stack(meshes: list[trimesh.Trimesh]) -> tuple[Array, npt.NDArray[np.int64]]:
    """Vertices and faces of several meshes as one (bodies stay separate)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    verts = np.concatenate([m.vertices for m in meshes])
    faces = np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=True)])
    return verts, faces
