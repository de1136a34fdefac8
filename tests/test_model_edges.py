"""Edge refinement: the outer layer of a mask moved to the bone's half-maximum edge."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from femurseg.segmentation import SegmentRules
from femurseg.segmentation.edges import half_max_peel, outside_in_slices, refine_edges

SPACING = (0.8, 0.8, 0.8)
PEEL = {
    "depth_mm": 1.5,
    "smooth_mm": 0.0,
    "window_mm": 2.5,
    "min_contrast_hu": 200.0,
    "metal_hu": 2000.0,
    "metal_mm": 3.0,
}


def _bone(shape: tuple[int, int, int] = (40, 40, 30)) -> tuple[np.ndarray, np.ndarray]:
    """HU of a bone block (cortex 1000 HU, fatty marrow 0 HU inside) in soft tissue (40 HU),
    and the block itself."""
    hu = np.full(shape, 40.0, dtype=np.float32)
    block = np.zeros(shape, dtype=bool)
    block[10:30, 10:30, 8:22] = True
    hu[block] = 1000.0
    marrow = np.zeros(shape, dtype=bool)
    marrow[13:27, 13:27, 11:19] = True
    hu[marrow] = 0.0
    return hu, block


def _grow(mask: np.ndarray, layers: int) -> np.ndarray:
    """``mask`` grown by whole layers of the 26-neighbourhood (a box grows into a box)."""
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool), iterations=layers)


def test_peel_removes_soft_tissue_layers_round_the_bone_up_to_the_depth() -> None:
    hu, block = _bone()
    one = _grow(block, 1)
    assert np.array_equal(half_max_peel(one, hu, SPACING, **PEEL), block)
    # three layers of soft tissue: only as deep as depth_mm (1.5 mm = one 0.8 mm layer)
    three = _grow(block, 3)
    kept = half_max_peel(three, hu, SPACING, **PEEL)
    assert np.array_equal(kept, _grow(block, 2))
    deeper = half_max_peel(three, hu, SPACING, **(PEEL | {"depth_mm": 2.5}))
    assert np.array_equal(deeper, block)
    # a tight mask loses nothing: the bone's own outer voxels are at the peak
    assert np.array_equal(half_max_peel(block, hu, SPACING, **PEEL), block)


def test_peel_keeps_the_marrow_and_what_lies_beside_a_hole_in_the_mask() -> None:
    hu, block = _bone()
    # a mask with a hole left in the fatty marrow: the marrow voxels round the hole are dark,
    # but they are inside the bone, not on its edge
    mask = _grow(block, 1)
    mask[18:22, 18:22, 13:17] = False
    kept = half_max_peel(mask, hu, SPACING, **PEEL)
    inner = mask & block
    assert np.array_equal(kept, inner)
    assert not outside_in_slices(mask)[20, 20, 15]
    assert outside_in_slices(mask)[0, 0, 15] and outside_in_slices(mask)[20, 20, 0]


def test_peel_leaves_low_contrast_and_metal_surroundings_alone() -> None:
    hu, block = _bone()
    mask = _grow(block, 1)
    faint = np.where(block, 200.0, 40.0).astype(np.float32)
    assert np.array_equal(half_max_peel(mask, faint, SPACING, **PEEL), mask)
    metal = hu.copy()
    metal[20, 9, 15] = 5000.0  # a screw tip just outside one face
    kept = half_max_peel(mask, metal, SPACING, **PEEL)
    assert kept[20, 9, 15] and kept[21, 9, 15]  # within 3 mm of the metal: kept
    assert not kept[20, 30, 15]  # the opposite face is peeled


def test_refine_edges_works_in_place_on_fine_scans_only() -> None:
    hu, block = _bone()
    labels = np.where(_grow(block, 1), 2, 0).astype(np.uint8)
    labels[0:5, 0:5, 0:5] = 1  # the other side's voxels are never touched
    index = (slice(9, 31), slice(9, 31), slice(7, 23))
    coarse = labels.copy()
    assert refine_edges(coarse, hu, index, 2, (2.0, 2.0, 2.0), SegmentRules()) == 0
    assert np.array_equal(coarse, labels)
    off = labels.copy()
    assert refine_edges(off, hu, index, 2, SPACING, SegmentRules(edge_refine=False)) == 0
    n = refine_edges(labels, hu, index, 2, SPACING, SegmentRules(edge_smooth_mm=0.0))
    assert n == int(np.count_nonzero(_grow(block, 1) & ~block))
    assert np.array_equal(labels == 2, block)
    assert np.all(labels[0:5, 0:5, 0:5] == 1)


def test_peel_leaves_voxels_next_to_padding_alone() -> None:
    hu, block = _bone()
    mask = _grow(block, 1)
    padded = hu.copy()
    padded[:, 31:, :] = -3024.0  # outside the reconstruction circle: no data
    kept = half_max_peel(mask, padded, SPACING, **PEEL)
    assert kept[20, 30, 15]  # the layer beside the padding stays: nothing to judge it by
    assert not kept[20, 9, 15]  # the layer on the far side is peeled as before


def test_thick_slices_are_refined_within_each_slice_whichever_axis_is_thick() -> None:
    hu, block = _bone()
    grown = _grow(block, 1)
    labels = np.where(grown, 1, 0).astype(np.uint8)
    index = (slice(9, 31), slice(9, 31), slice(7, 23))
    rules = SegmentRules(edge_smooth_mm=0.0)
    n = refine_edges(labels, hu, index, 1, (0.8, 0.8, 3.0), rules)
    # the in-plane layer is peeled; across the thick slices nothing is (the slices above and
    # below the block keep their voxels: within their own slice they are not on an edge of
    # the block, and no filter looks across slices)
    expected = block | _top_bottom(grown, block)
    assert np.array_equal(labels == 1, expected)
    assert n == int(np.count_nonzero(grown & ~expected))
    # the same scan stored with its thick axis first: the same voxels go
    turned = np.moveaxis(np.where(grown, 1, 0).astype(np.uint8), 2, 0).copy()
    hu_t = np.moveaxis(hu, 2, 0).copy()
    index_t = (index[2], index[0], index[1])
    assert refine_edges(turned, hu_t, index_t, 1, (3.0, 0.8, 0.8), rules) == n
    assert np.array_equal(np.moveaxis(turned, 0, 2) == 1, expected)
    # off, or too coarse in two axes: nothing
    off = np.where(grown, 1, 0).astype(np.uint8)
    assert refine_edges(off, hu, index, 1, (0.8, 0.8, 3.0), SegmentRules(edge_planar=False)) == 0
    assert refine_edges(off, hu, index, 1, (0.8, 3.0, 3.0), rules) == 0


def _top_bottom(grown: np.ndarray, block: np.ndarray) -> np.ndarray:
    """The slices of ``grown`` above and below ``block`` (where ``block`` has no voxel)."""
    has = block.any(axis=(0, 1))
    return grown & ~has[None, None, :]
