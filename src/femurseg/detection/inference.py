"""Stage-1 inference: a loaded detector that turns a canonical volume into per-side boxes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from femurseg.detection.boxes import SideDetection, boxes_from_probabilities, mean_of_passes
from femurseg.detection.config import BoxRules, DetectorConfig
from femurseg.detection.network import build_detector
from femurseg.detection.prepare import coarse_image
from femurseg.devices import Precision, inference_autocast
from femurseg.errors import FemursegError
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
    def probabilities(
        self, volume: Volume, shift: float = 0.0
    ) -> tuple[npt.NDArray[np.float32], Grid]:
        """Class probabilities on the coarse grid.

        Args:
            volume: canonical volume.
            shift: coarse grid moved by this fraction of a voxel along every axis (see
                :func:`~femurseg.detection.prepare.coarse_image`).

        Returns:
            ``(probs, grid)``: float32 (3, X', Y', Z') softmax over background, femur_left,
            femur_right, and the coarse grid (world RAS+ mm).
        """
        image, grid = coarse_image(volume.array, Grid.of(volume), self.config, shift)
        probs = self._softmax(image)
        if self.rules.mirror_average:
            # canonical axis 0 runs along world x: flipping it mirrors left and right, so the
            # mirrored pass's left channel is the right femur and the other way round
            mirrored = torch.flip(self._softmax(torch.flip(image, dims=(0,))), dims=(1,))
            probs = (probs + mirrored[[0, 2, 1]]) / 2
        return probs.cpu().numpy(), grid

    @staticmethod
    def _finite(probs: npt.NDArray[np.float32], grid: Grid) -> tuple[npt.NDArray[np.float32], Grid]:
        if not np.isfinite(probs).all():
            raise FemursegError(
                "stage 1 gave NaN or infinite probabilities; expected finite outputs; rerun "
                "with --precision float32, or check the weights"
            )
        return probs, grid

    def _softmax(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities (3, X', Y', Z') of one coarse image (X', Y', Z')."""
        x, index = pad_to_multiple(image[None, None], self.config.divisor, 0.0)
        with inference_autocast(self.device, self.precision):
            logits = self.net(x.to(self.device))
        return torch.softmax(logits.float(), dim=1)[0][index]

    def detect(self, volume: Volume, midline_x: float | None = None) -> dict[Label, SideDetection]:
        """One detection per side for a canonical volume (see :func:`boxes_from_probabilities`).

        With ``rules.shifted_pass`` and a femur found, the network runs once more on the
        coarse grid moved half a voxel along every axis, and each found box is the mean of
        the two passes' boxes (:func:`~femurseg.detection.boxes.mean_of_passes`); what is
        found, and on which side, is the first pass's.

        Args:
            volume: canonical volume.
            midline_x: world x (mm) of the body's midline, None when unknown; decides the side
                of a lone femur that lies clearly off it.
        """
        probs, grid = self._finite(*self.probabilities(volume))
        dets = boxes_from_probabilities(probs, grid, self.rules, midline_x)
        if self.rules.shifted_pass and any(d.found for d in dets.values()):
            shifted, sgrid = self._finite(*self.probabilities(volume, shift=0.5))
            dets = mean_of_passes(
                dets, boxes_from_probabilities(shifted, sgrid, self.rules, midline_x), grid
            )
        for det in dets.values():
            if det.found:
                log.info("stage 1: %s score %.2f box %s", det.name, det.score, det.box)
            else:
                log.info("stage 1: %s", det.message)
        return dets
