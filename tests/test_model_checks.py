"""The femur checks: size, side of the body midline, thickness, bone density, the fibula beside
a tibia, a mask above the other femur, confidence; and the pipeline removing a side that fails
them."""

from __future__ import annotations

import numpy as np
import pytest

from femurseg.errors import ConfigError
from femurseg.preprocessing.grid import Grid
from femurseg.segmentation.checks import (
    FemurCheck,
    FemurCheckRules,
    FemurStatus,
    Surround,
    body_midline,
    check_femur,
    check_pair,
    companion_run,
    largest_piece_per_slice,
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


def _leg(
    companion: tuple[float, float, float] | None,
    length_mm: float = 160.0,
    hu_value: float = 900.0,
    tibia_mm: tuple[float, float] = (0.0, 1e9),
) -> tuple[np.ndarray, np.ndarray]:
    """A left lower leg: a tibia-sized rod (radius 14 mm, patient left at world x -100 mm) and
    optionally a fibula-sized rod (radius 7 mm) at (angle from lateral towards posterior in
    degrees, gap from the tibia's surface in mm, HU), over ``length_mm``; the "femur" mask is
    the tibia between ``tibia_mm`` (z, mm). Returns (HU, mask) on a 2 mm grid, origin -200."""
    shape = (110, 80, int(length_mm / SP[2]))
    hu = np.full(shape, 40.0, dtype=np.float32)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    cx, cy = 50.0, 40.0  # index: world x = -200 + 2 * 50 = -100 (patient left)
    tibia = (x - cx) ** 2 + (y - cy) ** 2 <= (14.0 / SP[0]) ** 2
    hu[tibia] = 1100.0
    if companion is not None:
        angle, gap, value = companion
        a = np.radians(angle)
        r = (14.0 + gap + 7.0) / SP[0]
        # lateral for the left side is world -x (index -x); posterior is world -y
        fx, fy = cx - r * np.cos(a), cy - r * np.sin(a)
        hu[(x - fx) ** 2 + (y - fy) ** 2 <= (7.0 / SP[0]) ** 2] = value
    mask = np.repeat(tibia[:, :, None], shape[2], axis=2)
    z = np.arange(shape[2]) * SP[2]
    mask[:, :, (z < tibia_mm[0]) | (z > tibia_mm[1])] = False
    return hu, mask


def _check_leg(hu: np.ndarray, mask: np.ndarray, rules: FemurCheckRules | None = None):  # type: ignore[no-untyped-def]
    g = _grid(hu.shape)
    surround = Surround(hu, mask, mask.copy())
    return check_femur(
        Label.FEMUR_LEFT,
        mask,
        (0, 0, 0),
        g,
        None,
        rules or FemurCheckRules(),
        hu=hu,
        surround=surround,
    )


def test_a_rod_with_a_fibula_beside_its_lateral_side_is_a_tibia() -> None:
    hu, mask = _leg((45.0, 15.0, 900.0))
    chk = _check_leg(hu, mask)
    assert chk.status is FemurStatus.NOT_FOUND
    assert "fibula" in chk.reasons[0] and "tibia" in chk.reasons[0]
    assert chk.companion_mm == pytest.approx(160.0, abs=4.0)
    assert chk.to_dict()["companion_fraction"] == pytest.approx(1.0)
    # a leg turned out 30 degrees (the fibula straight behind the lateral side): still a tibia
    assert _check_leg(*_leg((85.0, 15.0, 900.0))).status is FemurStatus.NOT_FOUND
    # the rule off: the same rod is a femur
    off = FemurCheckRules(companion_min_fraction=1.0, companion_min_mm=1000.0)
    assert _check_leg(hu, mask, off).status is FemurStatus.FOUND


@pytest.mark.parametrize(
    ("companion", "why"),
    [
        (None, "nothing beside it: a femoral shaft"),
        ((45.0, 15.0, 900.0), "short: 40 mm of mask only"),
        ((180.0, 15.0, 900.0), "medial: the other leg's bone"),
        ((-90.0, 10.0, 900.0), "in front: a patella"),
        ((45.0, 60.0, 900.0), "far: a hand beside the hip"),
        ((45.0, 15.0, 350.0), "never bone-dense: an enhanced vessel"),
        ((45.0, 2.0, 3000.0), "metal: a plate on the lateral cortex"),
    ],
)
def test_what_beside_a_femur_is_not_a_fibula(
    companion: tuple[float, float, float] | None, why: str
) -> None:
    span = (60.0, 100.0) if why.startswith("short") else (0.0, 1e9)
    hu, mask = _leg(companion, tibia_mm=span)
    chk = _check_leg(hu, mask)
    # (the 40 mm piece is small, so low_confidence; never not_found)
    assert chk.status is not FemurStatus.NOT_FOUND, (why, chk.reasons)
    assert not any("fibula" in r for r in chk.reasons)


def test_the_table_below_a_knee_is_not_a_fibula() -> None:
    # the patient table's shell (a carbon skin, 300-800 HU) runs under the knee 30 mm behind
    # the condyles, along the whole view; only the part inside the searched region is seen,
    # a slender piece straight behind the mask, but it runs out of the region's side faces
    hu, mask = _leg(None)
    hu[:, 40 - (14 + 30) // 2 - 1, :] = 700.0  # 2 mm thick, the whole width
    chk = _check_leg(hu[20:80], mask[20:80])  # a region 60 mm either side of the rod's centre
    assert chk.status is FemurStatus.FOUND, chk.reasons


def test_companion_on_a_part_of_the_mask_only() -> None:
    # a femur mask running on into 40 mm of tibia: the fibula beside that part is a quarter of
    # the mask's slices, so the mask stays a femur
    hu, mask = _leg(None, length_mm=200.0)
    leg, _ = _leg((45.0, 15.0, 900.0), length_mm=200.0)
    hu[:, :, :20] = leg[:, :, :20]
    run, frac = companion_run(Surround(hu, mask, mask), SP, -1.0, FemurCheckRules())
    assert run == pytest.approx(40.0, abs=4.0) and frac == pytest.approx(0.2, abs=0.03)
    assert _check_leg(hu, mask).status is FemurStatus.FOUND


def test_largest_piece_per_slice() -> None:
    m = np.zeros((20, 20, 3), dtype=bool)
    m[1:4, 1:4, 0] = True  # 9 voxels
    m[10:15, 10:15, 0] = True  # 25: the largest in slice 0
    m[2:4, 2:4, 1] = True  # the only piece in slice 1
    core = largest_piece_per_slice(m)
    assert core[:, :, 0].sum() == 25 and core[12, 12, 0] and not core[2, 2, 0]
    assert core[:, :, 1].sum() == 4 and not core[:, :, 2].any()


def test_rules_validate() -> None:
    with pytest.raises(ConfigError):
        FemurCheckRules(min_volume_ml=-1.0)
    with pytest.raises(ConfigError):
        FemurCheckRules(min_mean_probability=2.0)
    with pytest.raises(ConfigError):
        FemurCheckRules(companion_angle_deg=(60.0, 10.0))
    with pytest.raises(ConfigError):
        FemurCheckRules(companion_area_mm2=(100.0, 10.0))


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


def test_real_tibiae_of_a_lower_leg_phantom_are_not_femurs(llp26_dir) -> None:  # type: ignore[no-untyped-def]
    # LLP26 legs (real human tibiae and fibulae) in a lower-leg view: each tibia, labelled as
    # that side's femur without its fibula or with it (as a stage 2 gone wrong would label
    # it), is rejected by the fibula beside it
    from femurseg.phantoms.anatomy.voxelize import voxelize
    from femurseg.phantoms.generate import generate_case
    from femurseg.phantoms.params import PhantomConfig
    from femurseg.phantoms.scanner.fov import FovKind

    cfg = PhantomConfig(fov=FovKind.LEGS, spacing=(2.0, 2.0, 4.0))
    case = generate_case(cfg, np.random.default_rng(3), llp26_dir)
    g = Grid.of(case.image)
    hu = np.asarray(case.image.array)
    for side, name in ((Label.FEMUR_LEFT, "left"), (Label.FEMUR_RIGHT, "right")):
        tib = np.zeros(g.shape, dtype=np.uint8)
        voxelize(case.anatomy.meshes[f"tibfib_{name}"], g.affine, g.shape).paste(tib, 1)
        for tibia in (largest_piece_per_slice(tib.astype(bool)), tib.astype(bool)):
            assert tibia.sum() * g.voxel_ml > 100.0
            chk = check_femur(
                side,
                tibia,
                (0, 0, 0),
                g,
                None,
                FemurCheckRules(),
                hu=hu,
                surround=Surround(hu, tibia, tibia),
            )
            assert chk.status is FemurStatus.NOT_FOUND, (name, chk.to_dict())
            assert any("fibula" in r for r in chk.reasons)
            assert chk.companion_fraction is not None and chk.companion_fraction > 0.7


def test_real_hip_screw_plate_is_not_a_fibula(totalseg_case) -> None:  # type: ignore[no-untyped-def]
    # the real CT's left femur carries a sliding hip screw whose side plate lies on the
    # lateral cortex: a slender, bone-bright thing beside the femur's lateral side over its
    # whole length in view; as metal it never counts, and the femur stays a femur
    from femurseg.evaluation.scorecard import read_truth
    from femurseg.io import read_volume

    vol = read_volume(totalseg_case / "ct.nii.gz")
    seg = totalseg_case / "segmentations"
    truth = read_truth(
        {
            Label.FEMUR_LEFT: seg / "femur_left.nii.gz",
            Label.FEMUR_RIGHT: seg / "femur_right.nii.gz",
        },
        vol,
    )
    hu = np.asarray(vol.array)
    g = Grid.of(vol)
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        mask = (truth == int(side)) & (hu < 3000)  # metal is never femur (the pipeline's rule)
        chk = check_femur(
            side,
            mask,
            (0, 0, 0),
            g,
            None,
            FemurCheckRules(),
            hu=hu,
            surround=Surround(hu, mask, (truth != 0) & (hu < 3000)),
        )
        assert chk.status is not FemurStatus.NOT_FOUND, (side, chk.reasons)
        assert chk.companion_fraction is not None and chk.companion_fraction < 0.3
    # without the metal rule the plate is taken for a fibula beside most of the left femur (on
    # the shipped model's longer mask, 57 mm: rejected)
    mask = (truth == int(Label.FEMUR_LEFT)) & (hu < 3000)
    no_metal_rule = FemurCheckRules(companion_metal_hu=1e5)
    chk = check_femur(
        Label.FEMUR_LEFT,
        mask,
        (0, 0, 0),
        g,
        None,
        no_metal_rule,
        hu=hu,
        surround=Surround(hu, mask, (truth != 0) & (hu < 3000)),
    )
    assert chk.companion_fraction is not None and chk.companion_fraction >= 0.45


def _verdict(side: Label, ml: float, status: FemurStatus = FemurStatus.FOUND) -> FemurCheck:
    return FemurCheck(side, status, (), ml)


def test_a_mask_wholly_above_the_other_femur_is_not_a_femur() -> None:
    # a view centred on the left hip: the left femur found (its head top at z = 0), and a
    # small "femur_right" on the sacrum 60 mm above it
    L, R = Label.FEMUR_LEFT, Label.FEMUR_RIGHT
    checks = {L: _verdict(L, 320.0), R: _verdict(R, 25.0, FemurStatus.LOW_CONFIDENCE)}
    out = check_pair(checks, {L: (-410.0, 0.0), R: (60.0, 95.0)}, FemurCheckRules())
    assert out[L] == checks[L]
    assert out[R].status is FemurStatus.NOT_FOUND
    assert "above the top of femur_left" in out[R].reasons[-1]
    # as large as the other: one of the two is wrong, and it is only flagged
    big = {L: _verdict(L, 320.0), R: _verdict(R, 300.0)}
    out = check_pair(big, {L: (-410.0, 0.0), R: (60.0, 400.0)}, FemurCheckRules())
    assert out[R].status is FemurStatus.LOW_CONFIDENCE


@pytest.mark.parametrize(
    ("z_left", "z_right", "left_status", "why"),
    [
        ((-410.0, 0.0), (-420.0, 15.0), FemurStatus.FOUND, "both femurs, heads 15 mm apart"),
        ((-410.0, 0.0), (30.0, 95.0), FemurStatus.FOUND, "30 mm above: within the margin"),
        ((-60.0, 0.0), (60.0, 95.0), FemurStatus.FOUND, "the other mask too short to tell"),
        ((-410.0, 0.0), (60.0, 95.0), FemurStatus.LOW_CONFIDENCE, "the other only low_confidence"),
    ],
)
def test_what_is_not_above_the_other_femur(
    z_left: tuple[float, float], z_right: tuple[float, float], left_status: FemurStatus, why: str
) -> None:
    L, R = Label.FEMUR_LEFT, Label.FEMUR_RIGHT
    checks = {L: _verdict(L, 320.0, left_status), R: _verdict(R, 30.0)}
    out = check_pair(checks, {L: z_left, R: z_right}, FemurCheckRules())
    assert out == checks, why
    off = FemurCheckRules(enabled=False)
    assert check_pair(checks, {L: (-410.0, 0.0), R: (60.0, 95.0)}, off) == checks
