"""The single-stage SegResNet baseline: one network over the whole scan, three classes.

The paper's comparison point for the two-stage pipeline. The network is the stage-2 SegResNet
(same width and depth, same fine spacing and HU window), but it sees the whole scan resampled
to that spacing, by sliding windows, and tells background, left femur and right femur apart
itself: there is no box, no crop and no mirroring.

Inference: resample the canonical scan to ``spacing_mm``, sliding windows with gaussian
blending, softmax, small islands of each femur class removed, then the class probabilities go
back to the input grid through :func:`~femurseg.preprocessing.paste.paste_back` in slabs (so
memory stays bounded on long scans) and only then become labels (argmax).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from femurseg.config import check_range
from femurseg.devices import Precision, inference_autocast
from femurseg.preprocessing.grid import Grid, spacing_grid
from femurseg.preprocessing.paste import paste_back
from femurseg.segmentation.config import check_segresnet, segresnet_divisor
from femurseg.segmentation.network import build_segresnet
from femurseg.segmentation.postprocess import remove_islands
from femurseg.segmentation.prepare import crop_image
from femurseg.types import Label, Volume
from femurseg.weights import Stage, load_network

log = logging.getLogger(__name__)

#: output channels: background, femur_left, femur_right (the label values).
NUM_CLASSES = len(Label)
#: target slices pasted back per slab (bounds the full-resolution probability memory).
_SLAB = 48


@dataclass(frozen=True)
class SingleStageConfig:
    """The single-stage network and its preprocessing; saved in every checkpoint.

    The defaults equal the shipped stage-2 segmenter's, so the comparison changes one thing:
    whole scan with three classes instead of a detected box with two.

    Attributes:
        spacing_mm: isotropic voxel size the network sees (the whole scan is resampled to it).
        hu_min: HU mapped to 0.
        hu_max: HU mapped to 1.
        init_filters: SegResNet channels at full resolution (multiple of 8 for GroupNorm).
        blocks_down: residual blocks per encoder level.
        blocks_up: residual blocks per decoder level (len(blocks_down) - 1 values).
        roi_size: sliding-window size and training patch in voxels (i, j, k), multiples of
            the network divisor.
    """

    spacing_mm: float = 1.5
    hu_min: float = -200.0
    hu_max: float = 1600.0
    init_filters: int = 8
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    roi_size: tuple[int, int, int] = (96, 96, 160)

    def __post_init__(self) -> None:
        check_segresnet("segresnet", self)

    @property
    def divisor(self) -> int:
        """Window sizes must be multiples of this (2 ** number of down-samplings)."""
        return segresnet_divisor(self.blocks_down)


@dataclass(frozen=True)
class SingleStageRules:
    """Inference settings (free to change; not stored in checkpoints).

    Attributes:
        overlap: sliding-window overlap fraction.
        sw_batch_size: windows per forward pass.
        largest_only: keep only the largest piece of each femur class, as the two-stage
            model does (the same postprocessing for both, so a comparison is fair).
        min_island_ml: with ``largest_only`` off, pieces of a femur class smaller than this
            are removed (the largest piece of each class is always kept).
    """

    overlap: float = 0.25
    sw_batch_size: int = 1
    largest_only: bool = True
    min_island_ml: float = 5.0

    def __post_init__(self) -> None:
        check_range("overlap", self.overlap, 0.0, 0.9)
        check_range("sw_batch_size", self.sw_batch_size, 1, 64)
        check_range("min_island_ml", self.min_island_ml, 0.0, 1000.0)


def build_single_stage(cfg: SingleStageConfig) -> nn.Module:
    """SegResNet mapping (B, 1, X, Y, Z) normalised CT to (B, 3, X, Y, Z) logits."""
    return build_segresnet(cfg, NUM_CLASSES)


def network_grid(like: Grid, cfg: SingleStageConfig) -> Grid:
    """The whole scan's grid at the network spacing (same axes and field-of-view centre)."""
    return spacing_grid(like, cfg.spacing_mm)


@torch.inference_mode()
def class_probabilities(
    net: nn.Module,
    image: torch.Tensor,
    roi_size: tuple[int, int, int],
    device: torch.device,
    rules: SingleStageRules,
    precision: Precision | str = Precision.FLOAT32,
) -> npt.NDArray[np.float32]:
    """Softmax (3, X, Y, Z) of a normalised image by gaussian-blended sliding windows."""
    x = image[None, None]
    with inference_autocast(device, precision):
        logits = sliding_window_inference(
            x,
            roi_size=roi_size,
            sw_batch_size=rules.sw_batch_size,
            predictor=net,
            overlap=rules.overlap,
            mode="gaussian",
            sw_device=device,
            device="cpu",
        )
    if not isinstance(logits, torch.Tensor):  # monai's return type is a union
        raise TypeError(f"sliding_window_inference returned {type(logits).__name__}")
    return torch.softmax(logits.float(), dim=1)[0].numpy()


def labels_on_grid(
    probs: npt.NDArray[np.float32], grid: Grid, like: Grid, slab: int = _SLAB
) -> npt.NDArray[np.uint8]:
    """Argmax labels on ``like`` of class probabilities on ``grid``, pasted back in slabs.

    Each slab of ``slab`` target slices (k) gets the probabilities by world position through
    :func:`paste_back`, from only the source slices it needs, and is turned into labels there,
    so the full-resolution probabilities never exist at once.
    """
    labels = np.zeros(like.shape, dtype=np.uint8)
    nz_src = probs.shape[-1]
    for k0 in range(0, like.shape[2], slab):
        n = min(slab, like.shape[2] - k0)
        sub = like.sub_grid((0, 0, k0), (like.shape[0], like.shape[1], n))
        ks = grid.world_to_index(sub.edge_corners_world())[:, 2]
        lo = max(int(np.floor(ks.min())) - 1, 0)
        hi = min(int(np.ceil(ks.max())) + 2, nz_src)
        if hi <= lo:
            continue
        src = grid.sub_grid((0, 0, lo), (grid.shape[0], grid.shape[1], hi - lo))
        pasted = paste_back(probs[..., lo:hi], src, sub, fill=0.0)
        if pasted is None:
            continue
        region = labels[:, :, k0 : k0 + n]
        # outside the source field of view every class is 0 and argmax gives background
        region[pasted.index] = np.argmax(pasted.values, axis=0).astype(np.uint8)
    return labels


class SingleStageSegmenter:
    """A trained single-stage SegResNet, loaded once and called per volume.

    Args:
        checkpoint: a ``segresnet`` checkpoint (``best.pt`` / ``last.pt`` of a training run).
        device: torch device.
        rules: inference settings.
        overrides: preprocessing values the caller expects; any that contradict the
            checkpoint's config raise :class:`ConfigError`.
        precision: inference arithmetic (see :class:`~femurseg.devices.Precision`).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: torch.device | str = "cpu",
        rules: SingleStageRules | None = None,
        overrides: dict[str, Any] | None = None,
        precision: Precision | str = Precision.AUTO,
    ) -> None:
        self.config: SingleStageConfig
        self.path, self.config, self.net, self.sha256 = load_network(
            Stage.SEGRESNET,
            checkpoint,
            SingleStageConfig,
            build_single_stage,
            overrides=overrides,
            device=device,
        )
        self.rules = rules or SingleStageRules()
        self.device = torch.device(device)
        self.precision = Precision(precision)

    def segment(self, volume: Volume) -> npt.NDArray[np.uint8]:
        """Label map (X, Y, Z) uint8 of a canonical volume on its own grid (0, 1, 2)."""
        like = Grid.of(volume)
        grid = network_grid(like, self.config)
        image = crop_image(volume.array, like, grid, self.config)
        probs = class_probabilities(
            self.net, image, self.config.roi_size, self.device, self.rules, self.precision
        )
        del image
        for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
            c = int(side)
            # a class keeps its largest piece; the other pieces go to background
            kept = remove_islands(
                probs[c],
                0.5,
                grid.voxel_ml,
                self.rules.min_island_ml,
                largest_only=self.rules.largest_only,
            )
            probs[0] += probs[c] - kept
            probs[c] = kept
        return labels_on_grid(probs, grid, like)
