"""Input checks shared by every reader; each failure is a one-line :class:`InputError`.

Each message says what was found, what was expected and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.config import check_range
from femurseg.errors import InputError

#: file-name endings we read, mapped to the format name recorded in ``SourceGeometry.fmt``.
READ_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "mha",
    ".mhd": "mhd",
    ".dcm": "dicom",
}
#: single-file formats we write (atomic writes need one file, so no .nhdr/.mhd pairs).
WRITE_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".mha": "mha",
}

_SUPPORTED = ".nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd or a DICOM folder"


@dataclass(frozen=True)
class ReadChecks:
    """Tolerances for accepting a CT on reading.

    Attributes:
        max_darkest_hu: the darkest voxel must be below this (HU): a CT always has some air or
            fat, so data whose minimum is above it (normalised 0..1, MR) is not HU.
        min_hu: lowest plausible stored HU (padding values such as -3024 are above it).
        max_hu: highest plausible HU (metal reaches tens of thousands on extended scales).
        slice_step_rtol: DICOM slice steps may differ from the median by this fraction.
        position_atol_mm: absolute slack (mm) for DICOM slice positions and in-plane offsets.
        assume_orientation: axis codes (e.g. ``"LPS"``) the user states for a NIfTI whose
            header sets neither a qform nor an sform; without it such a file is refused, since
            its left and right cannot be known.
    """

    max_darkest_hu: float = -200.0
    min_hu: float = -32768.0
    max_hu: float = 100_000.0
    slice_step_rtol: float = 0.05
    position_atol_mm: float = 0.01
    assume_orientation: str | None = None

    def __post_init__(self) -> None:
        if self.assume_orientation is not None:
            object.__setattr__(self, "assume_orientation", check_axcodes(self.assume_orientation))
        check_range("max_darkest_hu", self.max_darkest_hu, -1000.0, 0.0)
        check_range("min_hu", self.min_hu, -1e6, -1000.0)
        check_range("max_hu", self.max_hu, 1000.0, 1e7)
        check_range("slice_step_rtol", self.slice_step_rtol, 0.0, 0.5)
        check_range("position_atol_mm", self.position_atol_mm, 0.0, 10.0)


def check_axcodes(text: str) -> str:
    """``text`` as three upper-case axis codes, one of R/L, A/P and S/I each (e.g. ``LPS``).

    Raises:
        InputError: anything else.
    """
    codes = str(text).strip().upper()
    pairs = [{"R", "L"}, {"A", "P"}, {"S", "I"}]
    ok = len(codes) == 3 and all(sum(c in pair for c in codes) == 1 for pair in pairs)
    if not ok:
        raise InputError(
            f"orientation {text!r} is not three axis codes; expected one of R/L, A/P and S/I "
            "each, in the file's axis order, e.g. LPS or RAS"
        )
    return codes


def suffix_of(path: Path) -> str:
    """Lower-case file ending, with ``.nii.gz`` treated as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _looks_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def input_format(path: Path) -> str:
    """Check that ``path`` can be read and return its format name.

    Returns:
        ``"dicom_dir"`` for a folder, ``"dicom"`` for a single DICOM file (its folder is read),
        else one of the :data:`READ_SUFFIXES` values.

    Raises:
        InputError: missing path, empty file, unknown file type.
    """
    if not path.exists():
        raise InputError(
            f"input not found: {path}; expected a {_SUPPORTED}; check the path and spelling"
        )
    if path.is_dir():
        return "dicom_dir"
    if not path.is_file():
        raise InputError(f"input {path} is neither a file nor a folder; expected a {_SUPPORTED}")
    if path.stat().st_size == 0:
        raise InputError(
            f"input file {path} is empty (0 bytes); expected a CT image; copy or export it again"
        )
    fmt = READ_SUFFIXES.get(suffix_of(path))
    if fmt is None:
        if _looks_like_dicom(path):
            return "dicom"
        raise InputError(
            f"unsupported file type '{suffix_of(path) or path.name}' for {path}; expected "
            f"{_SUPPORTED}; convert the image to one of these first"
        )
    return fmt


def output_format(path: Path) -> str:
    """Format name for an output path from its ending; OutputError-free check for writers.

    Raises:
        ValueError: unknown or multi-file ending (the caller maps it to an OutputError).
    """
    fmt = WRITE_SUFFIXES.get(suffix_of(path))
    if fmt is None:
        raise ValueError(
            f"cannot write '{suffix_of(path) or path.name}' ({path}); expected an output name "
            "ending in .nii.gz, .nii, .nrrd or .mha"
        )
    return fmt


def as_3d(array: npt.NDArray[np.generic], where: str) -> npt.NDArray[np.generic]:
    """Return ``array`` as 3D, squeezing trailing singleton dimensions past the third.

    Raises:
        InputError: 2D images (or a spatial axis of length 1) and 4D images with several volumes.
    """
    shape = tuple(int(s) for s in array.shape)
    if len(shape) > 3:
        extra = shape[3:]
        if any(s != 1 for s in extra):
            raise InputError(
                f"{where} is a {len(shape)}D image of shape {shape} ({int(np.prod(extra))} "
                "volumes); expected one 3D CT volume; extract the volume you want first"
            )
        array = array.reshape(shape[:3])
        shape = shape[:3]
    if len(shape) < 3 and (not shape or min(shape) == 0):
        raise InputError(
            f"{where} holds no image (array shape {shape}; a header whose dimension count is 0 "
            "or whose sizes are 0); expected a 3D CT volume; the header is damaged, export it "
            "again"
        )
    if len(shape) < 3 or min(shape) < 2:
        raise InputError(
            f"{where} is a 2D image of shape {shape}; expected a 3D CT volume with at least two "
            "slices along each axis; give the whole series or volume, not a single slice"
        )
    return array


def check_hu(array: npt.NDArray[Any], where: str, checks: ReadChecks) -> None:
    """Check that an array holds finite CT values in Hounsfield units.

    Raises:
        InputError: NaN/inf voxels, or an intensity range that is not CT HU.
    """
    # integer voxels are always finite; only float images need the (full-volume) check
    finite = np.isfinite(array) if array.dtype.kind == "f" else np.ones(1, dtype=bool)
    if not finite.all():
        check_finite_count(int(array.size - np.count_nonzero(finite)), where)
    check_hu_range(float(array.min()), float(array.max()), where, checks)


def check_finite_count(bad: int, where: str) -> None:
    """Raise if ``bad`` (the number of NaN or infinite voxels found) is not zero.

    Raises:
        InputError: some voxels are NaN or infinite.
    """
    if bad:
        raise InputError(
            f"{where} has {bad} NaN or infinite voxels; expected finite HU values; "
            "fix or re-export the image"
        )


def check_hu_range(lo: float, hi: float, where: str, checks: ReadChecks) -> None:
    """Check that an intensity range ``lo .. hi`` is that of a CT in Hounsfield units.

    Raises:
        InputError: nothing dark enough for air or fat, or values beyond the plausible range.
    """
    if lo > checks.max_darkest_hu:
        raise InputError(
            f"{where} has intensities {lo:g}..{hi:g} with nothing below {checks.max_darkest_hu:g} "
            "(no air or fat), so it is not CT in Hounsfield units; expected CT HU with air near "
            "-1000; give the original, un-normalised CT (not MR)"
        )
    if lo < checks.min_hu or hi > checks.max_hu:
        raise InputError(
            f"{where} has intensities {lo:g}..{hi:g}, outside the plausible CT range "
            f"{checks.min_hu:g}..{checks.max_hu:g} HU; check the rescale slope/intercept"
        )


#: fraction of (non-padding) voxels that makes a histogram band count as a peak.
PEAK_FRACTION = 0.05


def check_hu_peaks(array: npt.NDArray[Any], where: str) -> None:
    """Check where air and soft tissue lie, beyond the range check of :func:`check_hu_range`.

    Two common export faults pass a range check: the rescale intercept applied twice (air near
    -2048, fat and muscle near -1000) and HU stored times ten (air near -10000). Both are told
    from a subsample's histogram: the value filling the outside of a reconstruction circle
    (one exact value holding over 0.5 % of the voxels, when it is the minimum) is left out;
    then a band holding over :data:`PEAK_FRACTION` of the rest is a peak.

    Raises:
        InputError: the histogram shows one of those faults.
    """
    step = [max(1, n // 128) for n in array.shape[:2]] + [max(1, array.shape[2] // 256)]
    sub = np.asarray(array[:: step[0], :: step[1], :: step[2]], dtype=np.float32).ravel()
    if sub.size == 0:
        return
    lo = float(sub.min())
    if np.count_nonzero(sub == lo) > 0.005 * sub.size:
        sub = sub[sub != lo]
    if sub.size < 1000:
        return

    def frac(a: float, b: float) -> float:
        return float(np.count_nonzero((sub >= a) & (sub <= b))) / sub.size

    tissue = frac(-150.0, 150.0)
    if frac(-10600.0, -9400.0) > PEAK_FRACTION:
        raise InputError(
            f"{where} has {100 * frac(-10600.0, -9400.0):.0f}% of its voxels near -10000, where "
            "air would be if HU were stored times ten; expected air near -1000 HU; check the "
            "rescale slope (0.1) of the export"
        )
    if frac(-2250.0, -1850.0) > PEAK_FRACTION and tissue < 0.01 and frac(-1175.0, -875.0) > 0.1:
        raise InputError(
            f"{where} has air near -2048 and fat and muscle near -1000 (only "
            f"{100 * tissue:.1f}% of voxels between -150 and 150 HU): the rescale intercept "
            "seems applied twice; expected air near -1000 HU; export the original values"
        )
