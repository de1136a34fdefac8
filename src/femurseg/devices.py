"""Choosing the torch device and the inference precision.

Parsing the choices (:func:`parse_device`, :class:`Precision`) does not import torch, so that
the command line can check its options before the seconds that importing torch takes.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
from typing import TYPE_CHECKING, Any

from femurseg.errors import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class Device(str, enum.Enum):
    """Where networks run: ``auto`` picks CUDA when available, else the CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def parse_device(text: str) -> Device | str:
    """``auto``, ``cpu``, ``cuda`` as a :class:`Device`; ``cuda:N`` kept as that text.

    Raises:
        InputError: anything else.
    """
    value = str(text).strip().lower()
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    try:
        return Device(value)
    except ValueError as err:
        raise InputError(
            f"--device {text!r} is unknown; expected auto, cpu, cuda or cuda:N (a GPU index)"
        ) from err


def resolve_device(device: Device | str) -> torch.device:
    """Turn a device choice (a :class:`Device` or ``cuda:N``) into a :class:`torch.device`.

    Raises:
        InputError: CUDA was asked for but torch sees no CUDA device, or not that many.
    """
    import torch

    choice = parse_device(device.value if isinstance(device, Device) else device)
    wants_cuda = choice is Device.CUDA or isinstance(choice, str) and choice.startswith("cuda:")
    if wants_cuda and not torch.cuda.is_available():
        raise InputError(
            f"--device {choice if isinstance(choice, str) else 'cuda'} was given but no CUDA "
            f"device is available to torch (torch {torch.__version__}); use --device cpu or auto"
        )
    if isinstance(choice, str) and not isinstance(choice, Device):
        index = int(choice[5:])
        if index >= torch.cuda.device_count():
            raise InputError(
                f"--device {choice} was given but torch sees {torch.cuda.device_count()} CUDA "
                f"device(s) (0..{torch.cuda.device_count() - 1}); pick one of those"
            )
        return torch.device("cuda", index)
    if choice is Device.CPU or (choice is Device.AUTO and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


class Precision(str, enum.Enum):
    """Arithmetic of network inference.

    ``auto``: float16 mixed precision on CUDA; bfloat16 mixed precision on a CPU with native
    bfloat16 instructions (AVX512-BF16 or AMX), which halves stage-2 time there; float32
    otherwise. ``float32`` forces full precision; ``bfloat16`` forces bfloat16 on the CPU and on
    CUDA.
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


def effective_dtype(
    device: torch.device, precision: Precision | str = Precision.AUTO
) -> torch.dtype:
    """The arithmetic inference really uses on ``device`` for the ``precision`` asked for."""
    import torch

    choice = Precision(precision)
    if choice is Precision.FLOAT32:
        return torch.float32
    if device.type == "cuda":
        # bfloat16 asked for is bfloat16 (never quietly float16); auto is float16
        return torch.bfloat16 if choice is Precision.BFLOAT16 else torch.float16
    if choice is Precision.BFLOAT16 or cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def inference_autocast(device: torch.device, precision: Precision | str = Precision.AUTO) -> Any:
    """The autocast context for network inference on ``device`` at ``precision``."""
    import torch

    dtype = effective_dtype(device, precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
