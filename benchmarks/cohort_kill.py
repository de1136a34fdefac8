"""Benchmark: kill -9 a cohort run at random moments, rerun, and check what is on disk.

Usage::

    .venv/bin/python benchmarks/cohort_kill.py [--trials 6] [--n 8] [--seed 0]
        [--workdir /tmp/femurseg_kill] [--workers 1]

A cohort of ``n`` scans (a procedural phantom on a 256 x 256 x 300 grid under ``n`` names, plus
one broken file) is run with ``femurseg predict FOLDER``; each trial kills the whole process
group with SIGKILL after a random 1-12 s, then the next trial reruns into the same folder. A
last run finishes the cohort. Checked at the end: every good case is done (report with the run
key and every output it lists), each finished case was reported finished by at most one run
(no case redone after it was complete), every final-named output opens (NIfTI, JSON, PNG), no
temporary file is left, and the broken scan is recorded as failed, not retried.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/femurseg_kill"))
    args = ap.parse_args()
    import nibabel as nib

    here = Path(__file__).parent
    subprocess.run(
        [sys.executable, str(here / "predict_speed.py"), "--make-only", "--slices", "300",
         "--workdir", str(args.workdir)],
        check=True,
    )  # fmt: skip
    scan = args.workdir / "ct_300.nii.gz"
    cohort, out = args.workdir / "scans", args.workdir / "out"
    shutil.rmtree(cohort, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    cohort.mkdir(parents=True)
    for i in range(args.n):
        os.link(scan, cohort / f"case{i:02d}.nii.gz")
    (cohort / "broken.nii.gz").write_bytes(b"not a scan" * 100)
    exe = str(Path(sys.executable).with_name("femurseg"))
    cmd = [exe, "predict", str(cohort), "-o", str(out), "--workers", str(args.workers)]
    rng = random.Random(args.seed)
    finished: Counter[str] = Counter()

    def count(stdout: str) -> None:
        for line in stdout.splitlines():
            if " -> " in line and ":" in line:
                finished[line.split(":", 1)[0]] += 1

    for t in range(args.trials):
        delay = rng.uniform(1.0, 12.0)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            stdout, _ = proc.communicate(timeout=delay)
            print(f"trial {t}: finished before the kill at {delay:.1f} s (rc {proc.returncode})")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
            print(f"trial {t}: killed at {delay:.1f} s")
        count(stdout)
    last = subprocess.run(cmd, capture_output=True, text=True)
    count(last.stdout)
    problems = []
    run = json.loads((out / "run.json").read_text())
    for i in range(args.n):
        case = f"case{i:02d}"
        report_path = out / f"{case}_report.json"
        if not report_path.is_file():
            problems.append(f"{case}: not done")
            continue
        report = json.loads(report_path.read_text())
        if report["run"]["key"] != run["key"]:
            problems.append(f"{case}: made with another key")
        for name, p in report["outputs"].items():
            if not Path(p).is_file():
                problems.append(f"{case}: {name} missing")
        nib.load(out / f"{case}_femur.nii.gz").get_fdata()
        if not (out / f"{case}_preview.png").read_bytes().startswith(b"\x89PNG"):
            problems.append(f"{case}: preview is not a PNG")
        if finished[case] > 1:
            problems.append(f"{case}: finished {finished[case]} times")
    if not (out / "broken_error.json").is_file():
        problems.append("broken: no error record")
    if finished["broken"]:
        problems.append("broken: reported as finished")
    if last.returncode != 2:
        problems.append(f"final run exit code {last.returncode}; expected 2 (one failed scan)")
    temps = [p.name for p in out.iterdir() if p.name.startswith(".")]
    if temps:
        problems.append(f"temporary files left: {temps}")
    print(
        f"{args.trials} kill trials + 1 final run, {args.n} good scans + 1 broken: final run rc "
        f"{last.returncode}; finished counts {dict(sorted(finished.items()))}"
    )
    print("all checks passed" if not problems else "PROBLEMS: " + "; ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
