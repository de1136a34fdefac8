"""Where along a posed leg a height lies, which bone vertices lie at it, and the in-slice
ellipse the painters draw with (world RAS+ mm).

Shared by the body model (:mod:`~femurseg.phantoms.tissues.body`), which sizes each leg's
cross-sections from them, the vessels (:mod:`~femurseg.phantoms.tissues.vessels`), which
run their course around the same bones, and the abdomen and chest painters.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

A = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

#: half-height of the slab of bone vertices used to size each cross-section, mm.
BIN_HALF_MM = 4.0


def binned(zs: A, v: A) -> list[A]:
    """Vertices of ``v`` (N, 3) within +-BIN_HALF_MM of each z sample."""
    order = np.argsort(v[:, 2])
    vz = v[order, 2]
    lo = np.searchsorted(vz, zs - BIN_HALF_MM)
    hi = np.searchsorted(vz, zs + BIN_HALF_MM)
    return [v[order[a:b]] for a, b in zip(lo, hi, strict=True)]


def leg_position(zs: A, hip: A, knee: A, ankle: A) -> A:
    """Position along a leg at heights ``zs`` (mm): 0 at the hip centre, 1 at the knee, 2 at
    the ankle, linear in z between them and beyond."""
    return np.where(
        zs >= knee[2],
        (hip[2] - zs) / max(hip[2] - knee[2], 1.0),
        1.0 + (knee[2] - zs) / max(knee[2] - ankle[2], 1.0),
    )


def ellipse(x: F32, y: F32, cx: float, cy: float, a: float, b: float) -> F32:
    """Squared normalised distance of x (n, 1), y (1, m) (mm) from an ellipse's centre:
    under 1 inside the ellipse of semi-axes a, b centred at (cx, cy)."""
    return ((x - np.float32(cx)) / np.float32(a)) ** 2 + ((y - np.float32(cy)) / np.float32(b)) ** 2
