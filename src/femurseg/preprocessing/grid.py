"""Voxel grids: a shape plus a voxel -> world RAS+ mm affine, without any data.

Every array in femurseg lives on a grid. Grids derived from a canonical volume (a coarse stage-1
grid, a stage-2 crop, a mirrored crop) keep the volume's axis directions (up to a sign), so that
resampling between any two of them is separable along the three axes. Conventions:

* index ``(i, j, k)`` refers to a voxel *centre*; the voxel covers ``i - 0.5 .. i + 0.5``;
* the field of view of a grid is the union of its voxel cubes (edges, not centres).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from femurseg.types import Volume, affine_spacing, affine_to_world, affine_voxel_ml

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Grid:
    """A 3D voxel grid.

    Attributes:
        shape: number of voxels (X, Y, Z) along the grid's i, j, k axes.
        affine: 4x4 float64, voxel index (i, j, k, 1) -> world RAS+ mm of the voxel centre.
    """

    shape: tuple[int, int, int]
    affine: Array

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"grid shape must be 3 positive sizes, got {self.shape}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError(f"grid affine must be a finite 4x4 matrix, got {aff.shape}")
        if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
            raise ValueError("grid affine is singular; expected non-zero voxel sizes")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "affine", aff)

    @classmethod
    def of(cls, volume: Volume) -> Grid:
        """The grid of a volume (its shape and affine)."""
        return cls(volume.shape, volume.affine)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        sp = affine_spacing(self.affine)
        return (float(sp[0]), float(sp[1]), float(sp[2]))

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres (cm^3)."""
        return affine_voxel_ml(self.affine)

    def index_to_world(self, ijk: npt.ArrayLike) -> Array:
        """Map indices, shape (N, 3) or (3,), to world RAS+ mm of the same shape."""
        return affine_to_world(ijk, self.affine)

    def world_to_index(self, xyz: npt.ArrayLike) -> Array:
        """Map world RAS+ mm, shape (N, 3) or (3,), to continuous indices of the same shape."""
        pts = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def edge_corners_world(self) -> Array:
        """World RAS+ mm of the 8 outer corners of the field of view, shape (8, 3)."""
        return self.index_to_world(box_corners(-0.5 * np.ones(3), np.asarray(self.shape) - 0.5))

    def sub_grid(self, lo: npt.ArrayLike, shape: tuple[int, int, int]) -> Grid:
        """The grid of ``shape`` voxels starting at integer index ``lo`` of this grid."""
        shift = np.eye(4)
        shift[:3, 3] = np.asarray(lo, dtype=np.float64)
        return Grid(shape, self.affine @ shift)


def box_corners(lo: npt.ArrayLike, hi: npt.ArrayLike) -> Array:
    """The 8 corners of the axis-aligned box ``lo..hi``, shape (8, 3)."""
    lo_a = np.asarray(lo, dtype=np.float64)
    hi_a = np.asarray(hi, dtype=np.float64)
    sel = np.array([[(n >> a) & 1 for a in range(3)] for n in range(8)], dtype=bool)
    return np.where(sel, hi_a[None, :], lo_a[None, :])


def spacing_grid(grid: Grid, spacing_mm: float | tuple[float, float, float]) -> Grid:
    """A grid with the same axis directions and centre and about the same field of view.

    The new size along each axis is ``round(n * old_spacing / new_spacing)`` (at least 1) and the
    centre of the field of view is kept, so the world position of the content does not move.

    Args:
        grid: the source grid.
        spacing_mm: target voxel size in mm, one value or one per axis (i, j, k).

    Returns:
        The resampled grid.
    """
    new_sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
    if np.any(new_sp <= 0) or not np.all(np.isfinite(new_sp)):
        raise ValueError(f"spacing must be positive and finite, got {spacing_mm}")
    old_sp = np.asarray(grid.spacing)
    old_n = np.asarray(grid.shape, dtype=np.float64)
    new_n = np.maximum(1, np.round(old_n * old_sp / new_sp)).astype(int)
    return centred_grid(grid, (old_n - 1) / 2.0, new_n, new_sp / old_sp)


def centred_grid(grid: Grid, centre_idx: Array, new_n: npt.NDArray[np.int_], step: Array) -> Grid:
    """A grid along ``grid``'s axes: ``new_n`` voxels, ``step`` source voxels apart.

    Args:
        grid: the source grid.
        centre_idx: continuous source index (3,) of the new grid's centre.
        new_n: new shape (3,).
        step: new voxel size in source voxels (3,), positive.
    """
    to_src = np.eye(4)
    to_src[:3, :3] = np.diag(step)
    to_src[:3, 3] = centre_idx - (new_n - 1) / 2.0 * step
    return Grid(tuple(int(n) for n in new_n), grid.affine @ to_src)  # type: ignore[arg-type]


def mirror_grid(grid: Grid, axis: int = 0) -> Grid:
    """The same voxels with the index order of ``axis`` reversed.

    An array sampled on the mirrored grid is the mirror image of the array on ``grid``; its
    affine keeps every voxel at its world position, so paste-back needs no special case.
    """
    flip = np.eye(4)
    flip[axis, axis] = -1.0
    flip[axis, 3] = grid.shape[axis] - 1
    return Grid(grid.shape, grid.affine @ flip)
