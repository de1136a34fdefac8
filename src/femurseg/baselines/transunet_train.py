"""TransUNet training over a dataset folder: axial slices, Dice + CE, AdamW, seeded, resumable.

Uses the project's training pieces: the split reader and prepared-array cache
(:mod:`femurseg.training.data`), per-step random generators and intensity augmentation
(:mod:`femurseg.training.augment`), the warm-up + cosine schedule
(:func:`femurseg.training.learning_rate`), the metrics CSV and learning-curve PNG
(:mod:`femurseg.training.curves`) and the checkpoint format (:mod:`femurseg.weights`). The run
folder has the stage models' layout (``last.pt``, ``best.pt``, ``metrics.csv``,
``curves.png``, ``config.json``, ``cache/``); checkpoints carry ``stage="transunet"``.

Training itself is the shared loop, :func:`femurseg.training.loop.train`, with
``stage=Stage.TRANSUNET``: the same optimiser steps, schedule, checkpoints, AMP and DDP as the
pipeline's stages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from femurseg.baselines.transunet import STAGE, TransUNetConfig, build_transunet
from femurseg.baselines.transunet_infer import (
    slice_grid,
    slice_image,
    slice_probabilities,
)
from femurseg.config import check_range, to_dict
from femurseg.devices import Device
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.resample import resample
from femurseg.training.augment import intensity_augment, step_rng
from femurseg.training.data import CaseEntry
from femurseg.training.loop import train
from femurseg.training.tasks import Progress, TaskBase
from femurseg.training.validation import side_dice_metrics
from femurseg.types import Label
from femurseg.weights import Stage

log = logging.getLogger(__name__)

#: training slices are resampled in chunks of this many slices (bounds memory per case).
_PREPARE_CHUNK = 32


@dataclass(frozen=True)
class TransUNetTrainConfig:
    """How TransUNet is trained (saved in every checkpoint).

    Attributes:
        steps: total optimiser steps.
        batch_size: slices per step.
        lr: peak AdamW learning rate, after ``warmup_steps``; cosine decay to 5 % at ``steps``.
        warmup_steps: linear warm-up length.
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms and the
            position embedding).
        fg_fraction: share of slices drawn from those that contain femur (the rest uniformly
            from all slices).
        slice_mm: distance between the prepared training slices along the axial axis (thins
            out thin-slice scans to bound memory; slices are interpolated).
        flip_prob: probability of mirroring a slice left-right and swapping labels 1 and 2 (a
            mirrored body is a valid body with its sides exchanged).
        val_every: steps between validations (each writes ``last.pt``; the best also
            ``best.pt``).
        val_cases: at most this many validation cases.
        seed: every random choice derives from (seed, step), so a resumed run continues exactly
            as an uninterrupted one would.
        amp: mixed precision on CUDA (ignored on the CPU).
    """

    steps: int = 2000
    batch_size: int = 4
    lr: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 1e-2
    fg_fraction: float = 0.8
    slice_mm: float = 3.0
    flip_prob: float = 0.5
    val_every: int = 200
    val_cases: int = 4
    seed: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("batch_size", self.batch_size, 1, 1024)
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("warmup_steps", self.warmup_steps, 0, 1_000_000)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("fg_fraction", self.fg_fraction, 0.0, 1.0)
        check_range("slice_mm", self.slice_mm, 0.1, 50.0)
        check_range("flip_prob", self.flip_prob, 0.0, 1.0)
        check_range("val_every", self.val_every, 1, 10_000_000)
        check_range("val_cases", self.val_cases, 1, 100_000)
        check_range("seed", self.seed, 0, 2**31 - 1)


def prepare_slices(cases: list[CaseEntry], cfg: TransUNetConfig, slice_mm: float) -> dict[str, Any]:
    """Windowed slices and their labels of each case, slice axis first.

    Returns:
        ``img_<n>``: float16 (Z', S, S) in [0, 1]; ``lab_<n>``: uint8 (Z', S, S) label values,
        each voxel the class with the largest linearly resampled share.
    """
    out: dict[str, npt.NDArray[Any]] = {}
    for n, case in enumerate(cases):
        vol = read_volume(case.image)
        labels, _ = read_labels(case.label, like=vol)
        like = Grid.of(vol)
        full = slice_grid(like, cfg, slice_mm)
        masks = [labels == int(side) for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)]
        imgs, labs = [], []
        for k0 in range(0, full.shape[2], _PREPARE_CHUNK):
            n_k = min(_PREPARE_CHUNK, full.shape[2] - k0)
            sub = full.sub_grid((0, 0, k0), (full.shape[0], full.shape[1], n_k))
            imgs.append(slice_image(vol.array, like, sub, cfg).numpy().astype(np.float16))
            fg = torch.stack([resample(m, like, sub, fill=0.0) for m in masks])
            share = torch.cat([1.0 - fg.sum(0, keepdim=True), fg])
            labs.append(share.argmax(0).numpy().astype(np.uint8))
        out[f"img_{n}"] = np.moveaxis(np.concatenate(imgs, axis=2), 2, 0).copy()
        out[f"lab_{n}"] = np.moveaxis(np.concatenate(labs, axis=2), 2, 0).copy()
        log.info("prepared TransUNet case %s: %d slices", case.case_id, full.shape[2])
    return out


class TransUNetTask(TaskBase):
    """Training and validation slices and steps for TransUNet (a :class:`Task`).

    Args:
        train_cases: training cases.
        val_cases: validation cases.
        model_cfg: TransUNet config.
        train_cfg: training config.
        cache_dir: where prepared slices are cached.
    """

    stage = STAGE

    def __init__(
        self,
        train_cases: list[CaseEntry],
        val_cases: list[CaseEntry],
        model_cfg: TransUNetConfig,
        train_cfg: TransUNetTrainConfig,
        cache_dir: Path,
    ) -> None:
        super().__init__(model_cfg, train_cfg, cache_dir)
        self.cfg: TransUNetTrainConfig = train_cfg
        conf = {**to_dict(model_cfg), "slice_mm": train_cfg.slice_mm}
        mm = train_cfg.slice_mm
        tr = self.cached(
            "train", train_cases, conf, lambda: prepare_slices(train_cases, model_cfg, mm)
        )
        vcases = val_cases[: train_cfg.val_cases]
        va = self.cached("val", vcases, conf, lambda: prepare_slices(vcases, model_cfg, mm))
        self.train = [(tr[f"img_{n}"], tr[f"lab_{n}"]) for n in range(len(train_cases))]
        self.val = [(va[f"img_{n}"], va[f"lab_{n}"]) for n in range(len(vcases))]
        # (case, slice) of every slice, and of those holding femur
        pairs, fg_pairs = [], []
        for c, (_, lab) in enumerate(self.train):
            has_fg = lab.reshape(lab.shape[0], -1).any(axis=1)
            pairs += [(c, z) for z in range(lab.shape[0])]
            fg_pairs += [(c, int(z)) for z in np.flatnonzero(has_fg)]
        self._all = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self._fg = np.asarray(fg_pairs, dtype=np.int64).reshape(-1, 2)
        log.info("TransUNet training slices: %d, %d with femur", len(self._all), len(self._fg))

    def build(self) -> nn.Module:
        """A fresh TransUNet."""
        return build_transunet(self.model_cfg)

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        """AdamW with decay on weight matrices and kernels only (ViT practice)."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in net.named_parameters():
            (no_decay if p.ndim < 2 or name.endswith("pos_embed") else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=self.cfg.lr)

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slices (B, 1, S, S) and labels (B, 1, S, S) of one step."""
        rng = step_rng(self.cfg.seed, rank, step)
        xs, ys = [], []
        for _ in range(self.cfg.batch_size):
            pool = self._fg if len(self._fg) and rng.random() < self.cfg.fg_fraction else self._all
            c, z = pool[int(rng.integers(len(pool)))]
            img, lab = self.train[int(c)]
            x = img[z].astype(np.float32)
            y = lab[z].copy()
            if rng.random() < self.cfg.flip_prob:
                x, y = x[::-1].copy(), y[::-1].copy()
                left, right = y == int(Label.FEMUR_LEFT), y == int(Label.FEMUR_RIGHT)
                y[left], y[right] = int(Label.FEMUR_RIGHT), int(Label.FEMUR_LEFT)
            xs.append(intensity_augment(x[None], rng).astype(np.float32))
            ys.append(y[None].astype(np.int64))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))

    @torch.inference_mode()
    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean Dice per side over the validation slice stacks (3D Dice per case)."""
        net.eval()

        def predictions() -> Iterator[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
            for img, lab in self.val:
                slices = torch.from_numpy(np.moveaxis(img, 0, 2).astype(np.float32))
                probs = slice_probabilities(net, slices, device, self.cfg.batch_size * 2)
                yield np.moveaxis(probs.argmax(0).numpy(), 2, 0), lab

        metrics = side_dice_metrics(predictions())
        net.train()
        return metrics


def train_transunet(
    data_dir: str | Path,
    run_dir: str | Path,
    train_cfg: TransUNetTrainConfig | None = None,
    model_cfg: TransUNetConfig | None = None,
    *,
    resume: bool = False,
    device: Device | str = Device.AUTO,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train TransUNet on a dataset folder's train split, validating on its val split.

    Args:
        data_dir: dataset folder (``images/``, ``labels/``, ``dataset.json`` with the split).
        run_dir: output folder of the run.
        train_cfg: training config (default :class:`TransUNetTrainConfig`).
        model_cfg: network config (default :class:`TransUNetConfig`).
        resume: continue from ``run_dir/last.pt``; the stored configs must match, only
            ``steps`` may change.
        device: where to train.
        progress: called after every step with (step, total, latest numbers).
        cache_dir: where prepared slices are kept (default ``run_dir/cache``); runs on the same
            data and preprocessing can share one.

    Returns:
        Summary: stage, final step, best metric (mean validation Dice of both sides), paths.
    """
    return train(
        data_dir,
        run_dir,
        train_cfg or TransUNetTrainConfig(),
        model_cfg or TransUNetConfig(),
        stage=Stage.TRANSUNET,
        resume=resume,
        device=device,
        progress=progress,
        cache_dir=cache_dir,
    )
