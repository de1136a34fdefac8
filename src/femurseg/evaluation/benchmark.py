"""One side-by-side benchmark of every method on the same cases (``femurseg benchmark``).

Methods:

* ``two-stage``: the pipeline (stage-1 boxes, stage-2 SegResNet in each box), shipped weights
  unless other checkpoints are given;
* ``segresnet``: the single-stage SegResNet over the whole scan (needs a checkpoint);
* ``transunet``: the 2D TransUNet over axial slices (needs a checkpoint);
* ``classical``: HU threshold, components, hole filling, sides by world position (no learning).

Each method gets the same canonical volume in memory (reading the file is not timed) and
returns a label map on the input grid, scored with :func:`~femurseg.evaluation.evaluate.
evaluate_case` against the truth. Per call we time the wall clock and sample the process's
resident memory every few milliseconds; the reported peak is the highest resident memory
during the call *above* the level just before it (what the method itself needed; the loaded
network and the volume are not counted). Box IoU is computed for every method from the tight
box of its predicted mask; the two-stage model also reports its stage-1 box IoU and mAP.

Convergence curves come from training runs' ``metrics.csv``: a curve is one run folder or
several run by run (e.g. the stage-1 run, then the stage-2 runs); steps and seconds add up
along the chain, and the validation Dice is taken from the runs that report one, so the
two-stage curve starts only after stage 1's training time has been spent.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from femurseg.atomic import atomic_write
from femurseg.config import check_range
from femurseg.detection.boxes import SIDES, boxes_from_labels
from femurseg.errors import InputError, OutputError
from femurseg.evaluation.evaluate import EvalConfig, evaluate_case
from femurseg.evaluation.metrics import (
    DEFINITIONS,
    ScoredBox,
    mean_average_precision,
    side_box_iou,
)
from femurseg.evaluation.report import SEGMENTATION_METRICS, describe
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.boxes import Box
from femurseg.preprocessing.grid import Grid
from femurseg.training.curves import read_csv
from femurseg.training.data import read_split
from femurseg.types import LABELS, Label, Volume

log = logging.getLogger(__name__)

#: metrics in the summary table (per side), in this order.
TABLE_METRICS: tuple[str, ...] = (*SEGMENTATION_METRICS, "mask_box_iou")


#: stage-1 boxes with scores per side, or None for a method without boxes.
Boxes = dict[Label, tuple[Box, float] | None] | None


class Method(Protocol):
    """A segmentation method under test."""

    name: str

    def run(self, volume: Volume) -> tuple[npt.NDArray[np.uint8], Boxes]:
        """Label map on the volume's grid, and stage-1 boxes with scores if it has any."""
        ...


@dataclass
class TwoStageMethod:
    """The two-stage pipeline."""

    predictor: Any
    name: str = "two-stage"

    def run(self, volume: Volume) -> tuple[npt.NDArray[np.uint8], Boxes]:
        pred = self.predictor.predict(volume)
        boxes: dict[Label, tuple[Box, float] | None] = {}
        for side, det in pred.detections.items():
            boxes[side] = (det.box, float(det.score)) if det.found and det.box is not None else None
        return pred.labels, boxes


@dataclass
class LabelMethod:
    """Any method that maps a volume to a label map (single-stage, TransUNet, classical)."""

    name: str
    segment: Callable[[Volume], npt.NDArray[np.uint8]]

    def run(self, volume: Volume) -> tuple[npt.NDArray[np.uint8], Boxes]:
        return self.segment(volume), None


def _rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``; else the lifetime peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class PeakMemory:
    """Context manager: the highest resident memory above the starting level, sampled.

    Attributes:
        peak_bytes: after exit, the peak increase in bytes (0 or more).
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._base = 0
        self._top = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._top = max(self._top, _rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._base = self._top = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._top = max(self._top, _rss_bytes())
        self.peak_bytes = max(self._top - self._base, 0)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What the benchmark scores and how.

    Attributes:
        split: which split of the dataset folder (``train``, ``val``, ``test`` or ``all``).
        max_cases: score at most this many cases of the split (0: all).
        nsd_tolerance_mm: surface Dice tolerance.
        surface: compute HD95, ASSD and NSD.
        min_truth_ml: a side whose true femur has less volume in view than this (a sliver at
            the scan's edge) is not scored as a femur in view; the report counts such sides.
    """

    split: str = "test"
    max_cases: int = 0
    nsd_tolerance_mm: float = 1.0
    surface: bool = True
    min_truth_ml: float = 1.0

    def __post_init__(self) -> None:
        check_range("max_cases", self.max_cases, 0, 1_000_000)
        check_range("min_truth_ml", self.min_truth_ml, 0.0, 1000.0)
        check_range("nsd_tolerance_mm", self.nsd_tolerance_mm, 0.0, 100.0)


@dataclass
class BenchmarkResult:
    """Everything one benchmark run measured.

    Attributes:
        rows: per method, case and side: metrics, ``seconds`` and ``peak_mb`` of the case.
        detection: per method with boxes, its COCO-style mAP results.
        curves: per curve name, rows of ``step``, ``seconds``, ``val_dice``.
        methods: method names in the order run.
        cases: case ids scored.
        data: the dataset folder and split.
        skipped: methods not run, with why.
        min_truth_ml: smallest true femur volume in view that was scored as a femur.
    """

    rows: list[dict[str, Any]]
    detection: dict[str, dict[str, float]]
    curves: dict[str, list[dict[str, float]]]
    methods: list[str]
    cases: list[str]
    data: str
    skipped: dict[str, str] = field(default_factory=dict)
    min_truth_ml: float = 1.0


def read_curve(runs: Sequence[Path]) -> list[dict[str, float]]:
    """Validation Dice against cumulative steps and seconds over a chain of training runs.

    Args:
        runs: run folders in the order they were trained (each has ``metrics.csv``).

    Returns:
        Rows ``{"step", "seconds", "val_dice"}``; runs without ``val_dice`` (stage 1) add
        their steps and seconds only.

    Raises:
        InputError: a folder has no ``metrics.csv``.
    """
    out: list[dict[str, float]] = []
    step0 = sec0 = 0.0
    for run in runs:
        path = Path(run) / "metrics.csv"
        rows = read_csv(path)
        if not rows:
            raise InputError(
                f"{path} is missing or empty; expected a training run folder "
                "(written by `femurseg train`)"
            )
        for r in rows:
            if "val_dice" in r and isinstance(r["val_dice"], float | int):
                out.append(
                    {
                        "step": step0 + float(r["step"]),
                        "seconds": sec0 + float(r["seconds"]),
                        "val_dice": float(r["val_dice"]),
                    }
                )
        step0 += float(rows[-1]["step"])
        sec0 += float(rows[-1]["seconds"])
    return out


def run_benchmark(
    data_dir: str | Path,
    methods: Sequence[Method],
    cfg: BenchmarkConfig | None = None,
    *,
    curves: dict[str, Sequence[Path]] | None = None,
    skipped: dict[str, str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> BenchmarkResult:
    """Run every method on every case of a split and score them the same way.

    Args:
        data_dir: dataset folder (``dataset.json``, images, labels).
        methods: the methods to compare.
        cfg: benchmark settings.
        curves: convergence curves to read, ``{name: [run folder, ...]}``.
        skipped: methods left out and why (reported as such).
        progress: called with (done, total, text) after every method and case.

    Returns:
        The :class:`BenchmarkResult`.
    """
    cfg = cfg or BenchmarkConfig()
    if not methods:
        raise InputError("no method to benchmark; expected at least one (e.g. two-stage)")
    cases = read_split(data_dir, cfg.split)
    if cfg.max_cases:
        cases = cases[: cfg.max_cases]
    ecfg = EvalConfig(nsd_tolerance_mm=cfg.nsd_tolerance_mm, surface=cfg.surface)
    rows: list[dict[str, Any]] = []
    box_preds: dict[str, dict[str, list[ScoredBox]]] = {}
    box_truths: dict[str, dict[str, list[Box]]] = {LABELS[s]: {} for s in SIDES}
    total, done = len(cases) * len(methods), 0
    for case in cases:
        volume = read_volume(case.image)
        truth, _ = read_labels(case.label, like=volume)
        grid = Grid.of(volume)
        truth_boxes = boxes_from_labels(truth, grid)
        truth_ml = {s: float(np.count_nonzero(truth == int(s))) * grid.voxel_ml for s in SIDES}
        for side in SIDES:
            tb = truth_boxes[side]
            box_truths[LABELS[side]][case.case_id] = [tb] if tb is not None else []
        for method in methods:
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                labels, boxes = method.run(volume)
                seconds = time.perf_counter() - t0
            case_rows, _ = evaluate_case(case.case_id, labels, truth, grid, ecfg, boxes)
            pred_boxes = boxes_from_labels(labels, grid)
            for row in case_rows:
                side = (
                    Label.FEMUR_LEFT
                    if row["side"] == LABELS[Label.FEMUR_LEFT]
                    else Label.FEMUR_RIGHT
                )
                row["truth_ml"] = round(truth_ml[side], 3)
                row["in_view"] = truth_ml[side] >= cfg.min_truth_ml
                row["mask_box_iou"] = side_box_iou(pred_boxes[side], truth_boxes[side])
                row["seconds"] = round(seconds, 3)
                row["peak_mb"] = round(mem.peak_bytes / 2**20, 1)
                rows.append({"method": method.name, **row})
            if boxes is not None:
                per = box_preds.setdefault(method.name, {LABELS[s]: [] for s in SIDES})
                for side in SIDES:
                    hit = boxes.get(side)
                    if hit is not None:
                        per[LABELS[side]].append(ScoredBox(case.case_id, hit[0], hit[1]))
            done += 1
            dice = ", ".join(f"{r['side']} {r['dice']:.3f}" for r in case_rows)
            log.info("%s %s: Dice %s, %.1f s", method.name, case.case_id, dice, seconds)
            if progress is not None:
                progress(done, total, f"{method.name} {case.case_id}")
    detection = {
        name: mean_average_precision(preds, box_truths) for name, preds in box_preds.items()
    }
    read = {name: read_curve([Path(p) for p in runs]) for name, runs in (curves or {}).items()}
    return BenchmarkResult(
        rows,
        detection,
        read,
        [m.name for m in methods],
        [c.case_id for c in cases],
        f"{data_dir} (split {cfg.split})",
        dict(skipped or {}),
        cfg.min_truth_ml,
    )


def _per_case(result: BenchmarkResult, method: str, key: str) -> list[float]:
    """A per-call number (``seconds``, ``peak_mb``) of one method, one value per case (the
    rows hold it once per side)."""
    seen: dict[str, float] = {}
    for r in result.rows:
        if r["method"] == method:
            seen[r["case"]] = float(r[key])
    return list(seen.values())


def summary_rows(result: BenchmarkResult) -> list[dict[str, Any]]:
    """One row per method: mean and SD of each metric over both sides, time and memory."""
    out = []
    for method in result.methods:
        mine = [r for r in result.rows if r["method"] == method and r["in_view"]]
        extra = {
            (r["case"], r["side"])
            for r in result.rows
            if r["method"] == method and r["pred_present"] and not r["in_view"]
        }
        row: dict[str, Any] = {
            "method": method,
            "n_femurs": len(mine),
            "false_sides": len(extra),
        }
        for m in TABLE_METRICS:
            st = describe([float(r.get(m, math.nan)) for r in mine])
            row[f"{m}_mean"] = st["mean"]
            row[f"{m}_sd"] = st["sd"]
            row[f"{m}_nonfinite"] = st["n_nonfinite"]
        for side in SIDES:
            st = describe([float(r["dice"]) for r in mine if r["side"] == LABELS[side]])
            row[f"dice_{LABELS[side]}"] = st["mean"]
        secs = describe(_per_case(result, method, "seconds"))
        row["seconds_mean"], row["seconds_sd"] = secs["mean"], secs["sd"]
        row["seconds_min"], row["seconds_max"] = secs["min"], secs["max"]
        row["peak_mb_max"] = describe(_per_case(result, method, "peak_mb"))["max"]
        det = result.detection.get(method)
        row["box_map"] = det.get("mean", math.nan) if det else math.nan
        boxes = [float(r["box_iou"]) for r in mine if "box_iou" in r]
        row["stage1_box_iou"] = describe(boxes)["mean"] if boxes else math.nan
        out.append(row)
    return out


def _f(v: Any, digits: int = 3) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def _finite_or(v: float, default: float = math.inf) -> float:
    return v if math.isfinite(v) else default


def claims(result: BenchmarkResult) -> list[str]:
    """The issue's claims, each stated as holding or not, with the numbers."""
    summ = {r["method"]: r for r in summary_rows(result)}
    lines = []
    two, single, tu = summ.get("two-stage"), summ.get("segresnet"), summ.get("transunet")
    if two and single:
        ratio = single["seconds_mean"] / two["seconds_mean"] if two["seconds_mean"] else math.nan
        faster = math.isfinite(ratio) and ratio >= 10.0
        dice_ok = two["dice_mean"] >= single["dice_mean"]
        verdict = "holds" if faster and dice_ok else "does NOT hold"
        lines.append(
            f"Two-stage at least 10x faster than single-stage SegResNet at equal or better "
            f"Dice: {verdict} (speed ratio {_f(ratio, 1)}x; Dice {_f(two['dice_mean'])} vs "
            f"{_f(single['dice_mean'])})."
        )
    else:
        lines.append("Two-stage vs single-stage SegResNet: not measured (a method was skipped).")
    if two and tu and not any("hd95_mm" in r for r in result.rows):
        lines.append("Two-stage vs TransUNet on Dice and HD95: not measured (run without HD95).")
    elif two and tu:
        dice_ok = two["dice_mean"] > tu["dice_mean"]
        # a missed femur has an infinite HD95: fewer misses wins, then the lower mean
        hd_ok = (two["hd95_mm_nonfinite"], _finite_or(two["hd95_mm_mean"])) < (
            tu["hd95_mm_nonfinite"],
            _finite_or(tu["hd95_mm_mean"]),
        )
        verdict = "holds" if dice_ok and hd_ok else "does NOT hold"
        lines.append(
            f"Two-stage better than TransUNet on Dice and HD95: {verdict} (Dice "
            f"{_f(two['dice_mean'])} vs {_f(tu['dice_mean'])}; HD95 "
            f"{_f(two['hd95_mm_mean'], 1)} vs {_f(tu['hd95_mm_mean'], 1)} mm over found femurs; "
            f"missed femurs {two['hd95_mm_nonfinite']} vs {tu['hd95_mm_nonfinite']})."
        )
    else:
        lines.append("Two-stage vs TransUNet: not measured (a method was skipped).")
    return lines


def _slivers(result: BenchmarkResult) -> str:
    """Text naming the true femur slivers below the in-view volume, if any."""
    seen = sorted(
        {
            (r["case"], r["side"], r["truth_ml"])
            for r in result.rows
            if r["truth_present"] and not r["in_view"]
        }
    )
    if not seen:
        return ""
    items = ", ".join(f"{c} {s} {ml:g} ml" for c, s, ml in seen)
    return f"; not scored: {items}"


def markdown(result: BenchmarkResult) -> str:
    """The benchmark report: table, claims, convergence and definitions."""
    summ = summary_rows(result)
    lines = [
        f"# femurseg benchmark: {len(result.cases)} case(s) of {result.data}",
        "",
        "Mean ± SD over femurs in view (both sides pooled; a femur counts as in view with at "
        f"least {result.min_truth_ml:g} ml inside the scan{_slivers(result)}); seconds per scan "
        "in memory (file reading not timed); peak memory is the largest resident-memory rise "
        "during one call.",
        "",
        "| method | Dice | Dice L | Dice R | IoU | sens. | spec. | acc. | HD95 mm | ASSD mm | "
        "NSD | box IoU (mask) | false sides | s/scan | peak MB |",
        "|---|" + "---|" * 14,
    ]
    for r in summ:
        lines.append(
            f"| {r['method']} | {_f(r['dice_mean'])} ± {_f(r['dice_sd'])} | "
            f"{_f(r['dice_femur_left'])} | {_f(r['dice_femur_right'])} | "
            f"{_f(r['iou_mean'])} | {_f(r['sensitivity_mean'])} | "
            f"{_f(r['specificity_mean'], 5)} | {_f(r['accuracy_mean'], 5)} | "
            f"{_f(r['hd95_mm_mean'], 1)} | {_f(r['assd_mm_mean'], 2)} | {_f(r['nsd_mean'])} | "
            f"{_f(r['mask_box_iou_mean'])} | {r['false_sides']} | {_f(r['seconds_mean'], 1)} ± "
            f"{_f(r['seconds_sd'], 1)} | {_f(r['peak_mb_max'], 0)} |"
        )
    nonfinite = [
        f"{r['method']}: {int(r['hd95_mm_nonfinite'])} femur(s) with no prediction (HD95 "
        "infinite) left out of HD95/ASSD means"
        for r in summ
        if r["hd95_mm_nonfinite"]
    ]
    if nonfinite:
        lines += ["", *[f"- {t}" for t in nonfinite]]
    boxed = [r for r in summ if math.isfinite(r["box_map"])]
    if boxed:
        lines += [
            "",
            "## Stage-1 boxes",
            "",
            "| method | box IoU | mAP@[.50:.95] |",
            "|---|---|---|",
        ]
        for r in boxed:
            lines.append(f"| {r['method']} | {_f(r['stage1_box_iou'])} | {_f(r['box_map'])} |")
    lines += ["", "## Claims", ""] + [f"- {c}" for c in claims(result)]
    if result.skipped:
        lines += ["", "## Not run", ""]
        lines += [f"- {k}: {v}" for k, v in result.skipped.items()]
    if result.curves:
        lines += [
            "",
            "## Convergence (validation Dice; see benchmark.png)",
            "",
            "| curve | validations | best Dice | at step | at seconds | last Dice | total s |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, rows in result.curves.items():
            if not rows:
                lines.append(f"| {name} | 0 | n/a | | | n/a | |")
                continue
            best = max(rows, key=lambda r: r["val_dice"])
            lines.append(
                f"| {name} | {len(rows)} | {_f(best['val_dice'])} | {best['step']:.0f} | "
                f"{best['seconds']:.0f} | {_f(rows[-1]['val_dice'])} | {rows[-1]['seconds']:.0f} |"
            )
    lines += ["", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()]
    lines += [
        "- **false sides**: sides labelled by the method where the truth has no femur.",
        "- **mask_box_iou**: 3D IoU of the tight world boxes of the predicted and the true mask.",
        "- **box IoU / mAP (stage 1)**: the two-stage model's stage-1 boxes against the truth "
        "boxes; mAP is COCO style over IoU 0.50:0.05:0.95.",
        "",
        f"Cases: {', '.join(result.cases)}",
        "",
    ]
    return "\n".join(lines)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot(result: BenchmarkResult, path: Path) -> None:
    """Dice and seconds per method, and the convergence curves against steps and seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summary_rows(result)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    names = [r["method"] for r in summ]
    ax = axes[0, 0]
    ax.bar(names, [r["dice_mean"] for r in summ], yerr=[r["dice_sd"] for r in summ], capsize=4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice (mean ± SD over femurs)")
    ax.set_title("Accuracy")
    ax = axes[0, 1]
    ax.bar(
        names, [r["seconds_mean"] for r in summ], yerr=[r["seconds_sd"] for r in summ], capsize=4
    )
    ax.set_yscale("log")
    ax.set_ylabel("seconds per scan (log)")
    ax.set_title("Speed")
    for ax, key, label in (
        (axes[1, 0], "step", "training steps"),
        (axes[1, 1], "seconds", "training wall-clock seconds"),
    ):
        for name, rows in result.curves.items():
            if rows:
                ax.plot([r[key] for r in rows], [r["val_dice"] for r in rows], "o-", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("validation Dice")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if result.curves:
            ax.legend()
    axes[1, 0].set_title("Convergence vs steps")
    axes[1, 1].set_title("Convergence vs time")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    data = buf.getvalue()

    def _write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, _write)


def _write_text(path: Path, text: str) -> None:
    def _write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, _write)


def write_benchmark(result: BenchmarkResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``benchmark.md``, ``benchmark.csv`` (summary), ``per_case.csv``,
    ``benchmark.json`` and ``benchmark.png`` into ``out_dir`` (each atomically).

    Raises:
        OutputError: the folder cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create output folder {out}: {err}; expected a writable folder path"
        ) from err
    paths = {
        "markdown": out / "benchmark.md",
        "csv": out / "benchmark.csv",
        "per_case": out / "per_case.csv",
        "json": out / "benchmark.json",
        "png": out / "benchmark.png",
    }
    summ = summary_rows(result)
    texts = {
        "markdown": markdown(result),
        "csv": _csv_text(summ),
        "per_case": _csv_text(result.rows),
        "json": json.dumps(
            {
                "data": result.data,
                "cases": result.cases,
                "methods": result.methods,
                "summary": _json_safe(summ),
                "detection": _json_safe(result.detection),
                "curves": result.curves,
                "claims": claims(result),
                "skipped": result.skipped,
            },
            indent=2,
        ),
    }
    try:
        for key, text in texts.items():
            _write_text(paths[key], text)
        plot(result, paths["png"])
    except OSError as err:
        raise OutputError(f"cannot write to {out}: {err}; check the folder") from err
    return paths


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
