"""Write a synthetic dataset in the femurseg layout (:mod:`femurseg.datasets.layout`).

Layout::

    DIR/images/<case>.nii.gz   CT, int16 HU, on-disk orientation drawn per case
    DIR/labels/<case>.nii.gz   uint8 0 background, 1 femur_left, 2 femur_right, same geometry
    DIR/dataset.json           cases, per-case meta (case_info), label names, seeded split

Case ``i`` is drawn from ``SeedSequence(seed).spawn(n)[i]``, so a case does not depend on how
many workers made the dataset or in which order; the same seed gives byte-identical files.
Each file is written atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from femurseg.config import to_dict
from femurseg.datasets.layout import (
    DatasetLayout,
    prepare_dataset_dir,
    split_cases,
    write_case,
    write_dataset_json,
)
from femurseg.errors import ConfigError
from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import PhantomConfig

log = logging.getLogger(__name__)

#: meta keys left out of dataset.json because they change from run to run.
VOLATILE_META = ("timings_s",)


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
    return name, meta


def write_dataset(
    out: Path,
    n: int,
    seed: int,
    cfg: PhantomConfig,
    shapes_dir: Path | None = None,
    workers: int = 1,
    overwrite: bool = False,
    on_case: Callable[[str], None] | None = None,
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
        on_case: called with each finished case's name (for a progress bar).

    Returns:
        Path of dataset.json.

    Raises:
        ConfigError: bad ``n``, ``seed``, ``workers`` or shapes folder.
        OutputError: ``out`` is not empty and ``overwrite`` is False.
    """
    if n < 1:
        raise ConfigError(f"n={n} cases; expected at least 1")
    if seed < 0:
        raise ConfigError(f"seed={seed}; expected a non-negative integer")
    if workers < 1 or workers > (os.cpu_count() or 1) * 4:
        raise ConfigError(f"workers={workers}; expected 1 to {(os.cpu_count() or 1) * 4}")
    if shapes_dir is not None and not Path(shapes_dir).is_dir():
        raise ConfigError(
            f"shapes folder {shapes_dir} does not exist; expected the LLP26 folder "
            "(shapes/llp26); fix the path or leave --shapes out for procedural bones"
        )
    layout = prepare_dataset_dir(out, overwrite=overwrite)
    seqs = np.random.SeedSequence(seed).spawn(n)
    jobs = [(i, seqs[i], cfg, str(shapes_dir) if shapes_dir else None, str(out), seed)
            for i in range(n)]  # fmt: skip
    info: dict[str, dict[str, Any]] = {}
    if workers == 1:
        done = map(make_case, jobs)
        for name, meta in done:
            info[name] = meta
            if on_case:
                on_case(name)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for name, meta in pool.map(make_case, jobs):
                info[name] = meta
                if on_case:
                    on_case(name)
    path = write_dataset_json(
        layout,
        split_cases(info, seed=seed),
        name="femurseg phantoms",
        description="Synthetic lower-limb CTs with exact femur labels (femurseg phantom).",
        case_info=dict(sorted(info.items())),
        source={
            "generator": "femurseg phantom",
            "seed": seed,
            "n": n,
            "shapes": "llp26" if shapes_dir else "procedural",
            "config": to_dict(cfg),
        },
    )
    log.info("wrote %d cases to %s", n, out)
    return path
