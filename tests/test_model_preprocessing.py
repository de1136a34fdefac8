"""Preprocessing: grids, resampling, crops and paste-back keep world positions (with oracles).

The oracle is a linear function of world position: linear interpolation reproduces it exactly,
so any error in spacing, origin, mirroring or axis order shows up as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from femurseg.preprocessing import (
    Box,
    Grid,
    box_iou,
    crop,
    crop_grid,
    index_map,
    mask_box,
    mirror_grid,
    normalise_hu,
    pad_to_multiple,
    paste_back,
    resample,
    resample_to_spacing,
    voxel_range,
)

COEF = np.array([0.7, -1.3, 0.4])


def field(grid: Grid) -> np.ndarray:
    """A linear function of world position sampled at the voxel centres of ``grid``."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), axis=-1)
    world = grid.index_to_world(idx.reshape(-1, 3)).reshape(*grid.shape, 3)
    return (world @ COEF + 5.0).astype(np.float32)


def flipped_affine(
    spacing: tuple[float, float, float], flips: tuple[bool, bool, bool]
) -> np.ndarray:
    aff = np.diag([*(-s if f else s for s, f in zip(spacing, flips, strict=True)), 1.0])
    aff[:3, 3] = [-20.0, 13.0, -7.0]
    return aff


def interior(grid: Grid, src: Grid, margin_vox: float) -> np.ndarray:
    """Voxels of ``grid`` whose centre lies ``margin_vox`` source voxels inside ``src``."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), axis=-1)
    s = src.world_to_index(grid.index_to_world(idx.reshape(-1, 3)))
    n = np.asarray(src.shape)
    ok = np.all((s >= margin_vox) & (s <= n - 1 - margin_vox), axis=1)
    return ok.reshape(grid.shape)


spacings = st.tuples(*[st.sampled_from([0.7, 1.0, 1.5, 2.0])] * 3)
flips = st.tuples(st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sp=spacings, fl=flips, target=st.sampled_from([1.1, 2.5, 4.0]))
def test_resample_keeps_world_position(sp, fl, target) -> None:
    src = Grid((20, 17, 23), flipped_affine(sp, fl))
    out, dst = resample_to_spacing(field(src), src, target, fill=-99.0)
    assert np.allclose(dst.spacing, target)
    assert np.allclose(dst.edge_corners_world().mean(0), src.edge_corners_world().mean(0))
    # area averaging blurs by up to one block (k source voxels) at the volume's edges
    k = max(1.0, np.floor(target / min(sp)))
    inside = interior(dst, src, 2 * k + 1.0)
    if inside.any():
        assert np.allclose(out.numpy()[inside], field(dst)[inside], atol=1e-3)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sp=spacings,
    fl=flips,
    lo=st.tuples(*[st.floats(-0.45, 0.1)] * 3),
    size=st.tuples(*[st.floats(0.1, 0.5)] * 3),
    margin=st.floats(0, 5),
    step=st.sampled_from([0.8, 1.5, 3.0]),
    mirror=st.booleans(),
)
def test_crop_then_paste_back_round_trip(sp, fl, lo, size, margin, step, mirror) -> None:
    like = Grid((24, 20, 22), flipped_affine(sp, fl))
    base = field(like)
    corners = like.edge_corners_world()
    extent = corners.max(0) - corners.min(0)
    start = corners.mean(0) + np.multiply(lo, extent)
    box = Box(tuple(start), tuple(start + np.multiply(size, extent)))
    values, grid = crop(base, like, box.expand(margin), step, mirror=mirror)
    # the crop holds the same world function (mirroring changes index order, not positions)
    k = max(1.0, np.floor(step / min(sp)))
    inner = interior(grid, like, 2 * k + 1.0)
    if inner.any():
        assert np.allclose(values.numpy()[inner], field(grid)[inner], atol=1e-3)
    pasted = paste_back(values, grid, like)
    assert pasted is not None
    region = Grid(like.shape, like.affine).sub_grid(
        [s.start for s in pasted.index], pasted.values.shape
    )
    k_back = max(1.0, np.floor(max(sp) / step))
    ok = interior(region, grid, 2 * k_back + 1.0) & interior(region, like, 1.0)
    if ok.any():
        assert np.allclose(pasted.values[ok], base[pasted.index][ok], atol=1e-3)


def test_paste_back_with_wrong_grid_is_detected() -> None:
    """Negative control: pasting mirrored values as if unmirrored must not round-trip."""
    like = Grid((24, 20, 22), flipped_affine((1.0, 1.0, 1.0), (False, False, False)))
    base = field(like)
    box = Box((-10.0, 15.0, -5.0), (0.0, 25.0, 5.0))
    values, grid = crop(base, like, box, 1.0, mirror=True)
    unmirrored = mirror_grid(grid)
    wrong = paste_back(values, unmirrored, like)
    right = paste_back(values, grid, like)
    assert wrong is not None and right is not None
    core = (slice(1, -1),) * 3  # away from the crop's edges, where values are clamped
    assert np.abs(right.values - base[right.index])[core].max() < 1e-3
    assert np.abs(wrong.values - base[wrong.index])[core].max() > 1.0


def test_paste_back_outside_target_and_crop_outside_volume() -> None:
    like = Grid((10, 10, 10), np.eye(4))
    far = Grid(
        (5, 5, 5), np.diag([1.0, 1.0, 1.0, 1.0]) + np.array([[0, 0, 0, 100.0]] * 3 + [[0] * 4])
    )
    assert paste_back(np.ones((5, 5, 5), np.float32), far, like) is None
    with pytest.raises(ValueError, match="does not overlap"):
        crop_grid(like, Box((50.0, 50.0, 50.0), (60.0, 60.0, 60.0)), 1.0)


def test_paste_back_fills_outside_crop_with_zero_and_threshold_after() -> None:
    like = Grid((30, 30, 30), np.eye(4))
    grid = crop_grid(like, Box((10.0, 10.0, 10.0), (19.0, 19.0, 19.0)), 1.5)
    prob = np.ones(grid.shape, np.float32)
    pasted = paste_back(prob, grid, like)
    assert pasted is not None
    starts = [s.start for s in pasted.index]
    stops = [s.stop for s in pasted.index]
    assert all(9 <= a <= 11 for a in starts) and all(18 <= b <= 21 for b in stops)
    assert pasted.values.min() >= 0.99


def test_index_map_refuses_rotated_grids() -> None:
    a = Grid((4, 4, 4), np.eye(4))
    rot = np.eye(4)
    rot[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="axis directions"):
        index_map(a, Grid((4, 4, 4), rot))
    scale, offset = index_map(a, mirror_grid(a))
    assert np.allclose(scale, [-1, 1, 1]) and np.allclose(offset, [3, 0, 0])


def test_resample_nearest_and_area_average() -> None:
    g = Grid((8, 8, 8), np.eye(4))
    arr = np.zeros((8, 8, 8), np.float32)
    arr[::2] = 1.0  # stripes along x: area averaging by 2 gives 0.5 everywhere
    out, _ = resample_to_spacing(arr, g, 2.0)
    assert np.allclose(out.numpy(), 0.5)
    near, _ = resample_to_spacing(arr, g, 2.0, order=0)
    assert set(np.unique(near.numpy())) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="order"):
        resample(arr, g, g, order=3)


@settings(max_examples=40, deadline=None)
@given(
    lo=st.tuples(*[st.floats(-100, 100)] * 3),
    size=st.tuples(*[st.floats(0.5, 50)] * 3),
    margin=st.floats(0, 20),
    shift=st.tuples(*[st.floats(-60, 60)] * 3),
)
def test_box_iou_properties(lo, size, margin, shift) -> None:
    a = Box(lo, tuple(np.add(lo, size)))
    b = Box(tuple(np.add(lo, shift)), tuple(np.add(np.add(lo, size), shift)))
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, b) == pytest.approx(box_iou(b, a))
    assert 0.0 <= box_iou(a, b) <= 1.0 + 1e-9
    big = a.expand(margin)
    assert box_iou(a, big) == pytest.approx(a.volume_ml / big.volume_ml, rel=1e-6)
    if any(abs(s) >= z for s, z in zip(shift, size, strict=True)):
        assert box_iou(a, b) == 0.0
    else:
        assert box_iou(a, b) > 0.0
    assert box_iou(a, None) == 0.0


def test_box_validation() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        Box((0.0, 0.0, 1.0), (1.0, 1.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        Box((0.0, 0.0, float("nan")), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="margin"):
        Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).expand(-1.0)


@settings(max_examples=30, deadline=None)
@given(
    fl=flips,
    sp=spacings,
    lo=st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8)),
    ext=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
)
def test_mask_box_and_voxel_range_round_trip(fl, sp, lo, ext) -> None:
    grid = Grid((15, 15, 15), flipped_affine(sp, fl))
    mask = np.zeros(grid.shape, bool)
    hi = np.add(lo, ext)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    box = mask_box(mask, grid)
    assert box is not None
    assert np.allclose(box.size_mm, np.multiply(ext, sp))
    rng = voxel_range(box, grid)
    assert rng == tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    assert mask_box(np.zeros(grid.shape, bool), grid) is None


def test_pad_to_multiple_and_normalise() -> None:
    t = torch.arange(5 * 6 * 7, dtype=torch.float32).reshape(5, 6, 7)
    padded, index = pad_to_multiple(t, 4, value=-1.0)
    assert padded.shape == (8, 8, 8)
    assert torch.equal(padded[index], t)
    assert padded[7, 7, 7] == -1.0
    hu = np.array([-2000.0, -200.0, 700.0, 1600.0, 5000.0])
    assert np.allclose(normalise_hu(hu, -200, 1600), [0, 0, 0.5, 1, 1])
    assert torch.allclose(
        normalise_hu(torch.tensor(hu), -200, 1600), torch.tensor([0, 0, 0.5, 1, 1])
    )
    with pytest.raises(ValueError, match="greater"):
        normalise_hu(hu, 100, 100)
