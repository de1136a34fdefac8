"""Contrast and arteries in the phantom: off by default (earlier seeds unchanged), and when on,
bright arteries beside the femur that are never labelled femur, and enhanced organs.

Tiny full-leg cases (3 mm voxels, no supersampling) on procedural bones.
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
    VesselParams,
)
from femurseg.phantoms.tissues.materials import Tissue, draw_case_tissues
from femurseg.phantoms.tissues.vessels import draw_vessels, enhance_tissues

SP = 3.0


def _cfg(vessels: VesselParams) -> PhantomConfig:
    return PhantomConfig(
        fov=FovKind.FULL,
        spacing=(SP, SP, SP),
        recon_circle=False,
        abdomen_probability=1.0,
        scanner=ScannerParams(max_render_mm=SP, tight_fov_probability=0.0),
        implants=ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0),
        vessels=vessels,
    )


ARTERIAL = VesselParams(
    contrast_probability=1.0, arterial_share=1.0, artery_arterial_hu=(450.0, 500.0)
)


@pytest.fixture(scope="module")
def plain() -> Case:
    return generate_case(_cfg(VesselParams()), np.random.default_rng(5), None, keep_clean=True)


@pytest.fixture(scope="module")
def enhanced() -> Case:
    return generate_case(_cfg(ARTERIAL), np.random.default_rng(5), None, keep_clean=True)


def test_default_draw_is_unenhanced_and_paints_nothing() -> None:
    d = draw_vessels(VesselParams(), np.random.default_rng(0))
    assert d.phase == "none" and d.artery_hu is None and not d.visible
    t = draw_case_tissues(PhantomConfig().tissues, np.random.default_rng(1))
    assert enhance_tissues(t, d, VesselParams(), np.random.default_rng(2)) == t


def test_contrast_changes_only_the_soft_tissue_inside_the_body(plain: Case, enhanced: Case) -> None:
    # The same seed with contrast draws the same anatomy, field of view and femur labels.
    assert plain.image.shape == enhanced.image.shape
    assert np.array_equal(plain.labels, enhanced.labels)
    assert plain.meta["vessels"]["phase"] == "none"
    assert enhanced.meta["vessels"]["phase"] == "arterial"


def test_arteries_run_beside_the_femur_and_are_never_femur(plain: Case, enhanced: Case) -> None:
    clean_p, clean_e = plain.rendered.clean, enhanced.rendered.clean
    assert clean_p is not None and clean_e is not None
    tis = enhanced.rendered.tissue
    bright = (clean_e - clean_p > 150.0) & (tis == Tissue.ORGAN)
    lab = enhanced.labels
    # every femur slice below the hips (the thigh) shows an artery on each side
    for side in (1, 2):
        zs = np.flatnonzero((lab == side).any(axis=(0, 1)))
        thigh = zs[len(zs) // 5 : len(zs) // 2]  # the distal half of the shaft, above the knee
        hits = 0
        for z in thigh:
            femur = np.argwhere(lab[:, :, z] == side).mean(axis=0)
            pts = np.argwhere(bright[:, :, z])
            if len(pts) == 0:
                continue
            d = np.linalg.norm(pts - femur, axis=1) * SP
            hits += int((d < 60.0).any())
        assert hits >= 0.8 * len(thigh), (
            f"side {side}: artery beside the femur on {hits}/{len(thigh)} slices"
        )
    assert not (bright & (lab > 0)).any()
    # a lumen of 450-500 HU before the scanner
    assert 420.0 < float(np.max(clean_e[bright])) <= 500.0


def test_enhanced_kidneys(enhanced: Case) -> None:
    t = enhanced.meta["tissues"]
    assert 140.0 <= t["kidney"] <= 260.0
    assert 450.0 <= t["blood"] <= 500.0


def test_calcified_plaques_without_contrast() -> None:
    p = VesselParams(calcification_probability=1.0, plaque_fraction=(0.3, 0.3))
    case = generate_case(_cfg(p), np.random.default_rng(5), None, keep_clean=True)
    assert case.meta["vessels"]["phase"] == "none"
    assert case.meta["vessels"]["plaque_fraction"] == pytest.approx(0.3)
    clean = case.rendered.clean
    assert clean is not None
    plaque = (case.rendered.tissue == Tissue.ORGAN) & (clean > 300.0)
    assert plaque.sum() > 0
    assert not (plaque & (case.labels > 0)).any()


def test_bad_vessel_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="contrast_probability"):
        VesselParams(contrast_probability=1.5)
    with pytest.raises(ConfigError, match="artery_scale"):
        VesselParams(artery_scale=(0.1, 1.0))
