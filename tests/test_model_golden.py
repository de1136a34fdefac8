"""Golden accuracy of the shipped weights: a full lower-limb phantom written in three on-disk
orientations, and (when ../shared is present) the real CTs. Slow, and run by ``make test``.

Floors are stated Dice tolerances, not exact voxel counts. Each side is also checked in world
coordinates: the label called femur_left must lie on the patient's left (world x in RAS+
grows towards the patient's right), whatever the file's axis order.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_dir

from femurseg.evaluation.metrics import overlap_metrics
from femurseg.io import write_image
from femurseg.pipeline import Predictor, predict_case
from femurseg.types import Label

pytestmark = pytest.mark.slow

#: Dice floor per side on the procedural full lower-limb phantom (seed 21, 1.5 x 1.5 x 2 mm, no
#: implant). Made with today's generator (metaphyseal cortex 0.6-1.5 mm at 0.6-1.0 of the
#: shaft's HU, a denser cancellous head) v15 scores 0.956 left / 0.972 right, v14 0.955 /
#: 0.971, v13 0.952 / 0.971, v12 0.944 / 0.969 and v11 0.940 / 0.968; with the generator
#: before those two changes v11 scored 0.950 / 0.970 and, with the thin, faint plate only at
#: the joint surfaces, v10 0.954 left / 0.971 right;
#: with the v10 commit's generator (that plate over each whole end) v10 scored 0.907 / 0.959
#: and v9 0.925 / 0.939; on the generator before, v9 scored 0.959 left / 0.967 right (v8
#: 0.958 / 0.969, v6 0.964 / 0.970, v5 0.951, v4 0.952 left, both 0.970 right); v3 scored
#: 0.929 / 0.962 (it missed part of the fatty, coarse-grained left condyles) and v2 0.938 /
#: 0.960. The floor guards against regressions below the v2-v3 level.
PHANTOM_DICE_FLOOR = 0.88


@pytest.fixture(scope="module")
def phantom(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
    from femurseg.phantoms.generate import generate_case
    from femurseg.phantoms.params import FovKind, ImplantParams, PhantomConfig

    # no implant: a hip stem replaces the head, which the floor below is not about
    none = ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0)
    cfg = PhantomConfig(fov=FovKind.FULL, spacing=(1.5, 1.5, 2.0), implants=none)
    case = generate_case(cfg, np.random.default_rng(21), None)
    return case.image.array, case.labels, case.image.affine, tmp_path_factory.mktemp("golden")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def test_shifted_stage1_pass_refines_the_boxes(phantom) -> None:
    """The half-voxel-shifted pass moves the shipped stage 1's boxes, and not away from the
    truth (on this phantom the right head top's face moves 6 mm: one pass's coarse
    probability there is not the other's)."""
    from femurseg.detection import BoxRules, Detector, boxes_from_labels
    from femurseg.preprocessing import Grid, box_iou
    from femurseg.types import Volume

    image, labels, affine, _ = phantom
    volume = Volume(image, affine)
    truth = boxes_from_labels(labels, Grid(labels.shape, affine))
    detector = Detector(rules=BoxRules(shifted_pass=False))
    one = detector.detect(volume)
    detector.rules = BoxRules(shifted_pass=True)
    two = detector.detect(volume)
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        assert one[side].found and two[side].found
        assert one[side].score == two[side].score
        a, b = one[side].box, two[side].box
        moved = np.abs(np.r_[b.lo, b.hi] - np.r_[a.lo, a.hi])
        assert moved.max() > 0.0, side.name
        ious = box_iou(a, truth[side]), box_iou(b, truth[side])
        print(side.name, f"box IoU one pass {ious[0]:.3f}, two passes {ious[1]:.3f}")
        assert ious[1] > ious[0] - 0.02, side.name


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR"])
def test_shipped_model_on_a_full_leg_phantom(phantom, predictor, axcodes: str) -> None:
    image, labels, affine, root = phantom
    img = write_image(image, affine, root / axcodes / "ct.nii.gz", axcodes=axcodes, dtype=np.int16)
    ref = write_image(labels, affine, root / axcodes / "truth.nii.gz", axcodes=axcodes)
    report = predict_case(img, root / axcodes / "out", predictor)
    pred_img = nib.load(report["outputs"]["labels"])
    pred = np.asarray(pred_img.dataobj)
    truth = np.asarray(nib.load(ref).dataobj)
    assert pred.shape == truth.shape
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        dice = overlap_metrics(pred == int(side), truth == int(side))["dice"]
        assert dice >= PHANTOM_DICE_FLOOR, (axcodes, side.name, dice)
    # Sides in world coordinates: each label's centre in the file's own world frame (the
    # NIfTI affine maps to RAS+, where x grows towards patient right) lies on its own side.
    aff = pred_img.affine
    x = {
        side: float((aff @ np.r_[np.argwhere(pred == int(side)).mean(axis=0), 1.0])[0])
        for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)
    }
    assert x[Label.FEMUR_RIGHT] > x[Label.FEMUR_LEFT] + 100.0, (axcodes, x)


def test_shipped_model_on_the_real_scans(tmp_path: Path) -> None:
    """Tolerances on ../shared/data (skipped when absent): the real hip CT's right femur and
    left femur (metal voxels left out), both heads covered, and the real no-femur CT empty."""
    data = shared_dir() / "data"
    if not (data / "totalseg_example" / "s0000" / "ct.nii.gz").is_file():
        pytest.skip(f"real scans not available at {data}")
    from femurseg.evaluation.scorecard import find_real_cases, score_model

    cases, _ = find_real_cases(data)
    real = score_model("shipped", Predictor(), cases, surface=False).real
    lab = real["totalseg_example/s0000"]
    assert lab["femur_right"]["dice"] >= REAL_RIGHT_FLOOR, lab["femur_right"]
    assert lab["femur_left"]["dice_no_metal"] >= REAL_LEFT_NO_METAL_FLOOR, lab["femur_left"]
    for side in ("femur_left", "femur_right"):
        assert lab[side]["head_coverage"] >= REAL_HEAD_COVERAGE_FLOOR, (side, lab[side])
        # femur labelled on the reference's pelvis (the acetabular roof over each head)
        assert lab[side]["other_ml"] <= REAL_ON_PELVIS_CEILING_ML[side], (side, lab[side])
    # the scan mirrored in world x: its (implant-free) right femur is now the left one
    mirrored = real["totalseg_example/s0000:mirrored"]
    assert mirrored["femur_left"]["dice"] >= REAL_RIGHT_FLOOR, mirrored["femur_left"]
    # the same scan at twice its slice thickness (6 mm)
    thick = real["totalseg_example/s0000:slices_x2"]
    assert thick["femur_right"]["dice"] >= REAL_RIGHT_FLOOR, thick["femur_right"]
    # the negatives include the scan's slices above the femoral heads
    assert real["totalseg_example/s0000:above_heads"]["kind"] == "negative"
    for name, case in real.items():
        if case["kind"] == "negative":
            assert case["ok"], (name, case)


#: floors on ../shared/data/totalseg_example (v10 scores: right 0.919, left without metal 0.611,
#: head coverage 0.80 left / 0.93 right; v9 scores: right 0.901, left without metal 0.596,
#: head coverage 0.69 left / 0.89 right; v8: 0.903, 0.589, 0.69 / 0.89; v6: 0.901, 0.581,
#: 0.67 / 0.89; v5: 0.886, 0.583, 0.61 / 0.84; v4: 0.885, 0.590, 0.60 / 0.84; v3: 0.867,
#: 0.600, 0.67 / 0.81; the left target 0.85 is not met). The left floor sits 0.02 under
#: v5-v6 so that float32 instead of bfloat16 (a CPU without native bfloat16) does not trip it.
REAL_RIGHT_FLOOR = 0.84
REAL_LEFT_NO_METAL_FLOOR = 0.56
REAL_HEAD_COVERAGE_FLOOR = 0.55
#: ceilings on the ml of femur labelled on the reference's hip and sacrum masks (v10: 14.4
#: left, 6.1 right; v9: 15.0 left,
#: 7.0 right; v8: 15.9 left, 6.8 right; v6: 12.0 left, 6.4 right, all in the acetabular roof
#: over the head); a model that leaks further into the pelvis trips them.
REAL_ON_PELVIS_CEILING_ML = {"femur_left": 18.0, "femur_right": 12.0}
