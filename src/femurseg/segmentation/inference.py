"""Stage-2 inference: a loaded segmenter that turns one detected femur into probabilities."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers import sliding_window_inference

from femurseg.devices import Precision, inference_autocast
from femurseg.preprocessing.boxes import Box
from femurseg.preprocessing.grid import Grid
from femurseg.segmentation.config import (
    SegmenterConfig,
    SegmentRules,
    fitted_window,
    segresnet_divisor,
)
from femurseg.segmentation.network import build_segmenter
from femurseg.segmentation.postprocess import fill_enclosed, remove_islands
from femurseg.segmentation.prepare import crop_image, side_grid
from femurseg.types import Label, Volume
from femurseg.weights import Stage, load_network

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SideProbability:
    """Femur probability of one side on its crop grid (paste back with ``paste_back``).

    Attributes:
        side: the femur side.
        prob: float32 (X', Y', Z') femur probability on ``grid``, islands removed.
        grid: the crop grid (mirrored for a right femur when the config says so).
        roi: world RAS+ mm box that was cropped (stage-1 box plus margin).
    """

    side: Label
    prob: npt.NDArray[np.float32]
    grid: Grid
    roi: Box


class Segmenter:
    """The stage-2 network, loaded once and called per femur.

    Args:
        checkpoint: stage-2 checkpoint; None uses the shipped weights (checksum verified).
        device: torch device.
        rules: inference settings (window overlap, threshold, island size).
        overrides: preprocessing values the caller expects (e.g. ``{"spacing_mm": 1.5}``);
            any that contradict the checkpoint's config raise :class:`ConfigError`.
        precision: inference arithmetic (see :class:`~femurseg.devices.Precision`).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        device: torch.device | str = "cpu",
        rules: SegmentRules | None = None,
        overrides: dict[str, Any] | None = None,
        precision: Precision | str = Precision.AUTO,
    ) -> None:
        self.config: SegmenterConfig
        self.path, self.config, self.net, self.sha256 = load_network(
            Stage.STAGE2,
            checkpoint,
            SegmenterConfig,
            build_segmenter,
            overrides=overrides,
            device=device,
        )
        self.rules = rules or SegmentRules()
        self.device = torch.device(device)
        self.precision = Precision(precision)

    @torch.inference_mode()
    def predict_crop(self, image: torch.Tensor) -> npt.NDArray[np.float32]:
        """Femur probability of a normalised crop (X', Y', Z'), by sliding windows."""
        x = image[None, None].to(self.device)
        roi = fitted_window(
            self.config.roi_size,
            tuple(image.shape),
            segresnet_divisor(self.config.blocks_down),
            self.rules.whole_crop_voxels,
        )
        with inference_autocast(self.device, self.precision):
            logits = sliding_window_inference(
                x,
                roi_size=roi,
                sw_batch_size=self.rules.sw_batch_size,
                predictor=self.net,
                overlap=self.rules.overlap,
                mode="gaussian",
            )
        if not isinstance(logits, torch.Tensor):  # monai's return type is a union
            raise TypeError(f"sliding_window_inference returned {type(logits).__name__}")
        return torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()

    def segment(self, volume: Volume, side: Label, box: Box) -> SideProbability:
        """Femur probability for one side of a canonical volume.

        Args:
            volume: the canonical scan.
            side: which femur the box holds.
            box: tight world RAS+ mm box from stage 1.

        Returns:
            The probability on the (possibly mirrored) crop grid, stray pieces removed and
            enclosed holes filled (per ``rules``).
        """
        like = Grid.of(volume)
        for attempt in range(self.rules.max_regrow + 1):
            grid = side_grid(like, box, side, self.config)
            image = crop_image(volume.array, like, grid, self.config)
            prob = self.predict_crop(image)
            prob = remove_islands(
                prob,
                self.rules.threshold,
                grid.voxel_ml,
                self.rules.min_island_ml,
                largest_only=self.rules.largest_only,
                min_fragment_ml=self.rules.min_fragment_ml,
            )
            grown = grow_box(box, prob >= self.rules.threshold, grid, like, self.rules.regrow_mm)
            if grown is None or attempt == self.rules.max_regrow:
                break
            log.info("stage 2: %s reaches the crop's edge; box grown to %s", side.name, grown)
            box = grown
        if self.rules.fill_holes:
            prob = fill_enclosed(prob, self.rules.threshold)
        return SideProbability(side, prob, grid, box.expand(self.config.margin_mm))


def grow_box(
    box: Box, mask: npt.NDArray[np.bool_], grid: Grid, like: Grid, step_mm: float
) -> Box | None:
    """The box grown by ``step_mm`` on every face where the femur mask reaches the crop's edge.

    Faces where the crop already ends at the scan's field of view are not grown (the femur
    leaves the scan there).

    Args:
        box: the world RAS+ mm box the crop was made from.
        mask: femur mask (X', Y', Z') on the crop grid.
        grid: the crop grid (possibly mirrored).
        like: the scan's canonical grid.
        step_mm: growth per touching face.

    Returns:
        The grown box, or None when no face needs growing.
    """
    lo = np.asarray(box.lo, dtype=np.float64)
    hi = np.asarray(box.hi, dtype=np.float64)
    scan = like.edge_corners_world()
    crop = grid.edge_corners_world()
    scan_lo, scan_hi = scan.min(axis=0), scan.max(axis=0)
    crop_lo, crop_hi = crop.min(axis=0), crop.max(axis=0)
    changed = False
    for axis in range(3):
        direction = grid.affine[:3, axis]
        world_axis = int(np.argmax(np.abs(direction)))
        towards_high = direction[world_axis] > 0
        for face in (0, mask.shape[axis] - 1):
            if not np.take(mask, face, axis=axis).any():
                continue
            upper = towards_high == (face > 0)
            tol = grid.spacing[axis]
            if upper and crop_hi[world_axis] + tol < scan_hi[world_axis]:
                hi[world_axis] += step_mm
                changed = True
            elif not upper and crop_lo[world_axis] - tol > scan_lo[world_axis]:
                lo[world_axis] -= step_mm
                changed = True
    return Box(tuple(lo), tuple(hi)) if changed else None  # type: ignore[arg-type]
