"""Training records: the metrics CSV and the learning-curve PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from femurseg.atomic import atomic_write


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write all metric rows (one per validation) atomically; columns are the union of keys."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    text = buf.getvalue()

    def _write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, _write)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics CSV with numbers parsed (empty list if the file is absent)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: _num(v) for k, v in r.items()})
    return rows


def _num(v: str) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def plot_curves(rows: list[dict[str, Any]], path: Path, metric_name: str) -> None:
    """Learning curves: training loss and the validation metric against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    steps = [r["step"] for r in rows]
    ax1.plot(steps, [r["train_loss"] for r in rows], marker=".")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss (Dice + CE)")
    ax1.grid(alpha=0.3)
    ax2.plot(steps, [r.get(metric_name, float("nan")) for r in rows], marker=".", color="C1")
    ax2.set_xlabel("step")
    ax2.set_ylabel(metric_name)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
