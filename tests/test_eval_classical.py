"""Classical baseline: a synthetic two-leg volume and, when present, the real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from femurseg.baselines.classical import ClassicalConfig, segment_classical
from femurseg.errors import ConfigError
from femurseg.evaluation.metrics import overlap_metrics
from femurseg.types import Label, Volume

SPACING = 2.0


def two_legs(flip_x: bool = False) -> tuple[Volume, np.ndarray]:
    """Soft-tissue body with two bone cylinders (cortex 1200 HU, marrow -50 HU) and a pelvis.

    Returns the volume and its truth label map (patient left at smaller world x).
    """
    shape = (70, 40, 60)
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0, np.float32)
    hu[((i - 35) / 32.0) ** 2 + ((j - 20) / 18.0) ** 2 <= 1] = 40.0  # body, mm-free ratios
    truth = np.zeros(shape, np.uint8)
    for ci, side in ((17, Label.FEMUR_LEFT), (53, Label.FEMUR_RIGHT)):
        r2 = (i - ci) ** 2 + (j - 20) ** 2
        shaft = (r2 <= 6**2) & (k >= 5) & (k < 45)
        hu[shaft] = 1200.0
        hu[(r2 <= 4**2) & (k >= 6) & (k < 44)] = -50.0  # marrow inside the shell
        truth[shaft] = side
    # a thin pelvis-like plate above both femurs, separated from them by a 4 mm gap
    hu[8:62, 14:26, 47:50] = 800.0
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = (-70.0, -40.0, 0.0)
    if flip_x:  # same anatomy, i axis now runs towards patient left
        hu, truth = hu[::-1].copy(), truth[::-1].copy()
        affine[0, 0] = -SPACING
        affine[0, 3] = -70.0 + SPACING * (shape[0] - 1)
    return Volume(hu, affine), truth


@pytest.mark.parametrize("flip_x", [False, True])
def test_finds_both_cylinders_on_the_right_sides(flip_x: bool) -> None:
    vol, truth = two_legs(flip_x)
    lab = segment_classical(vol)
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        assert overlap_metrics(lab == side, truth == side)["dice"] > 0.9
    left_x = vol.index_to_world(np.argwhere(lab == Label.FEMUR_LEFT).mean(axis=0))[0]
    right_x = vol.index_to_world(np.argwhere(lab == Label.FEMUR_RIGHT).mean(axis=0))[0]
    assert left_x < right_x  # RAS+: patient left has smaller world x


def test_no_bone_gives_empty_labels() -> None:
    vol, _ = two_legs()
    soft = Volume(np.minimum(vol.array, 40.0), vol.affine)
    assert not segment_classical(soft).any()


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="seed_radius_mm"):
        ClassicalConfig(seed_radius_mm=0.0)
    with pytest.raises(ConfigError, match="bone_hu"):
        ClassicalConfig(bone_hu=5000.0)


@pytest.mark.shared
def test_real_ct_sides_and_overlap(totalseg_case: Path) -> None:
    from femurseg.io import read_labels, read_volume

    vol = read_volume(totalseg_case / "ct.nii.gz")
    lab = segment_classical(vol)
    seg = totalseg_case / "segmentations"
    truth = {
        Label.FEMUR_LEFT: read_labels(seg / "femur_left.nii.gz", like=vol)[0] > 0,
        Label.FEMUR_RIGHT: read_labels(seg / "femur_right.nii.gz", like=vol)[0] > 0,
    }
    for side, other in (
        (Label.FEMUR_LEFT, Label.FEMUR_RIGHT),
        (Label.FEMUR_RIGHT, Label.FEMUR_LEFT),
    ):
        right = overlap_metrics(lab == side, truth[side])["dice"]
        swapped = overlap_metrics(lab == side, truth[other])["dice"]
        # Measured 0.43 (left, hip implant) and 0.31 (right): the 3 mm hip joints are fused, so
        # each femoral head comes out partly merged with its acetabulum. A floor, not a goal.
        assert right > 0.25
        assert swapped < 0.01
