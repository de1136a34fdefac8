"""Axis-aligned boxes in world RAS+ millimetres, and their conversion to voxel ranges.

Boxes are stored in world mm and only turned into voxel index ranges at the point of use
(:func:`voxel_range`). A box always describes *extent* (voxel edges), not voxel centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.preprocessing.grid import Grid, box_corners

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in world RAS+ mm.

    Attributes:
        lo: minimum corner (x, y, z) in mm.
        hi: maximum corner (x, y, z) in mm, ``hi >= lo`` on every axis.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo = tuple(float(v) for v in self.lo)
        hi = tuple(float(v) for v in self.hi)
        if len(lo) != 3 or len(hi) != 3:
            raise ValueError(f"box corners must have 3 values, got {self.lo} and {self.hi}")
        if not all(math.isfinite(v) for v in lo + hi):
            raise ValueError(f"box corners must be finite, got {lo} .. {hi}")
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            raise ValueError(f"box lo {lo} must not exceed hi {hi} on any axis")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def size_mm(self) -> tuple[float, float, float]:
        """Edge lengths (x, y, z) in mm."""
        return (self.hi[0] - self.lo[0], self.hi[1] - self.lo[1], self.hi[2] - self.lo[2])

    @property
    def centre(self) -> tuple[float, float, float]:
        """Centre (x, y, z) in world mm."""
        return (
            (self.lo[0] + self.hi[0]) / 2,
            (self.lo[1] + self.hi[1]) / 2,
            (self.lo[2] + self.hi[2]) / 2,
        )

    @property
    def volume_ml(self) -> float:
        """Box volume in ml."""
        sx, sy, sz = self.size_mm
        return sx * sy * sz / 1000.0

    def expand(self, margin_mm: float | tuple[float, float, float]) -> Box:
        """The box grown by ``margin_mm`` on every face (one value, or one per axis)."""
        m = np.broadcast_to(np.asarray(margin_mm, dtype=np.float64), (3,))
        if np.any(m < 0) or not np.all(np.isfinite(m)):
            raise ValueError(f"margin must be finite and >= 0 mm, got {margin_mm}")
        return Box(tuple(np.asarray(self.lo) - m), tuple(np.asarray(self.hi) + m))  # type: ignore[arg-type]

    def intersection(self, other: Box) -> Box | None:
        """The overlap of two boxes, or None when they do not overlap (touching is no overlap)."""
        lo = np.maximum(self.lo, other.lo)
        hi = np.minimum(self.hi, other.hi)
        if np.any(hi <= lo):
            return None
        return Box(tuple(lo), tuple(hi))  # type: ignore[arg-type]

    def corners(self) -> Array:
        """The 8 corners in world mm, shape (8, 3)."""
        return box_corners(self.lo, self.hi)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"min": [x, y, z], "max": [...], "size": [...]}`` in mm."""
        return {
            "min": [round(v, 3) for v in self.lo],
            "max": [round(v, 3) for v in self.hi],
            "size": [round(v, 3) for v in self.size_mm],
        }


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two boxes (0 if either is None or they do not overlap)."""
    if a is None or b is None:
        return 0.0
    inter = a.intersection(b)
    if inter is None:
        return 0.0
    union = a.volume_ml + b.volume_ml - inter.volume_ml
    return inter.volume_ml / union if union > 0 else 0.0


def box_of_points(points: npt.ArrayLike) -> Box:
    """The smallest box holding ``points``, shape (N, 3) world mm, N >= 1."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if pts.shape[0] == 0:
        raise ValueError("cannot make a box of zero points")
    return Box(tuple(pts.min(axis=0)), tuple(pts.max(axis=0)))  # type: ignore[arg-type]


def index_box_to_world(grid: Grid, lo_idx: npt.ArrayLike, hi_idx: npt.ArrayLike) -> Box:
    """World box of the index range ``lo_idx .. hi_idx`` (continuous index units, edges).

    Pass ``lo - 0.5`` and ``hi + 0.5`` to get the extent of whole voxels ``lo..hi``. With an
    oblique or flipped affine the result is the world-axis-aligned box around the transformed
    corners.
    """
    return box_of_points(grid.index_to_world(box_corners(lo_idx, hi_idx)))


def mask_index_range(mask: npt.NDArray[np.bool_]) -> tuple[slice, slice, slice] | None:
    """Index slices of the tightest box holding every true voxel of ``mask``; None if empty."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return out[0], out[1], out[2]


def mask_box(mask: npt.NDArray[np.bool_], grid: Grid) -> Box | None:
    """World box of the voxel cubes where ``mask`` is true, or None if it is empty.

    Args:
        mask: bool array of shape ``grid.shape``.
        grid: the grid of ``mask``.
    """
    if mask.shape != grid.shape:
        raise ValueError(f"mask shape {mask.shape} does not match grid {grid.shape}")
    rng = mask_index_range(mask)
    return None if rng is None else index_range_box(grid, rng)


def index_range_box(grid: Grid, rng: tuple[slice, slice, slice]) -> Box:
    """World box of the voxel cubes of ``grid`` in the index slices ``rng`` (explicit bounds)."""
    lo = np.array([r.start for r in rng], dtype=np.float64)
    hi = np.array([r.stop - 1 for r in rng], dtype=np.float64)
    return index_box_to_world(grid, lo - 0.5, hi + 0.5)


def voxel_range(box: Box, grid: Grid, *, clip: bool = True) -> tuple[slice, slice, slice] | None:
    """Index slices of the voxels of ``grid`` whose centres lie in ``box``.

    Args:
        box: world RAS+ mm box.
        grid: target grid (any affine, flipped or oblique).
        clip: limit the slices to the grid.

    Returns:
        Three slices (i, j, k), or None when no voxel centre of the grid lies in the box's
        index-space bounding range.
    """
    idx = grid.world_to_index(box.corners())
    lo = np.ceil(idx.min(axis=0) - 1e-6).astype(int)
    hi = np.floor(idx.max(axis=0) + 1e-6).astype(int)
    if clip:
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.asarray(grid.shape) - 1)
    if np.any(hi < lo):
        return None
    return (
        slice(int(lo[0]), int(hi[0]) + 1),
        slice(int(lo[1]), int(hi[1]) + 1),
        slice(int(lo[2]), int(hi[2]) + 1),
    )
