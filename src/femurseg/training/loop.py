"""The one training loop of every network: seeded, resumable, CPU / CUDA+AMP / DDP.

A task (:mod:`femurseg.training.tasks`; one per network: stage 1, stage 2, the single-stage
SegResNet and TransUNet baselines) prepares the data, builds the network and its optimiser,
draws each step's batch and validates; the loop owns the schedule, mixed precision,
checkpoints, metrics and curves, so all networks are trained and compared the same way.

Run folder layout::

    RUN/last.pt        full checkpoint after the latest validation (resume from here)
    RUN/best.pt        full checkpoint with the best validation metric so far
    RUN/metrics.csv    one row per validation: step, lr, train_loss, metric(s), seconds
    RUN/curves.png     learning curves
    RUN/config.json    the frozen model and training configs
    RUN/cache/         prepared training arrays (reused on resume)

DDP: start with ``torchrun --nproc_per_node N -m femurseg.cli train ...``; the process group is
initialised only when ``WORLD_SIZE > 1``. Every rank runs the same number of steps on its own
samples; rank 0 validates and writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai.losses import DiceCELoss
from torch import nn

import femurseg
from femurseg.config import to_dict
from femurseg.devices import Device, cpu_has_bf16, resolve_device
from femurseg.errors import ConfigError, OutputError
from femurseg.training.augment import step_rng
from femurseg.training.curves import plot_curves, read_csv, write_csv
from femurseg.training.tasks import LoopConfig, Progress, build_task, task_class
from femurseg.weights import (
    Stage,
    config_from_dict,
    load_checkpoint,
    load_state,
    save_checkpoint,
)

log = logging.getLogger(__name__)


def learning_rate(cfg: LoopConfig, step: int) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to 5 % of it at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    t = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _ddp() -> tuple[int, int, int]:
    """(rank, local rank, world size); initialise the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def _check_resume(ckpt: dict[str, Any], train_cfg: Any, model_cfg: Any) -> Any:
    """The training config to continue with: the stored one, with ``steps`` from the caller."""
    stored_model = ckpt["model_config"]
    if stored_model != to_dict(model_cfg):
        diff = sorted(k for k, v in to_dict(model_cfg).items() if stored_model.get(k) != v)
        raise ConfigError(
            f"--resume with model settings {diff} that differ from the checkpoint's; a resumed "
            "run keeps its model config; drop those options or start a new run folder"
        )
    stored = config_from_dict(type(train_cfg), ckpt["train_config"], "train config")
    mine = to_dict(train_cfg)
    theirs = to_dict(stored)
    diff = sorted(k for k in mine if k != "steps" and mine[k] != theirs[k])
    if diff:
        raise ConfigError(
            f"--resume with training settings {diff} that differ from the checkpoint's; only "
            "--steps may change on resume; drop those options or start a new run folder"
        )
    return train_cfg


def _training_device(device: Device | str, local_rank: int) -> torch.device:
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


@dataclass
class _Run:
    """One run folder and the state the loop carries between validations."""

    folder: Path
    stage: Stage
    model_cfg: Any
    train_cfg: Any
    init_from: str | Path | None
    use_amp: bool
    best: float = -math.inf
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.pt"

    def write_config(self) -> None:
        """config.json: the frozen model and training configs and the starting weights."""
        body = {
            "model": to_dict(self.model_cfg),
            "train": to_dict(self.train_cfg),
            "init_from": str(self.init_from) if self.init_from is not None else None,
        }
        (self.folder / "config.json").write_text(json.dumps(body, indent=2))

    def restore(
        self,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ckpt: dict[str, Any] | None,
    ) -> int:
        """Load the resumed checkpoint, or the ``init_from`` weights; the step to start at."""
        if ckpt is None:
            if self.init_from is not None:
                source = load_checkpoint(self.init_from, self.stage)
                load_state(net, source["model"], Path(self.init_from))
                log.info(
                    "initialised %s from %s (step %s)",
                    self.stage.value,
                    self.init_from,
                    source.get("step"),
                )
            return 0
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start = int(ckpt["step"])
        self.best = float(ckpt.get("best_metric", -math.inf))
        self.rows = [r for r in read_csv(self.folder / "metrics.csv") if int(r["step"]) <= start]
        log.info("resuming %s at step %d of %d", self.stage.value, start, self.train_cfg.steps)
        return start

    def record(
        self,
        done: int,
        lr: float,
        losses: list[float],
        metrics: dict[str, float],
        seconds: float,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> dict[str, Any]:
        """One validation's row, checkpoints (last, and best when it improved) and curves."""
        row = {
            "step": done,
            "lr": lr,
            "train_loss": float(np.mean(losses)) if losses else math.nan,
            **{k: v for k, v in metrics.items() if k != "metric"},
            "seconds": round(seconds, 1),
        }
        self.rows.append(row)
        payload = {
            "stage": self.stage.value,
            "model_config": to_dict(self.model_cfg),
            "train_config": to_dict(self.train_cfg),
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if self.use_amp else None,
            "step": done,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "femurseg_version": femurseg.__version__,
            "init_from": str(self.init_from) if self.init_from is not None else None,
        }
        if metrics["metric"] > self.best:
            self.best = float(metrics["metric"])
            save_checkpoint({**payload, "best_metric": self.best}, self.best_path)
        save_checkpoint({**payload, "best_metric": self.best}, self.last)
        write_csv(self.rows, self.folder / "metrics.csv")
        metric_name = next(k for k in metrics if k != "metric")
        plot_curves(self.rows, self.folder / "curves.png", metric_name)
        log.info("step %d: %s", done, row)
        return row


def train(
    data_dir: str | Path,
    run_dir: str | Path,
    train_cfg: Any,
    model_cfg: Any | None = None,
    *,
    stage: Stage | str | None = None,
    resume: bool = False,
    device: Device | str = Device.AUTO,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train one network and write checkpoints, metrics and curves into ``run_dir``.

    Args:
        data_dir: dataset folder (``dataset.json`` with train and val splits).
        run_dir: output folder of the run.
        train_cfg: training config: :class:`TrainConfig` (its ``stage`` picks the network) or
            the TransUNet training config; the loop reads its :class:`LoopConfig` fields.
        model_cfg: the network's model config; its default if None.
        stage: which network; default ``train_cfg.stage``.
        resume: continue from ``run_dir/last.pt`` (its configs are kept; ``steps`` may grow).
        device: where to train.
        progress: called after every step.
        cache_dir: where prepared training arrays are kept (default ``run_dir/cache``); runs
            on the same data and preprocessing can share one.
        init_from: start a new run from the network weights of this checkpoint (same stage
            and architecture; fresh optimiser and schedule), e.g. to fine-tune.

    Returns:
        Summary: final step, best metric, paths.

    Raises:
        OutputError: ``run_dir`` already holds a run and ``resume`` is false.
        ConfigError: ``resume`` with settings that contradict the checkpoint.
    """
    folder = Path(run_dir)
    stage = Stage(stage if stage is not None else train_cfg.stage)
    model_cfg = model_cfg if model_cfg is not None else task_class(stage)[0]()
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(folder / "last.pt", stage)
        train_cfg = _check_resume(ckpt, train_cfg, model_cfg)
    elif (folder / "last.pt").exists():
        raise OutputError(
            f"{folder} already holds a training run (last.pt); expected an empty folder; "
            "pass --resume to continue it or choose another -o"
        )

    rank, local_rank, world = _ddp()
    dev = _training_device(device, local_rank)
    torch.manual_seed(train_cfg.seed + rank)
    folder.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else folder / "cache"
    task = build_task(stage, Path(data_dir), train_cfg, model_cfg, cache)

    net = task.build().to(dev)
    opt = task.optimizer(net)
    use_amp = dev.type == "cuda" and train_cfg.amp
    # bfloat16 needs no loss scaling; on CPUs that run it natively it halves the step time
    cpu_bf16 = dev.type == "cpu" and train_cfg.amp and cpu_has_bf16()
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    run = _Run(folder, stage, model_cfg, train_cfg, init_from, use_amp)
    start = run.restore(net, opt, scaler, ckpt)
    model: nn.Module = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[local_rank] if dev.type == "cuda" else None
        )
    if rank == 0:
        run.write_config()

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    elapsed0 = float(run.rows[-1]["seconds"]) if run.rows else 0.0
    t0 = time.perf_counter()
    losses: list[float] = []
    net.train()
    for step in range(start, train_cfg.steps):
        # dropout masks, too, are a function of (seed, rank, step): resuming is exact
        torch.manual_seed(int(step_rng(train_cfg.seed, rank, step).integers(2**63 - 1)))
        lr = learning_rate(train_cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = task.batch(step, rank)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, enabled=use_amp or cpu_bf16):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        done = step + 1
        info = {"loss": losses[-1], "lr": lr}
        if done % train_cfg.val_every == 0 or done == train_cfg.steps:
            if rank == 0:
                metrics = task.validate(net, dev)
                seconds = elapsed0 + time.perf_counter() - t0
                run.record(done, lr, losses, metrics, seconds, net, opt, scaler)
                losses = []
                info.update(metrics)
            if world > 1:
                dist.barrier()
        if progress is not None:
            progress(done, train_cfg.steps, info)
    if world > 1:
        dist.destroy_process_group()
    return {
        "stage": stage.value,
        "steps": train_cfg.steps,
        "best_metric": run.best,
        "last": str(run.last),
        "best": str(run.best_path),
        "metrics": str(folder / "metrics.csv"),
    }


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a small inference checkpoint (no optimiser state) from a training checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    keep = ("stage", "model_config", "train_config", "model", "step", "metrics")
    body = {k: ckpt[k] for k in keep if k in ckpt}
    body["femurseg_version"] = femurseg.__version__
    return save_checkpoint(body, out)


def average_weights(checkpoints: list[str | Path], out: str | Path) -> Path:
    """Write an inference checkpoint whose weights are the mean of ``checkpoints``' weights.

    Averaging checkpoints of one run (e.g. the last few validations) smooths the noise of
    small-batch training; the checkpoints must share stage and model config. Integer buffers
    (batch-norm step counters) are taken from the first. The result records its sources.

    Raises:
        ConfigError: fewer than two checkpoints, or stages / model configs that differ.
    """
    if len(checkpoints) < 2:
        raise ConfigError(f"{len(checkpoints)} checkpoint(s) given; expected two or more")
    ckpts = [load_checkpoint(c) for c in checkpoints]
    first = ckpts[0]
    for path, ck in zip(checkpoints[1:], ckpts[1:], strict=True):
        if ck["stage"] != first["stage"] or ck["model_config"] != first["model_config"]:
            raise ConfigError(
                f"{path}: stage or model config differs from {checkpoints[0]}'s; only "
                "checkpoints of one network can be averaged"
            )
    state: dict[str, torch.Tensor] = {}
    for key, value in first["model"].items():
        if value.is_floating_point():
            stacked = torch.stack([ck["model"][key].double() for ck in ckpts])
            state[key] = stacked.mean(0).to(value.dtype)
        else:
            state[key] = value.clone()
    body: dict[str, Any] = {
        k: first[k] for k in ("stage", "model_config", "train_config") if k in first
    }
    body.update(
        model=state,
        step=max(int(ck.get("step", 0)) for ck in ckpts),
        metrics={},
        averaged_from=[
            {"path": str(c), "step": int(ck.get("step", 0))}
            for c, ck in zip(checkpoints, ckpts, strict=True)
        ],
        femurseg_version=femurseg.__version__,
    )
    return save_checkpoint(body, out)
