"""The axis-aligned RAS+ sampling grid the renderer draws on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class RenderGrid:
    """An axis-aligned grid in world RAS+ mm (canonical: i -> R, j -> A, k -> S).

    Attributes:
        shape: (X, Y, Z) voxels.
        spacing: voxel size (x, y, z) mm, positive.
        origin: world RAS+ mm of the centre of voxel (0, 0, 0).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """4x4 voxel index -> world RAS+ mm."""
        a = np.diag([*self.spacing, 1.0])
        a[:3, 3] = self.origin
        return a

    def axis(self, d: int) -> npt.NDArray[np.float64]:
        """World coordinate (mm) of the voxel centres along axis ``d``, shape (shape[d],)."""
        return self.origin[d] + self.spacing[d] * np.arange(self.shape[d], dtype=np.float64)

    def supersampled(self, fx: int, fy: int, fz: int) -> RenderGrid:
        """A finer grid whose (fx, fy, fz) blocks average exactly onto this grid's voxels."""
        f = np.array([fx, fy, fz], dtype=np.float64)
        sp = np.asarray(self.spacing) / f
        org = np.asarray(self.origin) - sp * (f - 1) / 2.0
        return RenderGrid(
            (self.shape[0] * fx, self.shape[1] * fy, self.shape[2] * fz),
            (float(sp[0]), float(sp[1]), float(sp[2])),
            (float(org[0]), float(org[1]), float(org[2])),
        )

    def world_to_index(self, xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """World RAS+ mm (..., 3) -> continuous voxel indices (..., 3)."""
        return (np.asarray(xyz, dtype=np.float64) - self.origin) / self.spacing
