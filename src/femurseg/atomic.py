"""Atomic file writes: a temporary file in the target folder, then :func:`os.replace`.

Every output femurseg writes (images, label maps, meshes, DICOM, JSON, checkpoints) goes through
:func:`atomic_write`, so a crash or a full disk never leaves a half-written file behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from femurseg.errors import OutputError

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process umask: from /proc on Linux (no change to the process), else by setting and
    restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(
    path: Path, write: Callable[[Path], None], *, overwrite: bool = True, suffix: str = ".tmp"
) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a hidden temporary file, renamed into place.

    Args:
        path: final file path; its folder is created if needed.
        write: called once with the temporary path; must write the whole file there.
        overwrite: when False an existing ``path`` is an error.
        suffix: ending of the temporary file; writers that pick the format from the file name
            (nibabel, SimpleITK) need the real ending, e.g. ``.nii.gz``.

    Returns:
        ``path``.

    Raises:
        OutputError: ``path`` exists (with ``overwrite=False``) or cannot be written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputError(
            f"{path} already exists; expected a new file; remove it or pass overwrite"
        )
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        # mkstemp makes 0600 files; outputs get the mode any new file would (the umask's)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write {path} ({err}); check that the folder is writable and has free space"
        ) from err
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s", path)
    return path
