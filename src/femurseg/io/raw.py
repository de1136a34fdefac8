"""The on-disk image as a format reader returns it, before canonicalisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class RawImage:
    """An image in the file's own axis order.

    Attributes:
        array: voxel values (HU after rescaling for CT), shape (I, J, K) as stored on disk.
        affine: 4x4 voxel (i, j, k) -> world RAS+ mm for that axis order.
        fmt: format name, as in :attr:`femurseg.types.SourceGeometry.fmt`.
        extra: format-specific items kept for writing back (NIfTI header, DICOM UIDs).
    """

    array: npt.NDArray[Any]
    affine: npt.NDArray[np.float64]
    fmt: str
    extra: dict[str, Any] = field(default_factory=dict)
