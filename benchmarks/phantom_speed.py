"""Benchmark: seconds and peak memory to generate one 1 mm full lower-limb phantom.

Usage::

    .venv/bin/python benchmarks/phantom_speed.py [--shapes ../shared/shapes/llp26] [--repeats 2]

Prints, per run, the output shape, wall seconds per generator stage (from the case's own
timings), the total, and the process's peak resident memory. The issue's target is "well under a
minute" on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import FovKind, PhantomConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=Path, default=None, help="LLP26 folder (default procedural)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = PhantomConfig(fov=FovKind.FULL, spacing=(args.spacing,) * 3)
    totals = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        case = generate_case(cfg, np.random.default_rng(args.seed + r), args.shapes)
        total = time.perf_counter() - t0
        totals.append(total)
        stages = {k: round(v, 1) for k, v in case.meta.get("timings_s", {}).items()}
        print(
            f"run {r}: shape {case.image.shape} ({np.prod(case.image.shape) / 1e6:.0f} Mvox), "
            f"{total:.1f} s; stages {stages}"
        )
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    src = "LLP26" if args.shapes else "procedural"
    print(
        f"1 mm full lower-limb phantom ({src} bones): mean {np.mean(totals):.1f} s, "
        f"min {min(totals):.1f} s over {len(totals)} runs; peak RSS {peak_gb:.2f} GB; "
        f"ratio to the 60 s ceiling {np.mean(totals) / 60:.2f}"
    )


if __name__ == "__main__":
    main()
