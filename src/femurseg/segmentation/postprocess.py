"""Stage-2 postprocessing on the crop grid: stray pieces removed before paste-back."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def remove_islands(
    prob: npt.NDArray[np.float32],
    threshold: float,
    voxel_ml: float,
    min_island_ml: float,
    *,
    largest_only: bool = False,
) -> npt.NDArray[np.float32]:
    """Zero the probability of stray femur pieces.

    The largest piece (at ``prob >= threshold``, 26-connected) is always kept; with
    ``largest_only`` nothing else is, otherwise any other piece of at least ``min_island_ml``
    is kept too. Voxels below the threshold are left as they are.

    Args:
        prob: femur probability (X, Y, Z) on a crop grid.
        threshold: probability defining a femur voxel.
        voxel_ml: volume of one crop voxel in ml.
        min_island_ml: smallest piece kept besides the largest (unless ``largest_only``).
        largest_only: keep the largest piece alone: a femur is one bone, and a second piece
            of any size is a leak across the hip or knee joint.

    Returns:
        A new float32 array of the same shape.
    """
    comps, count = ndimage.label(prob >= threshold, structure=_CONNECTIVITY)
    out = prob.astype(np.float32, copy=True)
    if count <= 1:
        return out
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    keep = np.zeros_like(sizes, dtype=bool) if largest_only else sizes * voxel_ml >= min_island_ml
    keep[int(np.argmax(sizes))] = True
    keep[0] = True
    drop = ~keep[comps]
    out[drop] = 0.0
    return out
