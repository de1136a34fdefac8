"""Exact voxelisation of closed triangle meshes on arbitrary (anisotropic, oblique) grids.

A voxel is inside when its centre is inside the mesh. The mesh is moved into continuous voxel
index space with the inverse affine, then scan-converted: every triangle is projected along one
index axis (the scan axis), the lattice columns its projection covers are found with exact,
consistently rounded edge functions, the crossing depth along the scan axis is interpolated, and
each crossing adds +1 or -1 (by the triangle's facing) at that depth. A cumulative sum along the
scan axis gives the winding number of every voxel centre; non-zero is inside. Winding numbers,
unlike parity, keep overlapping bodies of one mesh (e.g. sacrum and hip bones) solid.

Work and memory are limited to the mesh's bounding box in the grid: the result is a boolean
crop plus the slices placing it in the full grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import trimesh

log = logging.getLogger(__name__)

# Lattice points are shifted by these tiny irrational-looking offsets so that no voxel centre
# lies exactly on a mesh edge or vertex (common for meshes with integer or half-integer
# coordinates); shared edges are then owned by exactly one of their two triangles.
_JITTER = (1.2345e-6, 2.7182e-6)
# Upper bound on (triangle, lattice point) candidate pairs handled in one vectorised batch.
_BATCH = 2_000_000
_JITTER_ARR = np.array(_JITTER)

Slices = tuple[slice, slice, slice]


@dataclass(frozen=True)
class MaskCrop:
    """A boolean mask over part of a grid.

    Attributes:
        mask: bool array, shape (ni, nj, nk), True where the voxel centre is inside the mesh.
        slices: where ``mask`` sits in the full grid (``full[slices] == mask``).
        shape: shape of the full grid.
    """

    mask: npt.NDArray[np.bool_]
    slices: Slices
    shape: tuple[int, int, int]

    def to_full(self) -> npt.NDArray[np.bool_]:
        """The mask on the full grid, bool array of shape :attr:`shape`."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.slices] = self.mask
        return out

    def paste(self, out: npt.NDArray[np.generic], value: float | int) -> None:
        """Write ``value`` into ``out`` (full-grid array, modified in place) where inside."""
        paste(out, self, value)

    def within(self, region: Slices) -> npt.NDArray[np.bool_]:
        """The crop's inside voxels within ``region`` (full-grid slices, step 1), as a bool
        array of the region's shape (False wherever the crop does not reach)."""
        out = np.zeros(tuple(r.stop - r.start for r in region), dtype=bool)
        src, dst = [], []
        for c, r in zip(self.slices, region, strict=True):
            lo, hi = max(c.start, r.start), min(c.stop, r.stop)
            if hi <= lo:
                return out
            src.append(slice(lo - c.start, hi - c.start))
            dst.append(slice(lo - r.start, hi - r.start))
        out[tuple(dst)] = self.mask[tuple(src)]
        return out

    def union(self, other: MaskCrop) -> MaskCrop:
        """This crop united with ``other`` (on the same grid), over their joint bounding box."""
        region = tuple(
            slice(min(a.start, b.start), max(a.stop, b.stop))
            for a, b in zip(self.slices, other.slices, strict=True)
        )
        mask = self.within(region) | other.within(region)  # type: ignore[arg-type]
        return MaskCrop(mask, region, self.shape)  # type: ignore[arg-type]

    @property
    def count(self) -> int:
        """Number of inside voxels."""
        return int(np.count_nonzero(self.mask))


def paste(out: npt.NDArray[np.generic], crop: MaskCrop, value: float | int) -> None:
    """Set ``out[...] = value`` at the voxels inside ``crop`` (``out`` has the full grid shape).

    Raises:
        ValueError: ``out`` does not have the crop's full-grid shape.
    """
    if tuple(out.shape) != tuple(crop.shape):
        raise ValueError(f"paste target has shape {out.shape}; expected {crop.shape}")
    region = out[crop.slices]
    region[crop.mask] = value


def voxelize(
    mesh: trimesh.Trimesh | tuple[npt.ArrayLike, npt.ArrayLike],
    affine: npt.ArrayLike,
    shape: tuple[int, int, int],
) -> MaskCrop:
    """Inside/outside of a closed mesh at the voxel centres of a grid.

    Args:
        mesh: closed, consistently oriented triangle mesh in world mm (a trimesh, or a
            ``(vertices (V, 3), faces (F, 3))`` pair), in the same world frame as ``affine``.
        affine: 4x4 voxel index (i, j, k, 1) -> world mm; any invertible affine (anisotropic,
            permuted, flipped or oblique).
        shape: full grid shape (ni, nj, nk).

    Returns:
        :class:`MaskCrop` over the mesh's bounding box clipped to the grid (an empty crop with
        zero-size slices when the mesh misses the grid).
    """
    if isinstance(mesh, trimesh.Trimesh):
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
    else:
        v = np.asarray(mesh[0], dtype=np.float64)
        f = np.asarray(mesh[1], dtype=np.int64)
    aff = np.asarray(affine, dtype=np.float64)
    shp = (int(shape[0]), int(shape[1]), int(shape[2]))
    inv = np.linalg.inv(aff)
    p = v @ inv[:3, :3].T + inv[:3, 3]

    lo = np.maximum(np.ceil(p.min(axis=0) - 1e-9), 0).astype(np.int64)
    hi = np.minimum(np.floor(p.max(axis=0) + 1e-9), np.array(shp) - 1).astype(np.int64)
    if np.any(hi < lo) or len(f) == 0:
        empty = tuple(slice(0, 0) for _ in range(3))
        return MaskCrop(np.zeros((0, 0, 0), dtype=bool), empty, shp)  # type: ignore[arg-type]
    ext = hi - lo + 1
    # Scan along the longest box axis: fewest columns, so fewest triangle/column pairs.
    k_ax = int(np.argmax(ext))
    i_ax, j_ax = [a for a in range(3) if a != k_ax]
    q = (p - lo)[:, [i_ax, j_ax, k_ax]]
    n = ext[[i_ax, j_ax, k_ax]]
    wind = _winding_columns(q, f, (int(n[0]), int(n[1]), int(n[2])))
    mask_perm = wind != 0
    # Undo the axis permutation: mask_perm axes are (i_ax, j_ax, k_ax).
    mask = np.moveaxis(mask_perm, (0, 1, 2), (i_ax, j_ax, k_ax))
    slices = tuple(slice(int(lo[a]), int(hi[a]) + 1) for a in range(3))
    return MaskCrop(np.ascontiguousarray(mask), slices, shp)  # type: ignore[arg-type]


def _winding_columns(
    q: npt.NDArray[np.float64], f: npt.NDArray[np.int64], n: tuple[int, int, int]
) -> npt.NDArray[np.int16]:
    """Winding numbers at lattice points (0..n0-1, 0..n1-1, 0..n2-1) of vertices ``q`` (V, 3)."""
    ni, nj, nk = n
    # Edge functions are evaluated once per undirected edge, in a fixed vertex order, so the two
    # triangles sharing an edge see exactly opposite values (no double or missed crossings).
    e_all = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    flip = e_all[:, 0] > e_all[:, 1]
    e_sorted = np.where(flip[:, None], e_all[:, ::-1], e_all)
    a = q[f]  # (F, 3 vertices, 3 coords)
    tmin = np.ceil(a[:, :, :2].min(axis=1) - _JITTER_ARR).astype(np.int64)
    tmax = np.floor(a[:, :, :2].max(axis=1) - _JITTER_ARR).astype(np.int64)
    tmin = np.maximum(tmin, 0)
    tmax = np.minimum(tmax, [ni - 1, nj - 1])
    cnt = np.where(np.all(tmax >= tmin, axis=1), np.prod(tmax - tmin + 1, axis=1), 0)

    counter = np.zeros(ni * nj * (nk + 1), dtype=np.int16)
    tris = np.nonzero(cnt)[0]
    start = 0
    while start < len(tris):
        csum = np.cumsum(cnt[tris[start:]])
        stop = start + max(1, int(np.searchsorted(csum, _BATCH, side="right")))
        batch = tris[start:stop]
        start = stop
        _scan_batch(
            q, f, e_sorted, flip, batch, cnt[batch], tmin[batch], tmax[batch], (ni, nj, nk), counter
        )
    return np.cumsum(counter.reshape(ni, nj, nk + 1)[:, :, :nk], axis=2, dtype=np.int16)


def _scan_batch(
    q: npt.NDArray[np.float64],
    f: npt.NDArray[np.int64],
    e_sorted: npt.NDArray[np.int64],
    flip: npt.NDArray[np.bool_],
    tris: npt.NDArray[np.int64],
    cnt: npt.NDArray[np.int64],
    tmin: npt.NDArray[np.int64],
    tmax: npt.NDArray[np.int64],
    n: tuple[int, int, int],
    counter: npt.NDArray[np.int16],
) -> None:
    """Add the signed crossings of triangles ``tris`` over their lattice columns to ``counter``."""
    ni, nj, nk = n
    nf = len(f)
    rep = np.repeat(np.arange(len(tris)), cnt)
    offs = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    width = (tmax[:, 1] - tmin[:, 1] + 1)[rep]
    ci = tmin[rep, 0] + offs // width
    cj = tmin[rep, 1] + offs % width
    px = ci + _JITTER[0]
    py = cj + _JITTER[1]
    t = tris[rep]
    w = []
    for e in range(3):
        idx = t + e * nf
        u = e_sorted[idx, 0]
        v = e_sorted[idx, 1]
        ux, uy = q[u, 0], q[u, 1]
        val = (q[v, 0] - ux) * (py - uy) - (q[v, 1] - uy) * (px - ux)
        w.append(np.where(flip[idx], -val, val))
    # w[e] is the edge function of edge e (opposite vertex (e + 2) % 3), positive on its left.
    w0, w1, w2 = w
    inside = ((w0 > 0) & (w1 > 0) & (w2 > 0)) | ((w0 < 0) & (w1 < 0) & (w2 < 0))
    if not inside.any():
        return
    w0, w1, w2, t, ci, cj = w0[inside], w1[inside], w2[inside], t[inside], ci[inside], cj[inside]
    tot = w0 + w1 + w2
    z = q[:, 2][f[t]]  # (M, 3) scan-axis depth of the triangle's corners
    # Barycentric weight of a corner is the edge function of the edge opposite it.
    # Written relative to corner 0 so that a face at constant depth gives exactly that depth.
    kz = z[:, 0] + (w2 * (z[:, 1] - z[:, 0]) + w0 * (z[:, 2] - z[:, 0])) / tot
    sign = np.where(tot > 0, 1, -1).astype(np.int16)
    kk = np.clip(np.ceil(kz), 0, nk).astype(np.int64)
    np.add.at(counter, (ci * nj + cj) * (nk + 1) + kk, sign)
