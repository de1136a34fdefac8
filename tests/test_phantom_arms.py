"""Arms lying along the body in the phantom (humerus end, radius and ulna, hand): off by
default (nothing drawn, nothing recorded), and when on, beside or in front of the hips and
thighs, in the field of view, and never labelled femur. (That default cases stay
byte-identical to those made before arms existed was checked by generating the same seeds with
the previous commit.)

Tiny cases (3 mm voxels, no supersampling) on procedural bones.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from femurseg.errors import ConfigError
from femurseg.phantoms.generate import Case, generate_case
from femurseg.phantoms.params import (
    ArmsParams,
    FovKind,
    ImplantParams,
    PhantomConfig,
    ScannerParams,
)
from femurseg.phantoms.tissues.materials import Tissue

SP = 3.0
BONE = (Tissue.CORTICAL, Tissue.CANCELLOUS, Tissue.MARROW)


def _cfg(arms: ArmsParams, fov: FovKind = FovKind.HIP) -> PhantomConfig:
    return PhantomConfig(
        fov=fov,
        spacing=(SP, SP, SP),
        recon_circle=False,
        abdomen_probability=1.0,
        scanner=ScannerParams(max_render_mm=SP, tight_fov_probability=0.0),
        implants=ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0),
        arms=arms,
    )


def _index(case: Case, p: list[float]) -> np.ndarray:
    return np.round(np.linalg.solve(case.image.affine, [*p, 1.0])[:3]).astype(int)


@pytest.fixture(scope="module")
def side() -> Case:
    arms = ArmsParams(probability=1.0, one_arm_probability=0.0, lap_probability=0.0)
    return generate_case(_cfg(arms), np.random.default_rng(5), None, keep_clean=True)


@pytest.fixture(scope="module")
def lap() -> Case:
    arms = ArmsParams(probability=1.0, one_arm_probability=0.0, lap_probability=1.0)
    return generate_case(_cfg(arms, FovKind.FULL), np.random.default_rng(6), None, keep_clean=True)


def test_off_by_default_and_the_record_is_unchanged() -> None:
    assert ArmsParams().probability == 0.0
    plain = generate_case(_cfg(ArmsParams()), np.random.default_rng(8), None)
    assert "arms" not in plain.meta
    same = generate_case(_cfg(ArmsParams()), np.random.default_rng(8), None)
    assert np.array_equal(same.image.array, plain.image.array)


def test_forearms_beside_the_hips_hold_two_long_bones_and_no_femur(side: Case) -> None:
    arms = side.meta["arms"]
    assert [a["side"] for a in arms] == ["left", "right"]
    assert all(a["pose"] == "side" for a in arms)
    tis, lab = side.rendered.tissue, side.labels
    shown = 0
    for arm in arms:
        elbow, wrist = np.array(arm["elbow"]), np.array(arm["wrist"])
        assert (wrist[0] - elbow[0]) * (1 if arm["side"] == "right" else -1) > -60.0
        assert elbow[2] - wrist[2] > 150.0  # hanging down along the body
        mid = _index(side, list(0.5 * (elbow + wrist)))
        if not 0 <= mid[2] < side.image.shape[2]:
            continue
        shown += 1
        # lateral to the hip: the patient's right is +x in the canonical image
        out = 1 if arm["side"] == "right" else -1
        centre = side.image.shape[0] // 2
        assert (mid[0] - centre) * out > 30
        r = int(30 / SP)
        box = (slice(mid[0] - r, mid[0] + r + 1), slice(mid[1] - r, mid[1] + r + 1), mid[2])
        bone = np.isin(tis[box], BONE)
        _, n = ndi.label(bone)
        assert n >= 2  # radius and ulna side by side
        assert not lab[box].any()
    assert shown >= 1
    # the field of view takes the arms in: bone out beyond both hips
    cols = np.flatnonzero(np.isin(tis, BONE).any(axis=(1, 2)))
    femur_cols = np.flatnonzero(lab.any(axis=(1, 2)))
    assert cols.min() < femur_cols.min() - 40 and cols.max() > femur_cols.max() + 40


def test_lap_hands_lie_in_front_of_the_thighs_and_are_not_femur(lap: Case) -> None:
    tis, lab = lap.rendered.tissue, lap.labels
    for arm in lap.meta["arms"]:
        assert arm["pose"] == "lap"
        wrist = _index(lap, arm["wrist"])
        k = wrist[2] - int(40 / SP)  # across the palm, below the wrist
        assert 0 <= k < lap.image.shape[2]
        femur = np.argwhere(lab[:, :, k] == (2 if arm["side"] == "right" else 1))
        assert len(femur)
        # the hand's bones (metacarpals) lie in front of this side's femur in that slice
        near = np.zeros(tis.shape[:2], bool)
        lo = np.maximum(wrist[:2] - int(60 / SP), 0)
        near[lo[0] : wrist[0] + int(60 / SP), lo[1] : wrist[1] + int(60 / SP)] = True
        hand = np.argwhere(np.isin(tis[:, :, k], BONE) & near & (lab[:, :, k] == 0))
        assert len(hand) > 0
        assert hand[:, 1].mean() > femur[:, 1].max()  # anterior is +y
        assert not lab[:, :, k][tuple(hand.T)].any()


def test_config_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match="probability"):
        ArmsParams(probability=1.5)
    with pytest.raises(ConfigError, match="forearm_mm"):
        ArmsParams(forearm_mm=(50.0, 60.0))
    with pytest.raises(ConfigError, match="low > high"):
        ArmsParams(hand_mm=(190.0, 170.0))
