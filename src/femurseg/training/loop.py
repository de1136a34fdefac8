"""The one training loop of every network: seeded, resumable, CPU / CUDA+AMP / DDP.

A :class:`Task` (one per network: stage 1, stage 2, the single-stage SegResNet and TransUNet
baselines) prepares the data, builds the network, draws each step's batch and validates; the
loop owns the optimiser, schedule, mixed precision, checkpoints, metrics and curves, so all
networks are trained and compared the same way.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from monai.losses import DiceCELoss
from torch import nn

import femurseg
from femurseg.config import to_dict
from femurseg.detection.config import DetectorConfig
from femurseg.devices import Device, cpu_has_bf16, resolve_device
from femurseg.errors import ConfigError, OutputError
from femurseg.segmentation.config import SegmenterConfig
from femurseg.training.augment import step_rng
from femurseg.training.curves import plot_curves, read_csv, write_csv
from femurseg.training.data import read_split
from femurseg.weights import (
    Stage,
    config_from_dict,
    load_checkpoint,
    load_state,
    save_checkpoint,
)

log = logging.getLogger(__name__)

#: called after every step with (step, total steps, latest numbers).
Progress = Callable[[int, int, dict[str, float]], None]


class Task(Protocol):
    """What the loop needs from a network's training task.

    A task may also define ``optimizer(net) -> torch.optim.Optimizer`` to replace the default
    AdamW over all parameters (TransUNet keeps decay off norms and embeddings).
    """

    stage: str
    model_cfg: Any

    def build(self) -> nn.Module: ...

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]: ...


def learning_rate(cfg: Any, step: int) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to 5 % of it at ``cfg.steps``.

    ``cfg`` is any training config with ``lr``, ``warmup_steps`` and ``steps``.
    """
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


def task_class(stage: Stage) -> tuple[type, Callable[..., Task]]:
    """(model config class, task class) of a network; imported lazily (the baselines)."""
    if stage == Stage.STAGE1:
        from femurseg.training.stage1 import Stage1Task

        return DetectorConfig, Stage1Task
    if stage == Stage.STAGE2:
        from femurseg.training.stage2 import Stage2Task

        return SegmenterConfig, Stage2Task
    if stage == Stage.SEGRESNET:
        from femurseg.baselines.single_stage import SingleStageConfig
        from femurseg.baselines.single_stage_train import SingleStageTask

        return SingleStageConfig, SingleStageTask
    from femurseg.baselines.transunet import TransUNetConfig
    from femurseg.baselines.transunet_train import TransUNetTask

    return TransUNetConfig, TransUNetTask


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


def build_task(
    stage: Stage, data_dir: Path, train_cfg: Any, model_cfg: Any, cache_dir: Path
) -> Task:
    """The training task of a network over a dataset folder's train and val splits."""
    train_cases = read_split(data_dir, "train")
    val_cases = read_split(data_dir, "val")
    _, cls = task_class(stage)
    return cls(train_cases, val_cases, model_cfg, train_cfg, cache_dir)


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
            the TransUNet training config. The loop reads ``steps``, ``lr``,
            ``warmup_steps``, ``weight_decay``, ``val_every``, ``seed`` and ``amp``.
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
    run = Path(run_dir)
    stage = Stage(stage if stage is not None else train_cfg.stage)
    model_cfg = model_cfg if model_cfg is not None else task_class(stage)[0]()
    last_path, best_path = run / "last.pt", run / "best.pt"
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(last_path, stage)
        train_cfg = _check_resume(ckpt, train_cfg, model_cfg)
    elif last_path.exists():
        raise OutputError(
            f"{run} already holds a training run ({last_path.name}); expected an empty folder; "
            "pass --resume to continue it or choose another -o"
        )

    rank, local_rank, world = _ddp()
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    torch.manual_seed(train_cfg.seed + rank)
    run.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else run / "cache"
    task = build_task(stage, Path(data_dir), train_cfg, model_cfg, cache)

    net = task.build().to(dev)
    make_optimizer = getattr(task, "optimizer", None)
    opt = (
        make_optimizer(net)
        if make_optimizer is not None
        else torch.optim.AdamW(
            net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
        )
    )
    use_amp = dev.type == "cuda" and train_cfg.amp
    # bfloat16 needs no loss scaling; on CPUs that run it natively it halves the step time
    cpu_bf16 = dev.type == "cpu" and train_cfg.amp and cpu_has_bf16()
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, best = 0, -math.inf
    rows: list[dict[str, Any]] = []
    if init_from is not None and ckpt is None:
        source = load_checkpoint(init_from, stage)
        load_state(net, source["model"], Path(init_from))
        log.info("initialised %s from %s (step %s)", stage.value, init_from, source.get("step"))
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start, best = int(ckpt["step"]), float(ckpt.get("best_metric", -math.inf))
        rows = [r for r in read_csv(run / "metrics.csv") if int(r["step"]) <= start]
        log.info("resuming %s at step %d of %d", stage.value, start, train_cfg.steps)
    model: nn.Module = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[local_rank] if dev.type == "cuda" else None
        )
    if rank == 0:
        (run / "config.json").write_text(
            json.dumps(
                {
                    "model": to_dict(model_cfg),
                    "train": to_dict(train_cfg),
                    "init_from": str(init_from) if init_from is not None else None,
                },
                indent=2,
            )
        )

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    elapsed0 = float(rows[-1]["seconds"]) if rows else 0.0
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
                    "stage": stage.value,
                    "model_config": to_dict(model_cfg),
                    "train_config": to_dict(train_cfg),
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict() if use_amp else None,
                    "step": done,
                    "metrics": {k: float(v) for k, v in metrics.items()},
                    "femurseg_version": femurseg.__version__,
                    "init_from": str(init_from) if init_from is not None else None,
                }
                if metrics["metric"] > best:
                    best = float(metrics["metric"])
                    save_checkpoint({**payload, "best_metric": best}, best_path)
                save_checkpoint({**payload, "best_metric": best}, last_path)
                write_csv(rows, run / "metrics.csv")
                metric_name = next(k for k in metrics if k != "metric")
                plot_curves(rows, run / "curves.png", metric_name)
                info.update(metrics)
                log.info("step %d: %s", done, row)
            if world > 1:
                dist.barrier()
        if progress is not None:
            progress(done, train_cfg.steps, info)
    if world > 1:
        dist.destroy_process_group()
    return {
        "stage": stage.value,
        "steps": train_cfg.steps,
        "best_metric": best,
        "last": str(last_path),
        "best": str(best_path),
        "metrics": str(run / "metrics.csv"),
    }


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a small inference checkpoint (no optimiser state) from a training checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    keep = ("stage", "model_config", "train_config", "model", "step", "metrics")
    body = {k: ckpt[k] for k in keep if k in ckpt}
    body["femurseg_version"] = femurseg.__version__
    return save_checkpoint(body, out)
