"""The real-data scorecard: case discovery, per-side scores with analytic answers, and the
shipped weights on the real scans in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_dir
from typer.testing import CliRunner

from femurseg.evaluation.scorecard import (
    HEAD_MM,
    ModelScores,
    end_offsets_mm,
    find_real_cases,
    markdown,
    score_labelled,
)
from femurseg.io import write_image
from femurseg.preprocessing.grid import Grid
from femurseg.types import Label, Volume


def _layout(root: Path) -> None:
    img = np.zeros((4, 4, 4), dtype=np.int16)
    aff = np.eye(4)
    for rel, masks in (("ts/s1", True), ("real_negatives/n1", False), ("other/x", False)):
        d = root / rel
        write_image(img, aff, d / "ct.nii.gz")
        if masks:
            for name in ("femur_left", "femur_right", "hip_left"):
                write_image(img.astype(np.uint8), aff, d / "segmentations" / f"{name}.nii.gz")


def test_find_real_cases(tmp_path: Path) -> None:
    _layout(tmp_path)
    cases, notes = find_real_cases(tmp_path)
    kinds = {c.name: c.masks is not None for c in cases}
    assert kinds == {"ts/s1": True, "real_negatives/n1": False}
    labelled = next(c for c in cases if c.name == "ts/s1")
    assert set(labelled.others) == {"hip_left"}  # the femur masks are not "other" structures
    assert len(notes) == 1 and "other/x" in notes[0]


def _volume(shape: tuple[int, int, int]) -> Volume:
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    return Volume(np.zeros(shape, dtype=np.float32), aff)


def test_score_labelled_analytic() -> None:
    shape = (40, 20, 60)
    vol = _volume(shape)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[5:15, 5:15, 0:60] = int(Label.FEMUR_LEFT)  # 120 mm tall: head = top 40 mm
    truth[25:35, 5:15, 10:50] = int(Label.FEMUR_RIGHT)
    pred = truth.copy()
    # the prediction misses the left "head" (top HEAD_MM) entirely
    top = int(HEAD_MM / 2.0)
    pred[5:15, 5:15, 60 - top :] = 0
    # metal inside the right femur, in both masks
    vol.array[28:32, 8:12, 20:30] = 3000.0
    out = score_labelled(vol, pred, truth, {Label.FEMUR_LEFT: None, Label.FEMUR_RIGHT: None})
    left, right = out["femur_left"], out["femur_right"]
    assert left["head_coverage"] == pytest.approx(0.0, abs=0.05)
    assert left["dice"] == pytest.approx(2 * 40 / (40 + 60), abs=1e-6)
    assert right["dice"] == pytest.approx(1.0) and right["head_coverage"] == pytest.approx(1.0)
    assert right["dice_no_metal"] == pytest.approx(1.0)
    assert right["metal_ml"] == pytest.approx(4 * 4 * 10 * 8 / 1000.0)
    assert "dice_no_metal" not in left
    assert right["box_iou_mask"] == pytest.approx(1.0) and right["box_iou_stage1"] == 0.0
    # a stage-1 box equal to the truth box scores 1
    from femurseg.detection.boxes import boxes_from_labels
    from femurseg.preprocessing.grid import Grid

    tb = boxes_from_labels(truth, Grid.of(vol))
    out = score_labelled(vol, pred, truth, tb)
    assert out["femur_right"]["box_iou_stage1"] == pytest.approx(1.0)


def test_femur_on_the_references_other_bones() -> None:
    """A prediction that runs past the femur into the reference's pelvis is counted there, per
    side and per structure; a side that stays on the femur scores 0 ml."""
    shape = (40, 20, 60)
    vol = _volume(shape)  # 2 mm voxels: 0.008 ml each
    truth = np.zeros(shape, dtype=np.uint8)
    truth[5:15, 5:15, 0:40] = int(Label.FEMUR_LEFT)
    truth[25:35, 5:15, 0:40] = int(Label.FEMUR_RIGHT)
    hip_left = np.zeros(shape, dtype=bool)
    hip_left[5:15, 5:15, 42:60] = True  # the "acetabulum" above the left femur
    hip_right = np.zeros(shape, dtype=bool)
    hip_right[25:35, 5:15, 42:60] = True
    pred = truth.copy()
    pred[5:15, 5:15, 40:45] = int(Label.FEMUR_LEFT)  # 2 slices of gap, then 3 into the hip
    out = score_labelled(
        vol,
        pred,
        truth,
        {Label.FEMUR_LEFT: None, Label.FEMUR_RIGHT: None},
        surface=False,
        others={"hip_left": hip_left, "hip_right": hip_right},
    )
    assert out["femur_left"]["other_ml"] == pytest.approx(10 * 10 * 3 * 0.008)
    assert out["femur_left"]["other_ml_by_structure"] == {"hip_left": pytest.approx(2.4)}
    assert out["femur_right"]["other_ml"] == 0.0
    assert out["femur_right"]["other_ml_by_structure"] == {}
    plain = score_labelled(vol, pred, truth, {Label.FEMUR_LEFT: None, Label.FEMUR_RIGHT: None})
    assert "other_ml" not in plain["femur_left"]  # no other masks: nothing claimed


def test_head_coverage_without_metal_on_an_implant_side() -> None:
    """A metal femoral head in the reference is not a head the prediction must cover."""
    shape = (20, 20, 60)
    vol = _volume(shape)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[5:15, 5:15, 0:60] = int(Label.FEMUR_LEFT)
    top = int(HEAD_MM / 2.0)
    # the top half of the "head" slab is a metal ball in the reference mask
    vol.array[5:15, 5:15, 60 - top // 2 :] = 3000.0
    pred = truth.copy()
    pred[vol.array > 2000.0] = 0  # metal is not femur
    out = score_labelled(vol, pred, truth, {Label.FEMUR_LEFT: None, Label.FEMUR_RIGHT: None})
    left = out["femur_left"]
    assert left["head_coverage"] == pytest.approx(0.5, abs=0.05)
    assert left["head_coverage_no_metal"] == pytest.approx(1.0)
    assert left["head_core_coverage_no_metal"] == pytest.approx(1.0)
    assert "head_coverage_no_metal" not in out["femur_right"]


def test_head_core_coverage_sets_the_outer_rim_aside() -> None:
    """A mask one voxel short of the reference all round covers well under all of its head but
    all of its core; a mask that misses the head's top half misses the core's too."""
    shape = (24, 24, 60)
    vol = _volume(shape)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[4:16, 4:16, 0:50] = int(Label.FEMUR_LEFT)
    rim = truth.copy()
    rim[4, :, :] = rim[15, :, :] = rim[:, 4, :] = rim[:, 15, :] = 0
    rim[:, :, 49] = 0
    out = score_labelled(vol, rim, truth, {Label.FEMUR_LEFT: None, Label.FEMUR_RIGHT: None})
    left = out["femur_left"]
    assert left["head_coverage"] == pytest.approx(10 * 10 * 20 / (12 * 12 * 21), abs=1e-6)
    assert left["head_core_coverage"] == pytest.approx(1.0)
    half = truth.copy()
    half[:, :, 40:] = 0
    left = score_labelled(vol, half, truth, {Label.FEMUR_LEFT: None, Label.FEMUR_RIGHT: None})[
        "femur_left"
    ]
    assert left["head_core_coverage"] == pytest.approx(11 / 20, abs=1e-6)
    assert math.isnan(out["femur_right"]["head_core_coverage"])  # no reference there


def test_markdown_lists_every_row() -> None:
    m = ModelScores(
        "m",
        real={
            "neg": {
                "kind": "negative",
                "status": {"femur_left": "not_found", "femur_right": "found"},
                "labelled_ml": {"femur_left": 0.0, "femur_right": 12.5},
                "ok": False,
            }
        },
    )
    text = markdown([m])
    assert "| m | neg | 0.0 | 12.5 | not_found | found | NO |" in text


def test_scorecard_on_the_real_scans_with_the_shipped_weights(tmp_path: Path) -> None:
    """The shipped model on ../shared/data: the negative scan must be not_found on both sides
    with 0 ml, and the labelled scan's right femur (no implant) must reach the floor below."""
    data = shared_dir() / "data"
    if not (data / "totalseg_example" / "s0000" / "ct.nii.gz").is_file():
        pytest.skip(f"real scans not available at {data}")
    from femurseg.cli import app

    res = CliRunner().invoke(
        app, ["scorecard", "-o", str(tmp_path), "--real", str(data), "--no-surface"]
    )
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "scorecard.json").read_text())[0]["real"]
    for case in scores.values():
        if case["kind"] == "negative":
            assert case["ok"], case
    labelled = scores["totalseg_example/s0000"]
    # floor: the right femur (no metal), sides never swapped
    assert labelled["femur_right"]["dice"] >= 0.80
    assert labelled["femur_left"]["status"] != "not_found"
    assert (tmp_path / "scorecard.md").read_text().startswith("# Real-data scorecard")


def test_derived_views_mirror_sides_and_cut_above_the_heads() -> None:
    from femurseg.evaluation.scorecard import derived_views

    shape = (40, 20, 60)
    vol = _volume(shape)
    vol.array[...] = -1000.0
    vol.array[5:15, 5:15, :] = 700.0
    truth = np.zeros(shape, dtype=np.uint8)
    truth[5:15, 5:15, 0:30] = int(Label.FEMUR_LEFT)
    truth[25:35, 5:15, 0:20] = int(Label.FEMUR_RIGHT)
    views = {name: (v, t) for name, v, t in derived_views(vol, truth)}
    assert set(views) == {"mirrored", "above_heads", "slices_x2"}
    mv, mt = views["mirrored"]
    # the left femur (low i, patient left in RAS) is now on the right, and labelled right
    assert (mt[25:35, 5:15, 0:30] == int(Label.FEMUR_RIGHT)).all()
    assert (mt[5:15, 5:15, 0:20] == int(Label.FEMUR_LEFT)).all()
    assert np.array_equal(mv.array, vol.array[::-1]) and np.allclose(mv.affine, vol.affine)
    av, at = views["above_heads"]
    assert at is None and av.shape == (40, 20, 60 - 31)
    # the cut keeps world positions: its first slice lies where slice 31 was
    assert np.allclose(
        Grid.of(av).index_to_world([0, 0, 0]), Grid.of(vol).index_to_world([0, 0, 31])
    )
    # twice the slice thickness: half the slices, same world extent, the reference by pairs
    tv, tt = views["slices_x2"]
    assert tv.shape == (40, 20, 30) and tt is not None
    assert np.allclose(Grid.of(tv).spacing, (2.0, 2.0, 4.0))
    assert np.allclose(Grid.of(tv).index_to_world([0, 0, 0])[2], 1.0)  # between slices 0 and 1
    assert (tt == int(Label.FEMUR_LEFT)).sum() == 10 * 10 * 15
    assert (tt == int(Label.FEMUR_RIGHT)).sum() == 10 * 10 * 10
    # a reference reaching the top slice gives no above-heads view
    truth[5:15, 5:15, :] = int(Label.FEMUR_LEFT)
    assert [n for n, _, _ in derived_views(vol, truth)] == ["mirrored", "slices_x2"]


def _synth_real_case(root: Path) -> None:
    """The synthetic two-femur scan with its reference, as real case ``ts/s1`` under root."""
    from model_synth import synth_case

    image, labels, affine = synth_case()
    case = root / "ts" / "s1"
    write_image(image.astype(np.int16), affine, case / "ct.nii.gz")
    for name, value in (("femur_left", 1), ("femur_right", 2)):
        write_image(
            (labels == value).astype(np.uint8), affine, case / "segmentations" / f"{name}.nii.gz"
        )


def test_scorecard_scores_the_same_weights_under_other_settings(tmp_path: Path) -> None:
    """--settings NAME=FILE runs that model under a PredictConfig settings file; the JSON
    records the settings; a settings option naming no model is one line and exit 2."""
    from femurseg.cli import app

    _synth_real_case(tmp_path / "real")
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"box_rules": {"min_volume_ml": 5000}}))
    out = tmp_path / "sc"
    args = ["scorecard", "-o", str(out), "--real", str(tmp_path / "real"), "--no-surface"]
    args += ["--no-derived", "--model", "a=shipped:shipped", "--model", "b=shipped:shipped"]
    res = CliRunner().invoke(app, [*args, "--settings", f"b={strict}"])
    assert res.exit_code == 0, res.output
    a, b = json.loads((out / "scorecard.json").read_text())
    assert a["settings"] is None and b["settings"] == {"box_rules": {"min_volume_ml": 5000}}
    for side in ("femur_left", "femur_right"):  # nothing passes a 5000 ml minimum
        assert b["real"]["ts/s1"][side]["status"] == "not_found"
        assert b["real"]["ts/s1"][side]["pred_ml"] == 0.0
    for bad in (f"c={strict}", "b", f"b={tmp_path / 'missing.json'}"):
        res = CliRunner().invoke(app, [*args, "--settings", bad])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and "--settings" in lines[0], res.output


def test_end_offsets_say_how_far_a_mask_reaches_past_each_end() -> None:
    truth = np.zeros((6, 6, 20), dtype=bool)
    truth[2:4, 2:4, 5:15] = True  # slices 5..14
    pred = truth.copy()
    pred[2, 2, 15:17] = True  # two slices above the top: into the hip joint
    pred[:, :, 5] = False  # stops one slice short of the bottom
    assert end_offsets_mm(pred, truth, 2.5) == (5.0, -2.5)
    assert end_offsets_mm(truth, truth, 2.5) == (0.0, 0.0)
    # an end the scan cuts is not scored; nor is an empty mask
    cut = truth.copy()
    cut[2:4, 2:4, 15:] = True  # the femur reaches the last slice
    assert end_offsets_mm(cut, cut, 1.0) == (None, 0.0)
    assert end_offsets_mm(np.zeros_like(truth), truth, 1.0) == (None, None)


def test_markdown_phantom_row_has_the_end_offsets() -> None:
    phantoms = {
        "split": "all",
        "cases": 2,
        "dice_mean": {"femur_left": 0.97, "femur_right": 0.96},
        "dice_min": 0.95,
        "femurs": 4,
        "femurs_below_0.95": 0,
        "box_iou_mean": 0.9,
        "top_mm_mean": 2.25,
        "bottom_mm_mean": -0.5,
        "ends": 6,
        "ends_beyond_2mm": 2,
        "absent_sides": 0,
        "absent_sides_ok": 0,
    }
    text = markdown([ModelScores("m", real={}, phantoms=phantoms)])
    assert "| m | all | 2 | 0.970 | 0.960 | 0.950 | 0/4 | 0.900 | 2.2 / -0.5 | 2/6 | 0/0 |" in text


def test_trimmed_views_cut_one_layer_from_each_face_in_place() -> None:
    from femurseg.evaluation.scorecard import trimmed_views

    shape = (12, 10, 16)
    vol = _volume(shape)
    vol.array[...] = np.arange(vol.array.size, dtype=np.float32).reshape(shape)
    truth = (vol.array.astype(np.int64) % 3).astype(np.uint8)
    views = trimmed_views(vol, truth)
    assert [n for n, _, _ in views] == ["i-", "i+", "j-", "j+", "k-", "k+"]
    grid = Grid.of(vol)
    for name, view, view_truth in views:
        axis, low = "ijk".index(name[0]), name[1] == "-"
        want = list(shape)
        want[axis] -= 1
        assert view.shape == tuple(want) and view_truth.shape == tuple(want)
        # every kept voxel stays where it was in world space, with its value and label
        ijk = np.array([3, 4, 5])
        src = ijk + np.eye(3, dtype=int)[axis] * int(low)
        assert np.allclose(Grid.of(view).index_to_world(ijk), grid.index_to_world(src))
        assert view.array[tuple(ijk)] == vol.array[tuple(src)]
        assert view_truth[tuple(ijk)] == truth[tuple(src)]
    # an axis too short to lose a layer is left alone
    assert all(n[0] != "i" for n, _, _ in trimmed_views(_volume((4, 10, 16)), truth[:4]))


def test_scorecard_fov_trims_give_the_spread_over_seven_views(tmp_path: Path) -> None:
    from femurseg.cli import app

    _synth_real_case(tmp_path / "real")
    out = tmp_path / "sc"
    args = ["scorecard", "-o", str(out), "--real", str(tmp_path / "real"), "--no-surface"]
    res = CliRunner().invoke(app, [*args, "--no-derived", "--fov-trims"])
    assert res.exit_code == 0, res.output
    (scored,) = json.loads((out / "scorecard.json").read_text())
    entry = scored["real"]["ts/s1"]
    for side in ("femur_left", "femur_right"):
        t = entry["fov_trims"][side]["dice"]
        assert t["n"] == 7 and t["min"] <= entry[side]["dice"] <= t["max"]
        assert t["min"] <= t["mean"] <= t["max"] and t["sd"] >= 0.0
    assert "one voxel layer cut from each face" in (out / "scorecard.md").read_text()
