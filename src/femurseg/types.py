"""Shared nouns: label values and the canonical in-memory CT volume.

The canonical form (made only by :mod:`femurseg.io`):

* ``array`` is float32 HU indexed ``[i, j, k]`` where increasing i, j, k point as closely as the
  scan allows to patient Right, Anterior, Superior (RAS+). Only axis permutations and flips are
  applied on reading; an oblique scan keeps its oblique affine, no resampling is done.
* ``affine`` is the 4x4 matrix taking voxel indices ``(i, j, k, 1)`` to world RAS+ millimetres
  (the NIfTI / nibabel convention; DICOM and ITK LPS coordinates are converted on read).
* ``source`` records how the file on disk was laid out, so that a label map can be written back
  in exactly that geometry (same shape, affine and axis order) through
  :func:`femurseg.io.write_labels`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from femurseg.preprocessing.grid import Grid


def affine_spacing(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Voxel size in mm along each voxel axis of a 4x4 voxel -> world affine, shape (3,)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def affine_voxel_ml(affine: npt.ArrayLike) -> float:
    """Volume of one voxel in millilitres (cm^3) of a 4x4 voxel -> world mm affine."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def affine_to_world(ijk: npt.ArrayLike, affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Voxel indices, shape (N, 3) or (3,), to world mm of the same shape through ``affine``."""
    a = np.asarray(affine, dtype=np.float64)
    return np.asarray(ijk, dtype=np.float64) @ a[:3, :3].T + a[:3, 3]


class Label(IntEnum):
    """Label values used everywhere (patient left/right, as TotalSegmentator names them)."""

    BACKGROUND = 0
    FEMUR_LEFT = 1
    FEMUR_RIGHT = 2


LABELS: dict[int, str] = {
    Label.BACKGROUND: "background",
    Label.FEMUR_LEFT: "femur_left",
    Label.FEMUR_RIGHT: "femur_right",
}
#: the two femurs, left first (the order of every per-side loop and table).
SIDES: tuple[Label, Label] = (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)
#: their names, in the same order.
SIDE_NAMES: tuple[str, str] = ("femur_left", "femur_right")


@dataclass(frozen=True)
class SourceGeometry:
    """How a volume was stored on disk.

    Attributes:
        path: the file or DICOM folder it was read from (None for in-memory volumes).
        fmt: one of ``"nifti"``, ``"nrrd"``, ``"mha"``, ``"mhd"``, ``"dicom"``, ``"memory"``.
        shape: array shape on disk, in the file's own axis order (i, j, k of the file).
        affine: 4x4 voxel-index -> world RAS+ mm matrix of the file's own axis order.
        ornt: nibabel orientation array (3 x 2) taking the file's axes to canonical RAS+ axes.
        extra: format-specific items needed to write back faithfully (e.g. a NIfTI header,
            DICOM series UID). Not compared in equality.
    """

    path: Path | None
    fmt: str
    shape: tuple[int, int, int]
    affine: npt.NDArray[np.float64]
    ornt: npt.NDArray[np.float64]
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Volume:
    """A CT volume in canonical form.

    Attributes:
        array: float32 HU, shape (X, Y, Z), axes pointing R, A, S (see module docstring).
        affine: 4x4 float64, voxel index -> world RAS+ mm.
        source: on-disk layout, for writing results back in the input's geometry.
    """

    array: npt.NDArray[np.float32]
    affine: npt.NDArray[np.float64]
    source: SourceGeometry | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3D, got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (X, Y, Z) in canonical axis order."""
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def grid(self) -> Grid:
        """The volume's grid (shape and affine); the geometry maths live there."""
        from femurseg.preprocessing.grid import Grid

        return Grid(self.shape, self.affine)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical i, j, k axes."""
        return self.grid.spacing

    def index_to_world(self, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map voxel indices, shape (N, 3) or (3,), to world RAS+ mm of the same shape."""
        return self.grid.index_to_world(ijk)

    def world_to_index(self, xyz: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map world RAS+ mm, shape (N, 3) or (3,), to continuous voxel indices."""
        return self.grid.world_to_index(xyz)


class Stage(str, enum.Enum):
    """The networks femurseg trains: the pipeline's two stages and the two baselines.

    The value is the checkpoint's ``stage`` tag and the ``femurseg train`` argument.
    """

    STAGE1 = "stage1"
    STAGE2 = "stage2"
    SEGRESNET = "segresnet"
    TRANSUNET = "transunet"
