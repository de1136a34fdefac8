"""Checkpoint format, shipped default weights and their SHA-256 checksums.

A checkpoint is a plain dict saved with :func:`torch.save` and read back with
``torch.load(..., weights_only=True)`` (no pickled code is ever executed):

* ``format`` ("femurseg-checkpoint"), ``format_version``, ``stage`` ("stage1" / "stage2"),
* ``model_config``: the frozen model + preprocessing config as a plain dict,
* ``train_config``: the training config (plain dict) or None,
* ``model``: the network's ``state_dict``,
* optional training state: ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``rng``,
  ``metrics``, ``femurseg_version``.

The shipped weights (``stage1.pt``, ``stage2.pt`` beside this file) are listed with their
SHA-256 in ``SHA256SUMS``; they are verified before loading. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import logging
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch

from femurseg.atomic import atomic_write
from femurseg.checksum import CHECKSUM_FILE, read_checksums, sha256_file
from femurseg.config import config_from_dict
from femurseg.errors import ConfigError, FemursegError, InputError
from femurseg.types import Stage

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "femurseg-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent

C = TypeVar("C")


def write_checksums(
    folder: Path = WEIGHTS_DIR, names: tuple[str, ...] = ("stage1.pt", "stage2.pt")
) -> Path:
    """Write ``folder/SHA256SUMS`` for the named files (release tooling)."""
    lines = [f"{sha256_file(folder / n)}  {n}" for n in names]
    path = folder / CHECKSUM_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def verify_checksum(path: Path, expected: str) -> str:
    """Check a file's SHA-256 against ``expected``; return the digest.

    Raises:
        FemursegError: the digest differs (a damaged or replaced weights file).
    """
    got = sha256_file(path)
    if got != expected.lower():
        raise FemursegError(
            f"weights file {path} has SHA-256 {got[:16]}..., expected {expected[:16]}... from "
            f"{CHECKSUM_FILE}; the file is damaged or was replaced; reinstall femurseg"
        )
    return got


def default_weights(stage: Stage) -> Path:
    """Path of the shipped weights for ``stage``, checked against ``SHA256SUMS``.

    Raises:
        FemursegError: the file or its checksum entry is missing, or the checksum differs.
    """
    name = f"{Stage(stage).value}.pt"
    path = WEIGHTS_DIR / name
    sums = read_checksums(WEIGHTS_DIR)
    if not path.is_file() or name not in sums:
        raise FemursegError(
            f"shipped {name} or its {CHECKSUM_FILE} entry is missing in {WEIGHTS_DIR}; expected "
            "weights installed with femurseg; reinstall it or pass your own checkpoint"
        )
    verify_checksum(path, sums[name])
    return path


def state_checksum(state: dict[str, Any]) -> str:
    """SHA-256 over a state dict's names, shapes, dtypes and bytes (in name order).

    Stored in every checkpoint at save time and checked at load time, so that weights damaged
    after training (a bit flip, a half-copied file that still unpickles) are refused, also for
    checkpoints that are not in ``SHA256SUMS``.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_finite(state: dict[str, Any], path: Path) -> None:
    """Refuse weights holding NaN or infinite values (a diverged training run).

    Raises:
        InputError: names the first such tensor.
    """
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise InputError(
                f"weights in {path} hold {bad} NaN or infinite values in {name}; expected a "
                "finite network (training diverged?); use an earlier checkpoint"
            )


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a checkpoint dict atomically (temporary file in the same folder, then rename).

    The model's state-dict checksum (:func:`state_checksum`) is stored beside it.

    Raises:
        OutputError: the file cannot be written.
    """
    path = Path(path)
    body = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, **payload}
    if isinstance(body.get("model"), dict):
        body["model_sha256"] = state_checksum(body["model"])
    return atomic_write(path, lambda tmp: torch.save(body, tmp))


def load_checkpoint(path: str | Path, stage: Stage | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU and check it.

    Args:
        path: checkpoint file.
        stage: the stage it must belong to (None accepts either).

    Returns:
        The checkpoint dict (see module docstring).

    Raises:
        InputError: unreadable file, not a femurseg checkpoint, or the wrong stage.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; expected a .pt file from training")
    with path.open("rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":  # torch.save writes a zip archive
        raise InputError(
            f"{path} is not a checkpoint file (it does not start like a PyTorch archive); "
            "expected a .pt file written by `femurseg train`; check the path"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling/format failure
        # torch's own text can advise weights_only=False, which would run code from the
        # file: never passed on
        raise InputError(
            f"cannot read checkpoint {path} ({type(err).__name__}); the file is damaged or not "
            "a femurseg checkpoint; expected a .pt file written by `femurseg train`"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"{path} is not a femurseg checkpoint (no format tag {CHECKPOINT_FORMAT!r}); "
            "expected a file written by `femurseg train`"
        )
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(
            f"{path} has checkpoint format {ckpt.get('format_version')}, newer than the "
            f"supported {FORMAT_VERSION}; upgrade femurseg"
        )
    if stage is not None and ckpt.get("stage") != Stage(stage).value:
        raise InputError(
            f"{path} is a {ckpt.get('stage')} checkpoint, expected {Stage(stage).value}; "
            "pass the weights of the right stage"
        )
    for key in ("model_config", "model"):
        if key not in ckpt:
            raise InputError(f"checkpoint {path} lacks {key!r}; it is incomplete, retrain")
    stored = ckpt.get("model_sha256")
    if stored is not None and state_checksum(ckpt["model"]) != stored:
        raise InputError(
            f"weights in {path} do not match the checksum stored with them at training; the "
            "file is damaged; copy it again or use another checkpoint"
        )
    return ckpt


def load_state(net: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load a network's state dict strictly, turning a mismatch or non-finite weights into an
    :class:`InputError`."""
    check_finite(state, path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(
            f"weights in {path} do not fit the network its config describes ({first}); "
            "the checkpoint is damaged or from another version"
        ) from err


def check_override(name: str, stored: Any, override: Any) -> None:
    """Refuse an override that contradicts a value stored in a checkpoint.

    Raises:
        ConfigError: ``override`` is given (not None) and differs from ``stored``.
    """
    if override is None:
        return
    same = (
        abs(float(stored) - float(override)) <= 1e-9
        if isinstance(stored, float)
        else (stored == override)
    )
    if not same:
        raise ConfigError(
            f"{name}={override!r} contradicts the checkpoint's {name}={stored!r}; the network "
            "was trained with the checkpoint's value; drop the override or retrain"
        )


def load_network(
    stage: Stage,
    checkpoint: str | Path | None,
    config_type: type[C],
    build: typing.Callable[[C], torch.nn.Module],
    *,
    overrides: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Path, C, torch.nn.Module, str]:
    """Load a stage's network for inference: checkpoint, config, overrides check, weights.

    Args:
        stage: which network the checkpoint must hold.
        checkpoint: checkpoint path; None uses the shipped weights (checksum verified).
        config_type: the stage's frozen config class.
        build: makes the network from its config.
        overrides: values the caller expects; any that contradict the stored config raise
            :class:`ConfigError`.
        device: where the network runs.

    Returns:
        ``(path, config, network in eval mode on device, sha256 of the checkpoint file)``.
    """
    path = Path(checkpoint) if checkpoint is not None else default_weights(stage)
    ckpt = load_checkpoint(path, stage)
    config = config_from_dict(config_type, ckpt["model_config"], f"{stage.value} config")
    for key, value in (overrides or {}).items():
        check_override(f"{stage.value}.{key}", getattr(config, key), value)
    net = build(config)
    load_state(net, ckpt["model"], path)
    net.eval().to(torch.device(device))
    return path, config, net, sha256_file(path)
