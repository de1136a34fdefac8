"""Writing label maps back in the input's geometry, and canonical arrays in a chosen layout.

Every write is atomic (:func:`femurseg.atomic.atomic_write`), so a crash never leaves a
half-written output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.atomic import atomic_write
from femurseg.errors import OutputError
from femurseg.io.itk import write_itk
from femurseg.io.nifti import write_nifti
from femurseg.io.orient import reorient, to_disk
from femurseg.io.validate import output_format, suffix_of
from femurseg.types import Label, Volume

log = logging.getLogger(__name__)


def _out_format(path: Path) -> str:
    try:
        return output_format(path)
    except ValueError as err:
        raise OutputError(str(err)) from err


def _refuse_input(path: Path, volume: Volume) -> None:
    src = volume.source
    if src is not None and src.path is not None and src.path.is_file():
        if path.resolve() == src.path.resolve():
            raise OutputError(
                f"output {path} is the input file itself; expected a different output path; "
                "choose another name so that the input is kept"
            )


def save_atomic(
    disk: npt.NDArray[Any], affine: npt.NDArray[np.float64], path: Path, header: Any = None
) -> Path:
    """Write an on-disk-order array atomically; the ending of ``path`` picks the format.

    Args:
        disk: shape (I, J, K) in the file's axis order and dtype.
        affine: 4x4 voxel -> world RAS+ mm for that order.
        path: .nii, .nii.gz, .nrrd or .mha.
        header: NIfTI header to reuse (ignored for other formats).

    Raises:
        OutputError: unsupported ending, or the file cannot be written.
    """
    fmt = _out_format(path)

    def _write(tmp: Path) -> None:
        try:
            if fmt == "nifti":
                write_nifti(disk, affine, tmp, header)
            else:
                write_itk(disk, affine, tmp)
        except (OutputError, ValueError, OSError):
            raise
        except Exception as err:  # writers raise RuntimeError etc. for I/O trouble
            raise OutputError(
                f"cannot write {path} ({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
                "check that the folder exists, is writable and has free space"
            ) from err

    return atomic_write(path, _write, suffix=suffix_of(path))


def write_labels(labels: npt.ArrayLike, like: Volume, path: str | Path) -> Path:
    """Write a canonical label map back in exactly the geometry of ``like``'s input file.

    The output has the input's on-disk shape, axis order and affine; a NIfTI output of a NIfTI
    input also keeps the input header's qform/sform matrices and codes. The format follows the
    ending of ``path`` (a DICOM input is usually written as .nii.gz with the DICOM geometry).

    Args:
        labels: integer or bool array of shape ``like.shape`` (X, Y, Z), canonical RAS+ order,
            values 0 background, 1 femur_left, 2 femur_right.
        like: the Volume the labels were computed on (as returned by ``read_volume``).
        path: output .nii.gz, .nii, .nrrd or .mha.

    Returns:
        The written path.

    Raises:
        ValueError: wrong dtype, shape or label values (a programming error).
        OutputError: ``path`` is the input file, has an unsupported ending, or cannot be written.
    """
    path = Path(path)
    arr = np.asarray(labels)
    if arr.dtype.kind not in "biu":
        raise ValueError(f"labels must be an integer or bool array, got {arr.dtype}; use argmax")
    if arr.shape != like.shape:
        raise ValueError(f"labels have shape {arr.shape}, expected the volume's {like.shape}")
    allowed = {int(v) for v in Label}
    if arr.size and (int(arr.min()) < min(allowed) or int(arr.max()) > max(allowed)):
        raise ValueError(
            f"label values {int(arr.min())}..{int(arr.max())}; expected only {sorted(allowed)}"
        )
    _out_format(path)
    _refuse_input(path, like)
    lab8 = arr.astype(np.uint8, copy=False)
    src = like.source
    if src is None:
        return save_atomic(lab8, like.affine, path)
    disk = to_disk(lab8, src.ornt, src.shape)
    if _out_format(path) != "nifti":
        # ITK stores the first axis fastest (Fortran order): copying into that order is
        # sequential for a label map in the volume's own (usually Fortran) layout; nibabel
        # writes any layout in slabs without a whole copy
        disk = np.asfortranarray(disk)
    header = src.extra.get("nifti_header") if src.fmt == "nifti" else None
    return save_atomic(disk, src.affine, path, header)


def _cast(array: npt.NDArray[Any], dtype: npt.DTypeLike | None) -> npt.NDArray[Any]:
    if dtype is None:
        return array.astype(np.uint8) if array.dtype == bool else array
    dt = np.dtype(dtype)
    if dt.kind in "iu" and array.dtype.kind in "fb":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError("array has NaN or inf; cannot store it as integers")
        out = np.rint(array) if array.dtype.kind == "f" else array
        info = np.iinfo(dt)
        if out.size and (out.min() < info.min or out.max() > info.max):
            raise ValueError(
                f"values {float(out.min()):g}..{float(out.max()):g} do not fit {dt}; "
                "choose a wider dtype"
            )
        return out.astype(dt)
    return array.astype(dt)


def write_image(
    array: npt.ArrayLike,
    affine: npt.ArrayLike,
    path: str | Path,
    *,
    axcodes: str = "RAS",
    dtype: npt.DTypeLike | None = None,
) -> Path:
    """Write a canonical array with its affine, laid out on disk in the axis order ``axcodes``.

    For test data and phantoms: e.g. ``axcodes="PIR"`` stores a permuted, flipped array with the
    matching affine, so ``read_volume`` / ``read_labels`` give back the canonical array exactly.

    Args:
        array: shape (X, Y, Z) in canonical RAS+ axis order (float HU, or integer labels).
        affine: its 4x4 voxel -> world RAS+ mm.
        path: .nii.gz, .nii, .nrrd or .mha.
        axcodes: on-disk axis codes, one of R/L, A/P, S/I per axis (``"RAS"``, ``"LPS"`` ...).
        dtype: stored dtype; floats are rounded for integer dtypes, out-of-range is an error.
            None keeps the array's dtype (bool becomes uint8).

    Returns:
        The written path.
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"array must be 3D (X, Y, Z), got shape {arr.shape}")
    disk, disk_affine = reorient(_cast(arr, dtype), affine, axcodes)
    return save_atomic(np.ascontiguousarray(disk), disk_affine, Path(path))


def write_volume(
    volume: Volume,
    path: str | Path,
    *,
    axcodes: str | None = None,
    dtype: npt.DTypeLike = np.int16,
) -> Path:
    """Write a Volume's HU image, by default as int16.

    Args:
        volume: the canonical volume.
        path: .nii.gz, .nii, .nrrd or .mha; must not be the volume's own input file.
        axcodes: on-disk axis order; None writes the input's own layout (shape, axis order and
            affine of ``volume.source``), or RAS when the volume has no source.
        dtype: stored dtype (HU are rounded for integer dtypes).

    Returns:
        The written path.
    """
    path = Path(path)
    _refuse_input(path, volume)
    src = volume.source
    if axcodes is None and src is not None:
        disk = to_disk(_cast(volume.array, dtype), src.ornt, src.shape)
        header = src.extra.get("nifti_header") if src.fmt == "nifti" else None
        return save_atomic(np.ascontiguousarray(disk), src.affine, path, header)
    return write_image(volume.array, volume.affine, path, axcodes=axcodes or "RAS", dtype=dtype)
