"""Datasets in our layout: ``images/``, ``labels/`` and ``dataset.json`` with the split.

``dataset.json`` lists cases and their split::

    {"cases": ["case_0001", ...] or [{"name": "case_0001", "image": "images/case_0001.nii.gz",
               "label": "labels/case_0001.nii.gz"}, ...],
     "split": {"train": ["case_0001", ...], "val": [...], "test": [...]}}

Both writers are read: ``femurseg dataset import`` lists case ids (files follow the layout),
``femurseg phantom`` lists dicts with a ``name`` and the file paths.

Each stage prepares its training arrays once (read, canonicalise, resample, crop) and keeps them
in memory, cached in the run folder so a resumed run does not prepare them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.datasets.layout import case_files
from femurseg.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CaseEntry:
    """One labelled case: its id, image and label map paths."""

    case_id: str
    image: Path
    label: Path


def read_split(data_dir: str | Path, split: str) -> list[CaseEntry]:
    """Cases of one split of a dataset folder.

    Args:
        data_dir: folder holding ``dataset.json``.
        split: ``train``, ``val``, ``test``, or ``all`` for every listed case (e.g. to score
            a one-case import of a real scan).

    Raises:
        InputError: missing or malformed ``dataset.json``, unknown case ids, missing files, or
            an empty split.
    """
    root = Path(data_dir)
    path = root / "dataset.json"
    if split not in (*SPLITS, "all"):
        raise InputError(f"split {split!r} is unknown; expected one of {', '.join(SPLITS)} or all")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InputError(
            f"{path} not found; expected a dataset folder with dataset.json (make one with "
            "`femurseg phantom` or `femurseg dataset import`)"
        ) from err
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err}); regenerate it") from err
    entries = {
        cid: CaseEntry(cid, image, label) for cid, (image, label) in case_files(root, meta).items()
    }
    split_map = meta.get("split") or {}
    ids = list(entries) if split == "all" else split_map.get(split)
    if not ids:
        raise InputError(
            f"{path} has no cases in split {split!r}; expected train and val lists; "
            "run `femurseg dataset split` first"
        )
    missing = [i for i in ids if i not in entries]
    if missing:
        raise InputError(f"{path} split {split!r} names unknown cases {missing[:5]}; fix the file")
    cases = [entries[i] for i in ids]
    for c in cases:
        for p in (c.image, c.label):
            if not p.exists():
                raise InputError(f"{p} listed in {path} does not exist; regenerate the dataset")
    return cases


def cache_key(cases: list[CaseEntry], config: dict[str, Any]) -> str:
    """Short hash of the case files (paths, sizes, times) and the preprocessing config."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for c in cases:
        for p in (c.image, c.label):
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_arrays(
    path: Path,
    key: str,
    make: Callable[[], dict[str, npt.NDArray[Any]]],
) -> dict[str, npt.NDArray[Any]]:
    """Load ``path`` (npz) if its stored key matches ``key``, else ``make()`` and save it."""
    if path.is_file():
        with np.load(path) as z:
            if str(z["__key__"]) == key:
                log.info("using prepared data %s", path)
                return {k: z[k] for k in z.files if k != "__key__"}
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, __key__=np.array(key), **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return arrays
