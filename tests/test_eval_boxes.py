"""Stage-1 metrics: box IoU per side and COCO-style mAP for 3D boxes."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from femurseg.evaluation.metrics import (
    ScoredBox,
    average_precision,
    mean_average_precision,
    side_box_iou,
)
from femurseg.preprocessing.boxes import Box, box_iou

coord = st.floats(-200, 200, allow_nan=False)
size = st.floats(0.5, 100, allow_nan=False)


@st.composite
def boxes(draw) -> Box:
    lo = (draw(coord), draw(coord), draw(coord))
    sz = (draw(size), draw(size), draw(size))
    return Box(lo, tuple(a + s for a, s in zip(lo, sz, strict=True)))


def shifted(b: Box, dx: float) -> Box:
    return Box((b.lo[0] + dx, b.lo[1], b.lo[2]), (b.hi[0] + dx, b.hi[1], b.hi[2]))


def test_known_box_iou() -> None:
    a = Box((0, 0, 0), (10, 10, 10))
    assert box_iou(a, shifted(a, 5)) == pytest.approx(500 / 1500)
    assert box_iou(a, Box((0, 0, 0), (10, 10, 5))) == pytest.approx(0.5)
    assert box_iou(a, shifted(a, 10)) == 0.0  # touching faces: no overlap


def test_side_box_iou_absent_conventions() -> None:
    a = Box((0, 0, 0), (1, 1, 1))
    assert math.isnan(side_box_iou(None, None))
    assert side_box_iou(a, None) == 0.0
    assert side_box_iou(None, a) == 0.0


@settings(max_examples=100, deadline=None)
@given(boxes(), boxes())
def test_box_iou_properties(a, b) -> None:
    iou = box_iou(a, b)
    assert 0.0 <= iou <= 1.0
    assert iou == pytest.approx(box_iou(b, a))
    assert box_iou(a, a) == pytest.approx(1.0)
    # negative cases: a moved copy overlaps less; one moved past its width not at all
    assert box_iou(a, shifted(a, a.size_mm[0] / 2)) < 1.0
    assert box_iou(a, shifted(a, a.size_mm[0] + 1.0)) == 0.0


@settings(max_examples=50, deadline=None)
@given(boxes(), boxes())
def test_disjoint_boxes_have_zero_iou(a, b) -> None:
    assume(a.hi[0] < b.lo[0] or b.hi[0] < a.lo[0])
    assert box_iou(a, b) == 0.0


def _truth(n: int) -> dict[str, list[Box]]:
    return {f"c{i}": [Box((i * 100, 0, 0), (i * 100 + 40, 40, 60))] for i in range(n)}


def test_perfect_detections_give_map_one() -> None:
    truth = _truth(3)
    preds = [ScoredBox(c, b[0], 0.9) for c, b in truth.items()]
    res = mean_average_precision({"femur_left": preds}, {"femur_left": truth})
    assert res["femur_left"] == pytest.approx(1.0)
    assert res["mean"] == pytest.approx(1.0)


def test_absent_in_truth_and_not_predicted_is_not_a_miss() -> None:
    truth = _truth(2)
    left = [ScoredBox(c, b[0], 0.9) for c, b in truth.items()]
    # femur_right: case c1 has no right femur and none was predicted
    right_truth = {"c0": truth["c0"], "c1": []}
    right = [ScoredBox("c0", truth["c0"][0], 0.8)]
    res = mean_average_precision(
        {"femur_left": left, "femur_right": right},
        {"femur_left": truth, "femur_right": right_truth},
    )
    assert res["femur_right"] == pytest.approx(1.0)
    assert res["mean"] == pytest.approx(1.0)


def test_missed_and_spurious_boxes_lower_ap() -> None:
    truth = _truth(2)
    only_one = [ScoredBox("c0", truth["c0"][0], 0.9)]
    assert average_precision(only_one, truth, 0.5) == pytest.approx(51 / 101)
    spurious = [ScoredBox("c0", Box((500, 0, 0), (540, 40, 60)), 0.99)] + [
        ScoredBox(c, b[0], 0.5) for c, b in truth.items()
    ]
    ap = average_precision(spurious, truth, 0.5)
    assert 0.0 < ap < 1.0
    assert average_precision([], truth, 0.5) == 0.0
    assert math.isnan(average_precision([], {}, 0.5))


def test_map_averages_over_iou_thresholds() -> None:
    t = Box((0, 0, 0), (100, 100, 100))
    p = Box((0, 0, 0), (100, 100, 62))  # IoU 0.62: a hit at 0.50, 0.55, 0.60 only
    res = mean_average_precision({"f": [ScoredBox("c", p, 1.0)]}, {"f": {"c": [t]}})
    assert res["f"] == pytest.approx(0.3)
    assert res["f@0.50"] == pytest.approx(1.0)
    assert res["f@0.75"] == 0.0


def test_prediction_in_another_case_does_not_match() -> None:
    truth = _truth(2)
    wrong_case = [ScoredBox("c1", truth["c0"][0], 0.9)]
    assert average_precision(wrong_case, truth, 0.5) == 0.0


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        average_precision([], _truth(1), 0.0)
