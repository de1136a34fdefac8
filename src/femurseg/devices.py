"""Choosing the torch device for inference and training."""

from __future__ import annotations

import enum
import logging

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
