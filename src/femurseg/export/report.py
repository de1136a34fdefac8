"""The case report: written by ``femurseg predict`` as ``<case>_report.json``, read back typed.

:func:`build_report` assembles the JSON of one case (per-side status, boxes in world RAS+ mm and
input voxels, volumes, checks, seconds, versions, runtime, weights, configs);
:func:`measure_report` adds the measurements and quality flags; :func:`read_case_report` reads a
report back as a :class:`CaseReport` (checked ``schema_version``), which is how evaluation and
other tools get at a case's boxes and statuses instead of searching the JSON.
"""

from __future__ import annotations

import importlib.metadata as md
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from femurseg.config import to_dict
from femurseg.errors import InputError
from femurseg.export.landmarks import left_right
from femurseg.measure import (
    FlagCode,
    MeasureConfig,
    QualityConfig,
    measure_femurs,
    quality_flags,
    withhold_for_metal,
)
from femurseg.preprocessing import Box, Grid, voxel_range
from femurseg.segmentation.checks import FemurStatus
from femurseg.types import LABELS, SIDES, Label, Volume

if TYPE_CHECKING:
    from femurseg.pipeline import Prediction, Predictor

#: version of the case report's layout; raised when a key changes meaning or moves.
REPORT_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class SideReport:
    """One side of a case report.

    Attributes:
        status: found, low_confidence or not_found.
        score: stage-1 score.
        box: stage-1 box in world RAS+ mm (None when stage 1 found none).
        mask_box: tight box of the final label, same frame (None when empty).
        volume_ml: final mask volume.
        reasons: why the checks flagged or rejected the side.
    """

    status: str
    score: float
    box: Box | None
    mask_box: Box | None
    volume_ml: float
    reasons: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """True for found and low_confidence (a femur was written, possibly flagged)."""
        return self.status in (FemurStatus.FOUND.value, FemurStatus.LOW_CONFIDENCE.value)


@dataclass(frozen=True)
class CaseReport:
    """A case report read back: the parts tools use, and the whole JSON as ``data``."""

    schema_version: int
    case: str
    sides: dict[Label, SideReport]
    data: dict[str, Any]


def _box(value: Any, where: str) -> Box | None:
    if value is None:
        return None
    try:
        lo, hi = tuple(float(v) for v in value["min"]), tuple(float(v) for v in value["max"])
        if len(lo) != 3 or len(hi) != 3:
            raise ValueError("expected 3 coordinates each")
        return Box(lo, hi)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"{where}: box {value} is malformed ({err}); expected "
            '{"min": [x, y, z], "max": [x, y, z]} in mm'
        ) from err


def parse_case_report(data: Any, source: str = "report") -> CaseReport:
    """A parsed ``<case>_report.json`` as a :class:`CaseReport`.

    Raises:
        InputError: not a femurseg case report, a newer schema than this femurseg reads, or a
            malformed side entry.
    """
    if not isinstance(data, dict) or not isinstance(data.get("femurs"), dict):
        raise InputError(
            f"{source} holds no 'femurs' object; expected a femurseg case report "
            "(<case>_report.json written by femurseg predict)"
        )
    version = int(data.get("schema_version", 1))
    if version > REPORT_SCHEMA_VERSION:
        raise InputError(
            f"{source} has report schema_version {version}; this femurseg reads up to "
            f"{REPORT_SCHEMA_VERSION}; update femurseg"
        )
    sides: dict[Label, SideReport] = {}
    for side in SIDES:
        entry = data["femurs"].get(LABELS[side])
        if entry is None:
            continue
        where = f"{source}: {LABELS[side]}"
        if not isinstance(entry, dict) or "status" not in entry:
            raise InputError(f"{where} is {entry!r}; expected an object with a status")
        check = entry.get("check") or {}
        sides[side] = SideReport(
            status=str(entry["status"]),
            score=float(entry.get("score") or 0.0),
            box=_box(entry.get("box_mm"), where),
            mask_box=_box(entry.get("mask_box_mm"), where),
            volume_ml=float(entry.get("volume_ml") or 0.0),
            reasons=tuple(str(r) for r in check.get("reasons", ())),
        )
    return CaseReport(version, str(data.get("case", "")), sides, data)


def read_case_report(path: str | Path) -> CaseReport:
    """Read and check a ``<case>_report.json`` (see :func:`parse_case_report`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read report {path}: {err}; expected a JSON file") from err
    return parse_case_report(data, f"report {path}")


def _input_voxels(box: Box, volume: Volume) -> dict[str, list[int]] | None:
    """Inclusive voxel index range of ``box`` in the input file's own axis order."""
    src = volume.source
    grid = Grid(src.shape, src.affine) if src is not None else Grid.of(volume)
    rng = voxel_range(box, grid)
    if rng is None:
        return None
    return {"min": [s.start for s in rng], "max": [s.stop - 1 for s in rng]}


def versions() -> dict[str, str]:
    """Versions of femurseg and the libraries that shape its results."""
    out = {}
    for pkg in ("femurseg", "torch", "monai", "numpy", "scipy", "nibabel", "SimpleITK"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def build_report(
    name: str, volume: Volume, pred: Prediction, predictor: Predictor, outputs: dict[str, str]
) -> dict[str, Any]:
    """The JSON report of one case (boxes in world RAS+ mm and input-file voxel indices)."""
    sides: dict[str, Any] = {}
    for side in SIDES:
        det = pred.detections[side]
        entry = det.to_dict()
        prob = pred.probabilities.get(side)
        entry["roi_mm"] = prob.roi.to_dict() if prob is not None else None
        entry["box_voxels"] = _input_voxels(det.box, volume) if det.box is not None else None
        entry["volume_ml"] = round(pred.volumes_ml[side], 2)
        refined = pred.mask_boxes.get(side)
        entry["mask_box_mm"] = refined.to_dict() if refined is not None else None
        if det.found and pred.volumes_ml[side] == 0.0:
            entry["message"] = (
                f"{LABELS[side]} box found but no voxel reached the stage-2 threshold"
            )
        chk = pred.checks.get(side)
        if chk is not None:
            entry["check"] = chk.to_dict()
            if chk.status is FemurStatus.LOW_CONFIDENCE:
                entry["status"] = FemurStatus.LOW_CONFIDENCE.value
                entry["message"] = "; ".join(chk.reasons)
            elif not det.found or pred.volumes_ml[side] == 0.0:
                entry["status"] = FemurStatus.NOT_FOUND.value
        sides[LABELS[side]] = entry
    src = volume.source
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "case": name,
        "input": str(src.path) if src is not None and src.path is not None else None,
        "assumed_orientation": src.extra.get("assumed_orientation") if src is not None else None,
        "series_uid": (src.extra.get("dicom") or {}).get("series_uid") if src is not None else None,
        "outputs": outputs,
        "frames": {
            "box_mm": "world RAS+ millimetres (x to patient right), voxel edges",
            "mask_box_mm": "tight box of the final femur label, same frame as box_mm",
            "box_voxels": "input file voxel indices (i, j, k), inclusive, voxel centres in box",
            "landmarks_ras_mm": "world RAS+ millimetres (x to patient right); the Slicer "
            "markups file (landmarks) holds the same points in LPS",
        },
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing],
        "femurs": sides,
        "seconds": pred.seconds,
        "versions": versions(),
        "runtime": dict(predictor.runtime),
        "weights": {
            "stage1": {"path": str(predictor.detector.path), "sha256": predictor.detector.sha256},
            "stage2": {
                "path": str(predictor.segmenter.path),
                "sha256": predictor.segmenter.sha256,
            },
        },
        "config": {
            "stage1": to_dict(predictor.detector.config),
            "stage2": to_dict(predictor.segmenter.config),
            "predict": to_dict(predictor.config),
        },
    }


def measure_report(
    volume: Volume,
    pred: Prediction,
    measure: MeasureConfig | None = None,
    quality: QualityConfig | None = None,
    *,
    workers: int = 1,
) -> dict[str, Any]:
    """Measurements and quality flags per femur, JSON-ready (see :mod:`femurseg.measure`).

    ``workers`` threads measure the two femurs side by side (the same result).

    Returns:
        ``{"measurements": {side: ...}, "quality": {side: [flag, ...]}}``; a measurement that
        the visible anatomy cannot support is None with the reason beside it.
    """
    scores = {LABELS[side]: det.score for side, det in pred.detections.items()}
    boxes = pred.mask_index
    measured = measure_femurs(
        pred.labels, volume.affine, measure or MeasureConfig(), boxes=boxes, workers=workers
    )
    flags = quality_flags(
        pred.labels,
        volume.affine,
        hu=volume.array,
        scores=scores,
        config=quality or QualityConfig(),
        boxes=boxes,
        workers=workers,
    )
    for name, side_flags in flags.items():
        metal = [f for f in side_flags if f.code == FlagCode.METAL_SUSPECTED]
        if metal:
            measured[name] = withhold_for_metal(measured[name], int(metal[0].details["voxels"]))
    as_dicts = {k: v.to_dict() for k, v in measured.items()}
    return {
        "measurements": as_dicts,
        "left_right": left_right(as_dicts),
        "quality": {k: [f.to_dict() for f in fl] for k, fl in flags.items()},
    }
