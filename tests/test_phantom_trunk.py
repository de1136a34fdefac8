"""Trunk side of the phantom: lumbar spine, abdomen, table contact, bone HU draws.

One tiny case (4 mm voxels, no supersampling) whose hip field of view reaches up into the
lumbar spine.
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
    TableParams,
    TissueParams,
    TrunkParams,
)
from femurseg.phantoms.tissues.materials import Tissue, draw_case_tissues
from femurseg.phantoms.tissues.spine import place_spine

SP = 4.0
BONE = [Tissue.CORTICAL, Tissue.CANCELLOUS, Tissue.MARROW]


def _cfg(abdomen: float) -> PhantomConfig:
    return PhantomConfig(
        fov=FovKind.HIP,
        spacing=(SP, SP, SP),
        recon_circle=False,
        abdomen_probability=abdomen,
        scanner=ScannerParams(max_render_mm=SP, tight_fov_probability=0.0),
        implants=ImplantParams(hip_probability=0.0, knee_probability=0.0),
    )


@pytest.fixture(scope="module")
def abdo() -> Case:
    return generate_case(_cfg(1.0), np.random.default_rng(31), None, keep_clean=True)


def _world_z(case: Case) -> np.ndarray:
    g = case.image
    return g.affine[2, 3] + g.affine[2, 2] * np.arange(g.shape[2])


def test_fov_reaches_lumbar_spine(abdo: Case) -> None:
    top = abdo.meta["fov"]["z_range_mm"][1]
    assert top > abdo.anatomy.landmarks["pelvis_top"][2] + 40.0
    assert top > abdo.meta["spine"]["s1_top"][2] + 60.0


def test_spine_present_above_sacrum_and_never_labelled(abdo: Case) -> None:
    tis, lab = abdo.rendered.tissue, abdo.labels
    z = _world_z(abdo)
    above = z > abdo.meta["spine"]["s1_top"][2] + 10.0
    assert above.sum() >= 5
    x = abdo.image.affine[0, 3] + SP * np.arange(tis.shape[0])
    mid = np.abs(x - abdo.anatomy.landmarks["pelvis_centre"][0]) < 30.0
    bone = np.isin(tis[mid][:, :, above], BONE)
    # Vertebral bone in most slices above S1 (the rest are discs), none of it labelled.
    assert (bone.any(axis=(0, 1))).mean() > 0.5
    assert not lab[:, :, above].any()
    assert (tis[:, :, above] == Tissue.ORGAN).any()  # discs, kidneys, vessels, liver


def test_abdomen_has_organs_gas_and_bone_free_of_air(abdo: Case) -> None:
    tis, clean = abdo.rendered.tissue, abdo.rendered.clean
    assert clean is not None
    z = _world_z(abdo)
    above = z > abdo.anatomy.landmarks["pelvis_top"][2]
    organ = tis[:, :, above] == Tissue.ORGAN
    assert organ.sum() > 100
    assert -20.0 < float(np.median(clean[:, :, above][organ])) < 120.0
    assert (tis[:, :, above] == Tissue.GAS).any()
    p = TissueParams()
    assert p.liver_hu[0] > p.fat_hu[1] and p.kidney_hu[1] < p.cancellous_dense_hu[0]


def test_body_rests_on_the_table(abdo: Case) -> None:
    """Below the body's lowest voxel at the midline there is support, not an air gap."""
    tis = abdo.rendered.tissue
    x = abdo.image.affine[0, 3] + SP * np.arange(tis.shape[0])
    i = int(np.argmin(np.abs(x - abdo.anatomy.landmarks["pelvis_centre"][0])))
    table = (Tissue.TABLE_FOAM, Tissue.TABLE_SHELL)
    soft = (Tissue.SKIN, Tissue.FAT, Tissue.MUSCLE)
    checked = 0
    for k in range(tis.shape[2]):
        col = tis[i, :, k]
        body = np.nonzero(np.isin(col, soft))[0]
        if not len(body):
            continue
        j = int(body.min())
        if j == 0:
            continue
        assert col[j - 1] in table, f"slice {k}: {Tissue(col[j - 1]).name} under the body"
        checked += 1
    assert checked > 10
    tb = abdo.meta["table"]
    assert 0.0 <= tb["mattress_mm"] <= TableParams().pad_mm[1]


def test_place_spine_is_ordered_above_s1(abdo: Case) -> None:
    spine = place_spine(abdo.anatomy, TrunkParams(), np.random.default_rng(0))
    zs = [v.centre[2] for v in spine.vertebrae]
    assert [v.name for v in spine.vertebrae] == ["L5", "L4", "L3", "L2", "L1"]
    assert np.all(np.diff(zs) > 20.0) and zs[0] > spine.s1_top[2]
    # Lordosis: the middle of the lumbar spine lies in front of its ends.
    ys = [v.centre[1] for v in spine.vertebrae]
    assert ys[2] > min(ys[0], ys[4])
    assert spine.top_z > abdo.anatomy.landmarks["pelvis_top"][2] + 100.0


def test_bone_hu_draws_centre_on_older_adults() -> None:
    p = TissueParams()
    rng = np.random.default_rng(0)
    draws = [draw_case_tissues(p, rng) for _ in range(300)]
    cort = np.array([d.cortical for d in draws])
    canc = np.array([d.cancellous for d in draws])
    assert 700.0 < np.median(cort) < 1050.0 and 80.0 < np.median(canc) < 170.0
    # Both ends still covered: young dense bone and osteoporotic bone.
    assert cort.max() > 1200.0 and cort.min() < 700.0
    assert canc.max() > 200.0 and canc.min() < 60.0


def test_trunk_and_table_validation() -> None:
    with pytest.raises(ConfigError):
        TableParams(pad_probability=1.5)
    with pytest.raises(ConfigError):
        TableParams(pad_mm=(30.0, 3.0))
    with pytest.raises(ConfigError):
        TrunkParams(psoas_mm=(26.0, 16.0))
    with pytest.raises(ConfigError):
        PhantomConfig(abdomen_probability=-0.1)
    with pytest.raises(ConfigError):
        TissueParams(bone_quality_a=0.0)
    with pytest.raises(ConfigError):
        ScannerParams(tight_fov_probability=2.0)
