"""The one way back to the input grid: paste probabilities from a crop grid by world position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.resample import resample


@dataclass(frozen=True, eq=False)
class Pasted:
    """Values brought onto a region of a target grid.

    Attributes:
        index: three slices (i, j, k) of the target grid covered by the source field of view.
        values: float32 array (..., *region shape); target voxels outside the source field of
            view hold the fill value.
    """

    index: tuple[slice, slice, slice]
    values: npt.NDArray[np.float32]


def paste_back(
    values: npt.NDArray[Any] | torch.Tensor,
    grid: Grid,
    target: Grid,
    *,
    fill: float = 0.0,
) -> Pasted | None:
    """Bring an array on a crop (resampled, possibly mirrored) grid to a target grid.

    Each target voxel centre inside the crop's field of view gets the linear interpolation of
    ``values`` at its world position; only the target region under the crop is computed, so the
    cost does not grow with the size of the scan. Threshold or argmax *after* this call.

    Args:
        values: shape (..., X', Y', Z') on ``grid``, e.g. per-class probabilities.
        grid: the crop grid of ``values`` (as made by
            :func:`~femurseg.preprocessing.crop.crop_grid`).
        target: the grid to paste onto, usually the canonical input grid; must share axis
            directions with ``grid`` up to mirroring.
        fill: value for region voxels outside the crop (0 for probabilities of a class).

    Returns:
        The covered region and the values there, or None if the crop misses the target.
    """
    idx = target.world_to_index(grid.edge_corners_world())
    n = np.asarray(target.shape)
    lo = np.maximum(np.ceil(idx.min(axis=0) - 1e-6), 0).astype(int)
    hi = np.minimum(np.floor(idx.max(axis=0) + 1e-6), n - 1).astype(int)
    if np.any(hi < lo):
        return None
    shape = tuple(int(v) for v in hi - lo + 1)
    sub = target.sub_grid(lo, shape)  # type: ignore[arg-type]
    out = resample(values, grid, sub, fill=fill, order=1, antialias=True)
    index = (
        slice(int(lo[0]), int(hi[0]) + 1),
        slice(int(lo[1]), int(hi[1]) + 1),
        slice(int(lo[2]), int(hi[2]) + 1),
    )
    return Pasted(index, out.numpy())
