"""Displaced femoral fractures in the phantom: off by default (nothing drawn, nothing
recorded), the two pieces voxelised on their own sides of the fracture plane with the gap
between them, and both labelled femur. (That default cases stay byte-identical to those made
before fractures existed was checked by generating the same seeds with the previous commit.)
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage as ndi

from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.fractures import Fracture, _rotation, fractured_crop
from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.voxelize import voxelize
from femurseg.phantoms.generate import Case, generate_case
from femurseg.phantoms.params import (
    FovKind,
    FractureParams,
    ImplantParams,
    PhantomConfig,
    ScannerParams,
)

SP = 2.0


def _rod() -> tuple[Anatomy, RenderGrid]:
    """A 20 mm x 20 mm x 120 mm bar along z, centred at the origin, on a 1 mm grid."""
    bar = trimesh.creation.box(extents=(20.0, 20.0, 120.0))
    grid = RenderGrid((40, 40, 140), (1.0, 1.0, 1.0), (-19.5, -19.5, -69.5))
    return Anatomy({"femur_left": bar}, {}), grid


def test_pieces_keep_their_sides_and_leave_the_gap_open() -> None:
    anatomy, grid = _rod()
    whole = voxelize(anatomy.meshes["femur_left"], grid.affine, grid.shape).to_full()
    up = np.array([0.0, 0.0, 1.0])
    frac = Fracture("left", "shaft", np.zeros(3), up, np.array([0.0, 0.0, 60.0]), np.eye(3), 4.0)
    broken = fractured_crop(anatomy, "femur_left", frac, grid).to_full()
    z = grid.axis(2)
    # without a turn: the bar less a 4 mm slab across the plane, and nothing else
    assert np.array_equal(broken, whole & (np.abs(z) > 2.0)[None, None, :])
    _, n = ndi.label(broken)
    assert n == 2
    # turned 10 degrees about a point 60 mm up: the lower piece stays, the upper one swings
    frac.rotation = _rotation(np.array([1.0, 0.0, 0.0]), np.deg2rad(10.0))
    frac.gap_mm = 0.0
    turned = fractured_crop(anatomy, "femur_left", frac, grid).to_full()
    low = z < -5.0
    assert np.array_equal(turned[:, :, low], whole[:, :, low])
    high = (z > 20.0) & (z < 55.0)
    assert not np.array_equal(turned[:, :, high], whole[:, :, high])
    # a rigid turn keeps the upper piece's volume
    assert abs(int(turned.sum()) - int(whole.sum())) < 0.03 * whole.sum()


def _cfg(frac: FractureParams) -> PhantomConfig:
    none = ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0)
    return PhantomConfig(
        fov=FovKind.HIP,
        spacing=(SP, SP, SP),
        recon_circle=False,
        scanner=ScannerParams(max_render_mm=SP, tight_fov_probability=0.0),
        implants=none,
        fractures=frac,
    )


@pytest.fixture(scope="module")
def pair() -> tuple[Case, Case]:
    plain = generate_case(_cfg(FractureParams()), np.random.default_rng(4), None)
    neck = FractureParams(probability=1.0, kind_weights=(1.0, 0.0, 0.0), neck_turn_deg=(25, 30))
    return plain, generate_case(_cfg(neck), np.random.default_rng(4), None)


def test_off_by_default(pair: tuple[Case, Case]) -> None:
    assert FractureParams().probability == 0.0
    assert "fractures" not in pair[0].meta


def test_a_broken_neck_turns_the_head_in_place_and_both_pieces_stay_femur(
    pair: tuple[Case, Case],
) -> None:
    plain, broken = pair
    fr = broken.meta["fractures"]
    assert [f["kind"] for f in fr] == ["neck", "neck"]
    assert all(25.0 <= f["turn_deg"] <= 30.0 for f in fr)
    assert plain.image.shape == broken.image.shape  # the same view: only the femurs changed
    for value in (1, 2):
        a, b = plain.labels == value, broken.labels == value
        assert a.sum() > 0 and abs(int(b.sum()) - int(a.sum())) < 0.08 * a.sum()
        changed = a ^ b
        assert changed.sum() > 0.01 * a.sum()
        # the changes lie near the neck, none down the shaft: the distal piece stays put
        zs = np.flatnonzero(a.any(axis=(0, 1)))
        k_changed = np.flatnonzero(changed.any(axis=(0, 1)))
        assert k_changed.min() > zs.min() + (zs.max() - zs.min()) // 3
        # the head turns about its own centre: its voxels stay almost all femur
        side = "left" if value == 1 else "right"
        lm = broken.anatomy.landmarks
        centre = np.linalg.solve(broken.image.affine, [*lm[f"hip_{side}"], 1.0])[:3]
        r = 0.7 * float(lm[f"head_radius_{side}"][0]) / SP
        idx = np.indices(a.shape, dtype=np.float32)
        ball = sum((idx[d] - np.float32(centre[d])) ** 2 for d in range(3)) < r * r
        assert ball.sum() > 50
        assert (a & b & ball).sum() > 0.95 * (a & ball).sum()
    assert not (broken.labels > 0)[plain.labels == 0].sum() > 0.1 * (plain.labels > 0).sum()


def test_config_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match="probability"):
        FractureParams(probability=2.0)
    with pytest.raises(ConfigError, match="kind_weights"):
        FractureParams(kind_weights=(0.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="low > high"):
        FractureParams(gap_mm=(3.0, 1.0))
