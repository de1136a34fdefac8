"""Importers from other dataset layouts into the femurseg layout (:mod:`.layout`).

TotalSegmentator (the public CC BY 4.0 dataset)::

    SRC/<case>/ct.nii.gz
    SRC/<case>/segmentations/femur_left.nii.gz
    SRC/<case>/segmentations/femur_right.nii.gz    (binary masks on the CT grid)

nnU-Net raw (v2; v1's ``{"value": "name"}`` labels are accepted too)::

    SRC/dataset.json             "labels": {"background": 0, "femur_left": 1, ...}
    SRC/imagesTr/<case>_0000.nii.gz
    SRC/labelsTr/<case>.nii.gz

Each case becomes ``images/<case>.nii.gz`` (the CT, int16, its own geometry) and
``labels/<case>.nii.gz`` (0 background, 1 femur_left, 2 femur_right on the CT grid). A case
that cannot be used (missing femur file, grid mismatch, unreadable) is skipped with its reason
in the returned :class:`ImportResult` and the log; the import only fails when no case is left.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.datasets.layout import (
    DEFAULT_FRACTIONS,
    DatasetLayout,
    Split,
    check_case_id,
    prepare_dataset_dir,
    split_cases,
    write_case,
    write_dataset_json,
)
from femurseg.errors import InputError
from femurseg.types import Label, Volume, affine_to_world, affine_voxel_ml

log = logging.getLogger(__name__)

TOTALSEG_CT = "ct.nii.gz"
TOTALSEG_MASKS = {Label.FEMUR_LEFT: "femur_left.nii.gz", Label.FEMUR_RIGHT: "femur_right.nii.gz"}


@dataclass(frozen=True)
class ImportResult:
    """What an import did.

    Attributes:
        layout: the written dataset folder.
        imported: case ids written.
        skipped: ``{case id: reason}`` for cases left out.
        split: the saved train/val/test split.
        notes: ``{case id: [remarks]}`` for written cases with something to know (an empty side,
            overlapping masks, sides that look swapped).
    """

    layout: DatasetLayout
    imported: tuple[str, ...]
    skipped: dict[str, str]
    split: Split
    notes: dict[str, list[str]] = field(default_factory=dict)


def _side_notes(labels: npt.NDArray[np.uint8], affine: npt.NDArray[np.float64]) -> list[str]:
    """Remarks on empty sides and on a left femur lying to the right of the right one."""
    notes = []
    centres = {}
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        ijk = np.argwhere(labels == side)
        if len(ijk) == 0:
            notes.append(f"{side.name.lower()} is empty (not in view)")
        else:
            centres[side] = affine_to_world(ijk.mean(axis=0), affine)
    if len(centres) == 2 and centres[Label.FEMUR_LEFT][0] > centres[Label.FEMUR_RIGHT][0]:
        notes.append(
            "femur_left lies at larger world x (patient right) than femur_right: the source "
            "labels or the image orientation may be mirrored; check this case"
        )
    return notes


def _finish(
    layout: DatasetLayout,
    imported: list[str],
    skipped: dict[str, str],
    notes: dict[str, list[str]],
    info: dict[str, dict[str, Any]],
    *,
    name: str,
    source: dict[str, Any],
    seed: int,
    fractions: Sequence[float],
    src: Path,
) -> ImportResult:
    if not imported:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        raise InputError(
            f"no case could be imported from {src} ({len(skipped)} skipped: {reasons}); "
            "expected at least one usable case; check the layout and files"
        )
    split = split_cases(imported, seed=seed, fractions=fractions)
    for case, reason in skipped.items():
        log.warning("skipped case %s: %s", case, reason)
    write_dataset_json(layout, split, name=name, case_info=info,
                       source={**source, "skipped": skipped})  # fmt: skip
    return ImportResult(layout, tuple(imported), skipped, split, notes)


def _case_info(labels: npt.NDArray[np.uint8], affine: npt.NDArray[np.float64],
               source: Path, notes: list[str]) -> dict[str, Any]:  # fmt: skip
    ml = affine_voxel_ml(affine)
    return {
        "source": str(source),
        "femur_left_ml": float((labels == Label.FEMUR_LEFT).sum() * ml),
        "femur_right_ml": float((labels == Label.FEMUR_RIGHT).sum() * ml),
        "notes": notes,
    }


def _totalseg_case(case_dir: Path) -> tuple[Volume, npt.NDArray[np.uint8], list[str]]:
    from femurseg.io import read_labels, read_volume

    masks = {s: case_dir / "segmentations" / f for s, f in TOTALSEG_MASKS.items()}
    missing = [p.name for p in masks.values() if not p.is_file()]
    if missing:
        raise InputError(
            f"missing {', '.join(missing)} in {case_dir / 'segmentations'}; expected both femur "
            "masks (an empty mask is fine for a femur out of view)"
        )
    image = read_volume(case_dir / TOTALSEG_CT)
    labels = np.zeros(image.shape, dtype=np.uint8)
    inside = {}
    for side, path in masks.items():
        mask, _ = read_labels(path, like=image)
        inside[side] = mask > 0
        labels[inside[side]] = int(side)
    notes = []
    overlap = int(np.count_nonzero(inside[Label.FEMUR_LEFT] & inside[Label.FEMUR_RIGHT]))
    if overlap:
        labels[inside[Label.FEMUR_LEFT] & inside[Label.FEMUR_RIGHT]] = 0
        notes.append(f"{overlap} voxels in both femur masks set to background")
    return image, labels, notes + _side_notes(labels, image.affine)


def import_totalseg(
    src: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overwrite: bool = False,
) -> ImportResult:
    """Import a TotalSegmentator-layout folder (see the module docstring).

    Args:
        src: folder of case folders, each with ``ct.nii.gz`` and ``segmentations/``.
        out: new or empty dataset folder (or any folder with ``overwrite``).
        seed: split seed.
        fractions: (train, val, test) split fractions.
        overwrite: clear an existing dataset in ``out`` first.

    Returns:
        The import result (written, skipped with reasons, split).

    Raises:
        InputError: ``src`` has no case folder or no case could be imported.
        OutputError: ``out`` is not empty and ``overwrite`` is False, or a write fails.
    """
    src = Path(src)
    cases = sorted(p for p in src.iterdir() if (p / TOTALSEG_CT).is_file()) if src.is_dir() else []
    if not cases:
        raise InputError(
            f"no case folder with {TOTALSEG_CT} in {src}; expected the TotalSegmentator layout "
            "<case>/ct.nii.gz + <case>/segmentations/femur_left.nii.gz, femur_right.nii.gz"
        )
    layout = prepare_dataset_dir(out, overwrite=overwrite)
    imported, skipped, notes, info = [], {}, {}, {}
    for case_dir in cases:
        case = case_dir.name
        try:
            check_case_id(case)
            image, labels, case_notes = _totalseg_case(case_dir)
            write_case(layout, case, image, labels)
        except InputError as err:
            skipped[case] = str(err)
            continue
        imported.append(case)
        notes[case] = case_notes
        info[case] = _case_info(labels, image.affine, case_dir, case_notes)
        for n in case_notes:
            log.warning("case %s: %s", case, n)
        log.info("imported %s", case)
    return _finish(layout, imported, skipped, notes, info, name=f"{src.name} (TotalSegmentator)",
                   source={"importer": "totalseg", "path": str(src)}, seed=seed,
                   fractions=fractions, src=src)  # fmt: skip


def parse_label_map(text: str) -> dict[str, str]:
    """Parse ``"left=1,right=2"`` (values may also be label names) into ``{"left", "right"}``.

    Raises:
        InputError: anything but exactly the keys left and right.
    """
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("left", "right") or not value.strip() or key in out:
            raise InputError(
                f"--label-map {text!r} is invalid; expected 'left=VALUE,right=VALUE' with the "
                "source label values (or names) of the left and right femur, e.g. 'left=1,right=2'"
            )
        out[key] = value.strip()
    if set(out) != {"left", "right"}:
        raise InputError(
            f"--label-map {text!r} must name both left and right, e.g. 'left=1,right=2'"
        )
    return out


def _nnunet_labels(doc: dict[str, Any], path: Path) -> dict[str, int]:
    """``{name: value}`` from a v2 (name -> value) or v1 (value -> name) labels mapping."""
    raw = doc.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path} has no 'labels' mapping; expected e.g. {{\"femur_left\": 1}}")
    out: dict[str, int] = {}
    for k, v in raw.items():
        if isinstance(v, int) and not isinstance(v, bool):
            out[str(k)] = v
        elif isinstance(v, str) and str(k).isdigit():
            out[v] = int(k)
        elif isinstance(v, list):
            log.info("ignoring region label %s=%s in %s", k, v, path)
        else:
            raise InputError(f"{path} label {k!r}: {v!r} is not an integer label value")
    return out


def _resolve_sides(labels: dict[str, int], label_map: str | None, path: Path) -> dict[Label, int]:
    if label_map is not None:
        chosen = parse_label_map(label_map)
        out = {}
        for key, side in (("left", Label.FEMUR_LEFT), ("right", Label.FEMUR_RIGHT)):
            v = chosen[key]
            if v.isdigit():
                out[side] = int(v)
            elif v in labels:
                out[side] = labels[v]
            else:
                raise InputError(
                    f"--label-map names {v!r}, which is not a label in {path} "
                    f"({sorted(labels)}); use a value or one of those names"
                )
        if out[Label.FEMUR_LEFT] == out[Label.FEMUR_RIGHT] or 0 in out.values():
            raise InputError(
                f"--label-map {label_map!r} maps both sides to {out[Label.FEMUR_LEFT]} or one to "
                "background 0; expected two different non-zero source values"
            )
        return out
    found: dict[Label, int] = {}
    for name, value in labels.items():
        words = set(re.split(r"[^a-z]+", name.lower()))
        if "femur" in words and ({"left", "l"} & words):
            found.setdefault(Label.FEMUR_LEFT, value)
        elif "femur" in words and ({"right", "r"} & words):
            found.setdefault(Label.FEMUR_RIGHT, value)
    if len(found) != 2:
        raise InputError(
            f"cannot tell the left and right femur labels from {path} (labels: {labels}); "
            "expected names like femur_left/femur_right; pass --label-map 'left=V,right=V'"
        )
    return found


def import_nnunet(
    src: str | Path,
    out: str | Path,
    *,
    label_map: str | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overwrite: bool = False,
) -> ImportResult:
    """Import an nnU-Net raw dataset folder (see the module docstring).

    Args:
        src: the ``DatasetXXX_Name`` folder with ``dataset.json``, ``imagesTr/``, ``labelsTr/``.
        out: new or empty dataset folder (or any folder with ``overwrite``).
        label_map: ``"left=V,right=V"`` naming the source values (or label names) of the left
            and right femur; None finds them from label names containing femur + left/right.
            Every other source label becomes background.
        seed: split seed.
        fractions: (train, val, test) split fractions.
        overwrite: clear an existing dataset in ``out`` first.

    Returns:
        The import result.

    Raises:
        InputError: no dataset.json, sides not found, or no usable case.
        OutputError: ``out`` is not empty and ``overwrite`` is False, or a write fails.
    """
    from femurseg.datasets.layout import read_dataset_json
    from femurseg.io import read_labels, read_volume

    src = Path(src)
    doc = read_dataset_json(src)
    json_path = src / "dataset.json"
    sides = _resolve_sides(_nnunet_labels(doc, json_path), label_map, json_path)
    ending = str(doc.get("file_ending", ".nii.gz"))
    channels = doc.get("channel_names", doc.get("modality", {"0": "CT"}))
    if isinstance(channels, dict) and len(channels) > 1:
        log.warning("%s has %d channels; importing channel 0 (%s) only", json_path,
                    len(channels), channels.get("0"))  # fmt: skip
    labels_dir = src / "labelsTr"
    label_files = sorted(labels_dir.glob(f"*{ending}")) if labels_dir.is_dir() else []
    if not label_files:
        raise InputError(
            f"no labelsTr/*{ending} in {src}; expected the nnU-Net raw layout "
            "imagesTr/<case>_0000 + labelsTr/<case>; check the folder"
        )
    layout = prepare_dataset_dir(out, overwrite=overwrite)
    imported, skipped, notes, info = [], {}, {}, {}
    for lab_path in label_files:
        case = lab_path.name[: -len(ending)]
        img_path = src / "imagesTr" / f"{case}_0000{ending}"
        try:
            check_case_id(case)
            if not img_path.is_file():
                raise InputError(f"image {img_path} is missing; expected it beside {lab_path}")
            image = read_volume(img_path)
            source, _ = read_labels(lab_path, like=image)
            labels = np.zeros(image.shape, dtype=np.uint8)
            for side, value in sides.items():
                labels[source == value] = int(side)
            present = {int(v) for v in np.unique(source)} - {0}
            case_notes = [f"source label {v} not present" for s, v in sides.items()
                          if v not in present]  # fmt: skip
            case_notes += _side_notes(labels, image.affine)
            write_case(layout, case, image, labels)
        except InputError as err:
            skipped[case] = str(err)
            continue
        imported.append(case)
        notes[case] = case_notes
        info[case] = _case_info(labels, image.affine, lab_path, case_notes)
        log.info("imported %s", case)
    return _finish(layout, imported, skipped, notes, info, name=str(doc.get("name", src.name)),
                   source={"importer": "nnunet", "path": str(src),
                           "label_map": {s.name.lower(): v for s, v in sides.items()}},
                   seed=seed, fractions=fractions, src=src)  # fmt: skip
