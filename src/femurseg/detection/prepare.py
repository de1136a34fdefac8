"""Stage-1 preprocessing, shared by training and inference: the coarse whole-scan grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from femurseg.detection.config import DetectorConfig
from femurseg.preprocessing.grid import Grid, spacing_grid
from femurseg.preprocessing.intensity import AIR_HU, normalise_hu
from femurseg.preprocessing.resample import resample


def coarse_image(
    array: npt.NDArray[Any] | torch.Tensor,
    grid: Grid,
    cfg: DetectorConfig,
    shift: float = 0.0,
) -> tuple[torch.Tensor, Grid]:
    """The network input: the whole scan area-averaged to ``cfg.spacing_mm`` and windowed.

    Args:
        array: HU (X, Y, Z) on ``grid`` (canonical RAS+ axes). Not copied as a whole: the
            downsampling reads it block by block in torch.
        grid: its grid.
        cfg: stage-1 config (spacing and HU window).
        shift: move the coarse grid by this fraction of a coarse voxel along each of its
            axes (0: the grid training uses; 0.5 samples the scan between its voxel centres).

    Returns:
        ``(image, coarse_grid)``: float32 (X', Y', Z') in [0, 1] and its grid.
    """
    coarse = spacing_grid(grid, cfg.spacing_mm)
    if shift:
        coarse = Grid(coarse.shape, coarse.affine @ _translation(shift))
    hu = resample(array, grid, coarse, fill=AIR_HU, order=1, antialias=True)
    return normalise_hu(hu, cfg.hu_min, cfg.hu_max), coarse


def _translation(steps: float) -> npt.NDArray[np.float64]:
    """4x4 index-space translation by ``steps`` voxels along every axis."""
    out = np.eye(4)
    out[:3, 3] = steps
    return out


def coarse_labels(
    labels: npt.NDArray[Any], grid: Grid, coarse: Grid, num_classes: int = 3
) -> npt.NDArray[np.uint8]:
    """Training target on the coarse grid: the majority class of each coarse voxel.

    Args:
        labels: integer (X, Y, Z) label map on ``grid``.
        grid: its grid.
        coarse: the coarse grid (from :func:`coarse_image`).
        num_classes: number of label values (background included).

    Returns:
        uint8 (X', Y', Z') label map on ``coarse``.
    """
    frac = [
        resample((labels == c).astype(np.float32), grid, coarse, fill=0.0, antialias=True)
        for c in range(1, num_classes)
    ]
    fg = torch.stack(frac)
    bg = (1.0 - fg.sum(dim=0, keepdim=True)).clamp_min(0.0)
    return torch.cat([bg, fg]).argmax(dim=0).to(torch.uint8).numpy()
