"""Write a synthetic dataset: images/, labels/ and dataset.json with a seeded split.

Layout::

    DIR/images/<case>.nii.gz   CT, int16 HU, on-disk orientation drawn per case
    DIR/labels/<case>.nii.gz   uint8 0 background, 1 femur_left, 2 femur_right, same geometry
    DIR/dataset.json           cases, per-case meta, label names, train/val/test split

Case ``i`` is drawn from ``SeedSequence(seed).spawn(n)[i]``, so a case does not depend on how
many workers made the dataset or in which order; the same seed gives byte-identical files.
Each file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from femurseg.config import to_dict
from femurseg.errors import ConfigError, OutputError
from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import PhantomConfig
from femurseg.types import LABELS

log = logging.getLogger(__name__)

#: split proportions (train, val, test), as in Xie et al. 2025 (85/8/7).
SPLIT = (0.85, 0.08, 0.07)
#: dataset.json format version.
FORMAT_VERSION = 1
#: meta keys left out of dataset.json because they change from run to run.
VOLATILE_META = ("timings_s",)


def case_name(i: int) -> str:
    """Name of case ``i`` (zero-based)."""
    return f"phantom_{i:04d}"


def split_cases(names: list[str], seed: int, proportions: tuple[float, float, float] = SPLIT
                ) -> dict[str, list[str]]:
    """A seeded train/val/test split; at least one val and one test case when n >= 3.

    Args:
        names: case names.
        seed: split seed.
        proportions: (train, val, test) fractions summing to 1.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.
    """
    if abs(sum(proportions) - 1.0) > 1e-6 or min(proportions) < 0:
        raise ConfigError(f"split proportions {proportions} must be >= 0 and sum to 1")
    n = len(names)
    n_val = int(round(proportions[1] * n))
    n_test = int(round(proportions[2] * n))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)
    shuffled = [names[i] for i in order]
    val = sorted(shuffled[:n_val])
    test = sorted(shuffled[n_val:n_val + n_test])
    train = sorted(shuffled[n_val + n_test:])
    return {"train": train, "val": val, "test": test}


def prepare_output(out: Path, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty folder unless ``overwrite`` (then clear our files).

    Raises:
        OutputError: ``out`` is a file, or a non-empty folder and ``overwrite`` is False.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} is a file; expected a folder; choose another path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(
                f"output folder {out} is not empty; expected a new or empty folder; "
                "choose another folder or pass --overwrite"
            )
        for sub in ("images", "labels"):
            d = out / sub
            if d.is_dir():
                for f in d.glob("*.nii.gz"):
                    f.unlink()
        (out / "dataset.json").unlink(missing_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)


def make_case(
    args: tuple[int, np.random.SeedSequence, PhantomConfig, str | None, str, int]
) -> dict[str, Any]:
    """Generate and write case ``i`` (top-level so that worker processes can run it).

    Args:
        args: (index, seed sequence, config, shapes folder or None, output folder, seed).

    Returns:
        The case's dataset.json entry.
    """
    from femurseg.io.write import write_image

    i, ss, cfg, shapes, out, seed = args
    case = generate_case(cfg, np.random.default_rng(ss), Path(shapes) if shapes else None)
    name = case_name(i)
    orient = case.meta["orientation"]
    img_rel, lab_rel = f"images/{name}.nii.gz", f"labels/{name}.nii.gz"
    write_image(case.image.array, case.image.affine, Path(out) / img_rel, axcodes=orient,
                dtype=np.int16)
    write_image(case.labels, case.image.affine, Path(out) / lab_rel, axcodes=orient,
                dtype=np.uint8)
    log.info("case %s: %s", name, case.meta.get("timings_s"))
    meta = {k: v for k, v in case.meta.items() if k not in VOLATILE_META}
    meta["seed"] = {"dataset_seed": seed, "case_index": i}
    return {"name": name, "image": img_rel, "label": lab_rel, "meta": meta}


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
    """Generate ``n`` cases into ``out`` and write dataset.json.

    Args:
        out: dataset folder (new, empty, or non-empty with ``overwrite``).
        n: number of cases (>= 1).
        seed: dataset seed.
        cfg: phantom configuration.
        shapes_dir: LLP26 folder, or None for procedural bones.
        workers: worker processes (1: in this process).
        overwrite: allow a non-empty ``out``.
        on_case: called with each finished case's name (for a progress bar).

    Returns:
        Path of dataset.json.

    Raises:
        ConfigError: bad ``n``, ``seed`` or ``workers``.
        OutputError: see :func:`prepare_output`.
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
    prepare_output(out, overwrite)
    seqs = np.random.SeedSequence(seed).spawn(n)
    jobs = [(i, seqs[i], cfg, str(shapes_dir) if shapes_dir else None, str(out), seed)
            for i in range(n)]
    entries: list[dict[str, Any]] = []
    if workers == 1:
        for job in jobs:
            entries.append(make_case(job))
            if on_case:
                on_case(entries[-1]["name"])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for entry in pool.map(make_case, jobs):
                entries.append(entry)
                if on_case:
                    on_case(entry["name"])
    entries.sort(key=lambda e: e["name"])
    doc = {
        "format_version": FORMAT_VERSION,
        "generator": "femurseg phantom",
        "seed": seed,
        "n": n,
        "labels": {str(k): v for k, v in LABELS.items()},
        "split": split_cases([e["name"] for e in entries], seed),
        "config": to_dict(cfg),
        "shapes": "llp26" if shapes_dir else "procedural",
        "cases": entries,
    }
    path = out / "dataset.json"
    tmp = out / ".dataset.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    log.info("wrote %d cases to %s", n, out)
    return path
