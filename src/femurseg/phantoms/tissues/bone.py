"""Bone interiors: cortical shell, cancellous bone with trabecular texture, fatty medullary canal.

Each bone is worked on inside its own bounding box on the render grid. The depth of a voxel
below the bone surface (Euclidean distance transform of the voxelised mesh, mm) and its
position along the bone's long axis (0 at the proximal end, 1 at the distal end) decide what
it is: cortex where the depth is below the local cortical thickness (thick along the shaft,
thin at the ends), then the medullary canal (fatty marrow) in the shaft and cancellous bone
in the ends, whose density rises towards the joint surfaces (subchondral bone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.tissues.materials import CaseTissues, Tissue, bandpass_noise, smooth_field

F32 = npt.NDArray[np.float32]

#: trabecular texture: the coarse drift sigma (mm) of the band-pass noise is this many times
#: the case's grain (``CaseTissues.trabecular_grain_mm``).
TRABECULAR_COARSE_RATIO = 4.0
#: smoothness (mm) of the slow within-bone variation of cancellous density.
CANCELLOUS_VARIATION_MM = 12.0
#: HU that fully fatty cancellous bone tends to (yellow marrow between sparse trabeculae).
FATTY_CANCELLOUS_HU = -60.0
#: depth (mm) over which cancellous bone below the cortex is denser (subchondral bone).
SUBCHONDRAL_MM = 3.0
#: how much denser than plain cancellous bone it is, as a fraction of cortical - cancellous.
SUBCHONDRAL_GAIN = 0.15
#: width (fraction of the bone length) of the shaft-to-end transitions.
SHAFT_TRANSITION = 0.08


@dataclass(frozen=True)
class LongAxis:
    """A long bone's axis: world RAS+ mm of its proximal and distal ends, and the diaphysis
    (shaft) as a fraction range ``(start, stop)`` of the length from the proximal end."""

    proximal: npt.NDArray[np.float64]
    distal: npt.NDArray[np.float64]
    shaft: tuple[float, float]


def _plateau(t: F32, lo: float, hi: float, w: float) -> F32:
    """Smooth 0 -> 1 -> 0 window, 1 on [lo, hi], ramps of width w outside it."""
    up = np.clip((t - (lo - w)) / w, 0.0, 1.0)
    dn = np.clip(((hi + w) - t) / w, 0.0, 1.0)
    s = np.minimum(up, dn)
    return s * s * (3.0 - 2.0 * s)


def bone_depth(crop: MaskCrop, spacing: tuple[float, float, float]) -> F32:
    """Depth below the bone surface (mm) of each voxel in the crop; 0 outside the bone.

    Args:
        crop: the voxelised bone (bool mask over its bounding box).
        spacing: voxel size (x, y, z) mm.

    Returns:
        float32 array of the crop's shape. A voxel whose centre is half a voxel inside the
        surface reads about half a voxel.
    """
    padded = np.pad(crop.mask, 1)
    d = ndi.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    half = 0.5 * min(spacing)
    return np.where(crop.mask, np.maximum(d - half, half * 0.5), 0.0).astype(np.float32)


def render_bone(
    crop: MaskCrop,
    grid: RenderGrid,
    t: CaseTissues,
    rng: np.random.Generator,
    hu: F32,
    cls: npt.NDArray[np.uint8],
    axis: LongAxis | None,
) -> None:
    """Paint one bone into the HU and tissue maps (in place, only inside the bone).

    Args:
        crop: the bone voxelised on ``grid``.
        grid: the render grid.
        t: the case's tissue draw (HU, cortical thicknesses).
        rng: random generator for the trabecular texture.
        hu: float32 (X, Y, Z) HU map of the grid, modified inside the bone.
        cls: uint8 (X, Y, Z) :class:`Tissue` map, modified inside the bone.
        axis: long-bone axis (femur, tibia) or None for flat and short bones (pelvis, patella),
            which get a thin uniform cortex over cancellous bone.
    """
    if crop.count == 0:
        return
    m = crop.mask
    sp = grid.spacing
    depth = bone_depth(crop, sp)
    if axis is None:
        cortex: F32 | np.float32 = np.float32(t.cortex_pelvis_mm)
        canal: F32 | np.float32 = np.float32(0.0)
    else:
        pos = _axis_position(crop, grid, axis)
        s0, s1 = axis.shaft
        shaft = _plateau(pos, s0, s1, SHAFT_TRANSITION)
        cortex = (
            np.float32(t.cortex_end_mm) + np.float32(t.cortex_shaft_mm - t.cortex_end_mm) * shaft
        )
        canal = _plateau(pos, s0 + SHAFT_TRANSITION, s1 - SHAFT_TRANSITION, SHAFT_TRANSITION)
    grain = float(t.trabecular_grain_mm)
    tex = bandpass_noise(
        rng,
        m.shape,
        tuple(grain / s for s in sp),  # type: ignore[arg-type]
        tuple(TRABECULAR_COARSE_RATIO * grain / s for s in sp),  # type: ignore[arg-type]
    )
    below = np.maximum(depth - cortex, 0.0)
    sub = np.exp(-below / np.float32(SUBCHONDRAL_MM))
    base = np.float32(t.cancellous)
    if t.cancellous_variation > 0.0:
        # Slow density variation within the bone: some regions fatty, some denser. Drawn
        # after the texture so that a zero variation leaves the other draws unchanged.
        slow = smooth_field(rng, m.shape, tuple(CANCELLOUS_VARIATION_MM / s for s in sp))
        fatty = np.clip(np.float32(t.cancellous_variation) * slow, -1.0, 1.0)
        toward_fat = np.float32(FATTY_CANCELLOUS_HU) - base
        base = (
            base
            + toward_fat * np.maximum(-fatty, 0.0)
            + np.maximum(fatty, 0.0) * np.float32(0.5 * abs(t.cancellous) + 50.0)
        )
    # Trabecular contrast is relative to the bone's excess over fat, so that fatty cancellous
    # bone still shows its (sparser) trabeculae.
    excess = np.maximum(base - np.float32(FATTY_CANCELLOUS_HU), np.float32(30.0))
    canc = base + np.float32(t.trabecular_contrast) * excess * tex
    canc += np.float32(SUBCHONDRAL_GAIN * (t.cortical - t.cancellous)) * sub * (1.0 - canal)
    inner = canal * np.float32(t.marrow) + (1.0 - canal) * canc
    # The outermost voxel layer is always cortex (at coarse steps it straddles the surface).
    is_cortex = depth < np.maximum(cortex, np.float32(0.51 * min(sp)))
    # Cortical bone is dense but not uniform (Haversian porosity): a few percent of texture.
    value = np.where(is_cortex, np.float32(t.cortical) * (1.0 + 0.04 * tex), inner)
    kind = np.where(
        is_cortex, Tissue.CORTICAL, np.where(canal > 0.5, Tissue.MARROW, Tissue.CANCELLOUS)
    ).astype(np.uint8)
    hu_box = hu[crop.slices]
    cls_box = cls[crop.slices]
    hu_box[m] = value[m]
    cls_box[m] = kind[m]


def _axis_position(crop: MaskCrop, grid: RenderGrid, axis: LongAxis) -> F32:
    """Fraction along the axis (0 proximal, 1 distal) of each voxel of the crop."""
    p0 = np.asarray(axis.proximal, dtype=np.float64)
    v = np.asarray(axis.distal, dtype=np.float64) - p0
    length2 = float(v @ v)
    u = v / max(length2, 1e-9)
    coords = [grid.axis(d)[crop.slices[d]] for d in range(3)]
    px = ((coords[0] - p0[0]) * u[0]).astype(np.float32)[:, None, None]
    py = ((coords[1] - p0[1]) * u[1]).astype(np.float32)[None, :, None]
    pz = ((coords[2] - p0[2]) * u[2]).astype(np.float32)[None, None, :]
    return px + py + pz
