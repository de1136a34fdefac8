"""Segmentation and detection metrics, each with its definition and the library that computes it.

Stage 2 (per side, per case), on binary masks of the same grid:

* Overlap metrics over the **whole scan**, as Xie et al. (2025) report them: with TP, FP, FN, TN
  counted over every voxel, Dice = 2TP / (2TP + FP + FN), IoU (Jaccard) = TP / (TP + FP + FN),
  sensitivity = TP / (TP + FN), specificity = TN / (TN + FP), pixel accuracy =
  (TP + TN) / (TP + FP + FN + TN). Computed with NumPy.
* Surface metrics in mm on a crop around truth and prediction (bounding box of both plus a
  margin), with the voxel spacing, computed by MONAI (``monai.metrics``): HD95 =
  ``compute_hausdorff_distance(percentile=95)`` (the larger of the two directed 95th-percentile
  surface distances), ASSD = ``compute_average_surface_distance(symmetric=True)`` (the mean of
  the pooled surface distances in both directions), NSD =
  ``compute_surface_dice(class_thresholds=[tolerance])`` (normalised surface Dice: the fraction of
  both surfaces within ``tolerance`` mm of the other). Surfaces are mask voxels with a
  6-neighbour outside the mask (MONAI's erosion/XOR edges), distances are Euclidean between
  voxel centres.

Empty-mask conventions (stated in every report through :data:`EMPTY_CONVENTIONS`):

* both empty (side absent in truth and not predicted): Dice = IoU = 1, HD95 = ASSD = 0 mm,
  NSD = 1, sensitivity undefined (NaN; no truth voxels), specificity = accuracy = 1;
* truth empty, prediction not: Dice = IoU = 0, sensitivity NaN, HD95 = ASSD = inf, NSD = 0;
* prediction empty, truth not: Dice = IoU = sensitivity = 0, HD95 = ASSD = inf, NSD = 0.

Stage 1: 3D axis-aligned box IoU in world mm (:func:`femurseg.preprocessing.boxes.box_iou`) and
COCO-style mean average precision over IoU thresholds 0.50:0.05:0.95
(:func:`mean_average_precision`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from femurseg.preprocessing.boxes import Box, box_iou

log = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]

OVERLAP_METRICS: tuple[str, ...] = ("dice", "iou", "sensitivity", "specificity", "accuracy")
SURFACE_METRICS: tuple[str, ...] = ("hd95_mm", "assd_mm", "nsd")
COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)

DEFINITIONS: dict[str, str] = {
    "dice": "2TP/(2TP+FP+FN) over all voxels of the scan (NumPy)",
    "iou": "Jaccard TP/(TP+FP+FN) over all voxels of the scan (NumPy)",
    "sensitivity": "TP/(TP+FN) over all voxels of the scan (NumPy)",
    "specificity": "TN/(TN+FP) over all voxels of the scan (NumPy)",
    "accuracy": "pixel accuracy (TP+TN)/(TP+FP+FN+TN) over all voxels of the scan (NumPy)",
    "hd95_mm": (
        "95th-percentile symmetric Hausdorff distance in mm: max of the two directed 95th "
        "percentiles of surface-voxel distances (monai.metrics.compute_hausdorff_distance, "
        "percentile=95, voxel spacing)"
    ),
    "assd_mm": (
        "average symmetric surface distance in mm: mean of surface distances pooled over both "
        "directions (monai.metrics.compute_average_surface_distance, symmetric=True)"
    ),
    "nsd": (
        "normalised surface Dice at the tolerance in mm: fraction of both surfaces within "
        "tolerance of the other (monai.metrics.compute_surface_dice, use_subvoxels=False)"
    ),
    "box_iou": "3D axis-aligned box IoU in world RAS+ mm (femurseg.preprocessing.boxes.box_iou)",
    "map": (
        "COCO-style AP per class over IoU thresholds 0.50:0.05:0.95 with 101-point interpolated "
        "precision, then the mean over classes that occur in the truth (femurseg)"
    ),
}

EMPTY_CONVENTIONS: dict[str, str] = {
    "both_empty": "dice=iou=1, hd95=assd=0 mm, nsd=1, sensitivity=NaN, specificity=accuracy=1",
    "truth_empty_pred_not": "dice=iou=0, sensitivity=NaN, hd95=assd=inf, nsd=0",
    "pred_empty_truth_not": "dice=iou=sensitivity=0, hd95=assd=inf, nsd=0",
    "box_side_absent_both": "box IoU NaN (not counted); no false positive, no miss in mAP",
    "box_side_one_absent": "box IoU 0; a false positive or a miss in mAP",
    "summary": "means/medians over finite values only; n_nonfinite counts the values left out",
}


def _check_pair(pred: BoolArray, truth: BoolArray) -> tuple[BoolArray, BoolArray]:
    p = np.asarray(pred).astype(bool, copy=False)
    t = np.asarray(truth).astype(bool, copy=False)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    return p, t


def confusion_counts(pred: BoolArray, truth: BoolArray) -> tuple[int, int, int, int]:
    """Voxel counts ``(TP, FP, FN, TN)`` of a binary prediction against the truth.

    Args:
        pred: bool array of any shape.
        truth: bool array of the same shape.
    """
    p, t = _check_pair(pred, truth)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    tn = int(p.size) - tp - fp - fn
    return tp, fp, fn, tn


def overlap_metrics(pred: BoolArray, truth: BoolArray) -> dict[str, float]:
    """Dice, IoU, sensitivity, specificity and pixel accuracy over every voxel.

    Args:
        pred: bool mask (X, Y, Z) of the whole scan.
        truth: bool mask of the same shape.

    Returns:
        ``{"dice", "iou", "sensitivity", "specificity", "accuracy"}`` as floats in [0, 1] or NaN
        where undefined (see :data:`EMPTY_CONVENTIONS`).
    """
    tp, fp, fn, tn = confusion_counts(pred, truth)
    nan = float("nan")
    both_empty = tp + fp + fn == 0
    return {
        "dice": 1.0 if both_empty else 2 * tp / (2 * tp + fp + fn),
        "iou": 1.0 if both_empty else tp / (tp + fp + fn),
        "sensitivity": tp / (tp + fn) if tp + fn > 0 else nan,
        "specificity": tn / (tn + fp) if tn + fp > 0 else nan,
        "accuracy": (tp + tn) / (tp + fp + fn + tn) if tp + fp + fn + tn > 0 else nan,
    }


def _crop_around(pred: BoolArray, truth: BoolArray, margin: int) -> tuple[BoolArray, BoolArray]:
    """Both masks cropped to the bounding box of their union plus ``margin`` voxels."""
    union = pred | truth
    sl = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(union.any(axis=other))
        lo = max(int(hit[0]) - margin, 0)
        hi = min(int(hit[-1]) + margin + 1, union.shape[axis])
        sl.append(slice(lo, hi))
    s = tuple(sl)
    return pred[s], truth[s]


def surface_metrics(
    pred: BoolArray,
    truth: BoolArray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = 1.0,
    margin_voxels: int = 2,
) -> dict[str, float]:
    """HD95, ASSD (mm) and normalised surface Dice of two masks, computed by MONAI.

    Args:
        pred: bool mask (X, Y, Z).
        truth: bool mask of the same shape.
        spacing: voxel size in mm along X, Y, Z.
        tolerance_mm: NSD tolerance in mm.
        margin_voxels: margin around the union's bounding box kept in the crop.

    Returns:
        ``{"hd95_mm", "assd_mm", "nsd"}``; empty masks follow :data:`EMPTY_CONVENTIONS`.
    """
    p, t = _check_pair(pred, truth)
    if p.ndim != 3 or len(spacing) != 3:
        raise ValueError(f"expected 3D masks and 3 spacings, got {p.shape} and {spacing}")
    if tolerance_mm < 0 or margin_voxels < 0:
        raise ValueError("tolerance_mm and margin_voxels must be >= 0")
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return {"hd95_mm": 0.0, "assd_mm": 0.0, "nsd": 1.0}
    if not has_p or not has_t:
        return {"hd95_mm": math.inf, "assd_mm": math.inf, "nsd": 0.0}

    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    pc, tc = _crop_around(p, t, margin_voxels)
    yp = torch.from_numpy(np.ascontiguousarray(pc))[None, None].float()
    yt = torch.from_numpy(np.ascontiguousarray(tc))[None, None].float()
    sp = [float(s) for s in spacing]
    with warnings.catch_warnings():
        # MONAI warns on empty edges (handled above) and about its own deprecated arguments.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # MONAI-internal deprecation notices
        hd95 = compute_hausdorff_distance(
            yp, yt, include_background=True, percentile=95, spacing=sp
        )
        assd = compute_average_surface_distance(
            yp, yt, include_background=True, symmetric=True, spacing=sp
        )
        nsd = compute_surface_dice(
            yp, yt, class_thresholds=[float(tolerance_mm)], include_background=True, spacing=sp
        )
    return {
        "hd95_mm": float(hd95.reshape(-1)[0]),
        "assd_mm": float(assd.reshape(-1)[0]),
        "nsd": float(nsd.reshape(-1)[0]),
    }


def segmentation_metrics(
    pred: BoolArray,
    truth: BoolArray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = 1.0,
    margin_voxels: int = 2,
    surface: bool = True,
) -> dict[str, float]:
    """All stage-2 metrics of one side of one case (see the module docstring).

    Args:
        pred: bool mask (X, Y, Z) over the whole scan.
        truth: bool mask of the same shape.
        spacing: voxel size in mm along X, Y, Z.
        tolerance_mm: NSD tolerance in mm.
        margin_voxels: crop margin for the surface metrics.
        surface: also compute the (slower) surface metrics.

    Returns:
        Overlap metrics, surface metrics (if asked), and the mask volumes ``pred_ml`` and
        ``truth_ml`` in millilitres.
    """
    out = overlap_metrics(pred, truth)
    if surface:
        out.update(
            surface_metrics(
                pred, truth, spacing, tolerance_mm=tolerance_mm, margin_voxels=margin_voxels
            )
        )
    voxel_ml = float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0
    out["pred_ml"] = float(np.count_nonzero(pred)) * voxel_ml
    out["truth_ml"] = float(np.count_nonzero(truth)) * voxel_ml
    return out


def side_box_iou(pred: Box | None, truth: Box | None) -> float:
    """Box IoU for one side: NaN when the side is absent in both, 0 when absent in one."""
    if pred is None and truth is None:
        return float("nan")
    return box_iou(pred, truth)


@dataclass(frozen=True)
class ScoredBox:
    """A predicted box with its confidence.

    Attributes:
        case: case identifier (boxes are only matched to truth of the same case).
        box: world RAS+ mm box.
        score: confidence; higher is more confident.
    """

    case: str
    box: Box
    score: float


def average_precision(
    preds: Sequence[ScoredBox],
    truths: Mapping[str, Sequence[Box]],
    iou_threshold: float,
) -> float:
    """COCO-style average precision of one class at one IoU threshold.

    Predictions are taken in decreasing score order (ties in the given order); each is a true
    positive if an unmatched truth box of the same case overlaps it with IoU >= ``iou_threshold``
    (the unmatched truth of highest IoU is taken), else a false positive. Precision is made
    monotone (the envelope from the right) and averaged at the 101 recall points 0, 0.01 .. 1
    (a recall never reached counts precision 0).

    Args:
        preds: predicted boxes of this class across all cases.
        truths: ``{case: [truth boxes of this class]}``; cases without the class may be missing.
        iou_threshold: IoU needed for a match, in (0, 1].

    Returns:
        AP in [0, 1], or NaN when there is no truth box at all (the class is then left out of
        the mean, as in COCO).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    n_truth = sum(len(v) for v in truths.values())
    if n_truth == 0:
        return float("nan")
    order = sorted(range(len(preds)), key=lambda i: -preds[i].score)
    used: dict[str, list[bool]] = {c: [False] * len(v) for c, v in truths.items()}
    tp = np.zeros(len(preds))
    for rank, i in enumerate(order):
        p = preds[i]
        cands = truths.get(p.case, ())
        best, best_iou = -1, iou_threshold
        for j, tb in enumerate(cands):
            if used[p.case][j]:
                continue
            iou = box_iou(p.box, tb)
            if iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            used[p.case][best] = True
            tp[rank] = 1.0
    if len(preds) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_truth
    precision = ctp / np.arange(1, len(preds) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def mean_average_precision(
    preds: Mapping[str, Sequence[ScoredBox]],
    truths: Mapping[str, Mapping[str, Sequence[Box]]],
    thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
) -> dict[str, float]:
    """COCO-style mAP@[.50:.05:.95] for 3D boxes, per class and averaged over classes.

    Args:
        preds: ``{class name: [ScoredBox, ...]}``.
        truths: ``{class name: {case: [Box, ...]}}``.
        thresholds: IoU thresholds to average over.

    Returns:
        ``{"<class>": AP averaged over thresholds, "<class>@0.50": AP at 0.5, ...,
        "mean": mean over classes with truth, "mean@0.50": ..., "mean@0.75": ...}``. A class
        with no truth box anywhere has NaN and is left out of the means.
    """
    classes = sorted(set(preds) | set(truths))
    out: dict[str, float] = {}
    per_thr: dict[str, list[float]] = {}
    for cls in classes:
        aps = [average_precision(preds.get(cls, ()), truths.get(cls, {}), t) for t in thresholds]
        per_thr[cls] = aps
        out[cls] = float(np.mean(aps)) if not math.isnan(aps[0]) else float("nan")
        for t, ap in zip(thresholds, aps, strict=True):
            if math.isclose(t, 0.5) or math.isclose(t, 0.75):
                out[f"{cls}@{t:.2f}"] = ap
    valid = [c for c in classes if not math.isnan(out[c])]
    out["mean"] = float(np.mean([out[c] for c in valid])) if valid else float("nan")
    for key in ("0.50", "0.75"):
        vals = [out[f"{c}@{key}"] for c in valid if f"{c}@{key}" in out]
        out[f"mean@{key}"] = float(np.mean(vals)) if vals else float("nan")
    return out
