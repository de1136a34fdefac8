"""Implicit-surface toolkit for procedural bones: primitives, smooth blends, meshing.

Every primitive is a (approximate, Lipschitz <= 1 near the surface) signed distance in mm,
negative inside. A :class:`Field` samples the blend of many primitives on a regular grid,
evaluating each one only inside its own bounding box (plus the blend radius), which keeps a
whole bone to a fraction of a second; :meth:`Field.mesh` turns it into a watertight mesh.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import trimesh
from skimage.measure import marching_cubes

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
    a: npt.ArrayLike, b: npt.ArrayLike, ra: float, rb: float | None = None,
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


def polyline(points: npt.ArrayLike, radii: npt.ArrayLike) -> list[Primitive]:
    """Tapered capsules along a polyline: (N, 3) points and (N,) radii, mm."""
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    return [capsule(p[i], p[i + 1], float(r[i]), float(r[i + 1])) for i in range(len(p) - 1)]


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

    def __init__(self, lo: npt.ArrayLike, hi: npt.ArrayLike, h: float,
                 fold_x: float | None = None) -> None:
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
            b = int(np.clip(np.ceil((hi[i] + margin - self.lo[i]) / self.h) + 1, 0,
                            len(self.axes[i])))
            sl.append(slice(a, b))
        x, y, z = (self.axes[i][sl[i]] for i in range(3))
        if self.fold_x is not None:
            x = np.abs(x - np.float32(self.fold_x)) + np.float32(self.fold_x)
        pts = np.stack(np.meshgrid(x, y, z, indexing="ij"), axis=-1)
        return tuple(sl), pts

    def union(self, prims: Primitive | list[Primitive], k: float = 0.0) -> None:
        """Blend primitives in (smooth union with radius ``k`` mm)."""
        for f in prims if isinstance(prims, list) else [prims]:
            sl, pts = self._block(f.bounds, k + 2 * self.h)  # type: ignore[attr-defined]
            if pts.size:
                self.values[sl] = smin(self.values[sl], f(pts), k)

    def subtract(self, prims: Primitive | list[Primitive], k: float = 0.0) -> None:
        """Carve primitives out (smooth subtraction with radius ``k`` mm)."""
        for f in prims if isinstance(prims, list) else [prims]:
            sl, pts = self._block(f.bounds, k + 2 * self.h)  # type: ignore[attr-defined]
            if pts.size:
                self.values[sl] = -smin(-self.values[sl], f(pts), k)

    def mesh(self, min_volume: float | None = None) -> trimesh.Trimesh:
        """Watertight mesh of the zero level set (outward normals), grid frame mm.

        If ``min_volume`` is given, bodies smaller than that (mm^3; blend artefacts) are dropped.
        """
        vol = np.pad(self.values, 1, constant_values=1e3)
        verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(self.h,) * 3)
        verts = verts.astype(np.float64) + self.lo - self.h
        m = trimesh.Trimesh(verts, faces, process=False)
        if m.volume < 0:  # guard: the winding must give outward normals
            m.invert()
        if min_volume is not None:
            bodies = m.split(only_watertight=False)
            if len(bodies) > 1:
                keep = [b for b in bodies if b.volume >= min_volume]
                m = trimesh.Trimesh(*_stack(keep), process=False)
        return m


def _stack(meshes: list[trimesh.Trimesh]) -> tuple[Array, npt.NDArray[np.int64]]:
    """Vertices and faces of several meshes as one (bodies stay separate)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    verts = np.concatenate([m.vertices for m in meshes])
    faces = np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=True)])
    return verts, faces
