"""Stage-2 training task: patches of left-looking femur crops, femur vs background."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from femurseg.config import to_dict
from femurseg.detection.boxes import boxes_from_labels
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.resample import resample
from femurseg.segmentation.config import SegmenterConfig
from femurseg.segmentation.network import build_segmenter
from femurseg.segmentation.prepare import crop_image, side_grid
from femurseg.training.augment import draw_patches, step_rng
from femurseg.training.config import TrainConfig
from femurseg.training.data import CaseEntry, cache_key, cached_arrays

log = logging.getLogger(__name__)


def prepare_stage2(
    cases: list[CaseEntry], cfg: SegmenterConfig, jitter_mm: float
) -> dict[str, npt.NDArray[Any]]:
    """Crops (truth box + ``jitter_mm`` + margin) of each femur in view, right ones mirrored."""
    out: dict[str, npt.NDArray[Any]] = {}
    n = 0
    for case in cases:
        vol = read_volume(case.image)
        labels, _ = read_labels(case.label, like=vol)
        like = Grid.of(vol)
        for side, box in boxes_from_labels(labels, like).items():
            if box is None:
                continue
            grid = side_grid(like, box.expand(jitter_mm), side, cfg)
            out[f"img_{n}"] = crop_image(vol.array, like, grid, cfg).numpy().astype(np.float16)
            mask = (labels == int(side)).astype(np.float32)
            out[f"lab_{n}"] = (resample(mask, like, grid, fill=0.0) >= 0.5).numpy().astype(np.uint8)
            n += 1
        log.info("prepared stage-2 case %s (%d crops so far)", case.case_id, n)
    return out


class Stage2Task:
    """Training and validation data and steps for the segmenter.

    Args:
        train_cases: training cases.
        val_cases: validation cases.
        model_cfg: segmenter config.
        train_cfg: training config.
        cache_dir: where prepared arrays are cached.
    """

    stage = "stage2"

    def __init__(
        self,
        train_cases: list[CaseEntry],
        val_cases: list[CaseEntry],
        model_cfg: SegmenterConfig,
        train_cfg: TrainConfig,
        cache_dir: Path,
    ) -> None:
        self.model_cfg = model_cfg
        self.cfg = train_cfg
        conf = to_dict(model_cfg)
        jit = train_cfg.box_jitter_mm
        tr = cached_arrays(
            cache_dir / "stage2_train.npz",
            cache_key(train_cases, {**conf, "jitter": jit}),
            lambda: prepare_stage2(train_cases, model_cfg, jit),
        )
        vcases = val_cases[: train_cfg.val_cases]
        va = cached_arrays(
            cache_dir / "stage2_val.npz",
            cache_key(vcases, {**conf, "jitter": 0.0}),
            lambda: prepare_stage2(vcases, model_cfg, 0.0),
        )
        self.train = [(tr[f"img_{n}"], tr[f"lab_{n}"]) for n in range(len(tr) // 2)]
        self.val = [(va[f"img_{n}"], va[f"lab_{n}"]) for n in range(len(va) // 2)]
        self._fg = [np.flatnonzero(lab) for _, lab in self.train]

    def build(self) -> nn.Module:
        """A fresh segmenter network."""
        return build_segmenter(self.model_cfg)

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (B, 1, *patch) and labels (B, 1, *patch) of one step."""
        return draw_patches(
            self.train,
            self._fg,
            self.model_cfg.roi_size,
            self.cfg.batch_size,
            self.cfg.fg_fraction,
            step_rng(self.cfg.seed, rank, step),
            self.cfg.shape_aug,
        )

    @torch.inference_mode()
    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean Dice of whole validation crops (truth box + margin), by sliding windows."""
        net.eval()
        dices = []
        for img, lab in self.val:
            x = torch.from_numpy(img.astype(np.float32))[None, None].to(device)
            logits = sliding_window_inference(
                x, self.model_cfg.roi_size, 1, net, overlap=0.25, mode="gaussian"
            )
            if not isinstance(logits, torch.Tensor):  # monai's return type is a union
                raise TypeError(f"sliding_window_inference returned {type(logits).__name__}")
            pred = (torch.softmax(logits.float(), dim=1)[0, 1] >= 0.5).cpu().numpy()
            truth = lab.astype(bool)
            denom = pred.sum() + truth.sum()
            dices.append(2.0 * (pred & truth).sum() / denom if denom else 1.0)
        net.train()
        dice = float(np.mean(dices)) if dices else 0.0
        return {"metric": dice, "val_dice": dice}
