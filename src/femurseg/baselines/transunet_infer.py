"""TransUNet slice geometry and slice-wise volume inference.

The slice grid of a canonical volume keeps its axis directions and its axial slice positions
(axis k) and resamples each slice in-plane to ``spacing_mm`` on a fixed ``image_size`` squared
canvas centred on the scan's in-plane field-of-view centre. Inference walks the slices in
batches: resample, window HU, network, softmax, then :func:`~femurseg.preprocessing.paste_back`
the three class probabilities to the input grid and take the argmax there. Everything outside
the canvas is background.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from femurseg.baselines.transunet import STAGE, TransUNetConfig, build_transunet
from femurseg.devices import Precision, inference_autocast
from femurseg.errors import InputError
from femurseg.preprocessing.grid import Grid, centred_grid
from femurseg.preprocessing.intensity import AIR_HU, normalise_hu
from femurseg.preprocessing.paste import paste_back
from femurseg.preprocessing.resample import resample
from femurseg.types import Volume
from femurseg.weights import (
    check_override,
    config_from_dict,
    load_checkpoint,
    load_state,
    sha256_file,
)

log = logging.getLogger(__name__)


def slice_grid(like: Grid, cfg: TransUNetConfig, slice_mm: float | None = None) -> Grid:
    """The grid of the network's axial slices over a canonical volume.

    Args:
        like: canonical grid of the scan (axes i, j, k towards R, A, S).
        cfg: TransUNet config (``image_size``, in-plane ``spacing_mm``).
        slice_mm: distance between slices along k; None keeps the scan's own slices (one
            network slice per input slice, at the same positions, as at inference).

    Returns:
        Grid of shape (image_size, image_size, Z') with ``like``'s axis directions, centred on
        ``like``'s field-of-view centre.
    """
    n = np.asarray(like.shape, dtype=np.float64)
    sp = np.asarray(like.spacing)
    step = np.array([cfg.spacing_mm / sp[0], cfg.spacing_mm / sp[1], 1.0])
    nz = like.shape[2]
    if slice_mm is not None:
        if not slice_mm > 0:
            raise ValueError(f"slice_mm must be positive, got {slice_mm}")
        step[2] = slice_mm / sp[2]
        nz = max(1, round(like.shape[2] * sp[2] / slice_mm))
    new_n = np.array([cfg.image_size, cfg.image_size, nz])
    return centred_grid(like, (n - 1) / 2.0, new_n, step)


def slice_image(
    array: npt.NDArray[Any] | torch.Tensor, like: Grid, grid: Grid, cfg: TransUNetConfig
) -> torch.Tensor:
    """Network input on a slice grid: HU sampled from the scan, windowed to [0, 1].

    Args:
        array: HU (X, Y, Z) on ``like``.
        like: its grid.
        grid: a slice grid (from :func:`slice_grid`, or a run of its slices).
        cfg: TransUNet config (HU window).

    Returns:
        float32 tensor (S, S, Z') on ``grid``; outside the scan is air.
    """
    hu = resample(array, like, grid, fill=AIR_HU, order=1, antialias=True)
    return normalise_hu(hu, cfg.hu_min, cfg.hu_max)


def slice_probabilities(
    net: nn.Module,
    slices: torch.Tensor,
    device: torch.device,
    batch: int,
    precision: Precision | str = Precision.FLOAT32,
) -> torch.Tensor:
    """Class probabilities of a stack of slices.

    Args:
        net: TransUNet in eval mode on ``device``.
        slices: float32 (S, S, Z) windowed slices (axes i, j, k).
        device: where ``net`` lives.
        batch: slices per forward pass.
        precision: inference arithmetic (see :class:`~femurseg.devices.Precision`).

    Returns:
        float32 (3, S, S, Z) softmax probabilities on the CPU, channels in label order.
    """
    x = slices.permute(2, 0, 1)[:, None]
    out = []
    for start in range(0, x.shape[0], batch):
        xb = x[start : start + batch].to(device)
        with inference_autocast(device, precision):
            logits = net(xb)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).permute(1, 2, 3, 0).contiguous()


@torch.inference_mode()
def segment_volume(
    net: nn.Module,
    cfg: TransUNetConfig,
    volume: Volume,
    *,
    device: torch.device | str = "cpu",
    batch_slices: int = 16,
    precision: Precision | str = Precision.FLOAT32,
) -> npt.NDArray[np.uint8]:
    """Label map of a canonical volume, segmented slice by slice.

    Args:
        net: TransUNet built from ``cfg``, in eval mode on ``device``.
        cfg: its config.
        volume: canonical RAS+ scan (HU).
        device: where ``net`` lives.
        batch_slices: slices per forward pass (and per paste-back), bounding memory.
        precision: inference arithmetic (see :class:`~femurseg.devices.Precision`).

    Returns:
        uint8 (X, Y, Z) on the volume's own grid: 0 background, 1 femur_left, 2 femur_right.
    """
    if batch_slices < 1:
        raise ValueError(f"batch_slices must be >= 1, got {batch_slices}")
    dev = torch.device(device)
    like = Grid.of(volume)
    full = slice_grid(like, cfg)
    fov = np.asarray(like.shape[:2]) * np.asarray(like.spacing[:2])
    if np.any(fov > cfg.image_size * cfg.spacing_mm + 1e-6):
        log.info(
            "scan field of view %s mm exceeds the TransUNet canvas of %.0f mm; the rim outside "
            "it is labelled background",
            np.round(fov).tolist(),
            cfg.image_size * cfg.spacing_mm,
        )
    labels = np.zeros(volume.shape, dtype=np.uint8)
    for k0 in range(0, like.shape[2], batch_slices):
        n = min(batch_slices, like.shape[2] - k0)
        sub = full.sub_grid((0, 0, k0), (cfg.image_size, cfg.image_size, n))
        probs = slice_probabilities(
            net, slice_image(volume.array, like, sub, cfg), dev, batch_slices, precision
        )
        pasted = paste_back(probs, sub, like, fill=0.0)
        if pasted is not None:
            # where no class has probability (outside the canvas) argmax gives 0, background
            labels[pasted.index] = np.argmax(pasted.values, axis=0).astype(np.uint8)
    return labels


class TransUNetSegmenter:
    """A trained TransUNet, loaded once and called per volume.

    Args:
        checkpoint: a TransUNet checkpoint (``last.pt`` / ``best.pt`` of a training run).
        device: torch device.
        batch_slices: slices per forward pass.
        overrides: preprocessing values the caller expects (e.g. ``{"spacing_mm": 2.0}``);
            any that contradict the checkpoint's config raise :class:`ConfigError`.
        precision: inference arithmetic (see :class:`~femurseg.devices.Precision`).

    Raises:
        InputError: the file is not a TransUNet checkpoint or its weights do not fit.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: torch.device | str = "cpu",
        batch_slices: int = 16,
        overrides: dict[str, Any] | None = None,
        precision: Precision | str = Precision.AUTO,
    ) -> None:
        self.path = Path(checkpoint)
        ckpt = load_transunet_checkpoint(self.path)
        self.config: TransUNetConfig = config_from_dict(
            TransUNetConfig, ckpt["model_config"], "transunet config"
        )
        for key, value in (overrides or {}).items():
            check_override(f"transunet.{key}", getattr(self.config, key), value)
        self.device = torch.device(device)
        self.batch_slices = batch_slices
        self.precision = Precision(precision)
        self.net = build_transunet(self.config)
        load_state(self.net, ckpt["model"], self.path)
        self.net.eval().to(self.device)
        self.sha256 = sha256_file(self.path)

    def segment(self, volume: Volume) -> npt.NDArray[np.uint8]:
        """Label map (X, Y, Z) uint8 of a canonical volume on its own grid (0, 1, 2)."""
        return segment_volume(
            self.net,
            self.config,
            volume,
            device=self.device,
            batch_slices=self.batch_slices,
            precision=self.precision,
        )


def load_transunet_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (``weights_only``) and check that it holds a TransUNet.

    Raises:
        InputError: unreadable, not a femurseg checkpoint, or one of another network.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("stage") != STAGE:
        raise InputError(
            f"{path} is a {ckpt.get('stage')} checkpoint, expected {STAGE}; pass the weights "
            "written by TransUNet training"
        )
    return ckpt
