"""NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) reading and writing with SimpleITK.

ITK geometry is LPS+: spacing, origin and a direction matrix whose columns are the LPS unit
vectors of the voxel axes i, j, k. It is converted to a RAS+ affine here. SimpleITK's
``GetArrayFromImage`` returns axes in reverse order ``[k, j, i]``; arrays leave this module in
``[i, j, k]`` order so that they match the affine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from femurseg.errors import InputError
from femurseg.io.orient import affine_from_itk, itk_from_affine
from femurseg.io.raw import RawImage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture what ITK's C++ code prints to file descriptor 2 (MetaIO and NrrdIO print there).

    The text is handed back for the error message or the debug log instead of reaching the
    user's terminal as a stray multi-line message.
    """
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def _itk_reason(err: BaseException) -> str:
    """The useful part of a SimpleITK exception: first and last error lines, no source paths."""
    lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()] or [str(err)]
    lines = [re.sub(r"^(?:ITK |\S*)ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", ln) for ln in lines]
    lines = [re.sub(r"^\[\w+\]\s*", "", ln) for ln in lines]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return " ".join(text.split())[:250]


def read_itk(path: Path, fmt: str) -> RawImage:
    """Read an NRRD or MetaImage file in its on-disk axis order ``[i, j, k]``.

    Args:
        path: the file (a detached .nhdr/.mhd header finds its data file itself).
        fmt: ``"nrrd"``, ``"mha"`` or ``"mhd"``, recorded in the result.

    Raises:
        InputError: unreadable file, vector (multi-component) pixels, or fewer than 2 or more
            than 4 dimensions.
    """
    with _captured_stderr() as printed:
        try:
            img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayViewFromImage(img).copy()
            err = None
        except RuntimeError as e:  # SimpleITK raises RuntimeError with a multi-line ITK message
            err = e
    if printed[0].strip():
        log.debug("ITK printed while reading %s: %s", path, printed[0].strip())
    if err is not None:
        raise InputError(
            f"cannot read {path} as {fmt.upper()} ({_itk_reason(err)}); expected a complete, "
            "uncorrupted image file; check the file (and its data file if detached)"
        ) from err
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path} has {img.GetNumberOfComponentsPerPixel()} values per voxel; expected a "
            "scalar CT image; convert it to one grey value per voxel"
        )
    dim = img.GetDimension()
    if dim == 2:
        arr = arr.T  # [j, i] -> [i, j]; the 2D check downstream reports it
        return RawImage(arr, np.eye(4), fmt, {})
    if dim not in (3, 4):
        raise InputError(f"{path} is a {dim}D image; expected a 3D CT volume")
    arr = np.transpose(arr, tuple(range(dim - 1, -1, -1)))  # [t, k, j, i] -> [i, j, k, t]
    spacing = img.GetSpacing()[:3]
    origin = img.GetOrigin()[:3]
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    return RawImage(arr, affine_from_itk(spacing, origin, direction), fmt, {})


def write_itk(array: npt.NDArray[Any], affine: npt.NDArray[np.float64], path: Path) -> None:
    """Write an ``[i, j, k]`` array with a RAS+ affine as NRRD or MHA (compressed).

    Args:
        array: shape (I, J, K) in the file's axis order, already in the dtype to store.
        affine: 4x4 voxel -> RAS+ mm; stored as LPS spacing/origin/direction.
        path: output file; the ending (.nrrd, .mha) chooses the format.
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    spacing, origin, direction = itk_from_affine(affine)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path), useCompression=True)
