"""Small geometric helpers on masks in world coordinates (pure functions).

All points are world RAS+ millimetres, shape (N, 3), unless stated otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage import measure

from femurseg.types import affine_to_world

FloatArray = npt.NDArray[np.float64]


def voxel_points(mask: npt.NDArray[np.bool_], affine: npt.ArrayLike, every: int = 1) -> FloatArray:
    """World positions of the centres of the voxels in ``mask`` (X, Y, Z), shape (N, 3).

    ``every`` keeps every n-th voxel in index order (the same points as
    ``voxel_points(mask, affine)[::every]``), picked before the conversion: a femur on a fine
    scan has millions of voxels, and converting them all only to drop most cost about 0.7 s.
    """
    if every <= 1:
        return affine_to_world(np.argwhere(mask), affine)
    flat = np.flatnonzero(mask)[::every]
    return affine_to_world(np.column_stack(np.unravel_index(flat, mask.shape)), affine)


def surface_points(mask: npt.NDArray[np.bool_], affine: npt.ArrayLike) -> FloatArray:
    """World positions of the marching-cubes surface of ``mask`` (on the voxel faces), (N, 3).

    The mask is padded so the surface closes at the array edge. Returns an empty (0, 3) array
    for an empty mask.
    """
    if not mask.any():
        return np.zeros((0, 3))
    nz = np.nonzero(mask)
    lo = np.array([int(a.min()) for a in nz])
    hi = np.array([int(a.max()) + 1 for a in nz])
    crop = np.pad(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], 1).astype(np.float32)
    verts, _, _, _ = measure.marching_cubes(crop, level=0.5)
    return affine_to_world(verts.astype(np.float64) + (lo - 1), affine)


def principal_axis(points: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Centroid (3,) and unit first principal direction (3,) of points (N >= 2, 3).

    The direction is oriented towards world +z (superior) so results are reproducible.
    """
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    d = vt[0]
    if d[2] < 0:
        d = -d
    return centre, d / np.linalg.norm(d)


def fit_sphere(points: FloatArray) -> tuple[FloatArray, float, float]:
    """Least-squares sphere through points (N >= 4, 3) (algebraic fit).

    Solves ``|p|^2 = 2 p.c + k`` for centre ``c`` and ``k = r^2 - |c|^2`` in the least-squares
    sense.

    Returns:
        ``(centre (3,), radius, rms)``: rms is the root mean square of the point distances to the
        sphere, in the points' unit.

    Raises:
        ValueError: fewer than 4 points or all points coplanar.
    """
    if len(points) < 4:
        raise ValueError(f"a sphere fit needs at least 4 points, got {len(points)}")
    a = np.column_stack([2.0 * points, np.ones(len(points))])
    b = (points**2).sum(axis=1)
    sol, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    if rank < 4:
        raise ValueError("points are coplanar; no unique sphere")
    centre = sol[:3]
    radius = float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))
    rms = float(np.sqrt(np.mean((np.linalg.norm(points - centre, axis=1) - radius) ** 2)))
    return centre, radius, rms


def distance_to_line(points: FloatArray, origin: FloatArray, direction: FloatArray) -> FloatArray:
    """Distance (N,) of points (N, 3) from the line ``origin + t * direction`` (unit direction)."""
    rel = points - origin
    return np.linalg.norm(rel - np.outer(rel @ direction, direction), axis=1)


def angle_deg(u: FloatArray, v: FloatArray) -> float:
    """Angle between two vectors in degrees, 0 to 180."""
    c = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
