"""The training tasks of every network, registered by stage.

This module sits above both the training loop and the networks' tasks: the loop finds a task
here by its :class:`~femurseg.types.Stage`, and the tasks (stage 1, stage 2, and the SegResNet
and TransUNet baselines) derive from :class:`TaskBase` here. The registry names each task by
module path and is resolved on first use, so the loop never imports a baseline and no baseline
module imports the loop at import time of the registry (no import cycle).

Adding a network: write a :class:`TaskBase` subclass (``build``, ``batch``, ``validate``; its
``stage`` is the checkpoint tag), add its model config class and task to :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy.typing as npt
import torch
from torch import nn

from femurseg.training.data import CaseEntry, cache_key, cached_arrays, read_split
from femurseg.types import Stage

#: called after every step with (step, total steps, latest numbers).
Progress = Callable[[int, int, dict[str, float]], None]


class LoopConfig(Protocol):
    """The fields of a training config that the loop reads (optimiser, schedule, checkpoints).

    :class:`~femurseg.training.config.TrainConfig` and the TransUNet training config both
    have them; read-only here so frozen dataclasses match.
    """

    @property
    def steps(self) -> int: ...

    @property
    def lr(self) -> float: ...

    @property
    def warmup_steps(self) -> int: ...

    @property
    def weight_decay(self) -> float: ...

    @property
    def val_every(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def amp(self) -> bool: ...


class Task(Protocol):
    """What the loop needs from a network's training task."""

    stage: str
    model_cfg: Any
    cfg: Any

    def build(self) -> nn.Module: ...

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer: ...

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]: ...


class TaskBase:
    """What every task shares: its configs, its cache of prepared arrays, the default optimiser.

    Args:
        model_cfg: the network's model config.
        train_cfg: the training config (a :class:`LoopConfig` plus the task's own fields).
        cache_dir: where prepared arrays are kept (``<stage>_<part>.npz``).
    """

    stage: str = ""

    def __init__(self, model_cfg: Any, train_cfg: Any, cache_dir: Path) -> None:
        self.model_cfg = model_cfg
        self.cfg = train_cfg
        self.cache_dir = Path(cache_dir)

    def cached(
        self,
        part: str,
        cases: list[CaseEntry],
        key: dict[str, Any],
        make: Callable[[], dict[str, npt.NDArray[Any]]],
    ) -> dict[str, npt.NDArray[Any]]:
        """The prepared arrays of ``cases`` (``part``: train or val), made once per key."""
        return cached_arrays(
            self.cache_dir / f"{self.stage}_{part}.npz", cache_key(cases, key), make
        )

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        """AdamW over all parameters with the config's learning rate and weight decay."""
        return torch.optim.AdamW(
            net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )


@dataclass(frozen=True)
class TaskSpec:
    """Where a network's model config class and task class live (``module:Name``)."""

    model_config: str
    task: str


#: every trainable network, by stage
REGISTRY: dict[Stage, TaskSpec] = {
    Stage.STAGE1: TaskSpec(
        "femurseg.detection.config:DetectorConfig", "femurseg.training.stage1:Stage1Task"
    ),
    Stage.STAGE2: TaskSpec(
        "femurseg.segmentation.config:SegmenterConfig", "femurseg.training.stage2:Stage2Task"
    ),
    Stage.SEGRESNET: TaskSpec(
        "femurseg.baselines.single_stage:SingleStageConfig",
        "femurseg.baselines.single_stage_train:SingleStageTask",
    ),
    Stage.TRANSUNET: TaskSpec(
        "femurseg.baselines.transunet:TransUNetConfig",
        "femurseg.baselines.transunet_train:TransUNetTask",
    ),
}


def _resolve(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def task_class(stage: Stage | str) -> tuple[type, Callable[..., Task]]:
    """(model config class, task class) of a network."""
    spec = REGISTRY[Stage(stage)]
    return _resolve(spec.model_config), _resolve(spec.task)


def build_task(
    stage: Stage | str, data_dir: Path, train_cfg: Any, model_cfg: Any, cache_dir: Path
) -> Task:
    """The training task of a network over a dataset folder's train and val splits."""
    train_cases = read_split(data_dir, "train")
    val_cases = read_split(data_dir, "val")
    _, cls = task_class(stage)
    return cls(train_cases, val_cases, model_cfg, train_cfg, cache_dir)
