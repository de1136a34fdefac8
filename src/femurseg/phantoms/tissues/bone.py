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
#: the femoral head's porous end plate: full within this many mm beyond its sphere, fading to
#: the dense cortex over as many again (the head-neck junction).
HEAD_PLATE_REACH_MM = 2.0
#: the other joint ends (condyles, tibial plateau and plafond): the porous, thinnest plate lies
#: within this many mm of the bone's end along its axis, fading over ``JOINT_PLATE_FADE_MM``.
JOINT_PLATE_MM = 25.0
JOINT_PLATE_FADE_MM = 10.0
#: the femoral head's cancellous bone is denser than the neck's and the trochanters' (its
#: compressive trabeculae): ``head_cancellous_hu`` more inside the head's sphere, fading to
#: nothing over this many mm beyond it.
HEAD_DENSE_FADE_MM = 8.0


@dataclass(frozen=True)
class LongAxis:
    """A long bone's axis: world RAS+ mm of its proximal and distal ends, and the diaphysis
    (shaft) as a fraction range ``(start, stop)`` of the length from the proximal end.

    ``head`` (centre world mm, radius mm) is the femoral head's sphere: where given, the
    proximal end's porous end plate (``end_plate_density``) covers only the head's joint
    surface, and the neck, calcar and trochanters keep the metaphyseal cortex."""

    proximal: npt.NDArray[np.float64]
    distal: npt.NDArray[np.float64]
    shaft: tuple[float, float]
    head: tuple[npt.NDArray[np.float64], float] | None = None


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
    extra_cortex: F32 | None = None,
) -> None:
    """Paint one bone into the HU and tissue maps (in place, only inside the bone).

    Each voxel holds the share of its depth span that the shell fills, so a shell thinner than
    the render step (``cortex_end_mm`` at the joints) is a fainter outermost layer, not a whole
    voxel of cortex; the shell at the long bones' joint surfaces reads ``end_plate_density`` of
    the cortical HU and is ``cortex_end_mm`` thick, while the rest of each end (metaphysis,
    neck, trochanters) has a cortex ``cortex_metaphysis_mm`` thick (never thinner than the
    joint plate) at ``metaphysis_density`` of the cortical HU (see :func:`_joint_share`).

    Args:
        crop: the bone voxelised on ``grid``.
        grid: the render grid.
        t: the case's tissue draw (HU, cortical thicknesses).
        rng: random generator for the trabecular texture.
        hu: float32 (X, Y, Z) HU map of the grid, modified inside the bone.
        cls: uint8 (X, Y, Z) :class:`Tissue` map, modified inside the bone.
        axis: long-bone axis (femur, tibia) or None for flat and short bones (pelvis, patella),
            which get a thin uniform cortex over cancellous bone.
        extra_cortex: for a flat bone, mm of shell added per voxel of the crop (the
            acetabular roofs' sourcil, :func:`sourcil_thickness`), or None.
    """
    if crop.count == 0:
        return
    m = crop.mask
    sp = grid.spacing
    depth = bone_depth(crop, sp)
    density: F32 | np.float32 = np.float32(1.0)
    if axis is None:
        cortex: F32 | np.float32 = np.float32(t.cortex_pelvis_mm)
        if extra_cortex is not None:
            cortex = cortex + extra_cortex
        canal: F32 | np.float32 = np.float32(0.0)
    else:
        pos = _axis_position(crop, grid, axis)
        s0, s1 = axis.shaft
        shaft = _plateau(pos, s0, s1, SHAFT_TRANSITION)
        joint = _joint_share(crop, grid, pos, axis)
        thin = np.float32(t.cortex_end_mm)
        away = np.float32(1.0) - joint
        meta = np.float32(max(t.cortex_end_mm, t.cortex_metaphysis_mm))
        end_cortex = thin * joint + meta * away
        cortex = end_cortex + (np.float32(t.cortex_shaft_mm) - end_cortex) * shaft
        canal = _plateau(pos, s0 + SHAFT_TRANSITION, s1 - SHAFT_TRANSITION, SHAFT_TRANSITION)
        # Shell density as a fraction of the cortical HU: the joint plates' (porous), the
        # metaphyses' (thin, in older bone less dense) and the shaft's (1) blended by position.
        end = np.float32(t.end_plate_density) * joint + np.float32(t.metaphysis_density) * away
        density = end + (np.float32(1.0) - end) * shaft
    grain = float(t.trabecular_grain_mm)
    tex = bandpass_noise(
        rng,
        m.shape,
        tuple(grain / s for s in sp),  # type: ignore[arg-type]
        tuple(TRABECULAR_COARSE_RATIO * grain / s for s in sp),  # type: ignore[arg-type]
    )
    below = np.maximum(depth - cortex, 0.0)
    sub = np.exp(-below / np.float32(SUBCHONDRAL_MM))
    base: F32 | np.float32 = np.float32(t.cancellous)
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
    if axis is not None and axis.head is not None and t.head_cancellous_hu > 0.0:
        centre, radius = axis.head
        dense_head = _ball_share(crop, grid, centre, radius, HEAD_DENSE_FADE_MM)
        base = base + np.float32(t.head_cancellous_hu) * dense_head
    # Trabecular contrast is relative to the bone's excess over fat, so that fatty cancellous
    # bone still shows its (sparser) trabeculae.
    excess = np.maximum(base - np.float32(FATTY_CANCELLOUS_HU), np.float32(30.0))
    canc = base + np.float32(t.trabecular_contrast) * excess * tex
    canc += np.float32(SUBCHONDRAL_GAIN * (t.cortical - t.cancellous)) * sub * (1.0 - canal)
    inner = canal * np.float32(t.marrow) + (1.0 - canal) * canc
    # Each voxel holds the share of its depth span (one render step) that the shell fills, so
    # a shell thinner than a step shows as a fainter outermost layer instead of a whole voxel
    # of cortex; that layer is always counted as shell (at coarse steps it straddles the
    # surface).
    step = np.float32(min(sp))
    fill = np.clip((cortex - (depth - np.float32(0.5) * step)) / step, 0.0, 1.0)
    is_cortex = (fill >= 0.5) | (depth < np.float32(0.51) * step)
    # Cortical bone is dense but not uniform (Haversian porosity): a few percent of texture.
    shell = np.float32(t.cortical) * density * (1.0 + 0.04 * tex)
    value = inner + (shell - inner) * fill
    kind = np.where(
        is_cortex, Tissue.CORTICAL, np.where(canal > 0.5, Tissue.MARROW, Tissue.CANCELLOUS)
    ).astype(np.uint8)
    hu_box = hu[crop.slices]
    cls_box = cls[crop.slices]
    hu_box[m] = value[m]
    cls_box[m] = kind[m]


def _joint_share(crop: MaskCrop, grid: RenderGrid, pos: F32, axis: LongAxis) -> F32:
    """1 where a long bone's end is a joint surface (thin, porous subchondral plate), 0 where
    it is metaphysis, neck or trochanter (thin but dense cortex): within ``JOINT_PLATE_MM`` of
    either end along the axis, fading over ``JOINT_PLATE_FADE_MM``; with ``axis.head``, the
    proximal half only on the femoral head's sphere (and ``HEAD_PLATE_REACH_MM`` beyond it,
    fading over as much again)."""
    length = float(np.linalg.norm(np.asarray(axis.distal) - np.asarray(axis.proximal)))
    from_end = np.minimum(pos, np.float32(1.0) - pos) * np.float32(length)
    fade = np.float32(JOINT_PLATE_FADE_MM)
    share = np.clip((np.float32(JOINT_PLATE_MM) + fade - from_end) / fade, 0.0, 1.0)
    if axis.head is None:
        return share.astype(np.float32)
    centre, radius = axis.head
    reach = HEAD_PLATE_REACH_MM
    near = _ball_share(crop, grid, centre, radius + reach, reach)
    return np.where(pos >= np.float32(0.5), share, near).astype(np.float32)


def _ball_share(
    crop: MaskCrop, grid: RenderGrid, centre: npt.NDArray[np.float64], full: float, fade: float
) -> F32:
    """1 within ``full`` mm of ``centre``, fading linearly to 0 over ``fade`` mm more; 0
    beyond, where only the cube round the ball that it can reach is computed."""
    share = np.zeros(crop.mask.shape, dtype=np.float32)
    around = _around(_crop_axes(crop, grid), centre, float(full) + float(fade))
    if around is not None:
        box, r, _ = around
        f = np.float32(fade)
        share[box] = np.clip((np.float32(full) + f - r) / f, 0.0, 1.0)
    return share


def _crop_axes(crop: MaskCrop, grid: RenderGrid) -> list[F32]:
    """World coordinates (mm) of the crop's voxel centres along x, y and z."""
    return [grid.axis(d)[crop.slices[d]].astype(np.float32) for d in range(3)]


def _around(
    axes: list[F32], centre: npt.NDArray[np.float64], reach: float
) -> tuple[tuple[slice, slice, slice], F32, F32] | None:
    """The part of a crop within ``reach`` mm of ``centre`` along every axis: its slices, each
    voxel's distance (mm) to the centre and its height above it (mm, broadcastable); None
    where the cube misses the crop."""
    c = np.asarray(centre, dtype=np.float32)
    sl = [
        slice(
            int(np.searchsorted(a, c[d] - reach, side="left")),
            int(np.searchsorted(a, c[d] + reach, side="right")),
        )
        for d, a in enumerate(axes)
    ]
    box = (sl[0], sl[1], sl[2])
    if any(b.stop <= b.start for b in box):
        return None
    dx = (axes[0][box[0]] - c[0])[:, None, None]
    dy = (axes[1][box[1]] - c[1])[None, :, None]
    dz = (axes[2][box[2]] - c[2])[None, None, :]
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    return box, r, dz


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


#: the sourcil runs over the roof of the socket: full thickness this far (mm) beyond the socket
#: sphere, fading out over as much again; from this height on the sphere (the z share of the
#: unit direction from the hip centre) full, fading out to nothing at half of it.
SOURCIL_REACH_MM = 4.0
SOURCIL_HEIGHT = 0.6


def sourcil_thickness(
    crop: MaskCrop,
    grid: RenderGrid,
    sockets: list[tuple[npt.NDArray[np.float64], float]],
    extra_mm: float,
) -> F32 | None:
    """Extra shell thickness (mm) of the pelvis over each socket's roof, for :func:`render_bone`.

    Args:
        crop: the pelvis voxelised on ``grid``.
        grid: the render grid.
        sockets: (centre world RAS+ mm, socket radius mm) of each acetabulum.
        extra_mm: the case's sourcil thickness; 0 gives None (nothing added).

    Returns:
        float32 array of the crop's shape, or None.
    """
    if extra_mm <= 0.0 or crop.count == 0 or not sockets:
        return None
    axes = _crop_axes(crop, grid)
    out = np.zeros(crop.mask.shape, dtype=np.float32)
    for centre, radius in sockets:
        # only the cube round the ball where the sourcil can reach (the weight is 0 beyond)
        around = _around(axes, centre, float(radius) + 2.0 * SOURCIL_REACH_MM)
        if around is None:
            continue
        box, r, dz = around
        beyond = r - np.float32(radius)
        w_r = np.clip(2.0 - beyond / np.float32(SOURCIL_REACH_MM), 0.0, 1.0)
        up = dz / np.maximum(r, np.float32(1e-3))
        h = np.float32(SOURCIL_HEIGHT)
        w_u = np.clip((up - 0.5 * h) / (0.5 * h), 0.0, 1.0)
        np.maximum(out[box], w_r * w_u, out=out[box])
    return (out * np.float32(extra_mm)).astype(np.float32)
