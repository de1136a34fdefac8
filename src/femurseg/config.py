"""Frozen, validated configuration shared across stages.

Module-specific configs (phantom generation, detection, segmentation) live beside their code and
follow the same pattern: a frozen dataclass checked in ``__post_init__`` and serialisable with
:func:`to_dict`.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

from femurseg.errors import ConfigError


def to_dict(cfg: Any) -> dict[str, Any]:
    """Serialise a (possibly nested) config dataclass to plain JSON-ready types."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(cfg)  # type: ignore[no-any-return]


def check_range(name: str, value: float, lo: float, hi: float) -> None:
    """Raise :class:`ConfigError` unless ``lo <= value <= hi``."""
    if not (lo <= value <= hi):
        raise ConfigError(f"{name}={value} is out of range; expected {lo} to {hi}")
