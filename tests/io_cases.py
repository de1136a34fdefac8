"""Small geometric test cases shared by the io tests (imported, not collected)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

#: world x of the patient's left half is negative (RAS+: +x points to the patient's right).
SPACING = (0.8, 1.1, 2.5)


def rotation(axis: str, degrees: float) -> npt.NDArray[np.float64]:
    """3x3 rotation about a world axis."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def disk_affine(
    codes_matrix: npt.ArrayLike, shape: tuple[int, int, int], rot: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]:
    """On-disk affine: ``codes_matrix`` (3x3 of 0/+-1) picks each axis's world direction.

    The affine is centred so that the volume straddles world x = 0 (left half at x < 0).
    """
    m = np.asarray(codes_matrix, dtype=np.float64) * np.asarray(SPACING)[None, :]
    if rot is not None:
        m = np.asarray(rot, dtype=np.float64) @ m
    a = np.eye(4)
    a[:3, :3] = m
    centre = m @ ((np.asarray(shape) - 1) / 2.0)
    a[:3, 3] = -centre
    return a


#: name -> 3x3 direction matrix (columns: world direction of disk axes i, j, k), rotation
ORIENTATIONS: dict[str, tuple[list[list[int]], npt.NDArray[np.float64] | None]] = {
    "RAS": ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], None),
    "LPS": ([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], None),
    "LAS": ([[-1, 0, 0], [0, 1, 0], [0, 0, 1]], None),
    "PIR": ([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], None),
    "SLA": ([[0, -1, 0], [0, 0, 1], [1, 0, 0]], None),
    "RPI": ([[1, 0, 0], [0, -1, 0], [0, 0, -1]], None),
    "LPS_oblique20z": ([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], rotation("z", 20.0)),
    "PIR_oblique20x": ([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], rotation("x", 20.0)),
}


def unique_ct(shape: tuple[int, int, int], seed: int = 0) -> npt.NDArray[np.int16]:
    """int16 HU, every voxel a different value from -1000 up (air present, fits int16)."""
    rng = np.random.default_rng(seed)
    vals = rng.permutation(int(np.prod(shape))).astype(np.int16) - 1000
    return vals.reshape(shape)


def left_right_labels(
    affine: npt.NDArray[np.float64], shape: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """1 (femur_left) where voxel centres lie at world x < -1 mm, 2 (right) at x > 1 mm."""
    idx = np.indices(shape).reshape(3, -1).T
    x = (idx @ affine[:3, :3].T + affine[:3, 3])[:, 0]
    lab = np.zeros(len(x), np.uint8)
    lab[x < -1.0] = 1
    lab[x > 1.0] = 2
    return lab.reshape(shape)


def save_independent(
    disk: npt.NDArray[np.generic], affine: npt.NDArray[np.float64], path: Path
) -> None:
    """Write an on-disk array without femurseg: nibabel for NIfTI, SimpleITK (LPS) otherwise."""
    if path.name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(disk, affine), str(path))
        return
    img = sitk.GetImageFromArray(np.ascontiguousarray(disk.transpose(2, 1, 0)))
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps / spacing).ravel()])
    img.SetOrigin([float(v) for v in np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]])
    sitk.WriteImage(img, str(path))


def load_independent(path: Path) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """Read an on-disk array and its RAS affine without femurseg.

    For ITK formats the affine is rebuilt from ITK's own ``TransformIndexToPhysicalPoint`` at
    the origin and unit steps, so it does not share femurseg's geometry code.
    """
    if path.name.endswith((".nii", ".nii.gz")):
        img = nib.load(str(path))
        return np.asanyarray(img.dataobj), np.asarray(img.affine)
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    o = np.array(img.TransformIndexToPhysicalPoint((0, 0, 0)))
    cols = [
        np.array(img.TransformIndexToPhysicalPoint(tuple(int(v) for v in e))) - o for e in np.eye(3)
    ]
    a = np.eye(4)
    a[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.stack(cols, axis=1)
    a[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ o
    return arr, a


def world_of_all(
    affine: npt.NDArray[np.float64], shape: tuple[int, ...]
) -> npt.NDArray[np.float64]:
    """World RAS+ mm of every voxel centre, shape (N, 3), in C order of ``np.indices``."""
    idx = np.indices(shape).reshape(3, -1).T
    return idx @ affine[:3, :3].T + affine[:3, 3]


def sample_at(
    array: npt.NDArray[np.generic], affine: npt.NDArray[np.float64], world: npt.NDArray[np.float64]
) -> npt.NDArray[np.generic]:
    """Nearest voxel values of ``array`` at world points (all must land on voxel centres)."""
    ijk = (world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    r = np.rint(ijk)
    assert np.abs(ijk - r).max() < 1e-3, "world points are not on this grid's voxel centres"
    r = r.astype(int)
    return array[r[:, 0], r[:, 1], r[:, 2]]
