"""Osteophytes and joint cartilage in the phantom.

Osteophytes: off by default (nothing drawn, nothing recorded); when on, small bony spurs at
the margins of the hip, knee and patellofemoral joints that never reach the
neighbouring bone, painted as bone, and labelled femur only where they grow from a femur.
(That default cases stay byte-identical to those made before osteophytes existed was checked by
generating the same seed, a full-leg view at 2 x 2 x 3 mm, with the previous commit: image,
labels and record equal.)

Cartilage: off by default; when on, the non-bone voxels near both bones of a joint read the
case's cartilage HU, and nothing else (labels included) changes.

Tiny cases (3 mm voxels, no supersampling) on procedural bones.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.osteophytes import (
    MARGIN_MM,
    Blob,
    blob_mask,
    draw_osteophytes,
    with_blobs,
)
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.generate import Case, generate_case, make_anatomy
from femurseg.phantoms.params import (
    FovKind,
    ImplantParams,
    JointTissueParams,
    OsteophyteParams,
    PhantomConfig,
    ScannerParams,
)
from femurseg.phantoms.tissues.materials import Tissue

SP = 3.0
ALL = OsteophyteParams(probability=1.0, joint_probability=1.0)


def _cfg(osteophytes: OsteophyteParams, joints: JointTissueParams | None = None) -> PhantomConfig:
    return PhantomConfig(
        fov=FovKind.KNEE,
        spacing=(SP, SP, SP),
        recon_circle=False,
        scanner=ScannerParams(max_render_mm=SP, tight_fov_probability=0.0),
        implants=ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0),
        osteophytes=osteophytes,
        joints=joints or JointTissueParams(),
    )


@pytest.fixture(scope="module")
def plain() -> Case:
    return generate_case(_cfg(OsteophyteParams()), np.random.default_rng(3), None)


@pytest.fixture(scope="module")
def arthritic() -> Case:
    return generate_case(_cfg(ALL), np.random.default_rng(3), None)


def test_off_by_default_and_nothing_recorded(plain: Case) -> None:
    assert PhantomConfig().osteophytes.probability == 0.0
    assert plain.anatomy.osteophytes == []
    assert "osteophytes" not in plain.meta


def test_spurs_sit_on_joint_margins_and_never_reach_the_other_bone() -> None:
    cfg = PhantomConfig(osteophytes=ALL)
    streams = np.random.default_rng(3).spawn(12)
    anatomy, _ = make_anatomy(cfg, streams[0], None)
    blobs = draw_osteophytes(anatomy, ALL, streams[11])
    assert {b.joint for b in blobs} == {"hip", "knee", "patellofemoral"}
    assert {b.bone for b in blobs} >= {"femur_left", "femur_right", "pelvis", "tibfib_left"}
    dense = {
        name: cKDTree(
            np.concatenate([mesh.vertices, trimesh.sample.sample_surface(mesh, 200_000, seed=1)[0]])
        )
        for name, mesh in anatomy.meshes.items()
    }
    unit = np.random.default_rng(0).normal(size=(300, 3))
    unit /= np.linalg.norm(unit, axis=1)[:, None]
    for b in blobs:
        surface = b.centre + (unit * b.radii) @ b.axes.T
        # attached: its centre lies on its own bone's surface
        assert dense[b.bone].query(b.centre)[0] < 0.01
        # on a margin: its own bone lies MARGIN_MM from the joint's other bone there
        others = [k for k in anatomy.meshes if k != b.bone]
        gap = min(dense[k].query(b.centre)[0] for k in others)
        assert MARGIN_MM[0] - 1.0 < gap < MARGIN_MM[1] + 1.0
        # and never reaching another bone
        assert min(dense[k].query(surface)[0].min() for k in others) > 1.0
    # off, or a case that draws no osteoarthritis: nothing
    assert draw_osteophytes(anatomy, OsteophyteParams(), streams[11]) == []


def test_femur_spurs_are_femur_and_the_others_are_bone_but_not_labelled(
    plain: Case, arthritic: Case
) -> None:
    blobs = arthritic.anatomy.osteophytes
    assert blobs and "osteophytes" in arthritic.meta
    assert len(arthritic.meta["osteophytes"]) == len(blobs)
    affine, shape = arthritic.image.affine, arthritic.labels.shape
    for value, name in ((1, "femur_left"), (2, "femur_right")):
        mine = blob_mask([b for b in blobs if b.bone == name], affine, shape)
        assert mine is not None
        spur = mine.to_full()
        before = plain.labels == value
        after = arthritic.labels == value
        assert np.array_equal(before & after, before)  # the femur only grows
        assert not (after & ~before & ~spur).any()  # and only where its spurs are
        assert (after & ~before).sum() > 0
    others = blob_mask([b for b in blobs if not b.bone.startswith("femur")], affine, shape)
    assert others is not None
    on_others = others.to_full() & (arthritic.labels == 0) & (plain.labels == 0)
    assert on_others.sum() > 0
    # painted as bone there (HU well above soft tissue on average)
    assert float(np.mean(arthritic.image.array[on_others])) > 150.0


def test_blob_raster_volume_and_union() -> None:
    grid = RenderGrid((40, 40, 40), (0.5, 0.5, 0.5), (-10.0, -10.0, -10.0))
    blob = Blob("femur_left", "knee", np.zeros(3), np.eye(3), np.array([4.0, 3.0, 2.0]))
    crop = blob_mask([blob], grid.affine, grid.shape)
    assert crop is not None
    volume = crop.count * 0.125
    assert volume == pytest.approx(4.0 / 3.0 * np.pi * 24.0, rel=0.08)
    far = Blob("femur_left", "knee", np.full(3, 500.0), np.eye(3), np.ones(3))
    assert blob_mask([far], grid.affine, grid.shape) is None
    bone = MaskCrop(np.ones((4, 4, 4), bool), (slice(0, 4), slice(0, 4), slice(0, 4)), grid.shape)
    both = with_blobs(bone, crop)
    assert both.count == bone.count + crop.count  # apart, so nothing shared
    assert np.array_equal(both.to_full(), bone.to_full() | crop.to_full())
    assert with_blobs(bone, None) is bone


@pytest.mark.parametrize(
    "change",
    [{"probability": 1.5}, {"joint_probability": -0.1}, {"count": (5, 2)}, {"radius_mm": (3, 1)}],
)
def test_config_ranges_are_checked(change: dict) -> None:
    with pytest.raises(ConfigError):
        OsteophyteParams(**change)


def test_cartilage_fills_the_joint_spaces_and_changes_nothing_else(plain: Case) -> None:
    assert PhantomConfig().joints.probability == 0.0
    assert not (plain.rendered.tissue == Tissue.CARTILAGE).any()
    lit = generate_case(
        _cfg(OsteophyteParams(), JointTissueParams(probability=1.0, hu=(90.0, 90.0))),
        np.random.default_rng(3),
        None,
        keep_clean=True,
    )
    dark = generate_case(_cfg(OsteophyteParams()), np.random.default_rng(3), None, keep_clean=True)
    cartilage = lit.rendered.tissue == Tissue.CARTILAGE
    assert cartilage.sum() > 20
    assert lit.meta["joint_tissue"] == {"hu": 90.0, "voxels": int(cartilage.sum())}
    assert "joint_tissue" not in dark.meta
    assert lit.rendered.clean is not None and dark.rendered.clean is not None
    changed = lit.rendered.clean != dark.rendered.clean
    assert np.array_equal(changed, cartilage)  # only the joint spaces (no supersampling here)
    assert np.allclose(lit.rendered.clean[cartilage], 90.0)
    assert not np.isin(dark.rendered.tissue[cartilage], [Tissue.CORTICAL, Tissue.CANCELLOUS]).any()
    assert np.array_equal(lit.labels, dark.labels)  # never femur
    # every cartilage voxel lies beside both bones of a joint: a femur and another bone
    bone = np.isin(dark.rendered.tissue, [Tissue.CORTICAL, Tissue.CANCELLOUS, Tissue.MARROW])
    femur = dark.labels > 0
    near_femur = ndimage.binary_dilation(femur, iterations=1)
    near_other = ndimage.binary_dilation(bone & ~femur, iterations=1)
    assert bool((near_femur & near_other)[cartilage].all())


def test_joint_config_ranges_are_checked() -> None:
    for change in ({"probability": 2.0}, {"hu": (200.0, 100.0)}, {"depth_mm": 0.0}):
        with pytest.raises(ConfigError):
            JointTissueParams(**change)  # type: ignore[arg-type]
