"""The lower chest in the phantom (ribs, thoracic vertebrae, lung bases, heart): off by default
(nothing drawn, nothing recorded), and when on, above the lumbar spine and never labelled femur.
(That default cases stay byte-identical to those made before the chest existed was checked by
generating the same seeds with the previous commit.)

Tiny cases (3 mm voxels, no supersampling) on procedural bones.
"""

from __future__ import annotations

import numpy as np
import pytest

from femurseg.errors import ConfigError
from femurseg.phantoms.generate import Case, generate_case
from femurseg.phantoms.params import (
    FovKind,
    ImplantParams,
    PhantomConfig,
    ScannerParams,
    ThoraxParams,
)
from femurseg.phantoms.tissues.materials import Tissue

SP = 3.0


def _cfg(thorax: ThoraxParams) -> PhantomConfig:
    return PhantomConfig(
        fov=FovKind.HIP,
        spacing=(SP, SP, SP),
        recon_circle=False,
        abdomen_probability=1.0,
        scanner=ScannerParams(max_render_mm=SP, tight_fov_probability=0.0),
        implants=ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0),
        thorax=thorax,
    )


#: views that end well above the domes, so lung, heart and ribs are in them
HIGH = ThoraxParams(probability=1.0, reach_mm=(190.0, 200.0), dome_above_l1_mm=(30.0, 40.0))


@pytest.fixture(scope="module")
def plain() -> Case:
    return generate_case(_cfg(ThoraxParams()), np.random.default_rng(8), None, keep_clean=True)


@pytest.fixture(scope="module")
def chest() -> Case:
    # a seed whose view reaches far above L1 (the top is drawn between L3 and L1 + reach)
    for seed in range(8, 40):
        case = generate_case(_cfg(HIGH), np.random.default_rng(seed), None, keep_clean=True)
        top = case.image.affine[2, 3] + SP * (case.image.shape[2] - 1)
        if top > case.meta["spine"]["l1_top_z"] + 150.0:
            return case
    raise AssertionError("no seed drew a view 150 mm above L1")


def test_off_by_default_and_the_record_is_unchanged(plain: Case) -> None:
    assert ThoraxParams().probability == 0.0
    assert "thorax" not in plain.meta
    same = generate_case(_cfg(ThoraxParams()), np.random.default_rng(8), None)
    assert np.array_equal(same.image.array, plain.image.array)


def test_chest_above_the_spine_has_lungs_ribs_and_heart_never_femur(chest: Case) -> None:
    th = chest.meta["thorax"]
    assert th["levels"] == ["T12", "T11", "T10", "T9", "T8"]
    clean, tis, lab = chest.rendered.clean, chest.rendered.tissue, chest.labels
    assert clean is not None and tis is not None
    z = chest.image.affine[2, 3] + SP * np.arange(chest.image.shape[2])
    dome = max(th["domes_z"])
    above = z > dome + 20.0
    assert above.sum() >= 5
    # lung: air-filled tissue inside the body, many times the slices' bone
    lung = (tis == Tissue.GAS) & (clean < -700.0)
    per_slice = lung.sum(axis=(0, 1)) * SP**2 / 100.0  # cm2
    assert per_slice[above].min() > 50.0
    # well below the deepest recess only bowel gas is air-filled: a fraction of a lung slice
    low = z < chest.meta["spine"]["l1_top_z"] - 100.0
    assert low.any() and per_slice[low].max() < 0.4 * per_slice[above].min()
    # ribs and thoracic vertebrae: bone on both sides of the midline above the domes
    bone = np.isin(tis, (Tissue.CORTICAL, Tissue.CANCELLOUS, Tissue.MARROW))
    ks = np.flatnonzero(above)
    mid = chest.image.shape[0] // 2
    for k in ks[:3]:
        cols = np.flatnonzero(bone[:, :, k].any(axis=1))
        assert cols.min() < mid - 25 and cols.max() > mid + 25  # ribs well out to both sides
    # the heart's blood and muscle lie in front of the spine, above the left dome
    heart = th["heart_centre"]
    k = int(round((heart[2] - chest.image.affine[2, 3]) / SP))
    if 0 <= k < chest.image.shape[2]:
        i = int(round((heart[0] - chest.image.affine[0, 3]) / SP))
        j = int(round((heart[1] - chest.image.affine[1, 3]) / SP))
        assert tis[i, j, k] in (Tissue.ORGAN, Tissue.MUSCLE, Tissue.FAT)
        assert -50.0 < clean[i, j, k] < 600.0
    # nothing up there is femur
    assert not lab[:, :, z > chest.meta["spine"]["l1_top_z"]].any()


def test_config_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match="probability"):
        ThoraxParams(probability=1.5)
    with pytest.raises(ConfigError, match="lung_hu"):
        ThoraxParams(lung_hu=(-200.0, -100.0))
    with pytest.raises(ConfigError, match="low > high"):
        ThoraxParams(reach_mm=(100.0, 50.0))
