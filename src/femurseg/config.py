"""Frozen, validated configuration shared across stages.

Module-specific configs (phantom generation, detection, segmentation) live beside their code and
follow the same pattern: a frozen dataclass checked in ``__post_init__`` and serialisable with
:func:`to_dict`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from femurseg.errors import ConfigError

C = TypeVar("C")


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


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where) if len(inner) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return config_from_dict(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError as err:
            allowed = ", ".join(str(m.value) for m in hint)
            raise ConfigError(f"{where}={value!r} is not one of {allowed}") from err
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=False))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    return value


def config_from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Rebuild a (nested) frozen config dataclass from :func:`femurseg.config.to_dict` output.

    Missing keys take the field default; unknown keys are an error. Validation runs in the
    dataclass's ``__post_init__`` as usual.

    Raises:
        ConfigError: unknown keys, or values the config rejects.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where} has unknown keys {unknown}; expected only {sorted(names)}; "
            "was it written by a newer femurseg?"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where} cannot be built: {err}") from err


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A settings file (JSON, or TOML on Python 3.11+) as a dict.

    Raises:
        ConfigError: missing, unreadable or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            f"cannot read settings file {path} ({err.strerror}); check the path"
        ) from err
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, ImportError) as err:
        raise ConfigError(
            f"settings file {path} cannot be parsed ({err}); expected JSON (or TOML with a "
            ".toml ending on Python 3.11+)"
        ) from err
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} holds {type(data).__name__}; expected a mapping")
    return data


def apply_overrides(base: C, overrides: dict[str, Any], where: str = "config") -> C:
    """``base`` with the (nested) values of ``overrides`` put in; unknown keys are an error.

    Raises:
        ConfigError: an unknown key (at any level) or a value the config rejects.
    """
    return config_from_dict(type(base), _merge(to_dict(base), overrides), where)


def with_settings_file(base: C, path: str | Path | None) -> C:
    """``base`` with the values of a ``--config`` settings file put in (``base`` when None).

    Raises:
        ConfigError: an unreadable file, an unknown key or a value the config rejects.
    """
    if path is None:
        return base
    return apply_overrides(base, read_config_file(path), f"--config {path}")
