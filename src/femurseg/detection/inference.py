"""Stage-1 inference: a loaded detector that turns a canonical volume into per-side boxes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from femurseg.detection.boxes import SideDetection, boxes_from_probabilities
from femurseg.detection.config import BoxRules, DetectorConfig
from femurseg.detection.network import build_detector
from femurseg.detection.prepare import coarse_image
from femurseg.devices import Precision, inference_autocast
from femurseg.preprocessing.crop import pad_to_multiple
from femurseg.preprocessing.grid import Grid
from femurseg.types import Label, Volume
from femurseg.weights import Stage, load_network

log = logging.getLogger(__name__)


class Detector:
    """The stage-1 network, loaded once and called per scan.

    Args:
        checkpoint: stage-1 checkpoint; None uses the shipped weights (checksum verified).
        device: torch device to run on.
        rules: box acceptance rules.
        overrides: preprocessing values the caller expects (e.g. ``{"spacing_mm": 4.0}``);
            any that contradict the checkpoint's config raise :class:`ConfigError`.
        precision: inference arithmetic (see :class:`~femurseg.devices.Precision`).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        device: torch.device | str = "cpu",
        rules: BoxRules | None = None,
        overrides: dict[str, Any] | None = None,
        precision: Precision | str = Precision.AUTO,
    ) -> None:
        self.config: DetectorConfig
        self.path, self.config, self.net, self.sha256 = load_network(
            Stage.STAGE1,
            checkpoint,
            DetectorConfig,
            build_detector,
            overrides=overrides,
            device=device,
        )
        self.rules = rules or BoxRules()
        self.device = torch.device(device)
        self.precision = Precision(precision)

    @torch.inference_mode()
    def probabilities(self, volume: Volume) -> tuple[npt.NDArray[np.float32], Grid]:
        """Class probabilities on the coarse grid.

        Returns:
            ``(probs, grid)``: float32 (3, X', Y', Z') softmax over background, femur_left,
            femur_right, and the coarse grid (world RAS+ mm).
        """
        image, grid = coarse_image(volume.array, Grid.of(volume), self.config)
        x, index = pad_to_multiple(image[None, None], self.config.divisor, 0.0)
        x = x.to(self.device)
        with inference_autocast(self.device, self.precision):
            logits = self.net(x)
        probs = torch.softmax(logits.float(), dim=1)[0][index]
        return probs.cpu().numpy(), grid

    def detect(self, volume: Volume) -> dict[Label, SideDetection]:
        """One detection per side for a canonical volume (see :func:`boxes_from_probabilities`)."""
        probs, grid = self.probabilities(volume)
        dets = boxes_from_probabilities(probs, grid, self.rules)
        for det in dets.values():
            if det.found:
                log.info("stage 1: %s score %.2f box %s", det.name, det.score, det.box)
            else:
                log.info("stage 1: %s", det.message)
        return dets
