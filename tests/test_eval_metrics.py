"""Stage-2 mask metrics: analytic oracles, a brute-force surface-distance reference, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from scipy.spatial import cKDTree

from femurseg.evaluation.metrics import (
    confusion_counts,
    overlap_metrics,
    segmentation_metrics,
    surface_metrics,
)


def ellipsoid(shape, centre, radii, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Voxels whose centre lies in the ellipsoid (centre and radii in mm)."""
    grids = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return r2 <= 1.0


def brute_force_surface(pred, truth, spacing):
    """Reference: surface = mask XOR 6-neighbour erosion; nearest distances with a k-d tree."""

    def surf(m):
        return np.argwhere(m ^ ndimage.binary_erosion(m)) * np.asarray(spacing)

    sp, st_ = surf(pred), surf(truth)
    d_pt = cKDTree(st_).query(sp)[0]
    d_tp = cKDTree(sp).query(st_)[0]
    hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    assd = np.concatenate([d_pt, d_tp]).mean()
    return hd95, assd, max(d_pt.max(), d_tp.max())


def test_counts_and_overlap_by_hand() -> None:
    truth = np.zeros((4, 4, 4), bool)
    pred = np.zeros((4, 4, 4), bool)
    truth[0, 0, :4] = True  # 4 voxels
    pred[0, 0, 2:4] = True  # 2 inside
    pred[3, 3, 3] = True  # 1 outside
    assert confusion_counts(pred, truth) == (2, 1, 2, 59)
    m = overlap_metrics(pred, truth)
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["iou"] == pytest.approx(2 / 5)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(59 / 60)
    assert m["accuracy"] == pytest.approx(61 / 64)


def test_nested_ellipsoids_dice_matches_volumes() -> None:
    shape = (60, 50, 70)
    c = (30.0, 25.0, 35.0)
    outer = ellipsoid(shape, c, (25, 20, 30))
    inner = ellipsoid(shape, c, (20, 16, 24))
    v_out = 4 / 3 * math.pi * 25 * 20 * 30
    v_in = 4 / 3 * math.pi * 20 * 16 * 24
    m = overlap_metrics(inner, outer)
    assert m["dice"] == pytest.approx(2 * v_in / (v_in + v_out), abs=0.01)
    assert m["iou"] == pytest.approx(v_in / v_out, abs=0.01)
    assert m["sensitivity"] == pytest.approx(v_in / v_out, abs=0.01)
    assert m["specificity"] == 1.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        overlap_metrics(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))


def test_empty_mask_conventions() -> None:
    empty = np.zeros((8, 8, 8), bool)
    full = empty.copy()
    full[2:5, 2:5, 2:5] = True
    both = segmentation_metrics(empty, empty, (1, 1, 1))
    assert both["dice"] == 1.0 and both["iou"] == 1.0
    assert both["hd95_mm"] == 0.0 and both["assd_mm"] == 0.0 and both["nsd"] == 1.0
    assert math.isnan(both["sensitivity"]) and both["specificity"] == 1.0
    miss = segmentation_metrics(empty, full, (1, 1, 1))
    assert miss["dice"] == 0.0 and miss["sensitivity"] == 0.0
    assert math.isinf(miss["hd95_mm"]) and math.isinf(miss["assd_mm"]) and miss["nsd"] == 0.0
    spurious = segmentation_metrics(full, empty, (1, 1, 1))
    assert spurious["dice"] == 0.0 and math.isnan(spurious["sensitivity"])
    assert math.isinf(spurious["hd95_mm"]) and spurious["specificity"] < 1.0


@pytest.mark.parametrize(
    ("spacing", "shift"),
    [((1.0, 1.0, 1.0), (3, 0, 0)), ((0.8, 0.8, 2.5), (0, 2, 1)), ((2.0, 1.0, 1.0), (1, 1, 0))],
)
def test_monai_matches_brute_force_on_shifted_ball(spacing, shift) -> None:
    shape = (40, 40, 30)
    ball = ellipsoid(shape, (15.0, 15.0, 30.0), (9.0, 9.0, 9.0), spacing)
    moved = np.roll(ball, shift, axis=(0, 1, 2))
    got = surface_metrics(moved, ball, spacing)
    hd95, assd, _ = brute_force_surface(moved, ball, spacing)
    assert got["hd95_mm"] == pytest.approx(hd95, rel=1e-4)
    assert got["assd_mm"] == pytest.approx(assd, rel=1e-4)


def test_shifted_cube_hausdorff_is_the_shift() -> None:
    spacing = (1.0, 1.0, 2.0)
    cube = np.zeros((30, 30, 30), bool)
    cube[8:20, 8:20, 8:20] = True
    moved = np.roll(cube, 3, axis=2)  # 3 voxels of 2 mm along z
    *_, hd_max = brute_force_surface(moved, cube, spacing)
    assert hd_max == pytest.approx(6.0)
    got = surface_metrics(moved, cube, spacing)
    assert 0.0 < got["hd95_mm"] <= 6.0 + 1e-6
    assert 0.0 < got["assd_mm"] < got["hd95_mm"]
    assert got["nsd"] < 1.0


def test_concentric_spheres_distance_is_radius_gap() -> None:
    shape = (50, 50, 50)
    c = (25.0, 25.0, 25.0)
    outer = ellipsoid(shape, c, (18, 18, 18))
    inner = ellipsoid(shape, c, (12, 12, 12))
    got = surface_metrics(inner, outer, (1.0, 1.0, 1.0), tolerance_mm=1.0)
    assert got["hd95_mm"] == pytest.approx(6.0, abs=1.0)
    assert got["assd_mm"] == pytest.approx(6.0, abs=1.0)
    assert got["nsd"] < 0.05  # every surface voxel is ~6 mm from the other surface


def test_identical_masks_are_perfect_and_a_shift_is_not() -> None:
    ball = ellipsoid((30, 30, 30), (15, 15, 15), (8, 8, 8))
    same = segmentation_metrics(ball, ball, (1.0, 1.0, 1.0))
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0 and same["nsd"] == 1.0
    moved = segmentation_metrics(np.roll(ball, 2, axis=0), ball, (1.0, 1.0, 1.0))
    assert moved["dice"] < 1.0 and moved["hd95_mm"] > 0.0 and moved["nsd"] < 1.0
    assert same["pred_ml"] == pytest.approx(ball.sum() / 1000)


def test_crop_does_not_change_surface_metrics() -> None:
    big = np.zeros((80, 80, 80), bool)
    ball = ellipsoid((20, 20, 20), (10, 10, 10), (6, 6, 6))
    big[50:70, 5:25, 30:50] = ball
    moved = np.roll(big, 2, axis=1)
    cropped = surface_metrics(moved, big, (1.0, 1.0, 1.0), margin_voxels=1)
    wide = surface_metrics(moved, big, (1.0, 1.0, 1.0), margin_voxels=100)
    assert cropped == pytest.approx(wide)


masks = arrays(np.bool_, (4, 5, 3))


@settings(max_examples=60, deadline=None)
@given(masks, masks)
def test_overlap_properties(a, b) -> None:
    ab, ba = overlap_metrics(a, b), overlap_metrics(b, a)
    assert ab["dice"] == pytest.approx(ba["dice"])
    assert ab["iou"] == pytest.approx(ba["iou"])
    assert 0.0 <= ab["iou"] <= ab["dice"] <= 1.0
    assert ab["dice"] == pytest.approx(2 * ab["iou"] / (1 + ab["iou"]))
    if not np.array_equal(a, b):
        assert ab["dice"] < 1.0  # negative case: different masks are never perfect
    else:
        assert ab["dice"] == 1.0
    assert 0.0 <= ab["accuracy"] <= 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2))
def test_dice_is_one_only_for_equal_masks(shift, axis) -> None:
    ball = ellipsoid((16, 16, 16), (8, 8, 8), (4, 4, 4))
    m = overlap_metrics(np.roll(ball, shift, axis=axis), ball)
    assert 0.0 < m["dice"] < 1.0
