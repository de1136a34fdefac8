"""Stage-1 training task: whole coarse scans, three classes (background, left, right)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from femurseg.config import to_dict
from femurseg.detection.boxes import SIDES, boxes_from_labels, boxes_from_probabilities
from femurseg.detection.config import BoxRules, DetectorConfig
from femurseg.detection.network import build_detector
from femurseg.detection.prepare import coarse_image, coarse_labels
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.boxes import Box, box_iou
from femurseg.preprocessing.crop import pad_to_multiple
from femurseg.preprocessing.grid import Grid
from femurseg.training.augment import correlated_noise, intensity_augment, pad_batch, step_rng
from femurseg.training.config import TrainConfig
from femurseg.training.data import CaseEntry
from femurseg.training.tasks import TaskBase
from femurseg.types import Label

log = logging.getLogger(__name__)


def _box_array(boxes: dict[Label, Box | None]) -> npt.NDArray[np.float64]:
    out = np.full((2, 2, 3), np.nan)
    for n, side in enumerate(SIDES):
        b = boxes[side]
        if b is not None:
            out[n] = [b.lo, b.hi]
    return out


def _box_of(arr: npt.NDArray[np.float64]) -> Box | None:
    return None if np.isnan(arr).any() else Box(tuple(arr[0]), tuple(arr[1]))  # type: ignore[arg-type]


def prepare_stage1(cases: list[CaseEntry], cfg: DetectorConfig) -> dict[str, npt.NDArray[Any]]:
    """Coarse images, coarse labels, coarse affines and truth boxes of each case."""
    out: dict[str, npt.NDArray[Any]] = {}
    for n, case in enumerate(cases):
        vol = read_volume(case.image)
        labels, _ = read_labels(case.label, like=vol)
        grid = Grid.of(vol)
        img, coarse = coarse_image(vol.array, grid, cfg)
        out[f"img_{n}"] = img.numpy().astype(np.float16)
        out[f"lab_{n}"] = coarse_labels(labels, grid, coarse)
        out[f"aff_{n}"] = coarse.affine
        out[f"box_{n}"] = _box_array(boxes_from_labels(labels, grid))
        log.info("prepared stage-1 case %s: coarse %s", case.case_id, coarse.shape)
    return out


class Stage1Task(TaskBase):
    """Training and validation data and steps for the detector.

    Args:
        train_cases: training cases.
        val_cases: validation cases.
        model_cfg: detector config.
        train_cfg: training config.
        cache_dir: where prepared arrays are cached.
    """

    stage = "stage1"

    def __init__(
        self,
        train_cases: list[CaseEntry],
        val_cases: list[CaseEntry],
        model_cfg: DetectorConfig,
        train_cfg: TrainConfig,
        cache_dir: Path,
    ) -> None:
        super().__init__(model_cfg, train_cfg, cache_dir)
        self.cfg: TrainConfig = train_cfg
        conf = to_dict(model_cfg)
        tr = self.cached("train", train_cases, conf, lambda: prepare_stage1(train_cases, model_cfg))
        va = self.cached("val", val_cases, conf, lambda: prepare_stage1(val_cases, model_cfg))
        self.train = [(tr[f"img_{n}"], tr[f"lab_{n}"]) for n in range(len(train_cases))]
        self.val = [(va[f"img_{n}"], va[f"aff_{n}"], va[f"box_{n}"]) for n in range(len(val_cases))]

    def build(self) -> nn.Module:
        """A fresh detector network."""
        return build_detector(self.model_cfg)

    def _sample(self, rng: np.random.Generator) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        img, lab = self.train[int(rng.integers(len(self.train)))]
        lo = [
            int(rng.integers(0, max(s - p, 0) + 1))
            for s, p in zip(img.shape, self.cfg.patch_size, strict=True)
        ]
        sl = tuple(slice(a, a + p) for a, p in zip(lo, self.cfg.patch_size, strict=True))
        x = img[sl].astype(np.float32)
        y = lab[sl].copy()
        if self.cfg.flip_lr and rng.random() < 0.5:
            # a mirrored body is a valid body with left and right exchanged
            x = x[::-1].copy()
            y = y[::-1].copy()
            left, right = y == int(Label.FEMUR_LEFT), y == int(Label.FEMUR_RIGHT)
            y[left], y[right] = int(Label.FEMUR_RIGHT), int(Label.FEMUR_LEFT)
        x = correlated_noise(x[None], rng, self.cfg.noise_aug)
        x = intensity_augment(x, rng)[0]
        return x, y

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, 1, X, Y, Z) and labels (B, 1, X, Y, Z) of one step."""
        rng = step_rng(self.cfg.seed, rank, step)
        pairs = [self._sample(rng) for _ in range(self.cfg.batch_size)]
        div = self.model_cfg.divisor
        x = pad_batch([p[0] for p in pairs], div, 0.0)
        y = pad_batch([p[1] for p in pairs], div, 0)
        return torch.from_numpy(x[:, None]), torch.from_numpy(y[:, None].astype(np.int64))

    @torch.inference_mode()
    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean box IoU over validation sides (a missed or invented side counts 0)."""
        net.eval()
        ious: list[float] = []
        for img, aff, boxes in self.val[: self.cfg.val_cases]:
            x, index = pad_to_multiple(
                torch.from_numpy(img.astype(np.float32))[None, None], self.model_cfg.divisor
            )
            probs = torch.softmax(net(x.to(device)).float(), dim=1)[0][index].cpu().numpy()
            dets = boxes_from_probabilities(probs, Grid(img.shape, aff), BoxRules())
            for n, side in enumerate(SIDES):
                truth = _box_of(boxes[n])
                if truth is None and not dets[side].found:
                    continue
                ious.append(box_iou(dets[side].box, truth))
        net.train()
        iou = float(np.mean(ious)) if ious else 0.0
        return {"metric": iou, "val_box_iou": iou}
