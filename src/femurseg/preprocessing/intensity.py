"""HU windowing and normalisation to the network input range."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import numpy as np
import torch

T = TypeVar("T", np.ndarray, torch.Tensor)  # type: ignore[type-arg]

#: HU used for space outside the scanned field of view (air).
AIR_HU = -1024.0


class HUWindow(Protocol):
    """Any config with an HU window (the networks' model configs)."""

    @property
    def hu_min(self) -> float: ...

    @property
    def hu_max(self) -> float: ...


def normalise_hu(x: T, hu_min: float, hu_max: float) -> T:
    """Clip HU to ``[hu_min, hu_max]`` and scale linearly to ``[0, 1]``.

    Args:
        x: HU values of any shape, numpy array or torch tensor.
        hu_min: HU mapped to 0 (and everything below it).
        hu_max: HU mapped to 1 (and everything above it).

    Returns:
        float32 of the same shape and kind (a new array; ``x`` is not modified).
    """
    if not hu_max > hu_min:
        raise ValueError(f"hu_max ({hu_max}) must be greater than hu_min ({hu_min})")
    scale = 1.0 / (hu_max - hu_min)
    if isinstance(x, torch.Tensor):
        return (x.float().clamp(hu_min, hu_max) - hu_min) * scale
    arr: Any = np.clip(np.asarray(x, dtype=np.float32), hu_min, hu_max)
    return ((arr - hu_min) * scale).astype(np.float32)
