"""The real-data scorecard: one model (or several) scored on every real scan we hold, beside
held-out phantoms.

Real scans are found under a data root (``../shared/data``) in TotalSegmentator layout, one
folder per case with ``ct.nii.gz``:

* a case with ``segmentations/femur_left.nii.gz`` and ``femur_right.nii.gz`` is scored against
  them per side: Dice, HD95 (MONAI, mm), stage-1 box IoU, the final mask's box IoU, femoral head
  coverage (the share of the reference's top :data:`HEAD_MM` mm that the prediction covers)
  and head core coverage (the same over the reference's voxels one voxel in from its surface:
  on a 3 mm scan a reference that takes in the partial-volume rim, as TotalSegmentator's does,
  leaves a correct mask about a tenth short of full coverage; the core tells a missed head
  from that rim),
  the ml of predicted femur lying on the reference's other structures (every other mask in
  ``segmentations/``, e.g. ``hip_left``: a femur mask that reaches into the acetabulum shows
  there), and, where the scan holds metal, Dice with voxels above :data:`METAL_HU` HU left
  out of both masks (metal is not femur);
* a case under a folder whose name contains ``negative`` (no femur in view) is scored by the
  ml labelled femur per side and whether both sides are ``not_found``;
* each labelled case also gives derived views whose right answer its reference fixes
  (:func:`derived_views`): the scan mirrored in world x (sides must swap), the slices above
  the femoral heads (no femur: both sides not_found) and the scan at twice its slice thickness,
  named ``<case>:mirrored``, ``<case>:above_heads`` and ``<case>:slices_x2``;
* with ``fov_trims``, each labelled case is also scored with one voxel layer cut from each
  face of its field of view in turn (:func:`trimmed_views`): a scan of the same patient a
  voxel smaller. The pipeline's grids are laid from the field of view, so each trim samples
  the anatomy afresh; the spread of Dice over the original and its six trims
  (``fov_trims`` in the case's entry: mean, sd, min and max per side) is how much one
  scan's Dice moves for reasons no model change caused, and the mean is a steadier figure
  to compare models by.

Phantom cases (a dataset folder and split) are scored with the same per-side Dice and box IoU,
and a case whose truth holds less than :data:`MIN_TRUTH_ML` ml of a side counts as "no femur"
for that side: there the right answer is not found (and no voxel labelled).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.detection.boxes import SIDES, boxes_from_labels
from femurseg.evaluation.metrics import segmentation_metrics, side_box_iou
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.training.data import read_split
from femurseg.types import LABELS, Label, Volume

log = logging.getLogger(__name__)

#: HU above which a voxel is metal (implant), left out of both masks for the metal-free Dice.
METAL_HU = 2000.0
#: the top of the reference femur counted as its head for the coverage figure, mm.
HEAD_MM = 40.0
#: a phantom side with less reference femur than this (ml) counts as having none: it is below
#: the smallest mask the pipeline reports as a femur (``FemurCheckRules.min_volume_ml``), so
#: not found is the right answer there (a sliver of condyle tip or the top of a head).
MIN_TRUTH_ML = 10.0


@dataclass(frozen=True)
class RealCase:
    """One real scan: its CT, its reference masks (None for a negative) and its name."""

    name: str
    image: Path
    masks: dict[Label, Path] | None
    #: the reference's other masks (structure name -> path), where the case has them
    others: dict[str, Path] = field(default_factory=dict)


def find_real_cases(root: str | Path) -> tuple[list[RealCase], list[str]]:
    """Every real case under ``root`` and notes on folders that were skipped.

    A case is a folder holding ``ct.nii.gz``; with ``segmentations/femur_{left,right}.nii.gz``
    it is labelled, else it counts as a negative only under a folder whose name says
    ``negative``.
    """
    base = Path(root)
    cases: list[RealCase] = []
    notes: list[str] = []
    for ct in sorted(base.rglob("ct.nii.gz")):
        folder = ct.parent
        rel = folder.relative_to(base)
        seg = folder / "segmentations"
        masks = {s: seg / f"{LABELS[s]}.nii.gz" for s in SIDES}
        if all(p.is_file() for p in masks.values()):
            femur_names = {f"{LABELS[s]}.nii.gz" for s in SIDES}
            others = {
                p.name.removesuffix(".nii.gz"): p
                for p in sorted(seg.glob("*.nii.gz"))
                if p.name not in femur_names
            }
            cases.append(RealCase(str(rel), ct, masks, others))
        elif any("negative" in part for part in rel.parts):
            cases.append(RealCase(str(rel), ct, None))
        else:
            notes.append(f"{rel}: no femur masks and not under a negatives folder; skipped")
    return cases, notes


def _head_coverage(
    pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], grid: Grid, core: bool = False
) -> float:
    """Share of the reference's top :data:`HEAD_MM` mm (world z) that ``pred`` covers; with
    ``core``, of those head voxels whose six face neighbours are all reference too (the head
    without its outermost voxel layer; nan when none is left)."""
    if not truth.any():
        return math.nan
    idx = np.argwhere(truth)
    z_world = grid.index_to_world(idx)[:, 2]
    head = idx[z_world >= float(z_world.max()) - HEAD_MM]
    if core:
        inner = ndimage.binary_erosion(truth, border_value=1)
        head = head[inner[head[:, 0], head[:, 1], head[:, 2]]]
        if head.size == 0:
            return math.nan
    hit = pred[head[:, 0], head[:, 1], head[:, 2]]
    return float(np.mean(hit))


def score_labelled(
    volume: Volume,
    labels: npt.NDArray[np.uint8],
    truth: npt.NDArray[np.uint8],
    stage1_boxes: dict[Label, Any],
    surface: bool = True,
    others: dict[str, npt.NDArray[np.bool_]] | None = None,
) -> dict[str, Any]:
    """Per-side scores of one labelled case (see the module docstring).

    ``others`` maps the reference's other structures (e.g. ``hip_left``) to their masks on the
    same grid; each side then also gets ``other_ml`` (its predicted voxels on any of them) and
    ``other_ml_by_structure`` (the structures it reaches, ml each).
    """
    grid = Grid.of(volume)
    metal = volume.array > METAL_HU
    truth_boxes = boxes_from_labels(truth, grid)
    pred_boxes = boxes_from_labels(labels, grid)
    # the union of the other structures, once for both sides
    other_any = np.logical_or.reduce(list(others.values())) if others else None
    out: dict[str, Any] = {}
    for side in SIDES:
        p, t = labels == int(side), truth == int(side)
        m = segmentation_metrics(p, t, volume.spacing, surface=surface)
        entry: dict[str, Any] = {
            "dice": m["dice"],
            "hd95_mm": m.get("hd95_mm", math.nan),
            "pred_ml": m["pred_ml"],
            "truth_ml": m["truth_ml"],
            "box_iou_stage1": side_box_iou(stage1_boxes.get(side), truth_boxes[side]),
            "box_iou_mask": side_box_iou(pred_boxes[side], truth_boxes[side]),
            "head_coverage": _head_coverage(p, t, grid),
            "head_core_coverage": _head_coverage(p, t, grid, core=True),
        }
        if others and other_any is not None:
            by = {k: float(np.count_nonzero(p & o)) * grid.voxel_ml for k, o in others.items()}
            entry["other_ml"] = float(np.count_nonzero(other_any & p)) * grid.voxel_ml
            entry["other_ml_by_structure"] = {k: v for k, v in by.items() if v > 0}
        if bool((metal & (p | t)).any()):
            entry["dice_no_metal"] = segmentation_metrics(
                p & ~metal, t & ~metal, volume.spacing, surface=False
            )["dice"]
            entry["metal_ml"] = float(np.count_nonzero(metal & t)) * grid.voxel_ml
            # Metal is not femur: on an implant side the head coverage is also taken over the
            # reference's bone voxels only (a metal femoral head is not a head to cover).
            entry["head_coverage_no_metal"] = _head_coverage(p & ~metal, t & ~metal, grid)
            entry["head_core_coverage_no_metal"] = _head_coverage(
                p & ~metal, t & ~metal, grid, core=True
            )
        out[LABELS[side]] = entry
    return out


@dataclass
class ModelScores:
    """Every score of one model."""

    name: str
    real: dict[str, Any] = field(default_factory=dict)
    phantoms: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def side_statuses(pred: Any) -> dict[str, str]:
    """Each side's reported status: the femur check's verdict where stage 1 found it, else
    found / not_found as stage 1 said."""
    out = {}
    for side in SIDES:
        chk = pred.checks.get(side) if getattr(pred, "checks", None) else None
        if chk is not None and pred.detections[side].found:
            out[LABELS[side]] = chk.status.value
        else:
            out[LABELS[side]] = "found" if pred.detections[side].found else "not_found"
    return out


def _stage1_boxes(pred: Any) -> dict[Label, Any]:
    # The stage-1 box as stage 1 proposed it, whether or not the checks kept the side.
    return {s: d.box if d.found else None for s, d in pred.detections.items()}


def _score_negative(pred: Any, vol: Volume) -> dict[str, Any]:
    status = side_statuses(pred)
    ml = {
        LABELS[s]: float(np.count_nonzero(pred.labels == int(s))) * Grid.of(vol).voxel_ml
        for s in SIDES
    }
    return {
        "kind": "negative",
        "status": status,
        "labelled_ml": ml,
        "ok": all(v == "not_found" for v in status.values()) and sum(ml.values()) == 0.0,
        "reasons": {LABELS[s]: pred.detections[s].message for s in SIDES},
    }


def _score_reference(
    pred: Any,
    vol: Volume,
    truth: npt.NDArray[np.uint8],
    surface: bool,
    others: dict[str, npt.NDArray[np.bool_]] | None = None,
) -> dict[str, Any]:
    status = side_statuses(pred)
    entry = score_labelled(vol, pred.labels, truth, _stage1_boxes(pred), surface, others)
    for side in SIDES:
        entry[LABELS[side]]["status"] = status[LABELS[side]]
    return {"kind": "labelled", **entry}


def read_truth(masks: dict[Label, Path], vol: Volume) -> npt.NDArray[np.uint8]:
    """One label map on ``vol``'s grid from a case's per-side reference masks (a voxel in
    both keeps the first side's label)."""
    truth = np.zeros(vol.shape, dtype=np.uint8)
    for side, path in masks.items():
        mask, _ = read_labels(path, like=vol)
        truth[(mask > 0) & (truth == 0)] = int(side)
    return truth


def slices_from(vol: Volume, start: int) -> Volume:
    """The axial slices of a canonical volume from index ``start`` up, in place in world
    space (the same scan with its lower slices cut away)."""
    affine = vol.affine.copy()
    affine[:3, 3] = Grid.of(vol).index_to_world([0, 0, start])
    return Volume(np.ascontiguousarray(vol.array[:, :, start:]), affine)


def derived_views(
    vol: Volume, truth: npt.NDArray[np.uint8]
) -> list[tuple[str, Volume, npt.NDArray[np.uint8] | None]]:
    """Views of a labelled real scan whose right answer is known from its reference.

    * ``mirrored``: the scan mirrored in world x (a mirrored body is a valid body with its
      sides exchanged), scored against the mirrored reference with left and right swapped:
      the sides must follow the anatomy, not the network's habits;
    * ``above_heads``: only the slices above the top of both reference femurs (the pelvis,
      iliac wings and spine, no femur): both sides must be not_found with 0 ml;
    * ``slices_x2``: each pair of axial slices averaged into one of twice the thickness (as a
      thicker reconstruction of the same scan would give, partial volume included), scored
      against the reference taken the same way (a voxel is femur when at least half of the
      pair is).

    Returns:
        ``(suffix, volume, truth or None for a negative)`` per view; a view the scan cannot
        give (no slice above the heads) is left out.
    """
    views: list[tuple[str, Volume, npt.NDArray[np.uint8] | None]] = []
    mirrored = np.ascontiguousarray(truth[::-1])
    swapped = mirrored.copy()
    swapped[mirrored == int(Label.FEMUR_LEFT)] = int(Label.FEMUR_RIGHT)
    swapped[mirrored == int(Label.FEMUR_RIGHT)] = int(Label.FEMUR_LEFT)
    # canonical arrays run to patient right along i: reversing i mirrors the body in world x
    views.append(("mirrored", Volume(np.ascontiguousarray(vol.array[::-1]), vol.affine), swapped))
    k_any = np.flatnonzero(truth.any(axis=(0, 1)))
    # canonical k runs superior; start one slice above the highest femur voxel
    start = int(k_any.max()) + 2 if k_any.size else 0
    if k_any.size and start < vol.shape[2] - 4:
        views.append(("above_heads", slices_from(vol, start), None))
    nz = vol.shape[2] // 2 * 2
    if nz >= 8:
        x, y = vol.shape[0], vol.shape[1]
        thick = vol.array[:, :, :nz].reshape(x, y, nz // 2, 2).mean(axis=3, dtype=np.float32)
        pairs = truth[:, :, :nz].reshape(x, y, nz // 2, 2)
        thick_truth = np.zeros((x, y, nz // 2), dtype=np.uint8)
        for side in SIDES:
            thick_truth[(pairs == int(side)).mean(axis=3) >= 0.5] = int(side)
        affine = vol.affine.copy()
        affine[:3, 2] *= 2.0  # the new slice centre lies half an old slice above the first
        affine[:3, 3] = vol.affine[:3, 3] + 0.5 * vol.affine[:3, 2]
        views.append(("slices_x2", Volume(np.ascontiguousarray(thick), affine), thick_truth))
    return views


def trimmed_views(
    vol: Volume, truth: npt.NDArray[np.uint8]
) -> list[tuple[str, Volume, npt.NDArray[np.uint8]]]:
    """The scan and its reference with one voxel layer cut from one face, for each of the six
    faces in turn (named ``i-``, ``i+``, ``j-``, ``j+``, ``k-``, ``k+``: the layer at the low
    or high end of canonical axis i, j or k), in place in world space."""
    views = []
    grid = Grid.of(vol)
    for axis in range(3):
        if vol.shape[axis] < 8:
            continue
        for end in "-+":
            cut = [slice(None)] * 3
            cut[axis] = slice(1, None) if end == "-" else slice(None, -1)
            start = [0, 0, 0]
            start[axis] = 1 if end == "-" else 0
            affine = vol.affine.copy()
            affine[:3, 3] = grid.index_to_world(start)
            view = Volume(np.ascontiguousarray(vol.array[tuple(cut)]), affine)
            views.append((f"{'ijk'[axis]}{end}", view, np.ascontiguousarray(truth[tuple(cut)])))
    return views


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def _score_trims(
    predictor: Any, vol: Volume, truth: npt.NDArray[np.uint8], first: dict[str, Any]
) -> dict[str, Any]:
    """Dice (and Dice without metal) per side over the case and its :func:`trimmed_views`."""
    got: dict[str, dict[str, list[float]]] = {
        LABELS[s]: {
            k: [first[LABELS[s]][k]] for k in ("dice", "dice_no_metal") if k in first[LABELS[s]]
        }
        for s in SIDES
    }
    for _, view, view_truth in trimmed_views(vol, truth):
        entry = score_labelled(view, predictor.predict(view).labels, view_truth, {}, False)
        for side, keys in got.items():
            for k, values in keys.items():
                values.append(entry[side].get(k, entry[side]["dice"]))
    return {side: {k: _spread(v) for k, v in keys.items()} for side, keys in got.items()}


def score_model(
    name: str,
    predictor: Any,
    real_cases: Sequence[RealCase],
    phantom_data: Path | None = None,
    phantom_split: str = "test",
    surface: bool = True,
    derived: bool = True,
    fov_trims: bool = False,
) -> ModelScores:
    """Run one predictor over the real cases (and, with ``derived``, the views of
    :func:`derived_views` of each labelled one; with ``fov_trims``, its
    :func:`trimmed_views`) and, optionally, a phantom split."""
    scores = ModelScores(name)
    t0 = time.perf_counter()
    for case in real_cases:
        vol = read_volume(case.image)
        pred = predictor.predict(vol)
        if case.masks is None:
            scores.real[case.name] = _score_negative(pred, vol)
            continue
        truth = read_truth(case.masks, vol)
        others = {k: read_labels(p, like=vol)[0] > 0 for k, p in case.others.items()}
        scores.real[case.name] = _score_reference(pred, vol, truth, surface, others)
        if fov_trims:
            scores.real[case.name]["fov_trims"] = _score_trims(
                predictor, vol, truth, scores.real[case.name]
            )
        if not derived:
            continue
        for suffix, view, view_truth in derived_views(vol, truth):
            vpred = predictor.predict(view)
            key = f"{case.name}:{suffix}"
            if view_truth is None:
                scores.real[key] = _score_negative(vpred, view)
            else:
                scores.real[key] = _score_reference(vpred, view, view_truth, surface)
    if phantom_data is not None:
        scores.phantoms = score_phantoms(predictor, phantom_data, phantom_split)
    scores.seconds = time.perf_counter() - t0
    return scores


def end_offsets_mm(
    pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], slice_mm: float
) -> tuple[float | None, float | None]:
    """How far a predicted femur reaches past the true one at its top and bottom (mm).

    Along the canonical slice axis (superior with the index): ``top`` is the predicted top
    slice minus the true one, ``bottom`` the true bottom slice minus the predicted one, so a
    positive value is a mask reaching into the joint beyond that end (the hip above the head,
    the knee below the condyles) and a negative one a mask that stops short. An end the scan
    cuts (the true femur reaches the first or last slice), or an empty mask, gives None.
    """
    kt = np.flatnonzero(truth.any(axis=(0, 1)))
    kp = np.flatnonzero(pred.any(axis=(0, 1)))
    if kt.size == 0 or kp.size == 0:
        return None, None
    n = truth.shape[2]
    top = float((kp[-1] - kt[-1]) * slice_mm) if kt[-1] < n - 1 else None
    bottom = float((kt[0] - kp[0]) * slice_mm) if kt[0] > 0 else None
    return top, bottom


def score_phantoms(predictor: Any, data: Path, split: str) -> dict[str, Any]:
    """Per-side Dice, stage-1 box IoU and how far each femur's ends reach past the truth over
    a phantom split, and the no-femur sides."""
    dices: dict[str, list[float]] = {LABELS[s]: [] for s in SIDES}
    ious: list[float] = []
    ends: dict[str, list[float]] = {"top": [], "bottom": []}
    absent_ok: list[bool] = []
    per_case: dict[str, Any] = {}
    for case in read_split(data, split):
        vol = read_volume(case.image)
        truth, _ = read_labels(case.label, like=vol)
        grid = Grid.of(vol)
        pred = predictor.predict(vol)
        tboxes = boxes_from_labels(truth, grid)
        row: dict[str, Any] = {}
        for side in SIDES:
            t = truth == int(side)
            p = pred.labels == int(side)
            t_ml = float(np.count_nonzero(t)) * grid.voxel_ml
            det = pred.detections[side]
            if t_ml < MIN_TRUTH_ML:
                ok = not det.found and not p.any()
                absent_ok.append(ok)
                row[LABELS[side]] = {"truth_ml": t_ml, "absent_ok": ok}
                continue
            d = segmentation_metrics(p, t, vol.spacing, surface=False)["dice"]
            iou = side_box_iou(det.box if det.found else None, tboxes[side])
            dices[LABELS[side]].append(d)
            ious.append(iou)
            top, bottom = end_offsets_mm(p, t, float(vol.spacing[2]))
            for key, v in (("top", top), ("bottom", bottom)):
                if v is not None:
                    ends[key].append(v)
            row[LABELS[side]] = {
                "truth_ml": t_ml,
                "dice": d,
                "box_iou": iou,
                "top_mm": top,
                "bottom_mm": bottom,
            }
        per_case[case.case_id] = row
        log.info("scored phantom %s", case.case_id)
    every = [d for v in dices.values() for d in v]
    return {
        "split": split,
        "cases": len(per_case),
        "dice_mean": {k: float(np.mean(v)) if v else math.nan for k, v in dices.items()},
        "dice_min": float(min(every)) if every else math.nan,
        "femurs": len(every),
        "femurs_below_0.95": int(sum(d < 0.95 for d in every)),
        "box_iou_mean": float(np.mean(ious)) if ious else math.nan,
        # signed mean over the ends in view, and how many reach 2 mm or more past the truth
        "top_mm_mean": float(np.mean(ends["top"])) if ends["top"] else math.nan,
        "bottom_mm_mean": float(np.mean(ends["bottom"])) if ends["bottom"] else math.nan,
        "ends": len(ends["top"]) + len(ends["bottom"]),
        "ends_beyond_2mm": int(sum(v >= 2.0 for v in ends["top"] + ends["bottom"])),
        "absent_sides": len(absent_ok),
        "absent_sides_ok": int(sum(absent_ok)),
        "per_case": per_case,
    }


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _head_cell(entry: dict[str, Any], key: str = "head_coverage") -> str:
    cell = _f(entry.get(key))
    if f"{key}_no_metal" in entry:
        cell += f" / {_f(entry[f'{key}_no_metal'])}"
    return cell


def markdown(models: Sequence[ModelScores]) -> str:
    """The scorecard as Markdown tables: real labelled scans, real negatives, phantoms."""
    lines = ["# Real-data scorecard", ""]
    lines += [
        "Labelled real scans (reference masks as shipped with the data): per side Dice, Dice "
        f"without voxels above {METAL_HU:g} HU in both masks (where there is metal), HD95 mm, "
        f"stage-1 box IoU, final-mask box IoU, coverage of the reference's top {HEAD_MM:g} mm "
        "(head; after the slash without metal voxels where there is metal), the same over the "
        "head's core (its voxels one voxel in from the reference's surface: the rim a "
        "reference takes in on thick slices left aside), ml of predicted "
        "femur on the reference's other structures (e.g. the acetabulum in hip_left; - where "
        "the reference has none), status.",
        "",
        "| model | case | side | Dice | Dice no metal | HD95 | box IoU s1 | box IoU mask "
        "| head cov. | head core cov. | on other bones ml | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for case, r in m.real.items():
            if r["kind"] != "labelled":
                continue
            for side in ("femur_left", "femur_right"):
                e = r[side]
                lines.append(
                    f"| {m.name} | {case} | {side} | {_f(e['dice'])} | "
                    f"{_f(e.get('dice_no_metal'))} | {_f(e['hd95_mm'], 1)} | "
                    f"{_f(e['box_iou_stage1'])} | {_f(e['box_iou_mask'])} | "
                    f"{_head_cell(e)} | {_head_cell(e, 'head_core_coverage')} | "
                    f"{_f(e.get('other_ml'), 1)} | {e['status']} |"
                )
    trims = [
        (m.name, case, side, r["fov_trims"][side])
        for m in models
        for case, r in m.real.items()
        if "fov_trims" in r
        for side in ("femur_left", "femur_right")
    ]
    if trims:
        lines += [
            "",
            "The same labelled scans with one voxel layer cut from each face of the field of "
            "view in turn (the original and six trims): Dice mean, sd and range per side, "
            "and the same without metal where there is metal.",
            "",
            "| model | case | side | views | Dice mean (sd) | Dice range "
            "| no metal mean (sd) | no metal range |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, case, side, t in trims:
            d, nm = t["dice"], t.get("dice_no_metal")
            cells = [f"{_f(d['mean'], 4)} ({_f(d['sd'], 4)})", f"{_f(d['min'])}-{_f(d['max'])}"]
            cells += (
                [f"{_f(nm['mean'], 4)} ({_f(nm['sd'], 4)})", f"{_f(nm['min'])}-{_f(nm['max'])}"]
                if nm
                else ["-", "-"]
            )
            lines.append(f"| {name} | {case} | {side} | {d['n']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Real scans with no femur in view (right answer: both sides not_found, 0 ml):",
        "",
        "| model | case | left ml | right ml | left | right | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for case, r in m.real.items():
            if r["kind"] != "negative":
                continue
            ml, st = r["labelled_ml"], r["status"]
            lines.append(
                f"| {m.name} | {case} | {ml['femur_left']:.1f} | {ml['femur_right']:.1f} | "
                f"{st['femur_left']} | {st['femur_right']} | {'yes' if r['ok'] else 'NO'} |"
            )
    if any(m.phantoms for m in models):
        lines += [
            "",
            "Phantoms (per-side Dice mean, worst femur, femurs under 0.95, stage-1 box IoU, "
            "how far the masks reach past the true femur's top and bottom where the scan shows "
            "them (mean mm, + into the joint), ends 2 mm or more past, "
            f"sides with under {MIN_TRUTH_ML:g} ml of femur reported not_found):",
            "",
            "| model | split | cases | Dice L | Dice R | worst | < 0.95 | box IoU "
            "| top / bottom mm | ends >= 2 mm past | no-femur sides ok |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in models:
            p = m.phantoms
            if not p:
                continue
            lines.append(
                f"| {m.name} | {p['split']} | {p['cases']} | {_f(p['dice_mean']['femur_left'])} | "
                f"{_f(p['dice_mean']['femur_right'])} | {_f(p['dice_min'])} | "
                f"{p['femurs_below_0.95']}/{p['femurs']} | {_f(p['box_iou_mean'])} | "
                f"{_f(p.get('top_mm_mean'), 1)} / {_f(p.get('bottom_mm_mean'), 1)} | "
                f"{p.get('ends_beyond_2mm', '-')}/{p.get('ends', '-')} | "
                f"{p['absent_sides_ok']}/{p['absent_sides']} |"
            )
    return "\n".join(lines) + "\n"
