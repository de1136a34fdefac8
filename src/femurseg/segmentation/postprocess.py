"""Stage-2 postprocessing: on the crop grid before paste-back, stray pieces removed and enclosed
holes filled; on the scan grid after it, the bone that the mask and an implant enclose filled."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)

#: 4-connected within an axial slice (canonical k), nothing across slices: with it,
#: ``binary_fill_holes`` fills each axial slice on its own in one call.
IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def fill_axial_holes(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``mask`` with every hole it encloses within an axial (canonical k) slice filled.

    A cavity that opens to the outside somewhere in 3D (an implant stem leaving the bone, a
    medullary canal cut by the crop) is still a hole in each slice where bone rings it.
    """
    return np.asarray(ndimage.binary_fill_holes(mask, structure=IN_PLANE), dtype=bool)


def fill_enclosed(prob: npt.NDArray[np.float32], threshold: float) -> npt.NDArray[np.float32]:
    """Set to 1 the probability of voxels the femur mask (``prob >= threshold``) encloses.

    A femur is solid: whatever its cortex rings is bone, the marrow and cancellous bone that a
    network can leave out where they look like fat (the condyles and head of an elderly
    patient) or where an implant's glare hides them (the canal round a stem or nail). Holes
    closed within an axial slice are filled; every hole closed in 3D is one of them (it is
    closed in each of its slices), so no separate 3D fill is needed.

    Args:
        prob: femur probability (X, Y, Z) on a crop grid with canonical axes.
        threshold: probability defining a femur voxel.

    Returns:
        A new float32 array of the same shape (the input when nothing is enclosed).
    """
    mask = prob >= threshold
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        return prob
    box = found[0]
    inner = mask[box]
    filled = fill_axial_holes(inner)
    add = filled & ~inner
    if not add.any():
        return prob
    out = prob.astype(np.float32, copy=True)
    out[box][add] = 1.0
    return out


def remove_islands(
    prob: npt.NDArray[np.float32],
    threshold: float,
    voxel_ml: float,
    min_island_ml: float,
    *,
    largest_only: bool = False,
    min_fragment_ml: float = float("inf"),
) -> npt.NDArray[np.float32]:
    """Zero the probability of stray femur pieces.

    The largest piece (at ``prob >= threshold``, 26-connected) is always kept; with
    ``largest_only`` nothing else is but pieces of at least ``min_fragment_ml`` (the pieces
    of a broken femur), otherwise any other piece of at least ``min_island_ml`` is kept too.
    Voxels below the threshold are left as they are.

    Args:
        prob: femur probability (X, Y, Z) on a crop grid.
        threshold: probability defining a femur voxel.
        voxel_ml: volume of one crop voxel in ml.
        min_island_ml: smallest piece kept besides the largest (unless ``largest_only``).
        largest_only: keep the largest piece alone (and fragments): a femur is one bone, and a
            small second piece is a leak across the hip or knee joint.
        min_fragment_ml: with ``largest_only``, other pieces at least this large are kept
            too (infinite: none).

    Returns:
        A new float32 array of the same shape.
    """
    comps, count = ndimage.label(prob >= threshold, structure=_CONNECTIVITY)
    out = prob.astype(np.float32, copy=True)
    if count <= 1:
        return out
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    keep = sizes * voxel_ml >= (min_fragment_ml if largest_only else min_island_ml)
    keep[int(np.argmax(sizes))] = True
    keep[0] = True
    drop = ~keep[comps]
    out[drop] = 0.0
    return out


def fill_beside_metal(
    labels: npt.NDArray[np.uint8],
    hu: npt.NDArray[Any],
    index: tuple[slice, slice, slice],
    value: int,
    metal_hu: float,
) -> int:
    """Give ``value`` to the bone that its mask and an implant in it enclose together.

    Metal is not femur, but what a femur's mask and the metal it holds ring between them is:
    the fatty cancellous bone inside a knee replacement's femoral component, or round a stem
    or nail, which the network leaves out where it touches the metal (so
    :func:`fill_enclosed` on the mask alone cannot reach it). Within each axial slice, holes
    of the mask joined with the metal pieces that touch it are filled, where the hole borders
    the mask itself: a hole ringed by metal alone (the liner between a hip cup and its head)
    stays empty. Only background voxels change.

    Args:
        labels: label map (X, Y, Z) on the scan's canonical grid; changed in place.
        hu: the scan's HU on the same grid.
        index: the region of ``labels`` to work in (the side's paste-back region).
        value: the side's label value.
        metal_hu: HU at and above which a voxel is metal.

    Returns:
        How many voxels were added.
    """
    region = labels[index]
    mask = region == value
    if not mask.any():
        return 0
    metal = np.asarray(hu[index]) >= metal_hu
    if not metal.any():
        return 0
    pieces, _ = ndimage.label(metal, structure=_CONNECTIVITY)
    touching = np.unique(pieces[ndimage.binary_dilation(mask, _CONNECTIVITY) & metal])
    touching = touching[touching > 0]
    if touching.size == 0:
        return 0
    wall = mask | np.isin(pieces, touching)
    found = ndimage.find_objects(wall.astype(np.uint8))[0]
    if found is None:
        return 0
    inner = wall[found]
    holes = fill_axial_holes(inner) & ~inner & (region[found] == 0)
    if not holes.any():
        return 0
    # keep the holes (per slice) that border the femur's own mask somewhere
    parts, _ = ndimage.label(holes, structure=IN_PLANE)
    beside = np.unique(parts[ndimage.binary_dilation(mask[found], IN_PLANE) & holes])
    add = np.isin(parts, beside[beside > 0])
    region[found][add] = value
    return int(np.count_nonzero(add))
