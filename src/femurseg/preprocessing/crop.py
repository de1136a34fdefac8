"""Crops: a world-mm box (plus margin) turned into a voxel grid, and padding for networks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from femurseg.preprocessing.boxes import Box
from femurseg.preprocessing.grid import Grid, centred_grid, mirror_grid
from femurseg.preprocessing.resample import resample


def crop_grid(
    like: Grid,
    box: Box,
    spacing_mm: float | tuple[float, float, float],
    *,
    mirror: bool = False,
) -> Grid:
    """The grid that covers ``box`` inside ``like``'s field of view at a given voxel size.

    The crop keeps ``like``'s axis directions. Its extent is the box's bounding range in
    ``like``'s index space, clipped to ``like``'s field of view, rounded up to whole voxels of the
    new size and centred on that range.

    Args:
        like: the grid of the volume to crop (canonical, possibly oblique).
        box: world RAS+ mm box (include any margin before calling).
        spacing_mm: voxel size of the crop in mm (one value or per axis).
        mirror: reverse the crop's first axis (patient left-right), so that a right femur looks
            like a left one; the affine keeps every voxel at its world position.

    Returns:
        The crop grid.

    Raises:
        ValueError: the box does not overlap ``like``'s field of view.
    """
    idx = like.world_to_index(box.corners())
    n = np.asarray(like.shape, dtype=np.float64)
    lo = np.maximum(idx.min(axis=0), -0.5)
    hi = np.minimum(idx.max(axis=0), n - 0.5)
    if np.any(hi <= lo):
        raise ValueError(
            f"box {box.lo}..{box.hi} mm does not overlap the volume's field of view; "
            "expected a box inside the scan"
        )
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
    step = sp / np.asarray(like.spacing)
    new_n = np.maximum(1, np.ceil((hi - lo) / step - 1e-6)).astype(int)
    grid = centred_grid(like, (lo + hi) / 2.0, new_n, step)
    return mirror_grid(grid, 0) if mirror else grid


def crop(
    array: npt.NDArray[Any] | torch.Tensor,
    like: Grid,
    box: Box,
    spacing_mm: float | tuple[float, float, float],
    *,
    mirror: bool = False,
    fill: float = 0.0,
    order: int = 1,
) -> tuple[torch.Tensor, Grid]:
    """Crop ``box`` out of an array and resample it to ``spacing_mm`` in one step.

    Args:
        array: shape (..., X, Y, Z) on ``like``.
        like: its grid.
        box: world RAS+ mm box (margin included).
        spacing_mm: voxel size of the result in mm.
        mirror: see :func:`crop_grid`.
        fill: value outside ``like``'s field of view.
        order: 1 linear (area-averaged when shrinking by 2 or more), 0 nearest.

    Returns:
        ``(tensor, grid)``: float32 (..., X', Y', Z') and the crop grid.
    """
    grid = crop_grid(like, box, spacing_mm, mirror=mirror)
    return resample(array, like, grid, fill=fill, order=order), grid


def pad_to_multiple(
    t: torch.Tensor, multiple: int | tuple[int, int, int], value: float = 0.0
) -> tuple[torch.Tensor, tuple[Any, ...]]:
    """Pad the last three axes at their ends up to a multiple of ``multiple``.

    Args:
        t: tensor (..., X, Y, Z).
        multiple: e.g. 8 for a network that halves the size three times.
        value: pad value.

    Returns:
        ``(padded, index)`` where ``padded[index]`` is ``t`` again.
    """
    mult = (multiple,) * 3 if isinstance(multiple, int) else tuple(multiple)
    if any(m < 1 for m in mult):
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    sizes = t.shape[-3:]
    extra = [int(math.ceil(s / m) * m - s) for s, m in zip(sizes, mult, strict=True)]
    index = (Ellipsis, *(slice(0, s) for s in sizes))
    if not any(extra):
        return t, index
    pads: list[int] = []
    for e in reversed(extra):
        pads += [0, e]
    return F.pad(t, pads, mode="constant", value=value), index
