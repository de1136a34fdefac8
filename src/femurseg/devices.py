"""Choosing the torch device and the inference precision."""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
from typing import Any

import torch

from femurseg.errors import InputError

log = logging.getLogger(__name__)


class Device(str, enum.Enum):
    """Where networks run: ``auto`` picks CUDA when available, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def resolve_device(device: Device | str) -> torch.device:
    """Turn a :class:`Device` choice into a :class:`torch.device`.

    Raises:
        InputError: ``cuda`` was asked for but torch sees no CUDA device.
    """
    choice = Device(device)
    if choice is Device.CUDA and not torch.cuda.is_available():
        raise InputError(
            "--device cuda was given but no CUDA device is available to torch "
            f"(torch {torch.__version__}); use --device cpu or auto"
        )
    if choice is Device.CPU or (choice is Device.AUTO and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


class Precision(str, enum.Enum):
    """Arithmetic of network inference.

    ``auto``: float16 mixed precision on CUDA; bfloat16 mixed precision on a CPU with native
    bfloat16 instructions (AVX512-BF16 or AMX), which halves stage-2 time there; float32
    otherwise. ``float32`` forces full precision; ``bfloat16`` forces bfloat16 on the CPU.
    """

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU executes bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` flag)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def inference_autocast(device: torch.device, precision: Precision | str = Precision.AUTO) -> Any:
    """The autocast context for network inference on ``device`` at ``precision``."""
    choice = Precision(precision)
    if choice is Precision.FLOAT32:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if choice is Precision.BFLOAT16 or cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
