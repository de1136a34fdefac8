"""The femurseg dataset layout, its ``dataset.json`` and the seeded train/val/test split.

Layout (one CT and one label map per case, same grid, NIfTI)::

    DIR/
      images/<case>.nii.gz      CT in HU (int16)
      labels/<case>.nii.gz      uint8 label map: 0 background, 1 femur_left, 2 femur_right
      dataset.json              labels, case list, split, provenance

``dataset.json`` keeps the nnU-Net v2 keys (``channel_names``, ``labels``, ``numTraining``,
``file_ending``) so the folder can be read by tools that know that format, and adds ``cases``,
``split`` (``seed``, ``fractions``, ``train``/``val``/``test`` case lists), ``case_info`` and
``source``.

The split is reproducible: case ids are sorted, permuted with ``numpy.random.default_rng(seed)``,
and cut by the fractions (default 85/8/7, the paper's), with the counts for val and test rounded
to the nearest whole case and the rest in train.

Writers (the importers, the phantom generator) use :func:`prepare_dataset_dir`, then
:func:`write_case` per case, then :func:`write_dataset_json` once at the end, so an interrupted
run leaves no ``dataset.json`` naming half-written cases.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.atomic import atomic_write
from femurseg.errors import InputError, OutputError
from femurseg.types import LABELS, Volume

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
LABELS_DIR = "labels"
DATASET_JSON = "dataset.json"
FILE_ENDING = ".nii.gz"
DEFAULT_FRACTIONS = (0.85, 0.08, 0.07)
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` if it is a safe file-name stem, else raise InputError."""
    if not _CASE_ID.match(case_id) or case_id.endswith(".nii") or len(case_id) > 128:
        raise InputError(
            f"case id {case_id!r} is not usable as a file name; expected letters, digits, "
            "'_', '-' or '.', starting with a letter or digit; rename the case"
        )
    return case_id


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of a dataset folder (see the module docstring)."""

    root: Path

    @property
    def images_dir(self) -> Path:
        """``root/images``."""
        return self.root / IMAGES_DIR

    @property
    def labels_dir(self) -> Path:
        """``root/labels``."""
        return self.root / LABELS_DIR

    @property
    def json_path(self) -> Path:
        """``root/dataset.json``."""
        return self.root / DATASET_JSON

    def image_path(self, case_id: str) -> Path:
        """``root/images/<case>.nii.gz``."""
        return self.images_dir / f"{check_case_id(case_id)}{FILE_ENDING}"

    def label_path(self, case_id: str) -> Path:
        """``root/labels/<case>.nii.gz``."""
        return self.labels_dir / f"{check_case_id(case_id)}{FILE_ENDING}"

    def case_ids_on_disk(self) -> list[str]:
        """Sorted ids of the cases that have both an image and a label file."""
        if not self.images_dir.is_dir():
            return []
        ids = [p.name[: -len(FILE_ENDING)] for p in self.images_dir.glob(f"*{FILE_ENDING}")]
        return sorted(i for i in ids if _CASE_ID.match(i) and self.label_path(i).is_file())


@dataclass(frozen=True)
class Split:
    """A train/val/test split of case ids.

    Attributes:
        train, val, test: sorted case ids of each part.
        seed: the seed it was drawn with.
        fractions: the (train, val, test) fractions asked for.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    fractions: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form as stored in ``dataset.json``."""
        return {"seed": self.seed, "fractions": list(self.fractions), "train": list(self.train),
                "val": list(self.val), "test": list(self.test)}  # fmt: skip


def split_cases(
    case_ids: Iterable[str],
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> Split:
    """Split case ids reproducibly into train/val/test.

    Args:
        case_ids: unique case ids (order does not matter).
        seed: random seed; the same ids and seed always give the same split.
        fractions: (train, val, test), non-negative, summing to 1.

    Returns:
        The split; val and test get ``round(n * fraction)`` cases (at least one each when
        n >= 3 and their fraction is not 0), train the rest.

    Raises:
        InputError: duplicate ids or bad fractions.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"duplicate case ids {dup[:5]}; expected unique ids; rename them")
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise InputError(
            f"split fractions {list(fractions)}; expected three non-negative numbers "
            "(train, val, test) summing to 1, e.g. 0.85,0.08,0.07"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    n = len(ids)
    n_val = round(n * fr[1])
    n_test = round(n * fr[2])
    if n >= 3:
        # A split is only usable with something to validate and test on.
        n_val = max(n_val, 1 if fr[1] > 0 else 0)
        n_test = max(n_test, 1 if fr[2] > 0 else 0)
    n_test = min(n_test, n - n_val)
    val = shuffled[:n_val]
    test = shuffled[n_val : n_val + n_test]
    train = shuffled[n_val + n_test :]
    if ids and (not val or not test):
        log.warning(
            "%d cases give %d train, %d val, %d test cases; add cases for a usable split",
            len(ids), len(train), len(val), len(test),
        )  # fmt: skip
    return Split(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)), seed,
                 (fr[0], fr[1], fr[2]))  # fmt: skip


def prepare_dataset_dir(root: str | Path, *, overwrite: bool = False) -> DatasetLayout:
    """Make (or, with ``overwrite``, clear) a dataset folder for writing.

    A non-empty folder is refused unless ``overwrite``; then only our own layout's items
    (``images/``, ``labels/``, ``dataset.json``) are removed, nothing else in it.

    Raises:
        OutputError: the folder is not empty and ``overwrite`` is False, or is a file.
    """
    layout = DatasetLayout(Path(root))
    if layout.root.exists() and not layout.root.is_dir():
        raise OutputError(f"{layout.root} is a file; expected a folder for the dataset")
    if layout.root.is_dir() and any(layout.root.iterdir()):
        if not overwrite:
            raise OutputError(
                f"output folder {layout.root} is not empty; expected a new or empty folder; "
                "choose another folder or pass --overwrite"
            )
        for d in (layout.images_dir, layout.labels_dir):
            if d.is_dir():
                shutil.rmtree(d)
        layout.json_path.unlink(missing_ok=True)
        log.info("cleared images/, labels/ and dataset.json in %s", layout.root)
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    layout.labels_dir.mkdir(parents=True, exist_ok=True)
    return layout


def write_case(
    layout: DatasetLayout,
    case_id: str,
    image: Volume,
    labels: npt.ArrayLike,
    *,
    axcodes: str | None = None,
) -> tuple[Path, Path]:
    """Write one case's CT and label map (each file atomic; both removed if either fails).

    Args:
        layout: the dataset folder.
        case_id: file-name stem.
        image: the CT; written as int16 HU in its own on-disk layout (or RAS for an in-memory
            volume).
        labels: uint8 label map, shape ``image.shape`` (X, Y, Z) canonical, values 0/1/2.
        axcodes: on-disk axis order for both files (e.g. ``"LPS"``); None keeps the image's own
            input layout.

    Returns:
        ``(image path, label path)``.
    """
    from femurseg.io import write_image, write_labels, write_volume

    img_path, lab_path = layout.image_path(case_id), layout.label_path(case_id)
    try:
        if axcodes is None:
            write_volume(image, img_path)
            write_labels(labels, image, lab_path)
        else:
            write_image(image.array, image.affine, img_path, axcodes=axcodes, dtype=np.int16)
            write_image(np.asarray(labels, dtype=np.uint8), image.affine, lab_path,
                        axcodes=axcodes, dtype=np.uint8)  # fmt: skip
    except BaseException:
        img_path.unlink(missing_ok=True)
        lab_path.unlink(missing_ok=True)
        raise
    return img_path, lab_path


def write_dataset_json(
    layout: DatasetLayout,
    split: Split,
    *,
    name: str,
    description: str = "",
    case_info: dict[str, dict[str, Any]] | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """Write ``dataset.json`` (atomic) for the cases of ``split``.

    Args:
        layout: the dataset folder.
        split: cases and their split; every case must already be on disk.
        name: dataset name.
        description: free text.
        case_info: optional per-case facts (source paths, volumes, notes).
        source: optional provenance (importer, source folder, label mapping).

    Raises:
        OutputError: a case of the split has no image or label file.
    """
    cases = sorted([*split.train, *split.val, *split.test])
    missing = [c for c in cases if not (layout.image_path(c).is_file()
                                        and layout.label_path(c).is_file())]  # fmt: skip
    if missing:
        raise OutputError(
            f"cases {missing[:5]} have no image or label file in {layout.root}; expected every "
            "case of the split on disk; write the cases first"
        )
    doc = {
        "name": name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": {v: int(k) for k, v in LABELS.items()},
        "numTraining": len(cases),
        "file_ending": FILE_ENDING,
        "cases": cases,
        "split": split.to_dict(),
        "case_info": case_info or {},
        "source": source or {},
    }
    text = json.dumps(doc, indent=2) + "\n"

    def _write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(layout.json_path, _write)


def read_dataset_json(root: str | Path) -> dict[str, Any]:
    """Read ``root/dataset.json``.

    Raises:
        InputError: missing or not valid JSON.
    """
    path = DatasetLayout(Path(root)).json_path
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(
            f"{path} not found; expected a femurseg dataset folder; create one with "
            "'femurseg dataset import' or 'femurseg phantom'"
        ) from err
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(doc, dict):
        raise InputError(f"{path} holds a {type(doc).__name__}; expected a JSON object")
    return doc


def case_files(root: Path, doc: dict[str, Any]) -> dict[str, tuple[Path, Path]]:
    """Image and label path of every case listed in a ``dataset.json`` (as read into ``doc``).

    Entries are ids only (importers: ``images/<id>.nii.gz`` and ``labels/<id>.nii.gz``) or
    mappings with ``id``/``name`` and optional ``image``/``label`` paths relative to ``root``
    (the phantom generator, :func:`femurseg.datasets.merge.merge_datasets`).

    Raises:
        InputError: no ``cases`` list, or an entry that is neither an id nor a mapping with one.
    """
    where = root / DATASET_JSON
    raw = doc.get("cases")
    if not isinstance(raw, list):
        raise InputError(
            f"{where} has no 'cases' list; expected the layout written by "
            "`femurseg phantom` or `femurseg dataset import`"
        )
    out: dict[str, tuple[Path, Path]] = {}
    for item in raw:
        if isinstance(item, str):
            out[item] = (root / IMAGES_DIR / f"{item}{FILE_ENDING}",
                         root / LABELS_DIR / f"{item}{FILE_ENDING}")  # fmt: skip
            continue
        try:
            cid = str(item.get("id", item.get("name")))
            image = item.get("image", f"{IMAGES_DIR}/{cid}{FILE_ENDING}")
            label = item.get("label", f"{LABELS_DIR}/{cid}{FILE_ENDING}")
        except AttributeError as err:
            raise InputError(
                f"{where} has a case entry {item!r} that is neither an id nor a "
                "mapping; fix or regenerate dataset.json"
            ) from err
        if cid == "None":
            raise InputError(
                f"{where} has a case entry without id or name: {item!r}; fix or "
                "regenerate dataset.json"
            )
        out[cid] = (root / image, root / label)
    return out


def resplit_dataset(
    root: str | Path, *, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> Split:
    """Draw a new split for a dataset folder and save it in ``dataset.json``.

    The cases are those on disk (image and label present). An existing ``dataset.json`` keeps
    its other keys; a folder without one gets a new one.

    Raises:
        InputError: the folder holds no case.
    """
    layout = DatasetLayout(Path(root))
    cases = layout.case_ids_on_disk()
    if not cases:
        raise InputError(
            f"no cases in {layout.root}; expected images/<case>{FILE_ENDING} with matching "
            f"labels/<case>{FILE_ENDING}; check the folder"
        )
    split = split_cases(cases, seed=seed, fractions=fractions)
    old = read_dataset_json(root) if layout.json_path.is_file() else {}
    listed = set(old.get("cases", cases))
    if listed != set(cases):
        log.warning(
            "dataset.json listed %d cases, %d are on disk; the split uses those on disk",
            len(listed), len(cases),
        )  # fmt: skip
    write_dataset_json(
        layout,
        split,
        name=str(old.get("name", layout.root.name)),
        description=str(old.get("description", "")),
        case_info={k: v for k, v in old.get("case_info", {}).items() if k in cases},
        source=old.get("source", {}),
    )
    log.info("split %s: %d train, %d val, %d test (seed %d)", layout.root, len(split.train),
             len(split.val), len(split.test), seed)  # fmt: skip
    return split
