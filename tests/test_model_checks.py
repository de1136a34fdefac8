"""The femur checks: size, side of the body midline, thickness, bone density, confidence; and
the pipeline removing a side that fails them."""

from __future__ import annotations

import numpy as np
import pytest

from femurseg.errors import ConfigError
from femurseg.preprocessing.grid import Grid
from femurseg.segmentation.checks import (
    FemurCheckRules,
    FemurStatus,
    body_midline,
    check_femur,
    mask_thickness_mm,
)
from femurseg.types import Label

SP = (2.0, 2.0, 2.0)


def _grid(shape: tuple[int, int, int], origin_x: float = -200.0) -> Grid:
    aff = np.diag([*SP, 1.0])
    aff[:3, 3] = (origin_x, -150.0, 0.0)
    return Grid(shape, aff)


def _cylinder(shape: tuple[int, int, int], cx: float, radius_mm: float) -> np.ndarray:
    """A vertical solid rod of ``radius_mm`` centred at index x ``cx`` (a femoral shaft)."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disc = (x - cx) ** 2 + (y - shape[1] / 2) ** 2 <= (radius_mm / SP[0]) ** 2
    return np.repeat(disc[:, :, None], shape[2], axis=2)


def test_thickness_of_rod_and_plate() -> None:
    rod = _cylinder((40, 40, 60), 20, 12.0)
    assert 10.0 <= mask_thickness_mm(rod, SP, 2.0) <= 14.0
    plate = np.zeros((60, 60, 60), dtype=bool)
    plate[10:50, 28:32, 5:55] = True  # 8 mm thick, like an iliac wing
    assert mask_thickness_mm(plate, SP, 2.0) <= 5.0


def test_cut_face_is_not_a_surface() -> None:
    # a rod cut by the scan's edge (the mask fills the crop's top and bottom faces)
    rod = _cylinder((40, 40, 8), 20, 12.0)
    assert mask_thickness_mm(rod, SP, 2.0) >= 10.0


def test_rod_on_its_side_is_found() -> None:
    shape = (200, 80, 60)
    g = _grid(shape)
    rod = _cylinder(shape, 150, 12.0)  # world x = -200 + 300 = +100: patient right
    chk = check_femur(Label.FEMUR_RIGHT, rod, (0, 0, 0), g, 0.0, FemurCheckRules())
    assert chk.status is FemurStatus.FOUND, chk.reasons
    assert chk.centre_x_mm == pytest.approx(100.0, abs=1.0)


def test_wrong_side_of_midline_is_not_found() -> None:
    shape = (200, 80, 60)
    g = _grid(shape)
    rod = _cylinder(shape, 150, 12.0)  # patient right of the midline at x = 0
    chk = check_femur(Label.FEMUR_LEFT, rod, (0, 0, 0), g, 0.0, FemurCheckRules())
    assert chk.status is FemurStatus.NOT_FOUND
    assert any("midline" in r for r in chk.reasons)
    # unknown midline: the side rule cannot fire
    chk = check_femur(Label.FEMUR_LEFT, rod, (0, 0, 0), g, None, FemurCheckRules())
    assert chk.status is FemurStatus.FOUND


def test_thin_plate_and_small_piece_are_not_found() -> None:
    shape = (100, 100, 100)
    g = _grid(shape)
    plate = np.zeros(shape, dtype=bool)
    plate[70:95, 10:90, 10:90] = True  # 50 mm thick: a bone, not a plate
    plate[:, :, :] = False
    plate[60:64, 10:90, 10:90] = True  # 8 mm thick plate, 51 ml
    chk = check_femur(Label.FEMUR_RIGHT, plate, (0, 0, 0), g, None, FemurCheckRules())
    assert chk.status is FemurStatus.NOT_FOUND and "thick" in chk.reasons[0]
    small = np.zeros(shape, dtype=bool)
    small[80:88, 40:48, 40:48] = True  # 4 ml
    chk = check_femur(Label.FEMUR_RIGHT, small, (0, 0, 0), g, None, FemurCheckRules())
    assert chk.status is FemurStatus.NOT_FOUND and "ml" in chk.reasons[0]


def test_low_confidence_keeps_the_mask_with_a_reason() -> None:
    shape = (200, 80, 60)
    g = _grid(shape)
    rod = _cylinder(shape, 150, 12.0)
    prob = np.where(rod, 0.6, 0.0).astype(np.float32)
    chk = check_femur(Label.FEMUR_RIGHT, rod, (0, 0, 0), g, 0.0, FemurCheckRules(), prob)
    assert chk.status is FemurStatus.LOW_CONFIDENCE
    assert "probability" in chk.reasons[-1]
    off = check_femur(
        Label.FEMUR_RIGHT, rod, (0, 0, 0), g, 0.0, FemurCheckRules(enabled=False), prob
    )
    assert off.status is FemurStatus.FOUND


def test_mask_without_bone_dense_voxels_is_not_found() -> None:
    # A thick rod of enhanced soft tissue (a kidney: 150-300 HU) passes size, side and
    # thickness, but holds no voxel as dense as cortex; the same rod with a cortical shell
    # (osteoporotic, 600 HU) is a femur.
    shape = (40, 40, 60)
    g = _grid(shape, origin_x=60.0)
    rod = _cylinder(shape, 20, 14.0)
    kidney = np.where(rod, 240.0, 40.0).astype(np.float32)
    chk = check_femur(Label.FEMUR_RIGHT, rod, (0, 0, 0), g, None, FemurCheckRules(), hu=kidney)
    assert chk.status is FemurStatus.NOT_FOUND
    assert "HU" in chk.reasons[0] and chk.bone_hu == pytest.approx(240.0)
    shell = rod & ~_cylinder(shape, 20, 10.0)
    bone = np.where(shell, 600.0, kidney).astype(np.float32)
    chk = check_femur(Label.FEMUR_RIGHT, rod, (0, 0, 0), g, None, FemurCheckRules(), hu=bone)
    assert chk.status is FemurStatus.FOUND, chk.reasons
    off = FemurCheckRules(min_bone_hu=None)
    chk = check_femur(Label.FEMUR_RIGHT, rod, (0, 0, 0), g, None, off, hu=kidney)
    assert chk.status is FemurStatus.FOUND, chk.reasons
    assert chk.to_dict()["bone_hu"] == 240.0


def test_rules_validate() -> None:
    with pytest.raises(ConfigError):
        FemurCheckRules(min_volume_ml=-1.0)
    with pytest.raises(ConfigError):
        FemurCheckRules(min_mean_probability=2.0)


def _body(shape: tuple[int, int, int], lo: int, hi: int, table: bool) -> np.ndarray:
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[lo:hi, 10:60, :] = 40.0
    if table:
        hu[:, 62, :] = 500.0  # a one-voxel carbon skin across the whole width
    return hu


def test_midline_of_a_body_and_when_it_cannot_be_told() -> None:
    shape = (200, 70, 30)
    g = _grid(shape)
    hu = _body(shape, 40, 160, table=True)  # body from x=-120 to +118 (index 40..159)
    mid = body_midline(hu, g, -400.0)
    assert mid is not None and mid == pytest.approx(-1.0, abs=5.0)
    # the body touches the image's side: the visible body may be one leg, so no midline
    assert body_midline(_body(shape, 0, 120, table=False), g, -400.0) is None
    assert body_midline(np.full(shape, -1000.0, dtype=np.float32), g, -400.0) is None


def test_midline_is_in_world_mm() -> None:
    # the midline is a world x, not an index: move the grid and it moves with it
    shape = (200, 70, 30)
    g = _grid(shape, origin_x=0.0)
    hu = _body(shape, 20, 100, table=False)  # index 20..99 -> x 40..198
    mid = body_midline(hu, g, -400.0)
    assert mid == pytest.approx(119.0, abs=5.0)
