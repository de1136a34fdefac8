"""Benchmark: `femurseg predict` end to end on a 512 x 512 x N full lower-limb CT.

Usage::

    .venv/bin/python benchmarks/predict_speed.py [--scan CT.nii.gz --truth LABELS.nii.gz]
        [--slices 1000] [--repeats 2] [--device cpu] [--workdir /tmp/femurseg_speed]

Without ``--scan`` a procedural full lower-limb phantom (seed 3, 1 mm) is made and resampled
onto a 512 x 512 x N grid of 0.8 x 0.8 x (1000 / N) mm (stored LPS, int16, gzipped), with its
truth. Each repeat runs the installed ``femurseg predict`` in a fresh process (start-up, reading
and writing included), and prints the wall time, the stage times from the case report, the
process's peak resident memory, the Dice per side, and the ratios to the targets (15 s and
4 GB for N = 1000; a 2000-slice scan must finish without running out of memory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TARGET_S = 15.0
TARGET_GB = 4.0


def make_scan(workdir: Path, slices: int) -> tuple[Path, Path]:
    """A procedural full-leg phantom on a 512 x 512 x ``slices`` grid, and its truth."""
    from femurseg.io import write_image
    from femurseg.phantoms.generate import generate_case
    from femurseg.phantoms.params import FovKind, PhantomConfig
    from femurseg.preprocessing.grid import Grid, centred_grid
    from femurseg.preprocessing.resample import resample

    scan, truth = workdir / f"ct_{slices}.nii.gz", workdir / f"truth_{slices}.nii.gz"
    if scan.exists() and truth.exists():
        return scan, truth
    workdir.mkdir(parents=True, exist_ok=True)
    case = generate_case(
        PhantomConfig(fov=FovKind.FULL, spacing=(1.0, 1.0, 1.0)), np.random.default_rng(3)
    )
    like = Grid.of(case.image)
    spacing = np.array([0.8, 0.8, 1000.0 / slices])
    step = spacing / np.asarray(like.spacing)
    centre = (np.asarray(like.shape) - 1) / 2.0
    big = centred_grid(like, centre, np.array([512, 512, slices]), step)
    img = resample(case.image.array, like, big, fill=-1024.0).numpy()
    write_image(img, big.affine, scan, axcodes="LPS", dtype=np.int16)
    del img
    lab = np.zeros(big.shape, np.uint8)
    for c in (1, 2):
        mask = resample((case.labels == c).astype(np.float32), like, big, fill=0.0).numpy()
        lab[mask >= 0.5] = c
    write_image(lab, big.affine, truth, axcodes="LPS")
    return scan, truth


def dice(pred: Path, truth: Path) -> dict[str, float]:
    import nibabel as nib

    p = np.asarray(nib.load(pred).dataobj)
    t = np.asarray(nib.load(truth).dataobj)
    out = {}
    for c, name in ((1, "femur_left"), (2, "femur_right")):
        a, b = p == c, t == c
        out[name] = round(2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1), 4)
    return out


def run_once(scan: Path, out: Path, device: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one ``femurseg predict`` process."""
    exe = Path(sys.executable).with_name("femurseg")
    cmd = [str(exe), "predict", str(scan), "-o", str(out), "--device", device]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=dict(os.environ))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"femurseg predict failed with status {status}")
    return wall, usage.ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", type=Path, default=None)
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--slices", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/femurseg_speed"))
    ap.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_only:
        make_scan(args.workdir, args.slices)
        return
    if args.scan is None:
        # made in a child process: a predict process forked from one that holds the phantom
        # would report the phantom's memory as its own peak
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--make-only", "--slices", str(args.slices),
             "--workdir", str(args.workdir)],
            check=True,
        )  # fmt: skip
        scan = args.workdir / f"ct_{args.slices}.nii.gz"
        truth = args.workdir / f"truth_{args.slices}.nii.gz"
        print(f"scan {scan} ready in {time.perf_counter() - t0:.0f} s")
    else:
        scan, truth = args.scan, args.truth
    for r in range(args.repeats):
        out = args.workdir / f"out_{r}"
        # a fresh folder each time: predict skips a case whose outputs are already there, and
        # an earlier run's report would be read as this one's
        shutil.rmtree(out, ignore_errors=True)
        wall, peak_gb = run_once(scan, out, args.device)
        case = scan.name.removesuffix(".gz").removesuffix(".nii")
        report = json.loads((out / f"{case}_report.json").read_text())
        stages = {k: round(v, 1) for k, v in report["seconds"].items()}
        line = (
            f"run {r}: wall {wall:.1f} s ({wall / TARGET_S:.2f}x the {TARGET_S:g} s target), "
            f"peak RSS {peak_gb:.2f} GB ({peak_gb / TARGET_GB:.2f}x the {TARGET_GB:g} GB target); "
            f"stages {stages}"
        )
        if truth is not None:
            line += f"; Dice {dice(out / f'{case}_femur.nii.gz', truth)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
