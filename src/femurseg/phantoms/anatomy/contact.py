"""Joint clearance: slide a bone along a direction until it keeps a set gap from another.

Shape-model bones are reconstructed independently, so the tibial plateau may sink into the
femoral condyles (in LLP26 by up to ~40 mm) or stand off them. A CT shows a joint space there
(cartilage), which is what a segmentation model must learn to cut along, so the phantom sets it:
the fixed bone's signed distance field is sampled on a local grid and the moving bone is slid
until its nearest vertex is ``gap`` mm outside.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.phantoms.anatomy.voxelize import voxelize

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]


class DistanceField:
    """Signed distance (mm, positive outside) to a closed mesh, on a local regular grid.

    Args:
        vertices: (V, 3) mesh vertices, mm.
        faces: (F, 3) triangle indices.
        lo: (3,) lower corner of the region of interest, mm (same frame as ``vertices``).
        hi: (3,) upper corner, mm.
        spacing: grid step, mm.
    """

    def __init__(
        self,
        vertices: npt.ArrayLike,
        faces: npt.ArrayLike,
        lo: npt.ArrayLike,
        hi: npt.ArrayLike,
        spacing: float = 1.0,
    ) -> None:
        self.origin = np.asarray(lo, dtype=np.float64)
        self.spacing = float(spacing)
        shape = np.maximum(np.ceil((np.asarray(hi) - self.origin) / spacing).astype(int) + 1, 2)
        aff = np.diag([spacing, spacing, spacing, 1.0])
        aff[:3, 3] = self.origin
        inside = voxelize((vertices, faces), aff, (int(shape[0]), int(shape[1]), int(shape[2])))
        mask = inside.to_full()
        out = ndimage.distance_transform_edt(~mask) if mask.any() else np.full(mask.shape, 1e3)
        ins = ndimage.distance_transform_edt(mask) if mask.any() else 0.0
        # Half a voxel moves the zero level from voxel centres to the surface between them.
        self.grid = (np.where(mask, -(ins - 0.5), out - 0.5) * spacing).astype(np.float32)

    def __call__(self, points: npt.ArrayLike) -> Array:
        """Signed distance at points (N, 3) mm -> (N,) mm; far outside the grid reads 1e3."""
        p = (np.asarray(points, dtype=np.float64) - self.origin) / self.spacing
        return ndimage.map_coordinates(self.grid, p.T, order=1, mode="constant", cval=1e3)


def clearance_shift(
    field: DistanceField,
    points: npt.ArrayLike,
    gap: float,
    direction: npt.ArrayLike,
    max_shift: float = 30.0,
) -> Array:
    """Translation ``s * direction`` after which every point is ``gap`` mm outside the bone.

    Args:
        field: distance field of the fixed bone.
        points: (N, 3) vertices of the moving bone near the joint, mm.
        gap: wanted clearance, mm.
        direction: direction to slide along (any length > 0); s runs from -max_shift/3 (which
            closes a gap wider than ``gap``) to ``max_shift``, and the smallest clearing s wins.
        max_shift: largest slide, mm.

    Returns:
        (3,) translation in mm (zero, with a warning, when no s in range clears the bone).
    """
    p = np.asarray(points, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    lo_s = -max_shift / 3.0

    def clear(sv: float) -> bool:
        return bool(field(p + sv * d).min() >= gap)

    # Clearance grows with the shift: a coarse scan, then bisection to 0.1 mm.
    ok = [sv for sv in np.arange(lo_s, max_shift + 1e-9, 2.0) if clear(sv)]
    if not ok:
        log.warning("no joint clearance within %.0f mm; leaving the bone in place", max_shift)
        return np.zeros(3)
    hi_s = float(ok[0])
    a = max(hi_s - 2.0, lo_s)
    if hi_s > lo_s:
        while hi_s - a > 0.1:
            mid = 0.5 * (a + hi_s)
            a, hi_s = (a, mid) if clear(mid) else (mid, hi_s)
    return hi_s * d
