"""`femurseg evaluate`: case matching, grid checks, stage-1 boxes from reports, output files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.errors import InputError
from femurseg.evaluation.evaluate import (
    EvalConfig,
    evaluate_folders,
    match_cases,
    read_report_boxes,
)
from femurseg.types import Label

runner = CliRunner()
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
AFFINE[:3, 3] = (-30.0, -20.0, 10.0)


def labels(shift: int = 0) -> np.ndarray:
    lab = np.zeros((30, 20, 16), np.uint8)
    lab[3 + shift : 10 + shift, 5:15, 2:14] = Label.FEMUR_RIGHT  # positions are arbitrary here
    lab[18:26, 5:15, 2:14] = Label.FEMUR_LEFT
    return lab


def save(lab: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(lab, affine), str(path))
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for case, shift in (("a", 0), ("b", 1)):
        save(labels(), truth / f"{case}.nii.gz")
        save(labels(shift), pred / f"{case}_femur.nii.gz")
    return pred, truth


def test_evaluate_writes_csv_json_markdown(folders, tmp_path: Path) -> None:
    pred, truth = folders
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["evaluate", "--pred", str(pred), "--truth", str(truth), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert [(r["case"], r["side"]) for r in rows] == [
        ("a", "femur_left"),
        ("a", "femur_right"),
        ("b", "femur_left"),
        ("b", "femur_right"),
    ]
    assert float(rows[0]["dice"]) == 1.0
    assert float(rows[3]["dice"]) < 1.0
    assert float(rows[3]["hd95_mm"]) == pytest.approx(2.0)  # one voxel of 2 mm along x
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2
    assert summary["segmentation"]["femur_left"]["dice"]["mean"] == 1.0
    assert "monai.metrics.compute_hausdorff_distance" in summary["definitions"]["hd95_mm"]
    md = (out / "summary.md").read_text()
    assert "| dice |" in md and "## Definitions" in md


def test_boxes_from_reports_give_box_iou_and_map(folders, tmp_path: Path) -> None:
    pred, truth = folders
    # truth femur_left occupies i 18..25 -> x = -30 + 2*i, voxel edges -> [5, 21] mm
    left = {"min": [5.0, -11.0, 14.5], "max": [21.0, 9.0, 50.5]}
    for case in ("a", "b"):
        report = {
            "schema_version": 2,
            "case": case,
            "femurs": {
                "femur_left": {"status": "found", "score": 0.9, "box_mm": left},
                "femur_right": {"status": "not_found", "score": 0.1, "box_mm": None},
            },
        }
        (pred / f"{case}_report.json").write_text(json.dumps(report))
    ev = evaluate_folders(pred, truth, EvalConfig(surface=False))
    by = {(r["case"], r["side"]): r for r in ev.rows}
    assert by[("a", "femur_left")]["box_iou"] == pytest.approx(1.0)
    assert by[("a", "femur_right")]["box_iou"] == 0.0  # a missed right femur
    assert ev.detection["femur_left"] == pytest.approx(1.0)
    assert ev.detection["femur_right"] == 0.0
    assert ev.n_box_cases == 2


def test_report_reader_rejects_bad_json(tmp_path: Path) -> None:
    bad = tmp_path / "x_report.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        read_report_boxes(bad)
    side = {"box_mm": {"min": [0, 0], "max": [1, 1, 1]}, "status": "found"}
    bad.write_text(json.dumps({"schema_version": 2, "femurs": {"femur_left": side}}))
    with pytest.raises(InputError, match="malformed"):
        read_report_boxes(bad)
    bad.write_text(json.dumps({"femur_left": {"box_mm": None, "status": "found"}}))
    with pytest.raises(InputError, match="no 'femurs' object"):
        read_report_boxes(bad)
    bad.write_text(json.dumps({"schema_version": 99, "femurs": {}}))
    with pytest.raises(InputError, match="schema_version 99"):
        read_report_boxes(bad)


def test_case_report_reads_back_what_predict_writes(tmp_path: Path) -> None:
    """A report as build_report lays it out reads back typed: statuses, boxes, reasons."""
    from femurseg.export.report import REPORT_SCHEMA_VERSION, read_case_report
    from femurseg.types import Label

    box = {"min": [1.0, 2.0, 3.0], "max": [4.0, 5.0, 6.0], "size": [3.0, 3.0, 3.0]}
    data = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "case": "c1",
        "femurs": {
            "femur_left": {
                "status": "low_confidence",
                "score": 0.61,
                "box_mm": box,
                "mask_box_mm": box,
                "volume_ml": 55.5,
                "check": {"status": "low_confidence", "reasons": ["small mask"]},
            },
            "femur_right": {"status": "not_found", "score": 0.02, "box_mm": None},
        },
    }
    path = tmp_path / "c1_report.json"
    path.write_text(json.dumps(data))
    rep = read_case_report(path)
    left, right = rep.sides[Label.FEMUR_LEFT], rep.sides[Label.FEMUR_RIGHT]
    assert rep.case == "c1" and rep.schema_version == REPORT_SCHEMA_VERSION
    assert left.found and left.box is not None and left.box.lo == (1.0, 2.0, 3.0)
    assert left.reasons == ("small mask",) and left.volume_ml == 55.5
    assert not right.found and right.box is None
    assert read_report_boxes(path) == {Label.FEMUR_LEFT: (left.box, 0.61), Label.FEMUR_RIGHT: None}


def test_plain_case_names_and_dataset_labels_folder(tmp_path: Path) -> None:
    save(labels(), tmp_path / "ds" / "labels" / "c1.nii.gz")
    save(labels(), tmp_path / "pred" / "c1.nii.gz")
    pairs = match_cases(tmp_path / "pred", tmp_path / "ds")
    assert [p.case for p in pairs] == ["c1"]


def _run(pred: Path, truth: Path, out: Path, *extra: str):
    return runner.invoke(
        app, ["evaluate", "--pred", str(pred), "--truth", str(truth), "-o", str(out), *extra]
    )


def test_empty_prediction_folder_is_exit_2(folders, tmp_path: Path) -> None:
    _, truth = folders
    (tmp_path / "empty").mkdir()
    res = _run(tmp_path / "empty", truth, tmp_path / "o")
    assert res.exit_code == 2
    assert "holds no label maps" in res.output


def test_unmatched_cases_are_exit_2(folders, tmp_path: Path) -> None:
    pred, truth = folders
    save(labels(), pred / "zz_femur.nii.gz")
    res = _run(pred, truth, tmp_path / "o")
    assert res.exit_code == 2 and "no truth" in res.output
    (pred / "zz_femur.nii.gz").unlink()
    (pred / "b_femur.nii.gz").unlink()
    res = _run(pred, truth, tmp_path / "o")
    assert res.exit_code == 2 and "--allow-missing" in res.output
    res = _run(pred, truth, tmp_path / "o", "--allow-missing", "--no-surface")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "o" / "per_case.csv").open()))
    assert float(rows[2]["dice"]) == 0.0  # missing prediction scored as empty


def test_grid_mismatch_is_exit_2(folders, tmp_path: Path) -> None:
    pred, truth = folders
    moved = AFFINE.copy()
    moved[0, 3] += 0.5
    save(labels(), pred / "a_femur.nii.gz", moved)
    res = _run(pred, truth, tmp_path / "o")
    assert res.exit_code == 2 and "affines differ" in res.output
    save(np.zeros((30, 20, 15), np.uint8), pred / "a_femur.nii.gz")
    res = _run(pred, truth, tmp_path / "o")
    assert res.exit_code == 2 and "shape" in res.output


def test_tiny_affine_difference_is_accepted(folders, tmp_path: Path) -> None:
    pred, truth = folders
    moved = AFFINE.copy()
    moved[0, 3] += 1e-4
    save(labels(), pred / "a_femur.nii.gz", moved)
    assert _run(pred, truth, tmp_path / "o", "--no-surface").exit_code == 0


def test_unexpected_label_values_are_exit_2(folders, tmp_path: Path) -> None:
    pred, truth = folders
    lab = labels()
    lab[0, 0, 0] = 7
    save(lab, pred / "a_femur.nii.gz")
    res = _run(pred, truth, tmp_path / "o")
    assert res.exit_code == 2 and "values [7]" in res.output
