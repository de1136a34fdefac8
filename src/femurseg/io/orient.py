"""Axis order and coordinate-frame conversions: the one place orientation is interpreted.

Conventions:

* An *affine* is a 4x4 float64 matrix taking voxel indices ``(i, j, k, 1)`` of an array to world
  millimetres. Affines returned from here are in RAS+ (x to patient Right, y Anterior,
  z Superior), as in NIfTI/nibabel.
* DICOM and ITK (NRRD, MHA) store LPS+ geometry; :func:`lps_to_ras` converts (it is its own
  inverse).
* An *ornt* is a nibabel orientation array, shape (3, 2): row ``n`` says which canonical axis the
  on-disk axis ``n`` becomes and whether it is flipped (-1). Only permutations and flips are used,
  never resampling, so an oblique scan keeps its oblique affine.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio

_FLIP_XY = np.diag([-1.0, -1.0, 1.0, 1.0])
_RAS_ORNT = nio.axcodes2ornt(("R", "A", "S"))
_AXIS_PAIRS = ({"R", "L"}, {"A", "P"}, {"S", "I"})


def lps_to_ras(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert a 4x4 voxel -> world affine between LPS+ and RAS+ (negate world x and y)."""
    return _FLIP_XY @ np.asarray(affine, dtype=np.float64)


ras_to_lps = lps_to_ras


def points_lps_to_ras(points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert world points, shape (N, 3) or (3,), between LPS+ and RAS+ (negate x and y)."""
    return np.asarray(points, dtype=np.float64) * _FLIP_XY[:3, :3].diagonal()


points_ras_to_lps = points_lps_to_ras


def axcodes(affine: npt.ArrayLike) -> str:
    """Three-letter orientation code of an affine's voxel axes, e.g. ``"LPS"`` or ``"PIR"``."""
    return "".join(str(c) for c in nio.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def check_axcodes(codes: str) -> str:
    """Return ``codes`` upper-cased if it names one direction per patient axis, else raise.

    Raises:
        ValueError: for anything but a permutation of one letter from each of R/L, A/P, S/I.
    """
    up = codes.upper() if isinstance(codes, str) else ""
    axes = sorted(n for c in up for n, pair in enumerate(_AXIS_PAIRS) if c in pair)
    if len(up) != 3 or axes != [0, 1, 2]:
        raise ValueError(
            f"axis codes {codes!r} are invalid; expected one letter from each of R/L, A/P, S/I, "
            "e.g. 'RAS', 'LPS' or 'PIR'"
        )
    return up


def check_affine(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return ``affine`` as float64 4x4 if finite and invertible, else raise ValueError."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("affine is singular (a voxel axis has zero length or axes are parallel)")
    return a


def canonicalize(
    array: npt.NDArray[np.generic], affine: npt.ArrayLike
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Permute/flip an on-disk array to the closest RAS+ axis order.

    Args:
        array: image as stored, shape (I, J, K) in the file's own axis order.
        affine: 4x4 on-disk voxel -> world RAS+ mm.

    Returns:
        ``(canonical_array, canonical_affine, ornt)``; the array is a (possibly non-contiguous)
        view whose axes point as closely as possible to R, A, S; ``ornt`` takes disk axes to
        canonical axes and is what :func:`to_disk` needs to go back.
    """
    aff = check_affine(affine)
    ornt = nio.io_orientation(aff)
    canon = nio.apply_orientation(array, ornt)
    canon_aff = aff @ nio.inv_ornt_aff(ornt, array.shape)
    return canon, canon_aff, ornt


def canonical_buffer(
    disk_shape: tuple[int, int, int], affine: npt.ArrayLike, dtype: npt.DTypeLike = np.float32
) -> tuple[
    npt.NDArray[np.generic],
    npt.NDArray[np.generic],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]:
    """An empty canonical array and a writable on-disk-order view of it, for filling in slabs.

    What is written into the view at on-disk indices lands where :func:`canonicalize` would put
    it, so a reader can convert and reorient a file slab by slab without an on-disk copy. The
    memory is laid out in the file's (Fortran) order, with every stride positive.

    Returns:
        ``(canonical, disk_view, canonical_affine, ornt)`` as in :func:`canonicalize`.
    """
    aff = check_affine(affine)
    ornt = nio.io_orientation(aff)
    base = np.empty(disk_shape, dtype=dtype, order="F")
    flips = tuple(slice(None, None, -1) if f < 0 else slice(None) for f in ornt[:, 1])
    # canonical axis c is the disk axis n with ornt[n, 0] == c; flipped axes run backwards on disk
    canonical = base.transpose(tuple(int(n) for n in np.argsort(ornt[:, 0])))
    return canonical, base[flips], aff @ nio.inv_ornt_aff(ornt, disk_shape), ornt


def to_disk(
    canonical: npt.NDArray[np.generic], ornt: npt.ArrayLike, disk_shape: tuple[int, ...]
) -> npt.NDArray[np.generic]:
    """Undo :func:`canonicalize`: bring a canonical-order array back to the on-disk axis order.

    Args:
        canonical: array of shape (X, Y, Z) in canonical RAS+ axis order.
        ornt: the orientation returned by :func:`canonicalize` for the source file.
        disk_shape: expected on-disk shape, checked.

    Raises:
        ValueError: if the result does not have ``disk_shape``.
    """
    back = nio.ornt_transform(_RAS_ORNT, np.asarray(ornt, dtype=np.float64))
    disk = nio.apply_orientation(canonical, back)
    if tuple(disk.shape) != tuple(disk_shape):
        raise ValueError(
            f"array of canonical shape {canonical.shape} maps to {disk.shape} on disk, "
            f"expected {tuple(disk_shape)}"
        )
    return disk


def reorient(
    canonical: npt.NDArray[np.generic], affine: npt.ArrayLike, codes: str
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """Lay a canonical array out in another axis order, e.g. to write it as ``"LPS"`` on disk.

    Args:
        canonical: array of shape (X, Y, Z) in canonical RAS+ axis order.
        affine: its 4x4 voxel -> world RAS+ mm affine.
        codes: target axis codes (one of R/L, A/P, S/I per axis, any order).

    Returns:
        ``(array, affine)`` in the target layout; the affine still maps to world RAS+ mm and
        describes the same world positions, so re-reading yields the canonical input exactly.
    """
    codes = check_axcodes(codes)
    aff = check_affine(affine)
    t = nio.ornt_transform(_RAS_ORNT, nio.axcodes2ornt(tuple(codes)))
    out = nio.apply_orientation(canonical, t)
    return out, aff @ nio.inv_ornt_aff(t, canonical.shape)


def affine_from_itk(
    spacing: npt.ArrayLike, origin: npt.ArrayLike, direction: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Build a RAS+ affine from ITK LPS geometry.

    Args:
        spacing: (3,) voxel size in mm along i, j, k.
        origin: (3,) LPS mm position of voxel (0, 0, 0).
        direction: 9 values row-major (as ``sitk.Image.GetDirection``); column ``n`` is the LPS
            unit direction of voxel axis ``n``.
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = d * np.asarray(spacing, dtype=np.float64)[None, :]
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return lps_to_ras(lps)


def itk_from_affine(
    affine: npt.ArrayLike,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Split a RAS+ affine into ITK ``(spacing, origin, direction)``, in LPS, for SimpleITK."""
    lps = ras_to_lps(check_affine(affine))
    m = lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / spacing[None, :]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in lps[:3, 3]),
        tuple(float(v) for v in direction.ravel()),
    )
