"""TransUNet training over a dataset folder: axial slices, Dice + CE, AdamW, seeded, resumable.

Uses the project's training pieces: the split reader and prepared-array cache
(:mod:`femurseg.training.data`), per-step random generators and intensity augmentation
(:mod:`femurseg.training.augment`), the warm-up + cosine schedule
(:func:`femurseg.training.learning_rate`), the metrics CSV and learning-curve PNG
(:mod:`femurseg.training.curves`) and the checkpoint format (:mod:`femurseg.weights`). The run
folder has the stage models' layout (``last.pt``, ``best.pt``, ``metrics.csv``,
``curves.png``, ``config.json``, ``cache/``); checkpoints carry ``stage="transunet"``.

:func:`fit` is a generic loop over any :class:`femurseg.training.loop.Task`: the shared
:func:`femurseg.training.train` is bound to the two stage enums and their configs, so it cannot
run a third network. Single process (CPU or one CUDA device, AMP on CUDA); no DDP.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.losses import DiceCELoss
from torch import nn

import femurseg
from femurseg.baselines.transunet import STAGE, TransUNetConfig, build_transunet
from femurseg.baselines.transunet_infer import (
    load_transunet_checkpoint,
    slice_grid,
    slice_image,
    slice_probabilities,
)
from femurseg.config import check_range, to_dict
from femurseg.devices import Device, resolve_device
from femurseg.errors import ConfigError, OutputError
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.resample import resample
from femurseg.training.augment import intensity_augment, step_rng
from femurseg.training.config import TrainConfig
from femurseg.training.curves import plot_curves, read_csv, write_csv
from femurseg.training.data import CaseEntry, cache_key, cached_arrays, read_split
from femurseg.training.loop import Progress, Task, learning_rate
from femurseg.types import Label
from femurseg.weights import save_checkpoint

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

    def schedule(self) -> TrainConfig:
        """The shared schedule's config (:func:`learning_rate` reads lr, warm-up and steps)."""
        return TrainConfig(steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps)


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


def dice_per_side(pred: npt.NDArray[Any], truth: npt.NDArray[Any]) -> dict[str, float]:
    """Dice of femur_left and femur_right; a side absent in both is left out."""
    out = {}
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        p, t = pred == int(side), truth == int(side)
        denom = int(p.sum()) + int(t.sum())
        if denom:
            out[side.name.lower()] = 2.0 * float((p & t).sum()) / denom
    return out


class TransUNetTask:
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
        self.model_cfg = model_cfg
        self.cfg = train_cfg
        conf = {**to_dict(model_cfg), "slice_mm": train_cfg.slice_mm}
        tr = cached_arrays(
            cache_dir / "transunet_train.npz",
            cache_key(train_cases, conf),
            lambda: prepare_slices(train_cases, model_cfg, train_cfg.slice_mm),
        )
        vcases = val_cases[: train_cfg.val_cases]
        va = cached_arrays(
            cache_dir / "transunet_val.npz",
            cache_key(vcases, conf),
            lambda: prepare_slices(vcases, model_cfg, train_cfg.slice_mm),
        )
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
        per_side: dict[str, list[float]] = {"femur_left": [], "femur_right": []}
        for img, lab in self.val:
            slices = torch.from_numpy(np.moveaxis(img, 0, 2).astype(np.float32))
            probs = slice_probabilities(net, slices, device, self.cfg.batch_size * 2)
            pred = np.moveaxis(probs.argmax(0).numpy(), 2, 0)
            for side, d in dice_per_side(pred, lab).items():
                per_side[side].append(d)
        net.train()
        means = {k: float(np.mean(v)) for k, v in per_side.items() if v}
        dice = float(np.mean(list(means.values()))) if means else 0.0
        sides = {f"val_dice_{k.removeprefix('femur_')}": v for k, v in means.items()}
        return {"metric": dice, "val_dice": dice, **sides}


def _optimizer(net: nn.Module, cfg: TransUNetTrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices and kernels only (ViT practice)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in net.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("pos_embed") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _check_run(run: Path, resume: bool, train_cfg: Any, model_cfg: Any) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run), after checking it fits the configs."""
    last = run / "last.pt"
    if not resume:
        if last.exists():
            raise OutputError(
                f"{run} already holds a training run ({last.name}); expected an empty folder; "
                "pass --resume to continue it or choose another -o"
            )
        return None
    ckpt = load_transunet_checkpoint(last)
    for what, stored, mine in (
        ("model", ckpt["model_config"], to_dict(model_cfg)),
        ("training", ckpt.get("train_config") or {}, to_dict(train_cfg)),
    ):
        diff = sorted(k for k in mine if k != "steps" and stored.get(k) != mine[k])
        if diff:
            raise ConfigError(
                f"--resume with {what} settings {diff} that differ from the checkpoint's; only "
                "--steps may change on resume; drop those options or start a new run folder"
            )
    return ckpt


def fit(
    task: Task,
    run_dir: str | Path,
    train_cfg: TransUNetTrainConfig,
    *,
    resume: bool = False,
    device: Device | str = Device.AUTO,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train a task's network; write checkpoints, metrics CSV and curves into ``run_dir``.

    Args:
        task: builds the network, draws step batches and validates (``task.stage`` is the
            checkpoint's ``stage`` tag, ``task.model_cfg`` its model config).
        run_dir: output folder of the run.
        train_cfg: training config.
        resume: continue from ``run_dir/last.pt`` (configs must match; ``steps`` may grow).
        device: where to train.
        progress: called after every step with (step, total, latest numbers).

    Returns:
        Summary: stage, final step, best metric, paths.

    Raises:
        OutputError: ``run_dir`` already holds a run and ``resume`` is false.
        ConfigError: ``resume`` with settings that contradict the checkpoint.
    """
    run = Path(run_dir)
    last_path, best_path = run / "last.pt", run / "best.pt"
    ckpt = _check_run(run, resume, train_cfg, task.model_cfg)
    dev = resolve_device(device)
    torch.manual_seed(train_cfg.seed)
    net = task.build().to(dev)
    opt = _optimizer(net, train_cfg)
    use_amp = dev.type == "cuda" and train_cfg.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, best = 0, -math.inf
    rows: list[dict[str, Any]] = []
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start, best = int(ckpt["step"]), float(ckpt.get("best_metric", -math.inf))
        rows = [r for r in read_csv(run / "metrics.csv") if int(r["step"]) <= start]
        log.info("resuming %s at step %d of %d", task.stage, start, train_cfg.steps)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(
        json.dumps({"model": to_dict(task.model_cfg), "train": to_dict(train_cfg)}, indent=2)
    )
    schedule = train_cfg.schedule()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    elapsed0 = float(rows[-1]["seconds"]) if rows else 0.0
    t0 = time.perf_counter()
    losses: list[float] = []
    net.train()
    for step in range(start, train_cfg.steps):
        # dropout masks, too, are a function of (seed, step): resuming is exact
        torch.manual_seed(int(step_rng(train_cfg.seed, 0, step).integers(2**63 - 1)))
        lr = learning_rate(schedule, step)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = task.batch(step, 0)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, enabled=use_amp):
            loss = loss_fn(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        done = step + 1
        info = {"loss": losses[-1], "lr": lr}
        if done % train_cfg.val_every == 0 or done == train_cfg.steps:
            metrics = task.validate(net, dev)
            row = {
                "step": done,
                "lr": lr,
                "train_loss": float(np.mean(losses)),
                **{k: v for k, v in metrics.items() if k != "metric"},
                "seconds": round(elapsed0 + time.perf_counter() - t0, 1),
            }
            rows.append(row)
            losses = []
            payload = {
                "stage": task.stage,
                "model_config": to_dict(task.model_cfg),
                "train_config": to_dict(train_cfg),
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict() if use_amp else None,
                "step": done,
                "metrics": {k: float(v) for k, v in metrics.items()},
                "femurseg_version": femurseg.__version__,
            }
            if metrics["metric"] > best:
                best = float(metrics["metric"])
                save_checkpoint({**payload, "best_metric": best}, best_path)
            save_checkpoint({**payload, "best_metric": best}, last_path)
            write_csv(rows, run / "metrics.csv")
            plot_curves(rows, run / "curves.png", "val_dice")
            info.update(metrics)
            log.info("step %d: %s", done, row)
        if progress is not None:
            progress(done, train_cfg.steps, info)
    return {
        "stage": task.stage,
        "steps": train_cfg.steps,
        "best_metric": best,
        "last": str(last_path),
        "best": str(best_path),
        "metrics": str(run / "metrics.csv"),
    }


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
    train_cfg = train_cfg or TransUNetTrainConfig()
    model_cfg = model_cfg or TransUNetConfig()
    # fail before the (slow) slice preparation when the run folder does not fit
    _check_run(Path(run_dir), resume, train_cfg, model_cfg)
    task = TransUNetTask(
        read_split(data_dir, "train"),
        read_split(data_dir, "val"),
        model_cfg,
        train_cfg,
        Path(cache_dir) if cache_dir is not None else Path(run_dir) / "cache",
    )
    return fit(task, run_dir, train_cfg, resume=resume, device=device, progress=progress)
