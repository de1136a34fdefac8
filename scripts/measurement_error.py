"""Score the predicted femur measurements of a phantom dataset against its true ones.

Usage::

    .venv/bin/python scripts/measurement_error.py DATASET PREDICTIONS

``DATASET`` is a ``femurseg phantom`` folder (its ``dataset.json`` holds each femur's truth,
measured on the posed meshes); ``PREDICTIONS`` is the output folder of
``femurseg predict DATASET/images -o PREDICTIONS``. For every measurement both have, prints the
number of femurs, the mean and largest absolute error and the mean signed error (predicted
minus true), and how often the prediction withheld a value the truth has.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

NAMES = (
    "torsion_lee_deg",
    "torsion_murphy_deg",
    "femoral_length_mm",
    "mechanical_axis_length_mm",
    "anatomical_mechanical_angle_deg",
    "mldfa_deg",
    "femoral_offset_mm",
    "neck_shaft_angle_deg",
    "head_diameter_mm",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("predictions", type=Path)
    args = ap.parse_args()
    info = json.loads((args.dataset / "dataset.json").read_text())["case_info"]
    errors: dict[str, list[float]] = defaultdict(list)
    withheld: dict[str, int] = defaultdict(int)
    for case, meta in sorted(info.items()):
        truth = meta.get("femur_truth")
        report_path = args.predictions / f"{case}_report.json"
        if not truth or not report_path.is_file():
            continue
        report = json.loads(report_path.read_text())
        for side, t in truth.items():
            pred = ((report.get("measurements") or {}).get(side) or {}).get("measurements") or {}
            labelled = meta.get("label_voxels", {}).get(side, 0) > 0
            for name in NAMES:
                tv = (t["measurements"].get(name) or {}).get("value")
                pv = (pred.get(name) or {}).get("value")
                if tv is None or not labelled:
                    continue
                if pv is None:
                    withheld[name] += 1
                    continue
                errors[name].append(float(pv) - float(tv))
    print(f"{'measurement':34s} {'n':>3s} {'mean |err|':>10s} {'max |err|':>10s} "
          f"{'mean err':>9s} {'withheld':>8s}")  # fmt: skip
    for name in NAMES:
        e = np.asarray(errors.get(name, []))
        if e.size == 0:
            print(f"{name:34s} {0:3d} {'-':>10s} {'-':>10s} {'-':>9s} {withheld[name]:8d}")
            continue
        print(
            f"{name:34s} {e.size:3d} {np.abs(e).mean():10.2f} {np.abs(e).max():10.2f} "
            f"{e.mean():9.2f} {withheld[name]:8d}"
        )


if __name__ == "__main__":
    main()
