"""Resampling arrays between grids that share axis directions (separable, in torch).

All grids in femurseg derive from the canonical grid of the input volume by scaling, shifting
and mirroring, so the map from a destination index to a source index is, per axis,
``src = scale * dst + offset``. That makes resampling separable: three 1D linear passes, each a
product with a two-weights-per-row interpolation matrix, done on the smallest necessary slice
of the source. A destination voxel centre outside the source field of view (voxel edges) gets
``fill``; one within half a voxel of an edge takes the edge value.

Downsampling by a factor of 2 or more first averages whole blocks of voxels (area averaging), so
that a fine scan and a coarse scan give similar intensities and noise on the coarse grid.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from femurseg.preprocessing.grid import Grid, spacing_grid

log = logging.getLogger(__name__)

#: relative tolerance for "off-diagonal is zero" in the grid-to-grid index map.
_AXIS_TOL = 1e-4
#: tolerance (voxels) when deciding whether a position lies on a source voxel centre.
_ON_GRID = 1e-4


def index_map(src: Grid, dst: Grid) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-axis map from destination index to source index: ``src = scale * dst + offset``.

    Args:
        src: grid the data lives on.
        dst: grid to sample onto.

    Returns:
        ``(scale, offset)``, each shape (3,) in source voxels; ``scale`` is negative along an axis
        where one grid is the mirror of the other.

    Raises:
        ValueError: the grids do not share axis directions (e.g. one is rotated against the
            other), so separable resampling does not apply.
    """
    m = np.linalg.solve(src.affine, dst.affine)
    lin = m[:3, :3]
    diag = np.diag(lin)
    off = lin - np.diag(diag)
    if np.abs(off).max() > _AXIS_TOL * max(1.0, float(np.abs(diag).max())) or np.any(diag == 0):
        raise ValueError(
            "grids do not share axis directions (index map is not diagonal); expected a grid "
            "derived from the source grid by scaling, shifting or mirroring"
        )
    return np.asarray(diag, dtype=np.float64).copy(), np.asarray(m[:3, 3], dtype=np.float64)


def _as_tensor(array: npt.NDArray[Any] | torch.Tensor) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array if array.dtype == torch.float32 else array.float()
    arr = np.asarray(array)
    if any(s < 0 for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    with warnings.catch_warnings():
        # read-only arrays (memory maps) are only ever read here
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(arr)
    return t if t.dtype == torch.float32 else t.float()


def _interp_axis(
    t: torch.Tensor,
    axis: int,
    coords: npt.NDArray[np.float64],
    valid: tuple[float, float],
    fill: float,
    order: int,
) -> torch.Tensor:
    """Sample ``t`` along ``axis`` at continuous indices ``coords`` (monotonic).

    Positions outside ``valid`` (the source field of view in ``t``'s index units) get ``fill``;
    positions inside but beyond the outermost samples take the edge sample.
    """
    n = t.shape[axis]
    out_shape = list(t.shape)
    out_shape[axis] = coords.size
    inside = np.flatnonzero((coords >= valid[0] - _ON_GRID) & (coords <= valid[1] + _ON_GRID))
    if inside.size == 0:
        return torch.full(out_shape, fill, dtype=t.dtype)
    a, b = int(inside[0]), int(inside[-1]) + 1
    c = np.clip(coords[a:b], 0.0, n - 1.0)
    if order == 0:
        i0 = np.rint(c).astype(np.int64)
        w = np.zeros_like(c)
    else:
        i0 = np.minimum(np.floor(c + _ON_GRID).astype(np.int64), max(n - 2, 0))
        w = np.clip(c - i0, 0.0, 1.0)
        w[w < _ON_GRID] = 0.0
    if np.all(w == 0) and np.all(np.diff(i0) == 1):
        res = t.narrow(axis, int(i0[0]), i0.size)
    else:
        # Each output sample mixes at most two neighbours: a (out x n) weight matrix applied
        # with one BLAS product along the axis. Gathering with index_select instead is up to
        # 10x slower on large strided volumes; the two non-zero weights per row keep values
        # exact where they should be (nearest, on-grid positions).
        rows = np.arange(i0.size)
        weights = np.zeros((i0.size, n), dtype=np.float32)
        weights[rows, i0] = 1.0 - w
        np.add.at(weights, (rows, np.minimum(i0 + 1, n - 1)), w.astype(np.float32))
        moved = t.movedim(axis, -1)
        res = torch.matmul(moved, torch.from_numpy(weights).T).movedim(-1, axis)
    if a == 0 and b == coords.size:
        return res
    out = torch.full(out_shape, fill, dtype=t.dtype)
    out.narrow(axis, a, b - a).copy_(res)
    return out


def _pool_factors(scale: npt.NDArray[np.float64]) -> npt.NDArray[np.int_]:
    return np.maximum(1, np.floor(np.abs(scale) + 1e-3)).astype(int)


def resample(
    array: npt.NDArray[Any] | torch.Tensor,
    src: Grid,
    dst: Grid,
    *,
    fill: float = 0.0,
    order: int = 1,
    antialias: bool = True,
) -> torch.Tensor:
    """Sample an array from its grid onto another grid with the same axis directions.

    Args:
        array: shape (..., X, Y, Z) on ``src`` (leading axes, e.g. channels, are kept); any
            real dtype, read as float32. Not modified.
        src: grid of the last three axes of ``array``.
        dst: grid to sample onto (e.g. a coarser grid, a crop, a mirrored crop).
        fill: value of destination voxels whose centre is outside the source field of view.
        order: 1 for linear, 0 for nearest neighbour.
        antialias: for ``order=1``, average blocks of ``floor(step)`` source voxels first along
            axes where the destination step is 2 or more source voxels.

    Returns:
        float32 tensor of shape (..., *dst.shape) on the CPU.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    if tuple(array.shape[-3:]) != src.shape:
        raise ValueError(f"array shape {tuple(array.shape)} does not end in src grid {src.shape}")
    scale, offset = index_map(src, dst)
    dst_n = np.asarray(dst.shape)
    src_n = np.asarray(src.shape)
    coords = [scale[a] * np.arange(dst_n[a], dtype=np.float64) + offset[a] for a in range(3)]

    k = _pool_factors(scale) if (antialias and order == 1) else np.ones(3, dtype=int)
    # Only the slab of the source that the destination touches is read (plus a pooling block,
    # so that area averages near the slab's edge are whole blocks).
    lo = np.zeros(3, dtype=int)
    hi = src_n.copy()
    for a in range(3):
        cmin, cmax = coords[a].min(), coords[a].max()
        lo[a] = int(np.clip(np.floor(cmin) - k[a], 0, src_n[a] - 1))
        hi[a] = int(np.clip(np.ceil(cmax) + k[a] + 1, lo[a] + 1, src_n[a]))
        # whole blocks only, so a partial block can occur only at the volume's own end
        hi[a] = int(min(lo[a] + np.ceil((hi[a] - lo[a]) / k[a]) * k[a], src_n[a]))
    if np.any(
        [
            c.max() < -0.5 - _ON_GRID or c.min() > n - 0.5 + _ON_GRID
            for c, n in zip(coords, src_n, strict=True)
        ]
    ):
        lead = tuple(array.shape[:-3])
        return torch.full((*lead, *dst.shape), fill, dtype=torch.float32)
    region = array[..., lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    t = _as_tensor(region)
    coords = [coords[a] - lo[a] for a in range(3)]
    valid = [(-0.5 - lo[a], src_n[a] - 0.5 - lo[a]) for a in range(3)]
    # A Fortran-order volume (NIfTI's memory order) has its first axis fastest. Torch's
    # pooling runs several times slower on such strides, so work on the view
    # with the first and last spatial axes exchanged (C-order for a whole volume, a
    # sequential copy for a region of one) and exchange them back at the end.
    swap = t.ndim >= 3 and t.stride(-3) < t.stride(-1)
    if swap:
        t = t.transpose(-3, -1)
        if not t.is_contiguous():
            t = t.contiguous()
        coords, valid = coords[::-1], valid[::-1]
        k, dst_n = k[::-1].copy(), dst_n[::-1].copy()

    if np.any(k > 1):
        lead = t.shape[:-3]
        if any(t.shape[-3 + a] < k[a] for a in range(3)):
            k = np.minimum(k, np.asarray(t.shape[-3:]))
        t5 = t.reshape(1, -1, *t.shape[-3:])
        # ceil_mode: a last, partial block averages the voxels it has (no edge is dropped)
        pooled = F.avg_pool3d(t5, kernel_size=tuple(int(v) for v in k), ceil_mode=True)
        t = pooled.reshape(*lead, *pooled.shape[-3:])
        # pooled voxel p covers source voxels p*k .. p*k + k - 1 (centre p*k + (k-1)/2)
        coords = [(coords[a] - (k[a] - 1) / 2.0) / k[a] for a in range(3)]
        valid = [tuple((v - (k[a] - 1) / 2.0) / k[a] for v in valid[a]) for a in range(3)]

    nd = t.ndim
    order_axes = sorted(range(3), key=lambda a: dst_n[a] / max(t.shape[nd - 3 + a], 1))
    for a in order_axes:
        t = _interp_axis(t, nd - 3 + a, coords[a], valid[a], fill, order)  # type: ignore[arg-type]
    if swap:
        t = t.transpose(-3, -1)
    return t.contiguous()


def resample_to_spacing(
    array: npt.NDArray[Any] | torch.Tensor,
    grid: Grid,
    spacing_mm: float | tuple[float, float, float],
    *,
    fill: float = 0.0,
    order: int = 1,
    antialias: bool = True,
) -> tuple[torch.Tensor, Grid]:
    """Resample to a new voxel size, keeping the axis directions and the field-of-view centre.

    Args:
        array: shape (..., X, Y, Z) on ``grid``.
        grid: its grid.
        spacing_mm: target voxel size in mm (one value or per axis i, j, k).
        fill: value outside the source field of view.
        order: 1 linear, 0 nearest.
        antialias: area-average before linear downsampling by 2 or more.

    Returns:
        ``(tensor, new_grid)``: float32 tensor (..., X', Y', Z') and its grid.
    """
    new_grid = spacing_grid(grid, spacing_mm)
    out = resample(array, grid, new_grid, fill=fill, order=order, antialias=antialias)
    return out, new_grid
