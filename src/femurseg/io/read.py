"""Reading any supported input into the canonical :class:`~femurseg.types.Volume`."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom

from femurseg.errors import InputError
from femurseg.io.dicom import read_dicom_series
from femurseg.io.itk import read_itk
from femurseg.io.nifti import GzSlabs, check_claimed_size, gz_slabs, read_nifti
from femurseg.io.orient import axcodes, canonical_buffer, canonicalize
from femurseg.io.raw import RawImage
from femurseg.io.validate import (
    ReadChecks,
    as_3d,
    check_finite_count,
    check_hu,
    check_hu_peaks,
    check_hu_range,
    input_format,
)
from femurseg.types import Label, SourceGeometry, Volume

log = logging.getLogger(__name__)

#: tolerance (mm) when checking that a label map lies on its image's grid.
GRID_ATOL_MM = 1e-3


def _read_raw(path: Path, series_uid: str | None, checks: ReadChecks) -> RawImage:
    fmt = input_format(path)
    if series_uid is not None and fmt not in ("dicom", "dicom_dir"):
        raise InputError(
            f"--series {series_uid} was given but {path} is a {fmt} file, not a DICOM folder; "
            "drop --series or point to the DICOM folder"
        )
    if fmt == "dicom_dir":
        return read_dicom_series(path, series_uid, checks)
    if fmt == "dicom":
        try:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
        except Exception as err:  # noqa: BLE001 - any unreadable header
            raise InputError(
                f"cannot read {path} as DICOM ({type(err).__name__}: {err}); expected a DICOM "
                "slice of a CT series; pass the series folder instead"
            ) from err
        return read_dicom_series(path.parent, series_uid or uid, checks)
    if fmt == "nifti":
        return read_nifti(path, checks.assume_orientation)
    return read_itk(path, fmt)


def _unusable_affine(where: str, err: ValueError) -> InputError:
    return InputError(
        f"{where} has an unusable affine ({err}); expected voxel axes of non-zero size; "
        "fix the header spacing and orientation"
    )


def _read_streamed(src: GzSlabs, checks: ReadChecks) -> Volume:
    """Fill the canonical float32 array slab by slab from a gzipped NIfTI, checking HU."""
    where = str(src.path)
    try:
        canon, disk_view, canon_affine, ornt = canonical_buffer(src.shape, src.affine)
    except ValueError as err:
        raise _unusable_affine(where, err) from err
    lo, hi, bad = np.inf, -np.inf, 0
    for k0, slab in src.slabs():
        if slab.dtype.kind == "f":
            bad += slab.size - int(np.count_nonzero(np.isfinite(slab)))
        if bad == 0:
            lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
        dst = disk_view[:, :, k0 : k0 + slab.shape[2]]
        if src.slope == 1.0 and src.inter == 0.0:
            dst[...] = slab
        else:
            dst[...] = slab * src.slope + src.inter  # float64 as nibabel scales, then float32
    check_finite_count(bad, where)
    lo, hi = sorted((lo * src.slope + src.inter, hi * src.slope + src.inter))
    check_hu_range(lo, hi, where, checks)
    check_hu_peaks(canon, where)
    source = SourceGeometry(
        path=src.path,
        fmt="nifti",
        shape=src.shape,
        affine=src.affine,
        ornt=ornt,
        extra={"nifti_header": src.header}
        | ({"assumed_orientation": src.assumed_orientation} if src.assumed_orientation else {}),
    )
    log.info("read %s (nifti, %s on disk) as %s RAS+", where, axcodes(src.affine), canon.shape)
    return Volume(np.asarray(canon, dtype=np.float32), canon_affine, source)


def read_volume(
    path: str | Path, series_uid: str | None = None, *, checks: ReadChecks | None = None
) -> Volume:
    """Read a CT into canonical form.

    Args:
        path: a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, a
            folder holding a DICOM series, or one DICOM file (its folder's series is read).
        series_uid: DICOM SeriesInstanceUID to read when the folder holds several series.
        checks: tolerances for the CT intensity and DICOM geometry checks.

    Returns:
        Volume with float32 HU of shape (X, Y, Z) whose axes point closest to R, A, S, its
        voxel -> world RAS+ mm affine, and the on-disk layout in ``volume.source``.

    Raises:
        InputError: the input cannot be read or is not a 3D CT in HU (message says why).
    """
    path = Path(path)
    checks = checks or ReadChecks()
    fmt0 = input_format(path)
    if fmt0 == "nifti":
        check_claimed_size(path)
    streamed = (
        gz_slabs(path, checks.assume_orientation)
        if fmt0 == "nifti" and series_uid is None
        else None
    )
    if streamed is not None:  # a gzipped 3D NIfTI: no on-disk-sized copy on the way
        return _read_streamed(streamed, checks)
    raw = _read_raw(path, series_uid, checks)
    where = str(path)
    disk = as_3d(raw.array, where)
    shape = (int(disk.shape[0]), int(disk.shape[1]), int(disk.shape[2]))
    affine, fmt, extra = raw.affine, raw.fmt, raw.extra
    del raw  # the on-disk array goes once the canonical copy exists
    check_hu(disk, where, checks)  # on the stored values: half the bytes of float32 for int16
    try:
        view, canon_affine, ornt = canonicalize(disk, affine)
    except ValueError as err:
        raise _unusable_affine(where, err) from err
    # one pass: type conversion and axis flips together, keeping the on-disk memory order
    # (a C-order copy of a Fortran-order NIfTI array is a full transpose: 3x slower)
    if view.dtype != np.float32 or any(st < 0 for st in view.strides):
        canon = view.astype(np.float32, order="K")
    else:
        canon = np.asarray(view, dtype=np.float32)  # already float32, positive strides: no copy
    del view, disk
    check_hu_peaks(canon, where)
    source = SourceGeometry(
        path=path.parent if fmt == "dicom" and path.is_file() else path,
        fmt=fmt,
        shape=shape,
        affine=affine,
        ornt=ornt,
        extra=extra,
    )
    log.info("read %s (%s, %s on disk) as %s RAS+", path, fmt, axcodes(affine), canon.shape)
    return Volume(canon, canon_affine, source)


def read_labels(
    path: str | Path, like: Volume | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """Read a label map or binary mask file into canonical axis order.

    Args:
        path: NIfTI, NRRD or MetaImage file of non-negative integer values (float files holding
            whole numbers are accepted).
        like: the image it belongs to; when given, the label map must lie on its grid.

    Returns:
        ``(labels, affine)``: uint8 array of shape (X, Y, Z) in canonical RAS+ axis order and its
        voxel -> world RAS+ mm affine.

    Raises:
        InputError: unreadable file, non-integer or out-of-range values, or (with ``like``) a
            grid that differs from the image's.
    """
    path = Path(path)
    fmt = input_format(path)
    if fmt in ("dicom", "dicom_dir"):
        raise InputError(
            f"{path} is DICOM; expected a label map file (.nii.gz, .nrrd, .mha); convert it first"
        )
    assumed = None
    if like is not None and like.source is not None:
        assumed = like.source.extra.get("assumed_orientation")
    raw = read_nifti(path, assumed) if fmt == "nifti" else read_itk(path, fmt)
    disk = as_3d(raw.array, str(path))
    if disk.dtype.kind == "f" and not (np.all(np.isfinite(disk)) and np.all(disk == np.rint(disk))):
        raise InputError(
            f"label map {path} holds non-integer values; expected whole label numbers 0 to 255; "
            "threshold or round the mask first"
        )
    lo, hi = float(disk.min()), float(disk.max())
    if lo < 0 or hi > 255:
        raise InputError(
            f"label map {path} has values {lo:g}..{hi:g}; expected 0 to 255 "
            f"(femurseg uses {', '.join(f'{int(v)}={v.name.lower()}' for v in Label)})"
        )
    oriented, affine, _ = canonicalize(disk.astype(np.uint8), raw.affine)
    labels = np.ascontiguousarray(oriented, dtype=np.uint8)
    if like is not None:
        if labels.shape != like.shape:
            raise InputError(
                f"label map {path} has canonical shape {labels.shape} but the image has "
                f"{like.shape}; expected labels on the image's voxel grid; resample them first"
            )
        diff = float(np.abs(affine - like.affine).max())
        if diff > GRID_ATOL_MM:
            raise InputError(
                f"label map {path} is placed differently from the image (affines differ by up "
                f"to {diff:.3g} mm); expected labels on the image's voxel grid; resample them first"
            )
        affine = like.affine
    return labels, affine


def describe_volume(volume: Volume) -> dict[str, str]:
    """Human-readable facts about a volume, for ``femurseg inspect``.

    Returns:
        Ordered ``{name: text}``: format, on-disk shape and axis codes, canonical shape, spacing
        (mm), world bounding box of the voxel centres (RAS+ mm), HU range.
    """
    src = volume.source
    out: dict[str, str] = {}
    if src is not None:
        out["format"] = src.fmt
        out["path"] = str(src.path)
        dcm = src.extra.get("dicom")
        if dcm:
            out["series"] = f"{dcm['series_uid']} ({dcm['modality']} '{dcm['description']}')"
        out["on-disk shape"] = f"{' x '.join(map(str, src.shape))} (axes {axcodes(src.affine)})"
    out["canonical shape"] = f"{' x '.join(map(str, volume.shape))} (axes {axcodes(volume.affine)})"
    out["spacing"] = " x ".join(f"{s:.4g}" for s in volume.spacing) + " mm"
    m = volume.affine[:3, :3] / np.asarray(volume.spacing)[None, :]
    angle = float(np.degrees(np.arccos(np.clip(np.abs(m).max(axis=0).min(), -1.0, 1.0))))
    out["obliquity"] = f"{angle:.1f} deg" if angle > 0.01 else "none (axis-aligned)"
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in volume.shape], indexing="ij"))
    world = volume.index_to_world(corners.reshape(3, -1).T)
    lo, hi = world.min(axis=0), world.max(axis=0)
    out["world bounding box"] = (
        ", ".join(f"{a} {lo[n]:.1f}..{hi[n]:.1f}" for n, a in enumerate("xyz"))
        + " mm (RAS+, voxel centres)"
    )
    out["HU range"] = f"{float(volume.array.min()):.0f} .. {float(volume.array.max()):.0f}"
    return out


class ReadAhead:
    """Reads one input on a background thread while the caller does other start-up work.

    ``femurseg predict`` starts reading its first scan this way before it imports torch and
    loads the networks (seconds of work that hold the interpreter), so the two overlap: the
    gzip inflation and the array conversion run outside Python's lock.

    Args:
        path: the input, as for :func:`read_volume`.
        checks: reading tolerances and options, as for :func:`read_volume`.
        series_uid: the DICOM series to read, as for :func:`read_volume`.
    """

    def __init__(
        self, path: str | Path, checks: ReadChecks | None = None, series_uid: str | None = None
    ) -> None:
        self.path = Path(path)
        self.checks = checks
        self.series_uid = series_uid
        self._done = threading.Event()
        self._volume: Volume | None = None
        self._seconds = 0.0
        self._error: BaseException | None = None
        # a daemon thread: an error elsewhere at start-up need not wait for the read to end
        threading.Thread(target=self._run, name="femurseg-read-ahead", daemon=True).start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._volume = read_volume(self.path, self.series_uid, checks=self.checks)
        except BaseException as err:  # noqa: BLE001 - handed to the caller in result()
            self._error = err
        finally:
            self._seconds = time.perf_counter() - t0
            self._done.set()

    def result(self) -> tuple[Volume, float]:
        """Wait for the read; return the volume and the seconds the read took.

        Raises:
            InputError: whatever :func:`read_volume` raised, as it raised it.
        """
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._volume is not None
        volume, self._volume = self._volume, None  # handed over once; the reader keeps no copy
        return volume, self._seconds
