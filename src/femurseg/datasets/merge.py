"""Merge dataset folders into one training set without copying a file.

The merged folder holds only a ``dataset.json`` whose case entries point into the source
folders by relative path (``{"id": ..., "image": ..., "label": ...}``, the entry form that
:func:`femurseg.training.data.read_split` reads). Case ids get their source folder's name as
a prefix, so equal ids from two sources never collide. Each source keeps its own split, or
with ``test_into_train`` its test cases train too (for sources whose subjects are not held
out, e.g. phantoms of training subjects next to a separate held-out phantom set).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from femurseg.atomic import atomic_write
from femurseg.datasets.layout import (
    DATASET_JSON,
    FILE_ENDING,
    case_files,
    check_case_id,
    read_dataset_json,
)
from femurseg.errors import InputError, OutputError
from femurseg.types import LABELS

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


def _source_cases(root: Path) -> tuple[dict[str, tuple[Path, Path]], dict[str, list[str]]]:
    """A source's cases (id -> absolute image, label paths) and its split lists."""
    doc = read_dataset_json(root)
    cases = {cid: (im.resolve(), lab.resolve()) for cid, (im, lab) in case_files(root, doc).items()}
    split = doc.get("split") or {}
    lists = {k: [str(c) for c in split.get(k, [])] for k in SPLIT_NAMES}
    if not any(lists.values()):
        raise InputError(
            f"{root / DATASET_JSON} has no split; expected train/val/test lists; run "
            f"`femurseg dataset split {root}` first"
        )
    return cases, lists


def merge_datasets(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    test_into_train: bool = False,
    overwrite: bool = False,
) -> dict[str, list[str]]:
    """Write ``out/dataset.json`` listing every case of ``sources`` with its split.

    Args:
        sources: dataset folders (``femurseg phantom`` / ``dataset import`` layout).
        out: folder for the merged ``dataset.json`` (created; no image is copied).
        test_into_train: put each source's test cases into the merged train split.
        overwrite: replace an existing ``out/dataset.json``.

    Returns:
        The merged split (train/val/test lists of prefixed case ids).

    Raises:
        InputError: a missing source, two sources with the same folder name, a missing file.
        OutputError: ``out/dataset.json`` exists and ``overwrite`` is not set.
    """
    root = Path(out)
    target = root / DATASET_JSON
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; expected a new folder; pass --overwrite to replace it")
    if not sources:
        raise InputError("no source dataset folder given; expected one or more")
    names = [Path(s).resolve().name for s in sources]
    if len(set(names)) != len(names):
        raise InputError(
            f"source folders {names} share a name; expected distinct folder names (they prefix "
            "the case ids); rename or link one"
        )
    root.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, str]] = []
    split: dict[str, list[str]] = {k: [] for k in SPLIT_NAMES}
    for src, name in zip(sources, names, strict=True):
        cases, lists = _source_cases(Path(src))
        for part, ids in lists.items():
            dest = "train" if (part == "test" and test_into_train) else part
            for cid in ids:
                if cid not in cases:
                    raise InputError(f"{src}/{DATASET_JSON} split names unknown case {cid!r}")
                image, label = cases[cid]
                for p in (image, label):
                    if not p.is_file():
                        raise InputError(f"{p} listed in {src}/{DATASET_JSON} does not exist")
                new = check_case_id(f"{name}_{cid}")
                entries.append(
                    {
                        "id": new,
                        "image": os.path.relpath(image, root.resolve()),
                        "label": os.path.relpath(label, root.resolve()),
                    }
                )
                split[dest].append(new)
    doc: dict[str, Any] = {
        "name": root.name,
        "description": f"merged from {', '.join(str(s) for s in sources)}",
        "channel_names": {"0": "CT"},
        "labels": {v: int(k) for k, v in LABELS.items()},
        "numTraining": len(entries),
        "file_ending": FILE_ENDING,
        "cases": entries,
        "split": {"seed": None, "fractions": None, **{k: sorted(v) for k, v in split.items()}},
        "case_info": {},
        "source": {
            "merged": [str(Path(s).resolve()) for s in sources],
            "test_into_train": test_into_train,
        },  # fmt: skip
    }
    text = json.dumps(doc, indent=2) + "\n"

    def _write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(target, _write)
    log.info("merged %d cases: %s", len(entries), {k: len(v) for k, v in split.items()})
    return split
