"""Training task of the single-stage SegResNet: whole scans at the fine spacing, three classes.

Each case is read once, resampled to the network spacing and cut to the body's bounding box
(outside it there is only air, which the windows still see at the scan's edges); patches of
``roi_size`` are drawn around femur voxels (``fg_fraction``) or anywhere. Validation runs the
full inference (sliding windows over the whole resampled scan) and reports Dice per side on
that grid, so its curve is comparable with stage 2's validation Dice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage
from torch import nn

from femurseg.baselines.single_stage import (
    SingleStageConfig,
    SingleStageRules,
    build_single_stage,
    class_probabilities,
    network_grid,
)
from femurseg.config import to_dict
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.intensity import AIR_HU, normalise_hu
from femurseg.preprocessing.resample import resample
from femurseg.training.augment import draw_patches, step_rng
from femurseg.training.config import TrainConfig
from femurseg.training.data import CaseEntry
from femurseg.training.tasks import TaskBase
from femurseg.training.validation import side_dice_metrics
from femurseg.types import Label

log = logging.getLogger(__name__)

#: HU above which a voxel counts as body when cutting cases to the body's bounding box.
_BODY_HU = -500.0
#: context kept around the body box, in voxels of the network grid.
_BODY_PAD = 8


def _body_slices(image: npt.NDArray[Any], level: float) -> tuple[slice, slice, slice]:
    """Index box of everything above ``level`` HU, padded; the whole array if nothing is."""
    coarse = image[::4, ::4, ::4] > level
    if not coarse.any():
        return (slice(None), slice(None), slice(None))
    found = ndimage.find_objects(coarse.astype(np.uint8))[0]
    out = []
    for s, n in zip(found, image.shape, strict=True):
        out.append(slice(max(s.start * 4 - _BODY_PAD, 0), min(s.stop * 4 + _BODY_PAD, n)))
    return tuple(out)  # type: ignore[return-value]


def prepare_whole(cases: list[CaseEntry], cfg: SingleStageConfig) -> dict[str, npt.NDArray[Any]]:
    """Each case at the network spacing, cut to the body box.

    Returns:
        ``img_<n>``: float16 (X, Y, Z) in [0, 1]; ``lab_<n>``: uint8 labels (0, 1, 2).
    """
    out: dict[str, npt.NDArray[Any]] = {}
    for n, case in enumerate(cases):
        vol = read_volume(case.image)
        labels, _ = read_labels(case.label, like=vol)
        like = Grid.of(vol)
        grid = network_grid(like, cfg)
        hu = resample(vol.array, like, grid, fill=AIR_HU, order=1, antialias=True)
        box = _body_slices(hu.numpy(), _BODY_HU)
        img = normalise_hu(hu, cfg.hu_min, cfg.hu_max).numpy()
        del hu
        lab = np.zeros(grid.shape, dtype=np.uint8)
        for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
            mask = (labels == int(side)).astype(np.float32)
            if mask.any():
                lab[resample(mask, like, grid, fill=0.0).numpy() >= 0.5] = int(side)
        out[f"img_{n}"] = img[box].astype(np.float16)
        out[f"lab_{n}"] = lab[box]
        log.info("prepared single-stage case %s: %s", case.case_id, out[f"img_{n}"].shape)
    return out


class SingleStageTask(TaskBase):
    """Training and validation data and steps for the single-stage SegResNet.

    Args:
        train_cases: training cases.
        val_cases: validation cases.
        model_cfg: network config.
        train_cfg: training config (``batch_size``, ``fg_fraction``, ``val_cases``, ``seed``).
        cache_dir: where prepared arrays are cached.
    """

    stage = "segresnet"

    def __init__(
        self,
        train_cases: list[CaseEntry],
        val_cases: list[CaseEntry],
        model_cfg: SingleStageConfig,
        train_cfg: TrainConfig,
        cache_dir: Path,
    ) -> None:
        super().__init__(model_cfg, train_cfg, cache_dir)
        self.cfg: TrainConfig = train_cfg
        conf = to_dict(model_cfg)
        tr = self.cached("train", train_cases, conf, lambda: prepare_whole(train_cases, model_cfg))
        vcases = val_cases[: train_cfg.val_cases]
        va = self.cached("val", vcases, conf, lambda: prepare_whole(vcases, model_cfg))
        self.train = [(tr[f"img_{n}"], tr[f"lab_{n}"]) for n in range(len(tr) // 2)]
        self.val = [(va[f"img_{n}"], va[f"lab_{n}"]) for n in range(len(va) // 2)]
        self._fg = [np.flatnonzero(lab) for _, lab in self.train]

    def build(self) -> nn.Module:
        """A fresh single-stage network."""
        return build_single_stage(self.model_cfg)

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (B, 1, *roi) and labels (B, 1, *roi) of one step."""
        return draw_patches(
            self.train,
            self._fg,
            self.model_cfg.roi_size,
            self.cfg.batch_size,
            self.cfg.fg_fraction,
            step_rng(self.cfg.seed, rank, step),
            self.cfg.shape_aug,
            self.cfg.domain_rand,
            self.cfg.noise_aug,
        )

    @torch.inference_mode()
    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean Dice per side over whole validation scans (the full sliding-window inference)."""
        net.eval()
        rules = SingleStageRules()

        def predictions() -> Iterator[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
            for img, lab in self.val:
                x = torch.from_numpy(img.astype(np.float32))
                probs = class_probabilities(net, x, self.model_cfg.roi_size, device, rules)
                yield probs.argmax(0), lab

        metrics = side_dice_metrics(predictions())
        net.train()
        return metrics
