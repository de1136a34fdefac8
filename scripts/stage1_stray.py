"""Stage 1's stray femur probability: how much of a scan it calls femur away from any femur.

For each scan, the stage-1 femur probability (left + right) on its coarse grid is thresholded
at 0.5 (the box rule's threshold); voxels within ``--margin`` mm of a true femur (the label map
resampled to the coarse grid and dilated) are left out. Printed per scan and model: the ml
left, and the largest connected piece (stage 1 accepts a piece of 15 ml or more as a femur
candidate). Real scans with no femur in view are read from ``DATA/real_negatives/*/ct.nii.gz``
(everything there is stray); phantom folders from their ``dataset.json`` (split ``all``).

    python scripts/stage1_stray.py --model v7=OLD/stage1.pt --model v9=shipped \\
        [--real ../shared/data] [PHANTOM_DIR ...] [--margin 8]

A model is ``NAME=CHECKPOINT`` or ``NAME=shipped``. This is how the v9 model card's "stray
femur probability" columns were measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.detection import Detector
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.resample import resample
from femurseg.training.data import read_split
from femurseg.types import Volume

THRESHOLD = 0.5


def stray_ml(
    detector: Detector, volume: Volume, labels: npt.NDArray[np.integer] | None, margin_mm: float
) -> tuple[float, float]:
    """(ml of stray femur probability, ml of its largest connected piece) on one scan."""
    probs, grid = detector.probabilities(Volume(volume.array.astype(np.float32), volume.affine))
    fg = (probs[1] + probs[2]) >= THRESHOLD
    if labels is not None and np.any(labels):
        near = resample((labels > 0).astype(np.float32), Grid.of(volume), grid, fill=0.0)
        truth = np.asarray(near) > 0.1
        steps = max(int(round(margin_mm / min(grid.spacing))), 0)
        if steps:
            truth = ndi.binary_dilation(truth, structure=np.ones((3, 3, 3), bool), iterations=steps)
        fg &= ~truth
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    pieces, n = ndi.label(fg, structure=np.ones((3, 3, 3), bool))
    largest = float(np.bincount(pieces.ravel())[1:].max()) * voxel_ml if n else 0.0
    return float(fg.sum()) * voxel_ml, largest


def scans(
    real: Path | None, folders: list[Path]
) -> Iterator[tuple[str, Volume, np.ndarray | None]]:
    """(name, volume, labels or None) of every real negative and phantom case."""
    if real is not None:
        for ct in sorted((real / "real_negatives").glob("*/ct.nii.gz")):
            yield f"real_negatives/{ct.parent.name}", read_volume(ct), None
    for folder in folders:
        for case in read_split(folder, "all"):
            vol = read_volume(case.image)
            lab, _ = read_labels(case.label, like=vol)
            yield f"{folder.name}/{case.case_id}", vol, lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="phantom dataset folders")
    ap.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT|shipped")
    ap.add_argument("--real", type=Path, default=None, help="real data folder (real_negatives/)")
    ap.add_argument("--margin", type=float, default=8.0, help="mm around true femurs left out")
    args = ap.parse_args(argv)
    if args.real is None and not args.folders:
        ap.error("nothing to score: give --real DIR and/or phantom folders")
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not name or not path:
            ap.error(f"--model {spec!r}: expected NAME=CHECKPOINT or NAME=shipped")
        models[name] = Detector(None if path == "shipped" else path)
    totals: dict[str, list[tuple[float, float]]] = {m: [] for m in models}
    print("| scan | " + " | ".join(f"{m}: ml / largest" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    for name, vol, lab in scans(args.real, args.folders):
        row = []
        for m, det in models.items():
            ml, big = stray_ml(det, vol, lab, args.margin)
            totals[m].append((ml, big))
            row.append(f"{ml:.1f} / {big:.1f}")
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)
    for m, vals in totals.items():
        a = np.array(vals)
        print(
            f"{m}: mean {a[:, 0].mean():.1f} ml, mean largest piece {a[:, 1].mean():.1f} ml, "
            f"scans with a piece of 15 ml or more: {int((a[:, 1] >= 15.0).sum())}/{len(a)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
