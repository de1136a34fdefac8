"""Benchmark: a cohort run against separate `femurseg predict` calls, same scans, same machine.

Usage::

    .venv/bin/python benchmarks/cohort_throughput.py [--n 20] [--slices 500]
        [--workdir /tmp/femurseg_cohort] [--workers N]

A procedural full lower-limb phantom on a 512 x 512 x ``slices`` grid (as in
``predict_speed.py``) is linked under ``n`` case names. Then (1) ``femurseg predict`` runs once
per scan in a fresh process each, and (2) one ``femurseg predict FOLDER`` runs the whole cohort
(networks loaded once, the next scan read while the current one computes). Prints both wall
times, the throughput ratio and the target (at least 1.3x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 1.3


def femurseg(*args: str) -> float:
    exe = Path(sys.executable).with_name("femurseg")
    t0 = time.perf_counter()
    subprocess.run([str(exe), *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/femurseg_cohort"))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    here = Path(__file__).parent
    subprocess.run(
        [sys.executable, str(here / "predict_speed.py"), "--make-only", "--slices",
         str(args.slices), "--workdir", str(args.workdir)],
        check=True,
    )  # fmt: skip
    scan = args.workdir / f"ct_{args.slices}.nii.gz"
    cohort = args.workdir / "scans"
    shutil.rmtree(cohort, ignore_errors=True)
    cohort.mkdir(parents=True)
    for i in range(args.n):
        os.link(scan, cohort / f"case{i:03d}.nii.gz")
    for name in ("separate", "cohort"):
        shutil.rmtree(args.workdir / name, ignore_errors=True)
    separate = sum(
        femurseg("predict", str(p), "-o", str(args.workdir / "separate"))
        for p in sorted(cohort.iterdir())
    )
    extra = ["--workers", str(args.workers)] if args.workers else []
    together = femurseg("predict", str(cohort), "-o", str(args.workdir / "cohort"), *extra)
    ratio = separate / together
    verdict = "met" if ratio >= TARGET_RATIO else "NOT MET"
    print(
        f"{args.n} scans of 512 x 512 x {args.slices}: separate calls {separate:.1f} s "
        f"({separate / args.n:.1f} s/scan), one cohort run {together:.1f} s "
        f"({together / args.n:.1f} s/scan); throughput {ratio:.2f}x "
        f"(target {TARGET_RATIO}x: {verdict})"
    )


if __name__ == "__main__":
    main()
