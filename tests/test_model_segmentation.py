"""Stage 2 helpers: crop grids per side, island removal, growing a box that cut the femur."""

from __future__ import annotations

import numpy as np

from femurseg.preprocessing import Box, Grid
from femurseg.segmentation import SegmenterConfig, remove_islands, side_grid
from femurseg.segmentation.inference import grow_box
from femurseg.segmentation.postprocess import fill_beside_metal, fill_enclosed
from femurseg.types import Label

LIKE = Grid(
    (100, 100, 100), np.diag([2.0, 2.0, 2.0, 1.0]) + np.array([[0, 0, 0, -100.0]] * 3 + [[0] * 4])
)
BOX = Box((-20.0, -10.0, -30.0), (20.0, 10.0, 30.0))
CFG = SegmenterConfig(spacing_mm=2.0, margin_mm=4.0, roi_size=(16, 16, 16))


def test_side_grid_mirrors_right_and_keeps_world_positions() -> None:
    left = side_grid(LIKE, BOX, Label.FEMUR_LEFT, CFG)
    right = side_grid(LIKE, BOX, Label.FEMUR_RIGHT, CFG)
    assert left.shape == right.shape
    assert np.allclose(left.edge_corners_world().min(0), right.edge_corners_world().min(0))
    assert left.affine[0, 0] > 0 > right.affine[0, 0]  # right crops are mirrored in x
    assert np.allclose(
        left.index_to_world([0, 0, 0])[0], right.index_to_world([left.shape[0] - 1, 0, 0])[0]
    )


def test_side_grid_is_at_least_one_window() -> None:
    tiny = Box((0.0, 0.0, 0.0), (2.0, 2.0, 2.0))
    grid = side_grid(LIKE, tiny, Label.FEMUR_LEFT, CFG)
    assert all(n >= r for n, r in zip(grid.shape, CFG.roi_size, strict=True))


def test_remove_islands_keeps_largest_and_big_pieces() -> None:
    prob = np.zeros((20, 20, 20), np.float32)
    prob[2:10, 2:10, 2:10] = 0.9  # 512 voxels
    prob[15:17, 15:17, 15:17] = 0.8  # 8 voxels
    out = remove_islands(prob, 0.5, voxel_ml=0.001, min_island_ml=0.1)
    assert out[5, 5, 5] == np.float32(0.9) and out[16, 16, 16] == 0.0
    kept = remove_islands(prob, 0.5, voxel_ml=0.1, min_island_ml=0.5)
    assert kept[16, 16, 16] == np.float32(0.8)
    assert prob[16, 16, 16] == np.float32(0.8)  # input untouched
    # largest_only drops a second piece of any size; sub-threshold voxels stay as they are
    prob[0, 19, 0] = 0.3
    alone = remove_islands(prob, 0.5, voxel_ml=0.1, min_island_ml=0.5, largest_only=True)
    assert alone[16, 16, 16] == 0.0 and alone[5, 5, 5] == np.float32(0.9)
    assert alone[0, 19, 0] == np.float32(0.3)
    # ... unless it is as large as a piece of a broken femur
    frag = remove_islands(
        prob, 0.5, voxel_ml=0.1, min_island_ml=0.5, largest_only=True, min_fragment_ml=0.8
    )
    assert frag[16, 16, 16] == np.float32(0.8)
    small = remove_islands(
        prob, 0.5, voxel_ml=0.1, min_island_ml=0.5, largest_only=True, min_fragment_ml=0.9
    )
    assert small[16, 16, 16] == 0.0


def test_grow_box_follows_world_faces_and_stops_at_scan_edge() -> None:
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        grid = side_grid(LIKE, BOX, side, CFG)
        mask = np.zeros(grid.shape, bool)
        # touch the crop face that lies towards world +x (index 0 when mirrored)
        face = 0 if grid.affine[0, 0] < 0 else grid.shape[0] - 1
        mask[face, 5, 5] = True
        grown = grow_box(BOX, mask, grid, LIKE, 30.0)
        assert grown is not None
        assert grown.hi[0] == BOX.hi[0] + 30.0 and grown.lo == BOX.lo
    assert grow_box(BOX, np.zeros(grid.shape, bool), grid, LIKE, 30.0) is None
    edge = Box((-20.0, -10.0, 60.0), (20.0, 10.0, 99.0))  # reaches the scan's top
    grid = side_grid(LIKE, edge, Label.FEMUR_LEFT, CFG)
    mask = np.zeros(grid.shape, bool)
    mask[5, 5, -1] = True
    assert grow_box(edge, mask, grid, LIKE, 30.0) is None


def test_fitted_window_covers_small_crops_in_one_pass_and_shrinks_padding() -> None:
    from femurseg.segmentation.config import fitted_window

    # a small crop becomes one window, each side rounded up to the size multiple
    assert fitted_window((96, 96, 160), (87, 63, 300), 8, 3_000_000) == (88, 64, 304)
    # too many voxels for one pass: roi windows, shrunk where the crop is narrower
    assert fitted_window((96, 96, 160), (87, 63, 600), 8, 3_000_000) == (88, 64, 160)
    assert fitted_window((96, 96, 160), (200, 150, 600), 8, 3_000_000) == (96, 96, 160)
    # 0 turns one-pass crops off
    assert fitted_window((96, 96, 160), (40, 40, 40), 8, 0) == (40, 40, 40)


def _tube(shape: tuple[int, int, int], open_side: bool) -> np.ndarray:
    """Probability of a bone ring (cortex 0.9, marrow 0.2) along k; ``open_side`` cuts the ring
    open in every slice, so nothing is enclosed in any plane."""
    i, j = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(i - shape[0] / 2, j - shape[1] / 2)
    ring = (r >= 5) & (r <= 8)
    if open_side:
        ring &= ~((i > shape[0] / 2) & (np.abs(j - shape[1] / 2) < 2))
    prob = np.full(shape, 0.05, dtype=np.float32)
    prob[:, :, 2:-2] = np.where(ring, 0.9, np.where(r < 5, 0.2, 0.05))[..., None]
    return prob


def test_fill_enclosed_fills_marrow_ringed_by_cortex_in_slices_and_3d() -> None:
    prob = _tube((24, 24, 20), open_side=False)
    out = fill_enclosed(prob, 0.5)
    marrow = prob == np.float32(0.2)
    assert marrow.any()
    # the tube is open at both ends (a hole only slice by slice), and is filled all the same
    assert np.all(out[marrow] == 1.0)
    assert np.array_equal(out[~marrow], prob[~marrow])
    assert prob[marrow].max() == np.float32(0.2)  # the input is not changed
    # closed at both ends too: still filled, and nothing outside the tube changes
    capped = prob.copy()
    capped[:, :, 2][np.hypot(*np.mgrid[:24, :24] - 12.0) < 8] = 0.9
    capped[:, :, -3][np.hypot(*np.mgrid[:24, :24] - 12.0) < 8] = 0.9
    out = fill_enclosed(capped, 0.5)
    assert np.all(out[capped == np.float32(0.2)] == 1.0)
    assert np.array_equal(out[capped != np.float32(0.2)], capped[capped != np.float32(0.2)])


def test_fill_enclosed_leaves_open_shapes_and_empty_masks_alone() -> None:
    prob = _tube((24, 24, 20), open_side=True)
    assert np.array_equal(fill_enclosed(prob, 0.5), prob)
    empty = np.full((8, 8, 8), 0.1, dtype=np.float32)
    assert np.array_equal(fill_enclosed(empty, 0.5), empty)
    # the threshold decides what the mask is: at 0.95 the cortex is no femur, nothing to fill
    closed = _tube((24, 24, 20), open_side=False)
    assert np.array_equal(fill_enclosed(closed, 0.95), closed)


def _capped_condyle() -> tuple[np.ndarray, np.ndarray]:
    """A knee replacement's femoral component in axial slices: a metal ring (3000+ HU) round
    fatty bone (0 HU), and a femur mask that covers only the ring's left half inside."""
    i, j = np.mgrid[:30, :30]
    r = np.hypot(i - 15.0, j - 15.0)
    hu = np.full((30, 30, 6), -100.0, dtype=np.float32)
    hu[:, :, 1:5][r < 10] = 0.0
    hu[:, :, 1:5][(r >= 8) & (r < 10)] = 3071.0
    labels = np.zeros((30, 30, 6), dtype=np.uint8)
    labels[:, :, 1:5][(r < 8) & (i < 15)] = 1
    return labels, hu


def test_fill_beside_metal_fills_bone_ringed_by_mask_and_implant() -> None:
    labels, hu = _capped_condyle()
    inside = (hu == 0.0) & (labels == 0)
    assert inside.any()
    whole = (slice(0, 30), slice(0, 30), slice(0, 6))
    added = fill_beside_metal(labels, hu, whole, 1, 3000.0)
    assert added == int(inside.sum())
    assert np.all(labels[inside] == 1)
    # the metal itself and everything outside the ring stay background
    assert not np.any(labels[hu >= 3000.0])
    assert not np.any(labels[hu == -100.0])


def test_fill_beside_metal_leaves_metal_only_holes_other_labels_and_far_metal() -> None:
    # a hole that metal alone rings (a hip cup's liner) does not border the mask: left empty
    labels, hu = _capped_condyle()
    labels[:] = 0
    labels[:, :, 1:5][12:18, 0:3] = 1  # femur beside the ring, touching its metal
    hu[:, :, 1:5][12:18, 0:3] = 500.0
    before = labels.copy()
    whole = (slice(0, 30), slice(0, 30), slice(0, 6))
    assert fill_beside_metal(labels, hu, whole, 1, 3000.0) == 0
    assert np.array_equal(labels, before)
    # the other side's voxels inside the ring are never taken
    labels, hu = _capped_condyle()
    labels[:, :, 1:5][20:22, 14:16] = 2
    fill_beside_metal(labels, hu, whole, 1, 3000.0)
    assert np.all(labels[:, :, 1:5][20:22, 14:16] == 2)
    # metal that does not touch the mask is no wall: nothing changes
    labels, hu = _capped_condyle()
    labels[:] = 0
    labels[:, :, 1:5][14:16, 14:16] = 1  # a small piece in the middle, clear of the ring
    before = labels.copy()
    assert fill_beside_metal(labels, hu, whole, 1, 3000.0) == 0
    assert np.array_equal(labels, before)
    # outside the region given, nothing is looked at or changed
    labels, hu = _capped_condyle()
    before = labels.copy()
    assert fill_beside_metal(labels, hu, (slice(0, 30), slice(0, 30), slice(5, 6)), 1, 3000.0) == 0
    assert np.array_equal(labels, before)
