"""Score predicted label maps against truth label maps, case by case (``femurseg evaluate``).

Cases are matched by file name: a truth file ``<case>.nii.gz`` (or ``.nii``, ``.nrrd``, ``.mha``)
is matched by a prediction ``<case>_femur.<ext>`` (what ``femurseg predict`` writes) or
``<case>.<ext>``. Both are read through :func:`femurseg.io.read_labels` into canonical RAS+ axes
and must lie on the same grid (same shape, affines equal within ``grid_atol_mm``). Stage-1 boxes
are read from ``<case>_report.json`` beside the prediction when it exists and compared with the
tight boxes of the truth masks (:func:`femurseg.detection.boxes.boxes_from_labels`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.config import check_range
from femurseg.detection.boxes import SIDES, boxes_from_labels
from femurseg.errors import ConfigError, InputError
from femurseg.evaluation.metrics import (
    ScoredBox,
    mean_average_precision,
    segmentation_metrics,
    side_box_iou,
)
from femurseg.export.report import read_case_report
from femurseg.preprocessing.boxes import Box
from femurseg.preprocessing.grid import Grid
from femurseg.types import LABELS, Label

log = logging.getLogger(__name__)

LABEL_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
PRED_SUFFIX = "_femur"
REPORT_SUFFIX = "_report.json"


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are scored.

    Attributes:
        nsd_tolerance_mm: tolerance of the normalised surface Dice, mm.
        crop_margin_voxels: margin around truth and prediction kept for surface metrics.
        grid_atol_mm: largest allowed difference between the prediction's and the truth's
            affines (mm) for them to count as the same grid.
        surface: compute HD95, ASSD and NSD (slower than the overlap metrics).
        allow_missing: score a truth case with no prediction as an empty prediction instead of
            refusing to run.
    """

    nsd_tolerance_mm: float = 1.0
    crop_margin_voxels: int = 2
    grid_atol_mm: float = 1e-3
    surface: bool = True
    allow_missing: bool = False

    def __post_init__(self) -> None:
        check_range("nsd_tolerance_mm", self.nsd_tolerance_mm, 0.0, 100.0)
        check_range("grid_atol_mm", self.grid_atol_mm, 0.0, 10.0)
        if not isinstance(self.crop_margin_voxels, int) or self.crop_margin_voxels < 1:
            raise ConfigError(
                f"crop_margin_voxels={self.crop_margin_voxels} is invalid; expected an integer >= 1"
            )


@dataclass(frozen=True)
class CasePair:
    """One case to score.

    Attributes:
        case: case name (truth file name without its ending).
        truth: truth label map file.
        pred: predicted label map file, or None when missing (only with ``allow_missing``).
        report: the prediction's ``<case>_report.json`` if present.
    """

    case: str
    truth: Path
    pred: Path | None
    report: Path | None = None


@dataclass
class Evaluation:
    """Everything ``evaluate`` measured.

    Attributes:
        rows: one dict per case and side (``case``, ``side`` and the metric values).
        detection: mAP results (empty when no report held boxes).
        config: the :class:`EvalConfig` used.
        n_cases: number of cases scored.
        n_box_cases: number of cases whose report held stage-1 boxes.
    """

    rows: list[dict[str, Any]]
    detection: dict[str, float] = field(default_factory=dict)
    config: EvalConfig = field(default_factory=EvalConfig)
    n_cases: int = 0
    n_box_cases: int = 0


def _split_ending(name: str) -> tuple[str, str] | None:
    for end in LABEL_ENDINGS:
        if name.lower().endswith(end):
            return name[: -len(end)], end
    return None


def _label_files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        split = _split_ending(p.name)
        if p.is_file() and split is not None:
            out[split[0]] = p
    return out


def _truth_folder(folder: Path) -> Path:
    """The folder holding truth label maps: ``folder`` itself, or a dataset's ``labels/``."""
    if not folder.is_dir():
        raise InputError(f"truth folder {folder} does not exist; expected a folder of label maps")
    if not _label_files(folder) and (folder / "labels").is_dir():
        return folder / "labels"
    return folder


def match_cases(pred_dir: Path, truth_dir: Path, *, allow_missing: bool = False) -> list[CasePair]:
    """Pair prediction and truth files by case name.

    Args:
        pred_dir: folder of ``<case>_femur.<ext>`` or ``<case>.<ext>`` label maps.
        truth_dir: folder of ``<case>.<ext>`` label maps (or a dataset folder with ``labels/``).
        allow_missing: keep truth cases without a prediction (scored as empty predictions).

    Returns:
        Pairs sorted by case name.

    Raises:
        InputError: a folder is missing or empty, a prediction has no truth, a truth has no
            prediction (unless ``allow_missing``), or a case has two predictions.
    """
    pred_dir, truth_dir = Path(pred_dir), _truth_folder(Path(truth_dir))
    if not pred_dir.is_dir():
        raise InputError(f"prediction folder {pred_dir} does not exist; expected a folder")
    truth = _label_files(truth_dir)
    if not truth:
        raise InputError(
            f"truth folder {truth_dir} holds no label maps; expected <case>"
            f"{'/'.join(LABEL_ENDINGS)} files (or a dataset folder with labels/)"
        )
    preds: dict[str, Path] = {}
    for stem, path in _label_files(pred_dir).items():
        case = stem[: -len(PRED_SUFFIX)] if stem.endswith(PRED_SUFFIX) else stem
        if case in preds:
            raise InputError(
                f"case {case} has two predictions in {pred_dir} ({preds[case].name}, {path.name}); "
                "expected one; remove one of them"
            )
        preds[case] = path
    if not preds:
        raise InputError(
            f"prediction folder {pred_dir} holds no label maps; expected <case>{PRED_SUFFIX}"
            f".nii.gz or <case>.nii.gz files from `femurseg predict`"
        )
    extra = sorted(set(preds) - set(truth))
    if extra:
        raise InputError(
            f"{len(extra)} prediction(s) have no truth in {truth_dir} "
            f"(e.g. {', '.join(extra[:3])}); "
            "expected a truth <case>.nii.gz for every prediction; check the folders and names"
        )
    missing = sorted(set(truth) - set(preds))
    if missing and not allow_missing:
        raise InputError(
            f"{len(missing)} truth case(s) have no prediction in {pred_dir} "
            f"(e.g. {', '.join(missing[:3])}); expected one per case; predict them or pass "
            "--allow-missing to score them as empty predictions"
        )
    pairs = []
    for case in sorted(truth):
        report = pred_dir / f"{case}{REPORT_SUFFIX}"
        pairs.append(
            CasePair(case, truth[case], preds.get(case), report if report.is_file() else None)
        )
    return pairs


def _read(path: Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    from femurseg.io import read_labels

    labels, affine = read_labels(path)
    bad = np.setdiff1d(np.unique(labels), [int(v) for v in Label])
    if bad.size:
        raise InputError(
            f"label map {path} holds values {bad.tolist()[:5]}; expected only "
            f"{', '.join(f'{int(v)}={LABELS[v]}' for v in Label)}; relabel it first"
        )
    return labels, affine


def load_pair(
    pair: CasePair, grid_atol_mm: float = 1e-3
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], Grid]:
    """Read a case's prediction and truth and check that they share one grid.

    Returns:
        ``(pred, truth, grid)``: uint8 label maps (X, Y, Z) in canonical RAS+ axes and their grid.

    Raises:
        InputError: unreadable files, unexpected label values, or different grids.
    """
    truth, t_aff = _read(pair.truth)
    if pair.pred is None:
        return np.zeros_like(truth), truth, Grid(truth.shape, t_aff)  # type: ignore[arg-type]
    pred, p_aff = _read(pair.pred)
    if pred.shape != truth.shape:
        raise InputError(
            f"case {pair.case}: prediction {pair.pred.name} has shape {pred.shape} but truth "
            f"{pair.truth.name} has {truth.shape}; expected the same grid; resample the prediction "
            "to the truth's grid"
        )
    diff = float(np.abs(p_aff - t_aff).max())
    if diff > grid_atol_mm:
        raise InputError(
            f"case {pair.case}: prediction and truth affines differ by up to {diff:.3g} mm "
            f"(> {grid_atol_mm:g} mm); expected the same grid; resample the prediction to the "
            "truth's grid"
        )
    return pred, truth, Grid(truth.shape, t_aff)  # type: ignore[arg-type]


def read_report_boxes(path: Path) -> dict[Label, tuple[Box, float] | None] | None:
    """Stage-1 boxes and scores from a ``<case>_report.json`` written by ``femurseg predict``.

    Returns:
        ``{side: (box, score) or None when not found}``, or None when the report names no side.

    Raises:
        InputError: the file is not a femurseg case report, or a box is malformed.
    """
    report = read_case_report(path)
    if not report.sides:
        return None
    out: dict[Label, tuple[Box, float] | None] = {}
    for side in SIDES:
        entry = report.sides.get(side)
        if entry is not None and entry.found and entry.box is not None:
            out[side] = (entry.box, entry.score)
        else:
            out[side] = None
    return out


def evaluate_case(
    case: str,
    pred: npt.NDArray[np.integer[Any]],
    truth: npt.NDArray[np.integer[Any]],
    grid: Grid,
    cfg: EvalConfig,
    pred_boxes: dict[Label, tuple[Box, float] | None] | None = None,
) -> tuple[list[dict[str, Any]], dict[Label, Box | None]]:
    """Metrics of one case, one row per side.

    Args:
        case: case name.
        pred: predicted label map (X, Y, Z), values 0/1/2.
        truth: truth label map on the same grid.
        grid: the shared grid (spacing for surface metrics, affine for boxes).
        cfg: scoring settings.
        pred_boxes: stage-1 boxes from the case's report, if any.

    Returns:
        ``(rows, truth_boxes)``: per-side metric rows and the truth boxes in world mm.
    """
    truth_boxes = boxes_from_labels(truth, grid)
    rows = []
    for side in SIDES:
        p, t = pred == int(side), truth == int(side)
        row: dict[str, Any] = {
            "case": case,
            "side": LABELS[side],
            "truth_present": bool(t.any()),
            "pred_present": bool(p.any()),
        }
        row.update(
            segmentation_metrics(
                p,
                t,
                grid.spacing,
                tolerance_mm=cfg.nsd_tolerance_mm,
                margin_voxels=cfg.crop_margin_voxels,
                surface=cfg.surface,
            )
        )
        if pred_boxes is not None:
            hit = pred_boxes.get(side)
            row["box_iou"] = side_box_iou(hit[0] if hit else None, truth_boxes[side])
            row["box_score"] = hit[1] if hit else float("nan")
        rows.append(row)
    return rows, truth_boxes


def evaluate_pairs(pairs: Sequence[CasePair], cfg: EvalConfig | None = None) -> Evaluation:
    """Score matched cases (see :func:`match_cases`).

    Returns:
        An :class:`Evaluation` with per-side rows and, when reports held boxes, COCO-style mAP
        over the cases that had them.
    """
    cfg = cfg or EvalConfig()
    rows: list[dict[str, Any]] = []
    box_preds: dict[str, list[ScoredBox]] = {LABELS[s]: [] for s in SIDES}
    box_truths: dict[str, dict[str, list[Box]]] = {LABELS[s]: {} for s in SIDES}
    n_box = 0
    for pair in pairs:
        pred, truth, grid = load_pair(pair, cfg.grid_atol_mm)
        boxes = read_report_boxes(pair.report) if pair.report is not None else None
        if pair.report is not None and boxes is None:
            log.warning("report %s holds no femur_left/femur_right boxes; ignored", pair.report)
        case_rows, truth_boxes = evaluate_case(pair.case, pred, truth, grid, cfg, boxes)
        rows.extend(case_rows)
        if boxes is not None:
            n_box += 1
            for side in SIDES:
                name = LABELS[side]
                tb = truth_boxes[side]
                box_truths[name][pair.case] = [tb] if tb is not None else []
                hit = boxes.get(side)
                if hit is not None:
                    box_preds[name].append(ScoredBox(pair.case, hit[0], hit[1]))
        dice = ", ".join(f"{r['side']} {r['dice']:.3f}" for r in case_rows)
        log.info("case %s: Dice %s", pair.case, dice)
    detection = mean_average_precision(box_preds, box_truths) if n_box else {}
    if n_box and n_box < len(pairs):
        log.warning("only %d of %d cases had stage-1 boxes; mAP is over those", n_box, len(pairs))
    return Evaluation(rows, detection, cfg, len(pairs), n_box)


def evaluate_folders(pred_dir: Path, truth_dir: Path, cfg: EvalConfig | None = None) -> Evaluation:
    """Match the files of two folders by case name and score every case."""
    cfg = cfg or EvalConfig()
    pairs = match_cases(Path(pred_dir), Path(truth_dir), allow_missing=cfg.allow_missing)
    log.info("scoring %d case(s)", len(pairs))
    return evaluate_pairs(pairs, cfg)
