"""Edge refinement on fine scans: a femur mask's outer layer moved to the bone's visible edge.

Stage 2 works on a 1.5 mm grid, so on a scan with finer voxels its mask can only place the
bone surface to within about one network voxel, and it tends to err outwards: on the held-out
and hard-knee phantoms with voxels of 1 mm or less, the outermost layer of the final mask held
8,000-22,000 voxels of soft tissue (median 15-230 HU) beside cortex at 400-1,000 HU. Where the
scan shows the edge sharply, the scan can decide: an outer-layer voxel darker than halfway
between the bone next to it and the surrounding soft tissue (the half-maximum edge, the usual
way to place a boundary in a blurred CT profile) is not bone, and is taken out of the mask,
layer by layer, up to about one network voxel deep. Only the mask's outer surface is touched
(what it encloses is left as it is, fatty marrow included), only where a visible cortex
stands well above the soft tissue (not porotic bone whose rim is trabecular), and not near
metal, whose glare has no edge to trust. On thick slices with fine in-plane voxels the same is
done within each slice, where the edge is sharp.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.segmentation.config import SegmentRules
from femurseg.segmentation.postprocess import IN_PLANE

log = logging.getLogger(__name__)


#: HU below this is no measurement (padding), not air (-1000) or anything in a body.
NO_DATA_HU = -1100.0


def _odd_size(mm: float, spacing: npt.NDArray[np.float64]) -> tuple[int, ...]:
    """Window sizes (odd, at least 3 voxels) spanning about ``mm`` on each side of a voxel."""
    return tuple(int(v) for v in np.maximum(3, 2 * np.round(mm / spacing) + 1))


def outside_in_slices(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Background reachable from the array's side faces within each axial (canonical k) slice.

    The rest of the background is enclosed by the mask in its slice: a hole in the bone (a
    marrow cavity the network left out, or one that opens only through the scan's end).
    """
    comps, _ = ndimage.label(~mask, structure=IN_PLANE)
    faces = np.concatenate(
        [comps[0].ravel(), comps[-1].ravel(), comps[:, 0].ravel(), comps[:, -1].ravel()]
    )
    border = np.zeros(int(comps.max()) + 1, dtype=bool)
    border[faces] = True
    border[0] = False
    return border[comps]


def soft_tissue_hu(
    mask: npt.NDArray[np.bool_], hu: npt.NDArray[Any], planar: bool = False
) -> float | None:
    """Median HU of soft tissue (-1000..200 HU) in a 2-voxel ring round ``mask``, from every
    second voxel (within slices only when ``planar``); None when the ring holds none."""
    step = (2, 2, 1 if planar else 2)
    sub = mask.view(np.uint8)[:: step[0], :: step[1], :: step[2]]
    size = (3, 3, 1) if planar else (3, 3, 3)
    ring = (ndimage.maximum_filter(sub, size=size) > 0) & (sub == 0)
    tissue = np.asarray(hu)[:: step[0], :: step[1], :: step[2]][ring]
    tissue = tissue[(tissue < 200.0) & (tissue > -1000.0)]
    return float(np.median(tissue)) if tissue.size else None


def half_max_peel(
    mask: npt.NDArray[np.bool_],
    hu: npt.NDArray[Any],
    spacing: tuple[float, float, float],
    *,
    depth_mm: float,
    smooth_mm: float,
    window_mm: float,
    min_contrast_hu: float,
    metal_hu: float,
    metal_mm: float,
    fraction: float = 0.5,
    planar: bool = False,
    soft: float | None = None,
) -> npt.NDArray[np.bool_]:
    """Peel outer-layer voxels darker than the half-maximum edge off a bone mask.

    Args:
        mask: bool (X, Y, Z) femur mask, with a margin of at least ``window_mm`` round it.
        hu: HU on the same voxels.
        spacing: voxel size in mm.
        depth_mm: at most this deep (in layers of the largest voxel side, at least one layer).
        smooth_mm: Gaussian sigma applied to ``hu`` first (noise at sharp kernels).
        window_mm: half-width of the window in which the bone's local peak HU is taken.
        min_contrast_hu: only where that peak is at least this far above the soft tissue.
        metal_hu: HU of metal; voxels within ``metal_mm`` of it are never peeled.
        metal_mm: see ``metal_hu``.
        fraction: the edge lies at this fraction of the way from the soft tissue's HU to the
            bone's local peak (0.5: the half-maximum).
        planar: work within each slice along the last axis only (smoothing, windows and the
            layers peeled), for thick slices whose in-plane voxels are fine: across slices
            partial volume blurs the edge, within a slice it is sharp.
        soft: the soft tissue's HU round the bone; None measures it here (see
            :func:`soft_tissue_hu`).

    Returns:
        A new mask (a subset of ``mask``): only voxels next to background outside the bone
        (see :func:`outside_in_slices`) are ever peeled.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    out = mask.copy()
    if not mask.any():
        return out
    # in planar mode every filter has size 1 (and the smoothing sigma 0) across slices
    across = np.array([1.0, 1.0, 0.0 if planar else 1.0])
    neighbours = (3, 3, 1) if planar else (3, 3, 3)

    def window(mm: float) -> tuple[int, ...]:
        return tuple(int(n) for n in np.where(across > 0, _odd_size(mm, sp), 1))

    # HU fit int16, and the max filter on int16 moves half the bytes of float32
    smooth = np.clip(
        ndimage.gaussian_filter(
            np.asarray(hu, dtype=np.float32), sigma=smooth_mm / sp * across, truncate=2.0
        ),
        -32000,
        32000,
    ).astype(np.int16)
    if soft is None:
        soft = soft_tissue_hu(mask, smooth, planar)
    if soft is None:
        return out
    peak = ndimage.maximum_filter(
        np.where(mask, smooth, np.int16(-32000)), size=window(window_mm)
    ).astype(np.float32)
    darker = (peak - soft >= min_contrast_hu) & (smooth < soft + fraction * (peak - soft))
    metal = np.asarray(hu) >= metal_hu
    if metal.any():
        darker &= ndimage.maximum_filter(metal.view(np.uint8), size=window(metal_mm)) == 0
    # no data (the padding outside a scanner's reconstruction circle, stored far below air):
    # the scan says nothing about the bone there, so nothing near it is peeled
    blank = np.asarray(hu) < NO_DATA_HU
    if blank.any():
        darker &= ndimage.maximum_filter(blank.view(np.uint8), size=window(window_mm)) == 0
    # only the outer surface: a voxel beside a hole inside the bone is not on the bone's edge
    outside = outside_in_slices(mask)
    layer_mm = sp[:2].max() if planar else sp.max()
    for _ in range(max(1, int(depth_mm // layer_mm))):
        drop = out & darker & (ndimage.maximum_filter(outside.view(np.uint8), size=neighbours) > 0)
        if not drop.any():
            break
        out &= ~drop
        outside |= drop
    return out


#: slices per chunk of :func:`refine_edges` (each chunk is cropped to the bone in its slices).
CHUNK_SLICES = 48


def _chunks(
    mask: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    rules: SegmentRules,
    planar: bool,
) -> list[tuple[tuple[slice, slice, slice], slice]]:
    """Pieces of a femur's box that give :func:`half_max_peel` the same answer as the box.

    A femur runs obliquely through its box, so most of the box is far from bone; each run of
    ``CHUNK_SLICES`` slices (the ``core``) is cut to the bone's extent in those slices plus a
    margin, with a halo of slices above and below that covers every filter's reach (none in
    planar mode, where nothing crosses slices). Returns ``(sub, core)`` pairs: the sub-box to
    compute on, and the slices along the last axis whose result it decides.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    layers = max(1, int(rules.edge_depth_mm // (sp[:2].max() if planar else sp.max())))
    reach = np.ceil((rules.edge_window_mm + 2 * rules.edge_smooth_mm) / sp).astype(int)
    reach = reach + layers + 2
    halo = 0 if planar else int(reach[2])
    rows = np.asarray(mask.any(axis=1))  # (X, Z): where the bone is, slice by slice
    cols = np.asarray(mask.any(axis=0))  # (Y, Z)
    n = mask.shape[2]
    out = []
    for z0 in range(0, n, CHUNK_SLICES):
        core = slice(z0, min(n, z0 + CHUNK_SLICES))
        zs = slice(max(0, z0 - halo), min(n, core.stop + halo))
        xi = np.flatnonzero(rows[:, zs].any(axis=1))
        yi = np.flatnonzero(cols[:, zs].any(axis=1))
        if xi.size == 0:
            continue
        xs = slice(
            max(0, int(xi[0]) - int(reach[0])), min(mask.shape[0], int(xi[-1]) + 1 + int(reach[0]))
        )
        ys = slice(
            max(0, int(yi[0]) - int(reach[1])), min(mask.shape[1], int(yi[-1]) + 1 + int(reach[1]))
        )
        out.append(((xs, ys, zs), core))
    return out


def refine_edges(
    labels: npt.NDArray[np.uint8],
    hu: npt.NDArray[Any],
    index: tuple[slice, slice, slice],
    side: int,
    spacing: tuple[float, float, float],
    rules: SegmentRules,
) -> int:
    """Apply :func:`half_max_peel` to one side of a label map in place.

    On a scan whose voxels are all at most ``rules.edge_max_voxel_mm`` it works in 3D; where
    only the slices are thicker (two axes fine, one coarse), within each slice across the
    coarse axis (``rules.edge_planar``); otherwise not at all.

    Args:
        labels: the label map (X, Y, Z); voxels of ``side`` peeled off become 0.
        hu: the scan's HU on the same grid.
        index: the tight index box of the side's voxels in ``labels``.
        side: the label value.
        spacing: voxel size in mm.
        rules: :class:`~femurseg.segmentation.config.SegmentRules` (its ``edge_*`` fields).

    Returns:
        How many voxels were taken out (0 when the scan's voxels are too coarse).
    """
    sp = np.asarray(spacing, dtype=np.float64)
    fine = sp <= rules.edge_max_voxel_mm
    planar = not fine.all()
    if not rules.edge_refine or fine.sum() < 2 or (planar and not rules.edge_planar):
        return 0
    pad = np.ceil((rules.edge_window_mm + 2 * rules.edge_smooth_mm) / sp).astype(int) + 2
    box = tuple(
        slice(max(0, b.start - p), min(n, b.stop + p))
        for b, p, n in zip(index, pad, labels.shape, strict=True)
    )
    region = labels[box]
    mask = region == side
    # planar: the thick axis moved last, where half_max_peel keeps its filters within slices
    thick = int(np.argmin(fine)) if planar else 2
    order = [a for a in range(3) if a != thick] + [thick]
    moved = np.moveaxis(mask, thick, 2)
    hu_moved = np.moveaxis(np.asarray(hu[box]), thick, 2)
    sp_moved = (float(sp[order[0]]), float(sp[order[1]]), float(sp[order[2]]))
    soft = soft_tissue_hu(moved, hu_moved, planar)
    kept = np.zeros_like(moved)
    if soft is not None:
        for sub, core in _chunks(moved, sp_moved, rules, planar):
            part = half_max_peel(
                moved[sub],
                hu_moved[sub],
                sp_moved,
                depth_mm=rules.edge_depth_mm,
                smooth_mm=rules.edge_smooth_mm,
                window_mm=rules.edge_window_mm,
                min_contrast_hu=rules.edge_min_contrast_hu,
                metal_hu=rules.edge_metal_hu,
                metal_mm=rules.edge_metal_mm,
                fraction=rules.edge_fraction,
                planar=planar,
                soft=soft,
            )
            kept[sub[0], sub[1], core] = part[
                :, :, core.start - sub[2].start : core.stop - sub[2].start
            ]
    else:
        kept = moved
    dropped = mask & ~np.moveaxis(kept, 2, thick)
    region[dropped] = 0
    n = int(np.count_nonzero(dropped))
    log.info("edge refinement: %d voxels of label %d outside the bone's edge removed", n, side)
    return n
