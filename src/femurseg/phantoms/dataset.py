"""Write a synthetic dataset in the femurseg layout (:mod:`femurseg.datasets.layout`).

Layout::

    DIR/images/<case>.nii.gz   CT, int16 HU, on-disk orientation drawn per case
    DIR/labels/<case>.nii.gz   uint8 0 background, 1 femur_left, 2 femur_right, same geometry
    DIR/dataset.json           cases, per-case meta (case_info), label names, seeded split

Case ``i`` is drawn from ``SeedSequence(seed).spawn(n)[i]``, so a case does not depend on how
many workers made the dataset or in which order; the same seed gives byte-identical files.
Each file is written atomically.

A run records its plan (seed, n, shapes, config) and each finished case's meta under
``DIR/.progress/`` until ``dataset.json`` is written; a run that was stopped (killed, out of
memory, a worker that died) is finished by the same command with ``resume``, which makes only
the missing cases, byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from femurseg.atomic import atomic_write
from femurseg.config import to_dict
from femurseg.datasets.layout import (
    DatasetLayout,
    prepare_dataset_dir,
    split_cases,
    write_case,
    write_dataset_json,
)
from femurseg.errors import ConfigError, FemursegError, OutputError
from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import PhantomConfig

log = logging.getLogger(__name__)

#: meta keys left out of dataset.json because they change from run to run.
VOLATILE_META = ("timings_s",)


#: folder inside a dataset being written: the run's plan and each finished case's meta.
PROGRESS_DIR = ".progress"


def case_name(i: int) -> str:
    """Name of case ``i`` (zero-based)."""
    return f"phantom_{i:04d}"


def make_case(
    args: tuple[int, np.random.SeedSequence, PhantomConfig, str | None, str, int],
) -> tuple[str, dict[str, Any]]:
    """Generate and write case ``i`` (top-level so that worker processes can run it).

    Args:
        args: (index, seed sequence, config, shapes folder or None, dataset folder, seed).

    Returns:
        The case name and its meta for dataset.json's ``case_info``.
    """
    i, ss, cfg, shapes, out, seed = args
    case = generate_case(cfg, np.random.default_rng(ss), Path(shapes) if shapes else None)
    name = case_name(i)
    write_case(DatasetLayout(Path(out)), name, case.image, case.labels,
               axcodes=case.meta["orientation"])  # fmt: skip
    log.info("case %s: %s", name, case.meta.get("timings_s"))
    meta = {k: v for k, v in case.meta.items() if k not in VOLATILE_META}
    meta["seed"] = {"dataset_seed": seed, "case_index": i}
    # written after the case's files: a case with its meta here is complete on disk
    _write_json(Path(out) / PROGRESS_DIR / f"{name}.json", meta)
    return name, meta


def _write_json(path: Path, doc: Any) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(doc, indent=1))

    atomic_write(path, write)


def _start_or_resume(
    out: Path, plan: dict[str, Any], overwrite: bool, resume: bool
) -> tuple[DatasetLayout, dict[str, dict[str, Any]]]:
    """Prepare ``out`` and return its layout and the metas of cases already finished there."""
    progress = Path(out) / PROGRESS_DIR
    plan_path = progress / "plan.json"
    if resume and plan_path.is_file():
        before = json.loads(plan_path.read_text())
        if before != plan:
            keys = sorted(k for k in set(before) | set(plan) if before.get(k) != plan.get(k))
            raise ConfigError(
                f"{out} was started with other settings ({', '.join(keys)} differ); expected "
                "the same --n, --seed, --shapes and options as the first run; rerun with those, "
                "or use a new folder"
            )
        layout = DatasetLayout(Path(out))
        done: dict[str, dict[str, Any]] = {}
        for i in range(int(plan["n"])):
            name = case_name(i)
            meta_path = progress / f"{name}.json"
            if (
                meta_path.is_file()
                and layout.image_path(name).is_file()
                and layout.label_path(name).is_file()
            ):
                done[name] = json.loads(meta_path.read_text())
        log.info("resuming %s: %d of %d cases already made", out, len(done), plan["n"])
        return layout, done
    if resume and (Path(out) / "dataset.json").is_file():
        raise OutputError(
            f"{out} already holds a finished dataset (dataset.json, no unfinished run); "
            "expected an interrupted run to resume; nothing to do"
        )
    if resume and Path(out).is_dir() and any(Path(out).iterdir()):
        raise OutputError(
            f"{out} is not empty and holds no unfinished phantom run ({PROGRESS_DIR}/plan.json); "
            "expected the folder of an interrupted run; check the path"
        )
    layout = prepare_dataset_dir(out, overwrite=overwrite)
    if progress.is_dir():
        shutil.rmtree(progress)
    _write_json(plan_path, plan)
    return layout, {}


def write_dataset(
    out: Path,
    n: int,
    seed: int,
    cfg: PhantomConfig,
    shapes_dir: Path | None = None,
    workers: int = 1,
    overwrite: bool = False,
    on_case: Callable[[str], None] | None = None,
    resume: bool = False,
) -> Path:
    """Generate ``n`` cases into ``out`` and write dataset.json with an 85/8/7 split.

    Args:
        out: dataset folder (new, empty, or non-empty with ``overwrite``).
        n: number of cases (>= 1).
        seed: dataset seed (cases and split).
        cfg: phantom configuration.
        shapes_dir: LLP26 folder, or None for procedural bones.
        workers: worker processes (1: in this process).
        overwrite: allow a non-empty ``out``.
        on_case: called with each finished case's name (for a progress bar; cases made by an
            earlier run are reported first when resuming).
        resume: finish an interrupted run in ``out`` (same ``n``, ``seed``, ``cfg`` and shapes):
            only the missing cases are made. On an empty or missing folder it starts afresh.

    Returns:
        Path of dataset.json.

    Raises:
        ConfigError: bad ``n``, ``seed``, ``workers`` or shapes folder, or ``resume`` with
            settings other than the interrupted run's.
        OutputError: ``out`` is not empty and ``overwrite`` is False (without ``resume``), or
            ``resume`` finds no interrupted run there.
        FemursegError: a worker process died (most often for lack of memory); the cases
            finished so far are kept for ``resume``.
    """
    if n < 1:
        raise ConfigError(f"n={n} cases; expected at least 1")
    if seed < 0:
        raise ConfigError(f"seed={seed}; expected a non-negative integer")
    if workers < 1 or workers > (os.cpu_count() or 1) * 4:
        raise ConfigError(f"workers={workers}; expected 1 to {(os.cpu_count() or 1) * 4}")
    if overwrite and resume:
        raise ConfigError(
            "overwrite and resume were both asked for; expected one: --resume keeps the cases "
            "made so far, --overwrite clears them"
        )
    if shapes_dir is not None and not Path(shapes_dir).is_dir():
        raise ConfigError(
            f"shapes folder {shapes_dir} does not exist; expected the LLP26 folder "
            "(shapes/llp26); fix the path or leave --shapes out for procedural bones"
        )
    source = {
        "generator": "femurseg phantom",
        "seed": seed,
        "n": n,
        "shapes": "llp26" if shapes_dir else "procedural",
        "config": to_dict(cfg),
    }
    # the plan as JSON reads it back (tuples become lists), so that a resume compares equal
    plan = json.loads(json.dumps(source))
    layout, info = _start_or_resume(out, plan, overwrite, resume)
    for name in sorted(info):
        if on_case:
            on_case(name)
    seqs = np.random.SeedSequence(seed).spawn(n)
    jobs = [(i, seqs[i], cfg, str(shapes_dir) if shapes_dir else None, str(out), seed)
            for i in range(n) if case_name(i) not in info]  # fmt: skip
    if workers == 1:
        done = map(make_case, jobs)
        for name, meta in done:
            info[name] = meta
            if on_case:
                on_case(name)
    else:
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for name, meta in pool.map(make_case, jobs):
                    info[name] = meta
                    if on_case:
                        on_case(name)
        except BrokenProcessPool as err:
            raise FemursegError(
                f"a phantom worker process died after {len(info)} of {n} cases (most often for "
                "lack of memory: each worker needs several GB for a fine full-leg case); "
                "expected every worker to finish; rerun the same command with --resume and "
                "fewer --workers to make only the missing cases"
            ) from err
    path = write_dataset_json(
        layout,
        split_cases(info, seed=seed),
        name="femurseg phantoms",
        description="Synthetic lower-limb CTs with exact femur labels (femurseg phantom).",
        case_info=dict(sorted(info.items())),
        source=source,
    )
    shutil.rmtree(Path(out) / PROGRESS_DIR, ignore_errors=True)
    log.info("wrote %d cases to %s", n, out)
    return path
