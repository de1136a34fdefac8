"""Summaries and files of an evaluation: per-case CSV, summary JSON and a Markdown table.

Summary statistics per metric and side are taken over the finite values only (an infinite HD95
of a missed femur, a NaN sensitivity of an absent one); how many values were left out is stated
next to them (``n_nonfinite``), so a mean is never silently improved by dropping failures.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from femurseg.config import to_dict
from femurseg.errors import OutputError
from femurseg.evaluation.evaluate import Evaluation
from femurseg.evaluation.metrics import DEFINITIONS, EMPTY_CONVENTIONS
from femurseg.export.report import versions

log = logging.getLogger(__name__)

#: the segmentation metrics of one side, in report order.
SEGMENTATION_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "sensitivity",
    "specificity",
    "accuracy",
    "hd95_mm",
    "assd_mm",
    "nsd",
)
SUMMARY_METRICS: tuple[str, ...] = (*SEGMENTATION_METRICS, "box_iou")
CSV_NAME, JSON_NAME, MD_NAME = "per_case.csv", "summary.json", "summary.md"


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample SD, median, min and max of the finite values, and the counts.

    Returns:
        ``{"mean", "sd", "median", "min", "max", "n", "n_nonfinite"}``; statistics are NaN
        when no value is finite, SD is 0 for a single value.
    """
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    fin = arr[np.isfinite(arr)]
    nan = float("nan")
    if fin.size == 0:
        stats = {"mean": nan, "sd": nan, "median": nan, "min": nan, "max": nan}
    else:
        stats = {
            "mean": float(fin.mean()),
            "sd": float(fin.std(ddof=1)) if fin.size > 1 else 0.0,
            "median": float(np.median(fin)),
            "min": float(fin.min()),
            "max": float(fin.max()),
        }
    return {**stats, "n": int(fin.size), "n_nonfinite": int(arr.size - fin.size)}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Per side, per metric statistics of the per-case rows (see :func:`describe`)."""
    sides = sorted({r["side"] for r in rows})
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for side in sides:
        sel = [r for r in rows if r["side"] == side]
        out[side] = {m: describe([r[m] for r in sel]) for m in SUMMARY_METRICS if m in sel[0]}
    return out


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def summary_dict(ev: Evaluation) -> dict[str, Any]:
    """Everything the summary JSON holds (non-finite numbers as None)."""
    return _json_safe(
        {
            "n_cases": ev.n_cases,
            "segmentation": summarise(ev.rows),
            "detection": {"n_cases_with_boxes": ev.n_box_cases, "map": ev.detection},
            "definitions": DEFINITIONS,
            "empty_mask_conventions": EMPTY_CONVENTIONS,
            "config": to_dict(ev.config),
            "versions": versions(),
        }
    )


def _fmt(v: float, digits: int) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


def markdown(ev: Evaluation) -> str:
    """A Markdown report: mean +- SD and median per metric and side, mAP, and definitions."""
    summ = summarise(ev.rows)
    sides = sorted(summ)
    lines = [
        f"# femurseg evaluation ({ev.n_cases} cases)",
        "",
        "| metric | "
        + " | ".join(f"{s} mean ± sd" for s in sides)
        + " | "
        + " | ".join(f"{s} median" for s in sides)
        + " |",
        "|---|" + "---|" * (2 * len(sides)),
    ]
    metrics = [m for m in SUMMARY_METRICS if all(m in summ[s] for s in sides)]
    for m in metrics:
        digits = 2 if m.endswith("_mm") else 4
        cells = []
        for s in sides:
            st = summ[s][m]
            note = f" ({st['n_nonfinite']} non-finite left out)" if st["n_nonfinite"] else ""
            cells.append(f"{_fmt(st['mean'], digits)} ± {_fmt(st['sd'], digits)}{note}")
        meds = [_fmt(summ[s][m]["median"], digits) for s in sides]
        lines.append(f"| {m} | " + " | ".join(cells) + " | " + " | ".join(meds) + " |")
    if ev.detection:
        lines += [
            "",
            f"## Stage 1 boxes ({ev.n_box_cases} cases with boxes)",
            "",
            "| class | AP@[.50:.95] | AP@.50 | AP@.75 |",
            "|---|---|---|---|",
        ]
        for cls in [*sorted({k.split("@")[0] for k in ev.detection} - {"mean"}), "mean"]:
            lines.append(
                f"| {cls} | {_fmt(ev.detection.get(cls, math.nan), 4)} | "
                f"{_fmt(ev.detection.get(f'{cls}@0.50', math.nan), 4)} | "
                f"{_fmt(ev.detection.get(f'{cls}@0.75', math.nan), 4)} |"
            )
    lines += ["", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()]
    lines += ["", "## Empty masks", ""]
    lines += [f"- **{k}**: {v}" for k, v in EMPTY_CONVENTIONS.items()]
    lines += ["", f"NSD tolerance {ev.config.nsd_tolerance_mm:g} mm.", ""]
    return "\n".join(lines)


def write_report(ev: Evaluation, out_dir: Path) -> dict[str, Path]:
    """Write ``per_case.csv``, ``summary.json`` and ``summary.md`` into ``out_dir``.

    Returns:
        ``{"csv": path, "json": path, "markdown": path}``.

    Raises:
        OutputError: ``out_dir`` is a file or cannot be created.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as err:
        raise OutputError(
            f"cannot create output folder {out_dir}: {err}; expected a writable folder path"
        ) from err
    columns: list[str] = []
    for r in ev.rows:
        columns += [k for k in r if k not in columns]
    paths = {"csv": out_dir / CSV_NAME, "json": out_dir / JSON_NAME, "markdown": out_dir / MD_NAME}
    try:
        with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(ev.rows)
        paths["json"].write_text(
            json.dumps(summary_dict(ev), indent=2, allow_nan=False), encoding="utf-8"
        )
        paths["markdown"].write_text(markdown(ev), encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write to {out_dir}: {err}; check the folder") from err
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
