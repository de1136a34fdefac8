"""Stage-1 boxes: world-mm boxes from masks and probabilities, sides decided in world x."""

from __future__ import annotations

import numpy as np
import pytest
from model_synth import synth_case

from femurseg.detection import BoxRules, boxes_from_labels, boxes_from_probabilities
from femurseg.detection.boxes import _crossing
from femurseg.preprocessing import Grid, box_iou
from femurseg.types import Label

LEFT, RIGHT = Label.FEMUR_LEFT, Label.FEMUR_RIGHT


def flip_scene(labels: np.ndarray, affine: np.ndarray, axes: tuple[int, ...]):
    """The same world scene stored with the given array axes reversed."""
    out = labels.copy()
    aff = affine.copy()
    for a in axes:
        out = np.flip(out, axis=a)
        shift = np.eye(4)
        shift[a, a] = -1.0
        shift[a, 3] = labels.shape[a] - 1
        aff = aff @ shift
    return np.ascontiguousarray(out), aff


def one_hot_probs(labels: np.ndarray, sharp: float = 0.9) -> np.ndarray:
    rest = (1.0 - sharp) / 2
    probs = np.full((3, *labels.shape), rest, np.float32)
    for c in range(3):
        probs[c][labels == c] = sharp
    return probs


@pytest.mark.parametrize("axes", [(), (0,), (1,), (2,), (0, 1, 2)])
def test_boxes_from_labels_are_world_boxes_under_flipped_affines(axes) -> None:
    _, labels, affine = synth_case()
    ref = boxes_from_labels(labels, Grid(labels.shape, affine))
    lab2, aff2 = flip_scene(labels, affine, axes)
    got = boxes_from_labels(lab2, Grid(lab2.shape, aff2))
    for side in (LEFT, RIGHT):
        assert got[side] is not None and ref[side] is not None
        assert np.allclose(got[side].lo, ref[side].lo) and np.allclose(got[side].hi, ref[side].hi)
    # sides never swap: the left femur lies towards world -x (patient left)
    assert got[LEFT].centre[0] < 0 < got[RIGHT].centre[0]


@pytest.mark.parametrize("axes", [(), (0,), (0, 2)])
def test_boxes_from_probabilities_match_truth(axes) -> None:
    _, labels, affine = synth_case()
    lab2, aff2 = flip_scene(labels, affine, axes)
    grid = Grid(lab2.shape, aff2)
    truth = boxes_from_labels(lab2, grid)
    dets = boxes_from_probabilities(one_hot_probs(lab2), grid, BoxRules())
    for side in (LEFT, RIGHT):
        assert dets[side].found
        assert box_iou(dets[side].box, truth[side]) > 0.97
        assert dets[side].score == pytest.approx(0.95, abs=1e-4)  # left + right probability
    assert dets[LEFT].box.centre[0] < 0 < dets[RIGHT].box.centre[0]


def test_missing_side_is_not_found_never_guessed() -> None:
    _, labels, affine = synth_case(sides=(1,))
    dets = boxes_from_probabilities(one_hot_probs(labels), Grid(labels.shape, affine))
    assert dets[LEFT].found
    assert not dets[RIGHT].found and dets[RIGHT].box is None
    assert "femur_right" in dets[RIGHT].message and "thighs" in dets[RIGHT].message


def test_lower_legs_only_gives_no_boxes_with_message() -> None:
    _, labels, affine = synth_case(sides=())
    dets = boxes_from_probabilities(one_hot_probs(labels), Grid(labels.shape, affine))
    for det in dets.values():
        assert not det.found and det.box is None
        assert "no femur" in det.message and det.to_dict()["status"] == "not_found"


def test_small_or_uncertain_candidate_is_rejected() -> None:
    _, labels, affine = synth_case()
    grid = Grid(labels.shape, affine)
    dets = boxes_from_probabilities(one_hot_probs(labels), grid, BoxRules(min_volume_ml=5000))
    assert not any(d.found for d in dets.values())
    assert "ml <" in dets[LEFT].message
    unsure = np.zeros((3, *labels.shape), np.float32)
    unsure[0] = 1.0
    femur = labels > 0
    unsure[0][femur], unsure[1][femur], unsure[2][femur] = 0.45, 0.3, 0.25
    dets = boxes_from_probabilities(unsure, grid, BoxRules(min_score=0.6))
    assert not dets[LEFT].found and "score" in dets[LEFT].message


def test_sides_come_from_world_x_not_network_channels() -> None:
    _, labels, affine = synth_case()
    swapped = labels.copy()
    swapped[labels == 1], swapped[labels == 2] = 2, 1
    dets = boxes_from_probabilities(one_hot_probs(swapped), Grid(labels.shape, affine))
    assert dets[LEFT].side == LEFT and dets[RIGHT].side == RIGHT
    assert dets[LEFT].box.centre[0] < 0 < dets[RIGHT].box.centre[0]
    assert "world_x" in dets[LEFT].message


def test_single_femur_takes_the_network_vote_and_pieces_merge() -> None:
    _, labels, affine = synth_case(sides=(2,))
    grid = Grid(labels.shape, affine)
    dets = boxes_from_probabilities(one_hot_probs(labels), grid)
    assert dets[RIGHT].found and not dets[LEFT].found
    assert "network vote" in dets[RIGHT].message
    # a femur cut in two by a gap is still one femur (pieces closer than min_separation_mm)
    cut = labels.copy()
    cut[:, :, 30:33] = 0
    dets = boxes_from_probabilities(one_hot_probs(cut), grid, BoxRules(min_volume_ml=1.0))
    assert dets[RIGHT].found and not dets[LEFT].found
    whole = boxes_from_labels(labels, grid)[RIGHT]
    assert box_iou(dets[RIGHT].box, whole) > 0.9


def test_a_broken_femur_beside_a_whole_one_is_boxed_in_both_pieces() -> None:
    # three coarse components: the left femur in two pieces and the right femur; the box of
    # the left side takes both pieces (before, the two largest components were the femurs and
    # the third was left out)
    _, labels, affine = synth_case(sides=(1, 2))
    grid = Grid(labels.shape, affine)
    whole = boxes_from_labels(labels, grid)
    cut = labels.copy()
    zs = np.flatnonzero((labels == 1).any(axis=(0, 1)))
    mid = int(zs.mean())
    cut[:, :, mid - 2 : mid + 2][cut[:, :, mid - 2 : mid + 2] == 1] = 0
    dets = boxes_from_probabilities(one_hot_probs(cut), grid, BoxRules(min_volume_ml=1.0))
    assert dets[LEFT].found and dets[RIGHT].found
    assert box_iou(dets[LEFT].box, whole[LEFT]) > 0.9
    assert box_iou(dets[RIGHT].box, whole[RIGHT]) > 0.9
    # a piece lying between the femurs, apart from both, joins neither
    stray = labels.copy()
    cx = (np.argwhere(labels == 1)[:, 0].mean() + np.argwhere(labels == 2)[:, 0].mean()) / 2
    ys = np.argwhere(labels > 0)[:, 1]
    stray[int(cx) - 2 : int(cx) + 2, int(ys.mean()) - 2 : int(ys.mean()) + 2, mid - 3 : mid + 3] = 1
    rules = BoxRules(min_volume_ml=0.01, min_separation_mm=25.0)  # the femurs are 57 mm apart
    dets = boxes_from_probabilities(one_hot_probs(stray), grid, rules)
    assert box_iou(dets[LEFT].box, whole[LEFT]) > 0.9
    assert box_iou(dets[RIGHT].box, whole[RIGHT]) > 0.9


def test_lone_candidate_whose_vote_contradicts_the_midline_is_rejected() -> None:
    # a bone at world x > 0 (patient right) whose network channels say "left"
    _, labels, affine = synth_case(sides=(2,))
    grid = Grid(labels.shape, affine)
    wrong = labels.copy()
    wrong[labels == 2] = 1
    voted = boxes_from_probabilities(one_hot_probs(wrong), grid)
    assert voted[LEFT].found and not voted[RIGHT].found  # no midline: the vote stands
    dets = boxes_from_probabilities(one_hot_probs(wrong), grid, midline_x=0.0)
    assert not dets[LEFT].found and not dets[RIGHT].found
    assert (
        "contradictory" in dets[LEFT].message and "right of the body midline" in dets[LEFT].message
    )
    # vote and position agree: found, and the report says both
    agree = boxes_from_probabilities(one_hot_probs(labels), grid, midline_x=0.0)
    assert agree[RIGHT].found and "midline" in agree[RIGHT].message
    # near the midline (inside the margin) the vote decides
    centre = voted[LEFT].box.centre[0]
    near = boxes_from_probabilities(
        one_hot_probs(wrong), grid, BoxRules(side_margin_mm=abs(centre) + 40), midline_x=0.0
    )
    assert near[LEFT].found


def test_subvoxel_crossing() -> None:
    sharp = np.array([0.0, 0.0, 1.0, 1.0, 0.0], np.float32)
    assert _crossing(sharp, 2, 3, 0.5) == (1.5, 3.5)  # voxel edges
    soft = np.array([0.0, 0.25, 0.75, 1.0, 0.5, 0.0], np.float32)
    lo, hi = _crossing(soft, 2, 4, 0.5)
    assert lo == pytest.approx(1.5) and hi == pytest.approx(4.0)
    edge = np.array([1.0, 1.0], np.float32)
    assert _crossing(edge, 0, 1, 0.5) == (-0.5, 1.5)  # field-of-view edges
    with pytest.raises(ValueError, match="shape"):
        boxes_from_probabilities(np.zeros((2, 4, 4, 4), np.float32), Grid((4, 4, 4), np.eye(4)))


def test_two_passes_average_found_boxes_face_by_face() -> None:
    from dataclasses import replace

    from femurseg.detection.boxes import mean_of_passes
    from femurseg.preprocessing.boxes import Box

    _, labels, affine = synth_case(sides=(1, 2))
    grid = Grid(labels.shape, affine)
    first = boxes_from_probabilities(one_hot_probs(labels), grid)
    lb, rb = first[LEFT].box, first[RIGHT].box
    # the second pass moves the left box by 2 mm and finds "the right femur" somewhere else
    moved = Box(tuple(v + 2.0 for v in lb.lo), tuple(v + 2.0 for v in lb.hi))
    far = Box(tuple(v + 200.0 for v in rb.lo), tuple(v + 200.0 for v in rb.hi))
    second = {
        LEFT: replace(first[LEFT], box=moved, score=0.1),
        RIGHT: replace(first[RIGHT], box=far),
    }
    got = mean_of_passes(first, second, grid)
    np.testing.assert_allclose(got[LEFT].box.lo, np.asarray(lb.lo) + 1.0)
    np.testing.assert_allclose(got[LEFT].box.hi, np.asarray(lb.hi) + 1.0)
    assert got[LEFT].score == first[LEFT].score  # only the box is averaged
    assert got[RIGHT].box == rb  # a box elsewhere is another bone, not averaged in
    # a side the first pass did not find stays not found, whatever the second says
    one = boxes_from_probabilities(one_hot_probs(np.where(labels == 2, 0, labels)), grid)
    assert not one[RIGHT].found
    got = mean_of_passes(one, first, grid)
    assert not got[RIGHT].found and got[RIGHT].box is None
    # a side the second pass misses keeps the first pass's box
    got = mean_of_passes(first, one, grid)
    assert got[RIGHT].box == rb


def test_shifted_coarse_grid_samples_between_the_voxel_centres() -> None:
    from femurseg.detection import DetectorConfig
    from femurseg.detection.prepare import coarse_image

    cfg = DetectorConfig(spacing_mm=4.0, hu_min=0.0, hu_max=1000.0)
    x = np.arange(64, dtype=np.float32)  # 1 mm voxels, HU = 10 * world x
    hu = np.broadcast_to((10.0 * x)[:, None, None], (64, 32, 32)).copy()
    grid = Grid(hu.shape, np.eye(4))
    base, g0 = coarse_image(hu, grid, cfg)
    shifted, g1 = coarse_image(hu, grid, cfg, shift=0.5)
    assert g1.shape == g0.shape
    np.testing.assert_allclose(g1.index_to_world([0, 0, 0]) - g0.index_to_world([0, 0, 0]), 2.0)
    inner = slice(1, -2)  # away from the ends, where the area average meets the edge
    # the ramp sampled 2 mm further along: 20 HU, 0.02 of the window, more
    np.testing.assert_allclose(
        shifted.numpy()[inner, 2, 2] - base.numpy()[inner, 2, 2], 0.02, atol=1e-4
    )


def test_a_piece_between_the_femurs_is_counted_once() -> None:
    """A piece nearer the second femur but larger than it joins it; the second femur's own
    volume is then not counted twice."""
    shape = (60, 20, 40)
    grid = Grid(shape, np.diag([4.0, 4.0, 4.0, 1.0]))
    fg = np.zeros(shape, np.float32)
    fg[0:5, 5:15, 0:40] = 0.9  # one femur, 2000 voxels, at x about 8 mm
    fg[11:14, 5:15, 0:30] = 0.9  # a piece, 900 voxels, 40 mm from it, 34 mm from the other
    fg[20:22, 5:15, 0:30] = 0.9  # the other femur, 600 voxels, 74 mm from the first
    probs = np.stack([1.0 - fg, fg / 2, fg / 2])
    dets = boxes_from_probabilities(probs, grid, BoxRules(min_volume_ml=1.0))
    voxel_ml = grid.voxel_ml
    assert dets[LEFT].volume_ml == pytest.approx(2000 * voxel_ml)
    assert dets[RIGHT].volume_ml == pytest.approx((900 + 600) * voxel_ml)
