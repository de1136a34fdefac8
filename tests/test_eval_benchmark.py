"""``femurseg benchmark``: every method scored the same way, time and memory, curves, claims."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from model_synth import write_dataset

from femurseg.cli import main
from femurseg.errors import InputError
from femurseg.evaluation.benchmark import (
    BenchmarkConfig,
    LabelMethod,
    PeakMemory,
    claims,
    read_curve,
    run_benchmark,
    summary_rows,
    write_benchmark,
)
from femurseg.io import read_labels
from femurseg.training.curves import write_csv
from femurseg.types import Volume


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("bench"), n=5)


def _oracle(data: Path, case: str):
    def run(volume: Volume) -> np.ndarray:
        labels, _ = read_labels(data / "labels" / f"{case}.nii.gz", like=volume)
        return labels

    return run


def test_peak_memory_sees_an_allocation() -> None:
    with PeakMemory() as mem:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        block += 1.0
    assert mem.peak_bytes > 250 * 2**20
    del block


def test_read_curve_chains_runs(tmp_path: Path) -> None:
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    s1.mkdir()
    s2.mkdir()
    write_csv([{"step": 100, "val_box_iou": 0.5, "seconds": 60.0}], s1 / "metrics.csv")
    write_csv(
        [
            {"step": 10, "val_dice": 0.4, "seconds": 30.0},
            {"step": 20, "val_dice": 0.7, "seconds": 50.0},
        ],
        s2 / "metrics.csv",
    )
    rows = read_curve([s1, s2])
    assert [r["step"] for r in rows] == [110, 120]
    assert [r["seconds"] for r in rows] == [90, 110]
    assert [r["val_dice"] for r in rows] == [0.4, 0.7]
    with pytest.raises(InputError, match="metrics.csv"):
        read_curve([tmp_path / "nothing"])


def test_benchmark_scores_methods_alike_and_states_claims(data: Path, tmp_path: Path) -> None:
    meta = json.loads((data / "dataset.json").read_text())
    case = meta["split"]["test"][0]

    def empty(volume: Volume) -> np.ndarray:
        return np.zeros(volume.shape, dtype=np.uint8)

    def swapped(volume: Volume) -> np.ndarray:
        truth = _oracle(data, case)(volume)
        out = truth.copy()
        out[truth == 1], out[truth == 2] = 2, 1
        return out

    methods = [
        LabelMethod("two-stage", _oracle(data, case)),
        LabelMethod("segresnet", swapped),
        LabelMethod("transunet", empty),
    ]
    result = run_benchmark(data, methods, BenchmarkConfig(split="test"))
    assert result.cases == [case]
    summ = {r["method"]: r for r in summary_rows(result)}
    assert summ["two-stage"]["dice_mean"] == pytest.approx(1.0)
    assert summ["two-stage"]["hd95_mm_mean"] == pytest.approx(0.0)
    assert summ["two-stage"]["mask_box_iou_mean"] == pytest.approx(1.0)
    assert summ["segresnet"]["dice_mean"] == pytest.approx(0.0)  # sides swapped: no overlap
    assert summ["transunet"]["dice_mean"] == pytest.approx(0.0)
    assert summ["transunet"]["hd95_mm_nonfinite"] == 2  # missed femurs are counted, not hidden
    assert all(r["seconds_mean"] >= 0 for r in summ.values())
    text = claims(result)
    # the oracle is not 10x faster than a method as quick as itself: the claim must fail
    assert "does NOT hold" in text[0]
    assert "holds" in text[1] and "NOT" not in text[1]

    paths = write_benchmark(result, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert "| two-stage | 1.000" in md and "## Claims" in md and "HD95" in md
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["two-stage", "segresnet", "transunet"]
    assert paths["png"].stat().st_size > 10_000
    assert json.loads(paths["json"].read_text())["cases"] == [case]


def test_benchmark_cli_runs_shipped_two_stage_and_classical(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_csv([{"step": 5, "val_dice": 0.3, "seconds": 2.0}], run / "metrics.csv")
    out = tmp_path / "bench"
    code = main(
        [
            "benchmark",
            "--data",
            str(data),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--no-surface",
            "--curve",
            f"two-stage={run}",
        ]
    )
    assert code == 0
    md = (out / "benchmark.md").read_text()
    assert "| two-stage |" in md and "| classical |" in md
    assert "segresnet: no --segresnet checkpoint given" in md
    assert "Two-stage vs single-stage SegResNet: not measured" in md
    assert "## Convergence" in md


def test_benchmark_cli_errors_are_one_line(data: Path, tmp_path: Path, capsys) -> None:
    code = main(["benchmark", "--data", str(data), "-o", str(tmp_path), "--curve", "nonsense"])
    assert code == 2
    assert "NAME=RUN_DIR" in capsys.readouterr().err
    code = main(
        ["benchmark", "--data", str(data), "-o", str(tmp_path), "--segresnet", "missing.pt"]
    )
    assert code == 2


def test_a_sliver_of_femur_is_not_scored_as_a_femur_in_view(tmp_path: Path) -> None:
    from model_synth import synth_case

    from femurseg.io import write_image

    image, labels, affine = synth_case(seed=3)
    right = np.argwhere(labels == 2)
    keep = right[:10]  # 10 voxels of 27 mm^3: 0.27 ml left at the "edge"
    labels[labels == 2] = 0
    labels[tuple(keep.T)] = 2
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    write_image(image, affine, tmp_path / "images" / "c.nii.gz", dtype=np.int16)
    write_image(labels, affine, tmp_path / "labels" / "c.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"cases": ["c"], "split": {"test": ["c"]}}))

    def left_only(volume: Volume) -> np.ndarray:
        out, _ = read_labels(tmp_path / "labels" / "c.nii.gz", like=volume)
        out[out == 2] = 0
        return out

    result = run_benchmark(tmp_path, [LabelMethod("two-stage", left_only)], BenchmarkConfig())
    summ = summary_rows(result)[0]
    assert summ["n_femurs"] == 1 and summ["dice_mean"] == pytest.approx(1.0)
    assert (
        "not scored: c femur_right 0.27 ml"
        in write_benchmark(result, tmp_path / "o")["markdown"].read_text()
    )
    strict = run_benchmark(
        tmp_path, [LabelMethod("two-stage", left_only)], BenchmarkConfig(min_truth_ml=0.0)
    )
    assert summary_rows(strict)[0]["n_femurs"] == 2  # counted when asked: then it is a miss


def test_hd95_claim_is_not_judged_without_surface_metrics(data: Path) -> None:
    def empty(volume: Volume) -> np.ndarray:
        return np.zeros(volume.shape, dtype=np.uint8)

    methods = [LabelMethod("two-stage", empty), LabelMethod("transunet", empty)]
    result = run_benchmark(data, methods, BenchmarkConfig(surface=False))
    assert claims(result)[1].endswith("not measured (run without HD95).")
