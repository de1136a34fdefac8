"""The cohort's summary: ``cohort.csv``, ``cohort.html`` (a QC page) and ``run.json``.

Both tables are rebuilt from the output folder (each case's report or error record), so they
are right whichever run, shard or backend made the cases, and are written atomically: a reader
never sees half a table. ``cohort.html`` is one self-contained page that opens from disk: one
row per case with its preview thumbnail, quality flags and failures highlighted, columns sorted
by a click, and outliers marked: a femur whose volume lies far from the cohort's (robust
z-score of the labelled volume, ``<side>_mask_ml``, above :data:`OUTLIER_Z`, from the median
and the median absolute deviation, with at least :data:`OUTLIER_MIN_CASES` femurs to compare).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from femurseg.atomic import atomic_write
from femurseg.cohort.state import CaseState, case_state, load_error, load_report
from femurseg.types import SIDE_NAMES

if TYPE_CHECKING:
    from femurseg.cohort.cases import Case

SIDES = SIDE_NAMES
OUTLIER_Z = 3.5
OUTLIER_MIN_CASES = 5
#: the first columns, in order; per-side measurements follow, then flags and outliers.
FIRST = ["case", "status", "error", "seconds", "input"]


def _side_columns(report: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    femurs = report.get("femurs") or {}
    meas = report.get("measurements") or {}
    quality = report.get("quality") or {}
    for side in SIDES:
        entry = femurs.get(side) or {}
        row[f"{side}_status"] = entry.get("status", "")
        row[f"{side}_mask_ml"] = entry.get("volume_ml", "")
        for name, m in ((meas.get(side) or {}).get("measurements") or {}).items():
            if isinstance(m, dict):
                value = m.get("value")
                row[f"{side}_{name}"] = "" if value is None else value
        codes = [f.get("code", "") for f in quality.get(side) or [] if isinstance(f, dict)]
        row[f"{side}_flags"] = ";".join(c for c in codes if c)
    return row


def cohort_rows(cases: Sequence[Case], out: Path, key: str) -> list[dict[str, Any]]:
    """One row per case: status (done, failed, stale, pending) and the report's numbers."""
    rows = []
    for c in cases:
        state = case_state(out, c.id, key)
        row: dict[str, Any] = {"case": c.id, "input": str(c.path), "error": "", "seconds": ""}
        if state is CaseState.DONE:
            report = load_report(out, c.id) or {}
            row["status"] = "done"
            row["seconds"] = (report.get("seconds") or {}).get("total", "")
            row.update(_side_columns(report))
            row["preview"] = Path((report.get("outputs") or {}).get("preview", "")).name
        elif state is CaseState.FAILED:
            err = load_error(out, c.id) or {}
            row.update(status="failed", error=err.get("error", ""), seconds=err.get("seconds", ""))
        else:
            row["status"] = "stale" if state is CaseState.STALE else "pending"
        rows.append(row)
    _mark_outliers(rows)
    return rows


def _mark_outliers(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["outliers"] = ""
    for side in SIDES:
        col = f"{side}_mask_ml"
        found = [
            r
            for r in rows
            if r.get(f"{side}_status") in ("found", "low_confidence")
            and isinstance(r.get(col), (int, float))
        ]
        if len(found) < OUTLIER_MIN_CASES:
            continue
        v = np.array([float(r[col]) for r in found])
        med = float(np.median(v))
        mad = float(np.median(np.abs(v - med)))
        if mad <= 0:
            continue
        for r, x in zip(found, v, strict=True):
            z = 0.6745 * (x - med) / mad
            if abs(z) > OUTLIER_Z:
                note = f"{col} {x:.0f} (cohort median {med:.0f}, robust z {z:+.1f})"
                r["outliers"] = "; ".join(filter(None, [r["outliers"], note]))


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols = list(FIRST)
    for side in SIDES:
        side_cols = sorted({k for r in rows for k in r if k.startswith(side + "_")})
        lead = [f"{side}_status", f"{side}_mask_ml"]
        cols += lead + [k for k in side_cols if k not in lead and not k.endswith("_flags")]
    cols += [f"{s}_flags" for s in SIDES] + ["outliers", "preview"]
    return cols


def _atomic_text(path: Path, text: str) -> Path:
    def _write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, _write)


def write_summary(cases: Sequence[Case], out: Path, key: str) -> dict[str, Path]:
    """Write ``cohort.csv`` and ``cohort.html`` for every case; returns their paths."""
    rows = cohort_rows(cases, out, key)
    cols = _columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in cols})
    return {
        "csv": _atomic_text(out / "cohort.csv", buf.getvalue()),
        "html": _atomic_text(out / "cohort.html", render_html(rows, cols)),
    }


def write_run_json(out: Path, info: dict[str, Any], shard: tuple[int, int] | None) -> Path:
    """Write the run report (``run.json``, or ``run.shard-I-of-N.json`` for a shard)."""
    from femurseg.export.report import versions

    name = "run.json" if shard is None else f"run.shard-{shard[0]}-of-{shard[1]}.json"
    data = {"versions": versions(), **info}
    return _atomic_text(out / name, json.dumps(data, indent=2, default=str))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>femurseg cohort</title>
<style>
body {{ font: 13px sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 2px 6px; vertical-align: middle; }}
th {{ background: #eee; cursor: pointer; position: sticky; top: 0; }}
th.sorted::after {{ content: " \\25B4"; }} th.sorted.desc::after {{ content: " \\25BE"; }}
tr.failed td {{ background: #fdd; }} tr.pending td, tr.stale td {{ color: #888; }}
td.flag {{ background: #ffe9a8; }} td.outlier {{ background: #f9c; font-weight: bold; }}
td.notfound {{ color: #a00; }} img {{ height: 96px; }}
</style></head><body>
<h1>femurseg cohort</h1>
<p id="counts">{counts}</p>
<p>Click a column header to sort. Yellow: quality flags; pink: outliers (robust z of the femur
volume above {z}); red rows: failed cases.</p>
<table id="cohort"><thead><tr>{head}</tr></thead><tbody></tbody></table>
<script id="data" type="application/json">{data}</script>
<script>
const cols = {cols};
const rows = JSON.parse(document.getElementById("data").textContent);
const body = document.querySelector("#cohort tbody");
function cell(row, col) {{
  const td = document.createElement("td");
  const v = row[col] === undefined ? "" : row[col];
  if (col === "preview" && v) {{
    const img = document.createElement("img");
    img.src = v; img.alt = row.case; img.loading = "lazy";
    td.appendChild(img);
  }} else {{
    td.textContent = typeof v === "number" ? +v.toFixed(2) : v;
  }}
  if (col.endsWith("_flags") && v) td.className = "flag";
  if (col === "outliers" && v) td.className = "outlier";
  if (col.endsWith("_status") && v === "not_found") td.className = "notfound";
  if (col.endsWith("_mask_ml") && row.outliers && row.outliers.includes(col))
    td.className = "outlier";
  return td;
}}
function render() {{
  body.textContent = "";
  for (const row of rows) {{
    const tr = document.createElement("tr");
    tr.className = row.status;
    tr.dataset.case = row.case;
    for (const col of cols) tr.appendChild(cell(row, col));
    body.appendChild(tr);
  }}
}}
let sortCol = null, desc = false;
document.querySelectorAll("#cohort th").forEach((th, i) => th.addEventListener("click", () => {{
  const col = cols[i];
  desc = sortCol === col ? !desc : false;
  sortCol = col;
  rows.sort((a, b) => {{
    const x = a[col] ?? "", y = b[col] ?? "";
    const c = (typeof x === "number" && typeof y === "number") ? x - y
      : String(x).localeCompare(String(y), undefined, {{numeric: true}});
    return desc ? -c : c;
  }});
  document.querySelectorAll("#cohort th").forEach(h => h.classList.remove("sorted", "desc"));
  th.classList.add("sorted"); if (desc) th.classList.add("desc");
  render();
}}));
render();
</script></body></html>
"""


def render_html(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> str:
    """The QC page: data embedded as JSON, rendered and sorted by a few lines of script."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cases"
    # "</" may not appear inside a script element: escape it in the embedded JSON
    data = json.dumps([{c: r.get(c, "") for c in cols} for r in rows]).replace("</", "<\\/")
    return _PAGE.format(
        counts=html.escape(f"{len(rows)} cases: {text}"),
        z=OUTLIER_Z,
        head="".join(f"<th>{html.escape(c)}</th>" for c in cols),
        data=data,
        cols=json.dumps(list(cols)),
    )
