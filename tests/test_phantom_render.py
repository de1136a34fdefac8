"""Render side of the phantom generator: labels, tissues, FOVs, implants, scanner, determinism.

Cases are tiny (4 mm voxels, rendered without supersampling) and shared per module.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.voxelize import voxelize
from femurseg.phantoms.generate import Case, generate_case
from femurseg.phantoms.params import (
    FovKind,
    ImplantParams,
    PhantomConfig,
    ScannerParams,
    TissueParams,
)
from femurseg.phantoms.tissues.materials import Tissue

SP = 4.0


def cfg_for(
    fov: FovKind, hip: float = 0.0, knee: float = 0.0, circle: bool = False, **kw: object
) -> PhantomConfig:
    return PhantomConfig(
        fov=fov,
        spacing=(SP, SP, SP),
        recon_circle=circle,
        scanner=ScannerParams(max_render_mm=SP, **kw),  # type: ignore[arg-type]
        implants=ImplantParams(hip_probability=hip, knee_probability=knee),
    )


@pytest.fixture(scope="module")
def hip_case() -> Case:
    return generate_case(cfg_for(FovKind.HIP), np.random.default_rng(11), None, keep_clean=True)


@pytest.fixture(scope="module")
def implant_case() -> Case:
    cfg = cfg_for(FovKind.THIGHS, hip=1.0, knee=1.0)
    return generate_case(cfg, np.random.default_rng(5), None, keep_clean=True)


def test_labels_are_exact_femur_voxels(hip_case: Case) -> None:
    lab, aff = hip_case.labels, hip_case.image.affine
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1, 2}
    for name, value in (("femur_left", 1), ("femur_right", 2)):
        want = voxelize(hip_case.anatomy.meshes[name], aff, lab.shape).to_full()
        np.testing.assert_array_equal(lab == value, want)


def test_left_label_is_patient_left(hip_case: Case) -> None:
    ijk_l = np.argwhere(hip_case.labels == 1).mean(axis=0)
    ijk_r = np.argwhere(hip_case.labels == 2).mean(axis=0)
    x_l = hip_case.image.index_to_world(ijk_l)[0]
    x_r = hip_case.image.index_to_world(ijk_r)[0]
    assert x_l < x_r  # RAS+: patient left has the smaller x


def test_tissue_hu_in_their_ranges(hip_case: Case) -> None:
    p = TissueParams()
    clean, tis = hip_case.rendered.clean, hip_case.rendered.tissue
    assert clean is not None

    def med(t: Tissue) -> float:
        v = clean[tis == t]
        assert v.size > 0, f"no {t.name} voxels"
        return float(np.median(v))

    assert p.fat_hu[0] - 5 <= med(Tissue.FAT) <= p.fat_hu[1] + 5
    assert p.muscle_hu[0] - 15 <= med(Tissue.MUSCLE) <= p.muscle_hu[1] + 5
    assert p.cortical_porotic_hu[0] * 0.8 <= med(Tissue.CORTICAL) <= p.cortical_dense_hu[1]
    assert p.cancellous_porotic_hu[0] * 0.5 <= med(Tissue.CANCELLOUS) <= 800
    assert med(Tissue.AIR) < -950


def test_bones_never_touch_air(hip_case: Case) -> None:
    tis = hip_case.rendered.tissue
    bone = np.isin(tis, [Tissue.CORTICAL, Tissue.CANCELLOUS, Tissue.MARROW])
    assert bone.any()
    ring = ndi.binary_dilation(bone) & ~bone
    assert not np.any(tis[ring] == Tissue.AIR)


def test_scanner_output_is_integer_noisy_and_in_range(hip_case: Case) -> None:
    img = hip_case.image.array
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, np.rint(img))
    assert img.min() >= -1024 and img.max() <= 3071
    tis = hip_case.rendered.tissue
    fat = ndi.binary_erosion(tis == Tissue.FAT, iterations=1)
    resid = img[fat] - hip_case.rendered.clean[fat]  # type: ignore[index]
    assert 3.0 < resid.std() < 60.0


def test_same_seed_same_case_other_seed_differs() -> None:
    cfg = cfg_for(FovKind.KNEE)
    a = generate_case(cfg, np.random.default_rng(3))
    b = generate_case(cfg, np.random.default_rng(3))
    c = generate_case(cfg, np.random.default_rng(4))
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.meta["fov"] == b.meta["fov"]
    assert a.image.shape != c.image.shape or not np.array_equal(a.image.array, c.image.array)


def _z_range(case: Case) -> tuple[float, float]:
    fov = case.meta["fov"]["z_range_mm"]
    return float(fov[0]), float(fov[1])


def test_knee_fov_has_no_femoral_head() -> None:
    case = generate_case(cfg_for(FovKind.KNEE), np.random.default_rng(21))
    lo, hi = _z_range(case)
    lm = case.anatomy.landmarks
    for s in ("left", "right"):
        head_bottom = lm[f"hip_{s}"][2] - lm[f"head_radius_{s}"][0]
        assert hi < head_bottom
        assert lo < lm[f"knee_{s}"][2] < hi
    assert (case.labels == 1).any() and (case.labels == 2).any()


def test_full_fov_spans_crest_to_ankles() -> None:
    case = generate_case(cfg_for(FovKind.FULL), np.random.default_rng(22))
    lo, hi = _z_range(case)
    lm = case.anatomy.landmarks
    assert hi >= lm["pelvis_top"][2] and lo <= min(lm["ankle_left"][2], lm["ankle_right"][2])


def test_one_leg_fov_is_centred_on_one_leg() -> None:
    case = generate_case(cfg_for(FovKind.ONE_LEG), np.random.default_rng(23))
    side = case.meta["fov"]["side"]
    other = "right" if side == "left" else "left"
    n = {s: int((case.labels == v).sum()) for s, v in (("left", 1), ("right", 2))}
    assert n[side] > 0 and n[other] < n[side]
    g = case.image
    x_centre = g.index_to_world(np.array(g.shape) / 2 - 0.5)[0]
    assert abs(x_centre - case.anatomy.landmarks[f"hip_{side}"][0]) < abs(
        x_centre - case.anatomy.landmarks[f"hip_{other}"][0]
    )


def test_cut_fov_cuts_a_femur_at_the_image_edge() -> None:
    case = generate_case(cfg_for(FovKind.CUT), np.random.default_rng(24))
    femur = case.labels > 0
    assert femur[:, :, 0].any() or femur[:, :, -1].any()


def test_mixed_draws_several_kinds() -> None:
    from femurseg.phantoms.scanner.fov import choose_kind

    cfg = PhantomConfig()
    rng = np.random.default_rng(0)
    kinds = {choose_kind(cfg, rng) for _ in range(200)}
    assert kinds == set(FovKind) - {FovKind.MIXED}


def test_implants_present_and_inside_femur_label(implant_case: Case) -> None:
    tis, lab, img = implant_case.rendered.tissue, implant_case.labels, implant_case.image
    kinds = {(i["kind"], i["side"]) for i in implant_case.meta["implants"]}
    assert kinds == {("hip", "left"), ("hip", "right"), ("knee", "left"), ("knee", "right")}
    metal = tis == Tissue.METAL
    assert metal.sum() > 50
    assert img.array.max() >= 2500
    # Convention: metal is not femur. The prosthetic head's centre is metal and unlabelled,
    # while the bone around the stem keeps its label.
    for s in ("left", "right"):
        ijk = np.rint(img.world_to_index(implant_case.anatomy.landmarks[f"hip_{s}"])).astype(int)
        if np.all((ijk >= 0) & (ijk < img.shape)):
            assert tis[tuple(ijk)] == Tissue.METAL
            assert lab[tuple(ijk)] == 0
    assert not (lab[metal] > 0).any()
    for v in (1, 2):
        femur = lab == v
        assert femur.any() and (ndi.binary_dilation(metal) & femur).any()


def test_knee_component_caps_front_bottom_and_back_but_not_the_sides() -> None:
    # 1.5 mm voxels: the 3.5 mm metal layer needs a grid finer than the other tests' 4 mm
    cfg = dataclasses.replace(
        cfg_for(FovKind.KNEE, knee=1.0),
        spacing=(1.5, 1.5, 1.5),
        scanner=ScannerParams(max_render_mm=1.5),
    )
    case = generate_case(cfg, np.random.default_rng(6), None, keep_clean=True)
    metal = case.rendered.tissue == Tissue.METAL
    lab, img = case.labels, case.image
    assert np.allclose(img.affine[:3, :3], np.diag([1.5, 1.5, 1.5]))  # RAS: x, y, z axes
    x = img.index_to_world(np.c_[np.arange(lab.shape[0]), np.zeros((lab.shape[0], 2))])[:, 0]
    for s, v in (("left", 1), ("right", 2)):
        bottom = float(np.asarray(case.anatomy.landmarks[f"femur_bottom_{s}"])[2])
        knee_x = float(np.asarray(case.anatomy.landmarks[f"knee_{s}"])[0])
        sides: list[bool] = []
        front: list[bool] = []
        for k in range(lab.shape[2]):
            z = float(img.index_to_world(np.array([[0.0, 0.0, k]]))[0, 2])
            if not bottom + 8.0 < z < bottom + 20.0:  # the condyles, inside the cap
                continue
            bone = (metal[:, :, k] | (lab[:, :, k] == v)) & (np.abs(x - knee_x) < 60.0)[:, None]
            rows = np.flatnonzero(bone.any(axis=0))
            third = (rows[-1] - rows[0]) // 3
            for j in range(rows[0] + third, rows[-1] - third + 1):  # the middle rows
                i = np.flatnonzero(bone[:, j])
                if i.size:  # the outermost voxels facing medially and laterally
                    sides += [bool(metal[i[0], j, k]), bool(metal[i[-1], j, k])]
            for i in np.flatnonzero(bone.any(axis=1)):  # the frontmost voxel of each column
                front.append(bool(metal[i, np.flatnonzero(bone[i])[-1], k]))
        assert len(sides) > 50 and len(front) > 50
        assert np.mean(front) > 0.7  # the flange covers the front
        assert np.mean(sides) < 0.3  # the medial and lateral faces stay bone


@pytest.mark.parametrize("seed", [3, 4, 8])
def test_fixation_keeps_the_head_as_femur_and_metal_out_of_the_label(seed: int) -> None:
    cfg = dataclasses.replace(
        cfg_for(FovKind.HIP),
        spacing=(2.0, 2.0, 2.0),
        scanner=ScannerParams(max_render_mm=2.0),
        implants=ImplantParams(hip_probability=0.0, fixation_probability=1.0),
    )
    case = generate_case(cfg, np.random.default_rng(seed), None)
    tis, lab, img = case.rendered.tissue, case.labels, case.image
    styles = {i["style"] for i in case.meta["implants"]}
    assert {i["kind"] for i in case.meta["implants"]} == {"fixation"} and styles
    metal = tis == Tissue.METAL
    assert not (lab[metal] > 0).any()
    for v, s in ((1, "left"), (2, "right")):
        h = case.anatomy.landmarks[f"hip_{s}"]
        r = float(np.asarray(case.anatomy.landmarks[f"head_radius_{s}"])[0])
        ijk = np.rint(img.world_to_index(h)).astype(int)
        rad = int(np.ceil(r / 2.0))
        sl = tuple(slice(max(i - rad, 0), i + rad + 1) for i in ijk)
        # The natural head stays: most of the head's box is femur, some of it is screw metal.
        assert (lab[sl] == v).mean() > 0.3
        assert metal[sl].any()
        # Metal sits in and against this femur, not floating in soft tissue.
        near = ndi.binary_dilation(lab == v, iterations=3)
        x = img.index_to_world(np.c_[np.arange(lab.shape[0]), np.zeros((lab.shape[0], 2))])[:, 0]
        side_metal = metal & (np.abs(x - h[0]) < 80.0)[:, None, None]
        assert (side_metal & near).sum() >= 0.8 * side_metal.sum()


def test_streaks_add_dark_and_bright_bands(implant_case: Case) -> None:
    clean = implant_case.rendered.clean
    assert clean is not None
    tis = implant_case.rendered.tissue
    soft = np.isin(tis, [Tissue.FAT, Tissue.MUSCLE])
    k = int(np.argmax((tis == Tissue.METAL).sum(axis=(0, 1))))
    diff = (implant_case.image.array - clean)[:, :, k][soft[:, :, k]]
    assert diff.min() < -100 or diff.max() > 100


def test_recon_circle_pads_outside_and_clears_labels() -> None:
    cfg = cfg_for(FovKind.HIP, circle=True, circle_probability=1.0, padding_values=(-3024.0,))
    case = generate_case(cfg, np.random.default_rng(12))
    img = case.image.array
    assert case.meta["fov"]["circle"] is not None
    corner = img[0, 0, :]
    assert np.all(corner == -3024.0)
    assert np.all(case.labels[img == -3024.0] == 0)
    assert case.labels.any()


def test_noise_grows_with_body_size() -> None:
    from femurseg.phantoms.anatomy.grid import RenderGrid
    from femurseg.phantoms.scanner.acquisition import ScanDraw, add_noise

    g = RenderGrid((200, 200, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    s = ScanDraw(1.0, 0.5, 30.0, 1.5, 1.0, False, None, 1.0)
    yy, xx = np.mgrid[:200, :200]
    sds = []
    for r in (40, 95):  # water-equivalent diameters 80 mm and 190 mm
        img = np.full(g.shape, -1000.0, dtype=np.float32)
        img[(xx - 100) ** 2 + (yy - 100) ** 2 < r**2] = 0.0
        base = img.copy()
        add_noise(img, g, s, np.random.default_rng(0))
        sds.append(float((img - base)[80:120, 80:120].std()))
    assert sds[1] > 2.0 * sds[0]


def test_sharp_kernel_overshoots_bone_edges() -> None:
    from femurseg.phantoms.anatomy.grid import RenderGrid
    from femurseg.phantoms.scanner.acquisition import ScanDraw, blur

    g = RenderGrid((80, 80, 3), (0.5, 0.5, 1.0), (0.0, 0.0, 0.0))
    base = np.full(g.shape, 40.0, dtype=np.float32)
    base[30:50, 30:50, :] = 1200.0  # a block of cortex in muscle
    soft, sharp = base.copy(), base.copy()
    blur(soft, g, ScanDraw(1.0, 0.5, 0.0, 1.0, 1.0, False, None, 1.0))
    blur(sharp, g, ScanDraw(1.0, 0.5, 0.0, 1.0, 1.0, False, None, 1.0, overshoot=0.8))
    row_soft, row_sharp = soft[:, 40, 1], sharp[:, 40, 1]
    assert row_sharp.max() > row_soft.max() + 50.0  # bright rim inside the edge
    assert row_sharp[20:30].min() < row_soft[20:30].min() - 20.0  # dark undershoot outside
    assert abs(float(row_sharp[40]) - float(row_soft[40])) < 30.0  # plateau kept


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        PhantomConfig(fov="elbow")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PhantomConfig(spacing=(1.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PhantomConfig(orientations=("RAR",))
    with pytest.raises(ConfigError):
        PhantomConfig(subjects=("LLP26_01",), exclude_subjects=("LLP26_01",))
    with pytest.raises(ConfigError):
        TissueParams(fat_hu=(-80.0, -120.0))
    with pytest.raises(ConfigError):
        ImplantParams(hip_probability=1.5)
    with pytest.raises(ConfigError):
        ScannerParams(padding_values=())
    ok = dataclasses.replace(PhantomConfig(), fov=FovKind.HIP)
    assert ok.fov is FovKind.HIP


def _femur_ml(case: Case) -> dict[str, float]:
    ml = float(np.prod(case.image.spacing)) / 1000.0
    return {s: float((case.labels == v).sum()) * ml for s, v in (("left", 1), ("right", 2))}


@pytest.mark.parametrize("seed", [31, 32])
def test_legs_fov_holds_at_most_the_condyle_tips(seed: int) -> None:
    case = generate_case(cfg_for(FovKind.LEGS), np.random.default_rng(seed))
    lo, hi = _z_range(case)
    lm = case.anatomy.landmarks
    fbot = min(lm["femur_bottom_left"][2], lm["femur_bottom_right"][2])
    assert hi <= fbot + 12.0 + 1e-6
    assert lo < min(lm["ankle_left"][2], lm["ankle_right"][2]) + 1e-6
    assert max(_femur_ml(case).values()) < 20.0  # tips only, never a distal femur
    # tibiae are there: plenty of bone
    assert (case.image.array > 400).sum() * np.prod(case.image.spacing) / 1000.0 > 50.0


def test_abdomen_fov_holds_no_femur_but_pelvis_and_spine() -> None:
    case = generate_case(cfg_for(FovKind.ABDOMEN), np.random.default_rng(33))
    lo, _ = _z_range(case)
    lm = case.anatomy.landmarks
    for s in ("left", "right"):
        assert lo > lm[f"hip_{s}"][2] + lm[f"head_radius_{s}"][0]
    assert not case.labels.any()
    assert (case.rendered.tissue == Tissue.CORTICAL).any()


def test_head_tops_and_distal_fovs_show_little_femur() -> None:
    tops = generate_case(cfg_for(FovKind.HEAD_TOPS), np.random.default_rng(34))
    assert max(_femur_ml(tops).values()) < 15.0
    distal = generate_case(cfg_for(FovKind.DISTAL), np.random.default_rng(35))
    ml = _femur_ml(distal)
    assert 0.0 < max(ml.values()) < 150.0
    _, hi = _z_range(distal)
    lm = distal.anatomy.landmarks
    assert hi <= min(lm["femur_bottom_left"][2], lm["femur_bottom_right"][2]) + 60.0 + 1e-6
