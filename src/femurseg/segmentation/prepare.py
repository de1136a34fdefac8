"""Stage-2 preprocessing, shared by training and inference: the per-side crop."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from femurseg.preprocessing.boxes import Box
from femurseg.preprocessing.crop import crop_grid
from femurseg.preprocessing.grid import Grid, centred_grid
from femurseg.preprocessing.intensity import AIR_HU, HUWindow, normalise_hu
from femurseg.preprocessing.resample import resample
from femurseg.segmentation.config import SegmenterConfig
from femurseg.types import Label


def side_grid(like: Grid, box: Box, side: Label, cfg: SegmenterConfig) -> Grid:
    """The stage-2 crop grid of one femur: box + margin at ``cfg.spacing_mm``.

    The crop is at least ``cfg.roi_size`` voxels where the scan allows. A right femur's grid is
    mirrored along patient left-right when ``cfg.mirror_right``, so the
    network always sees a left-looking femur; the affine keeps world positions, so paste-back
    undoes the mirroring by itself.

    Args:
        like: canonical grid of the scan.
        box: tight world RAS+ mm box of the femur (from stage 1, or the truth in training).
        side: ``Label.FEMUR_LEFT`` or ``Label.FEMUR_RIGHT``.
        cfg: stage-2 config.
    """
    mirror = cfg.mirror_right and side == Label.FEMUR_RIGHT
    grid = crop_grid(like, box.expand(cfg.margin_mm), cfg.spacing_mm, mirror=mirror)
    shape = np.asarray(grid.shape)
    want = np.maximum(shape, np.asarray(cfg.roi_size))
    if np.any(want > shape):
        # widen a small crop about its centre to exactly one window: real context (air beyond
        # the scan's edge) instead of padding, and no second window for a few extra voxels
        grid = centred_grid(grid, (shape - 1) / 2.0, want, np.ones(3))
    return grid


def crop_image(
    array: npt.NDArray[Any] | torch.Tensor, like: Grid, grid: Grid, cfg: HUWindow
) -> torch.Tensor:
    """Network input on a crop grid: HU sampled from the scan, windowed to [0, 1].

    Args:
        array: HU (X, Y, Z) on ``like``.
        like: its grid.
        grid: the crop grid (from :func:`side_grid`, or the whole scan at a network spacing).
        cfg: the network's config (its HU window).

    Returns:
        float32 tensor of shape ``grid.shape``.
    """
    hu = resample(array, like, grid, fill=AIR_HU, order=1, antialias=True)
    return normalise_hu(hu, cfg.hu_min, cfg.hu_max)
