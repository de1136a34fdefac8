"""Quality flags per femur: not found, cut by the image edge, metal suspected, low confidence.

Each flag is a :class:`QualityFlag` with a closed :class:`FlagCode`, a one-line message for
people and a ``details`` dict for programs. Thresholds live in the frozen :class:`QualityConfig`.

Which end is cut comes from world z (RAS+ superior), since patients lie along z in lower-limb
CT: mask voxels on an image face are "proximal" in the top third of the femur's z extent,
"distal" in the bottom third and "shaft" between (a narrow field of view clipping the thigh).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.config import check_range
from femurseg.segmentation.postprocess import fill_axial_holes
from femurseg.threads import map_sides
from femurseg.types import LABELS, Label, affine_to_world, affine_voxel_ml

log = logging.getLogger(__name__)

_FACE_NAMES = {(0, 1): "right", (0, -1): "left", (1, 1): "anterior", (1, -1): "posterior",
               (2, 1): "superior", (2, -1): "inferior"}  # fmt: skip


class FlagCode(str, Enum):
    """Closed vocabulary of quality flags."""

    NOT_FOUND = "not_found"
    CUT_BY_EDGE = "cut_by_edge"
    METAL_SUSPECTED = "metal_suspected"
    LOW_CONFIDENCE = "low_confidence"


class CutEnd(str, Enum):
    """Part of the femur that an image edge cuts."""

    PROXIMAL = "proximal"
    SHAFT = "shaft"
    DISTAL = "distal"


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds for the quality flags.

    Attributes:
        min_volume_ml: a side with less labelled volume counts as not found.
        metal_hu: HU at or above which a voxel inside the femur is taken as metal (cortical bone
            stays below about 2000 HU; implants saturate near 3000 HU and above).
        min_metal_voxels: fewer metal voxels than this do not raise the flag (noise, beam
            hardening streaks).
        min_detection_score: a stage-1 confidence below this raises the low-confidence flag.
        edge_margin_voxels: mask voxels this close to an image face count as touching it.
    """

    min_volume_ml: float = 1.0
    metal_hu: float = 2500.0
    min_metal_voxels: int = 10
    min_detection_score: float = 0.5
    edge_margin_voxels: int = 0

    def __post_init__(self) -> None:
        check_range("min_volume_ml", self.min_volume_ml, 0.0, 1000.0)
        check_range("metal_hu", self.metal_hu, 1000.0, 40000.0)
        check_range("min_metal_voxels", self.min_metal_voxels, 1, 10**7)
        check_range("min_detection_score", self.min_detection_score, 0.0, 1.0)
        check_range("edge_margin_voxels", self.edge_margin_voxels, 0, 10)


@dataclass(frozen=True)
class QualityFlag:
    """One quality finding for one side.

    Attributes:
        code: what was found.
        message: one line for people.
        details: machine-readable facts (counts, ends, scores).
    """

    code: FlagCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"code", "message", "details"}``."""
        return {"code": self.code.value, "message": self.message, "details": dict(self.details)}


@dataclass(frozen=True)
class EdgeContact:
    """Where a mask touches the image boundary.

    Attributes:
        ends: parts of the femur cut, in order proximal, shaft, distal.
        faces: image faces touched, named by the world direction they face ("inferior" ...).
        voxels: number of mask voxels on (or within the margin of) a face.
    """

    ends: tuple[CutEnd, ...]
    faces: tuple[str, ...]
    voxels: int


def edge_contact(
    mask: npt.NDArray[np.bool_], affine: npt.ArrayLike, margin: int = 0
) -> EdgeContact | None:
    """Find where a femur mask meets the image edge.

    Args:
        mask: bool (X, Y, Z), one femur.
        affine: 4x4 voxel -> world RAS+ mm.
        margin: voxels this close to a face count as touching it.

    Returns:
        The contact, or None when the mask is empty or clear of every face.
    """
    if not mask.any():
        return None
    a = np.asarray(affine, dtype=np.float64)
    touching = np.zeros(mask.shape, dtype=bool)
    faces = []
    for axis in range(3):
        n = mask.shape[axis]
        for side, sl in ((-1, slice(0, margin + 1)), (1, slice(max(n - margin - 1, 0), n))):
            index: list[slice] = [slice(None)] * 3
            index[axis] = sl
            part = mask[tuple(index)]
            if part.any():
                touching[tuple(index)] |= part
                outward = a[:3, axis] * side
                w = int(np.argmax(np.abs(outward)))
                faces.append(_FACE_NAMES[(w, 1 if outward[w] > 0 else -1)])
    if not faces:
        return None
    z_all = affine_to_world(np.argwhere(mask), a)[:, 2]
    z_edge = affine_to_world(np.argwhere(touching), a)[:, 2]
    lo, hi = float(z_all.min()), float(z_all.max())
    frac = (z_edge - lo) / max(hi - lo, 1e-6)
    ends = []
    if np.any(frac >= 2 / 3):
        ends.append(CutEnd.PROXIMAL)
    if np.any((frac > 1 / 3) & (frac < 2 / 3)):
        ends.append(CutEnd.SHAFT)
    if np.any(frac <= 1 / 3):
        ends.append(CutEnd.DISTAL)
    return EdgeContact(tuple(ends), tuple(dict.fromkeys(faces)), int(touching.sum()))


#: the tight index box of each femur side's voxels, None for an empty side.
IndexBoxes = Mapping[Label, tuple[slice, slice, slice] | None]


def label_crops(
    labels: npt.NDArray[Any], affine: npt.ArrayLike, pad: int, boxes: IndexBoxes | None = None
) -> dict[Label, tuple[tuple[slice, slice, slice], npt.NDArray[np.float64]] | None]:
    """Per femur side, the index box of its voxels grown by ``pad`` (within the image) and
    the affine of that box; None for a side with no voxel. ``boxes``, when the caller already
    knows the tight boxes (the pipeline does), saves the search of the whole map.

    Measuring on these boxes instead of the whole scan gives the same results (a face of the
    box is an image face exactly where the mask comes within ``pad - 1`` voxels of it) at a
    fraction of the cost: one pass over the label map instead of several per side.
    """
    lab = np.asarray(labels)
    if lab.dtype.kind == "b":
        lab = lab.astype(np.uint8)
    a = np.asarray(affine, dtype=np.float64)
    top = max(int(s) for s in Label)
    if boxes is not None:
        found = [boxes.get(Label(n + 1)) for n in range(top)]
    elif lab.flags.f_contiguous and not lab.flags.c_contiguous:
        # scipy walks memory in C order: on a Fortran-order map that is 6x slower, so search
        # the transposed (C-order) view and reverse the axes of what it finds
        found = [None if b is None else b[::-1] for b in ndi.find_objects(lab.T, max_label=top)]
    else:
        found = ndi.find_objects(lab, max_label=top)
    out: dict[Label, tuple[tuple[slice, slice, slice], npt.NDArray[np.float64]] | None] = {}
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        box = found[int(side) - 1] if int(side) - 1 < len(found) else None
        if box is None:
            out[side] = None
            continue
        sl = tuple(
            slice(max(b.start - pad, 0), min(b.stop + pad, n))
            for b, n in zip(box, lab.shape, strict=True)
        )
        shift = np.eye(4)
        shift[:3, 3] = [s.start for s in sl]
        out[side] = (sl, a @ shift)  # type: ignore[assignment]
    return out


def _metal_voxels(mask: npt.NDArray[np.bool_], hu: npt.NDArray[Any], metal_hu: float) -> int:
    # Fill holes slice by slice (axial, canonical k): an implant stem left out of the mask is a
    # hole inside the bone in each slice even where it leaves the bone in 3D.
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    if not np.any(hu[box] >= metal_hu):
        return 0  # nothing metal-bright in the femur's box: no hole filling needed to know
    inside = fill_axial_holes(mask[box])
    return int(np.count_nonzero(hu[box][inside] >= metal_hu))


def side_flags(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    side: Label,
    *,
    hu: npt.ArrayLike | None = None,
    score: float | None = None,
    config: QualityConfig | None = None,
) -> list[QualityFlag]:
    """Quality flags for one femur.

    Args:
        labels: integer label map (X, Y, Z), canonical, values 0/1/2.
        affine: 4x4 voxel -> world RAS+ mm.
        side: ``Label.FEMUR_LEFT`` or ``Label.FEMUR_RIGHT``.
        hu: CT in HU on the same grid (X, Y, Z); None skips the metal check.
        score: stage-1 detection confidence for this side (0..1); None skips that check.
        config: thresholds.

    Returns:
        Flags in the order not found, low confidence, cut by edge, metal suspected; empty when
        all is well.
    """
    cfg = config or QualityConfig()
    lab = np.asarray(labels)
    mask = lab == int(side)
    name = LABELS[side]
    flags: list[QualityFlag] = []
    vol = float(mask.sum()) * affine_voxel_ml(affine)
    if vol < cfg.min_volume_ml:
        flags.append(
            QualityFlag(
                FlagCode.NOT_FOUND,
                f"{name} not found: {vol:.2g} ml labelled < {cfg.min_volume_ml:g} ml; check that "
                "the scan covers this thigh",
                {"volume_ml": vol, "min_volume_ml": cfg.min_volume_ml},
            )
        )
    if score is not None and score < cfg.min_detection_score:
        flags.append(
            QualityFlag(
                FlagCode.LOW_CONFIDENCE,
                f"{name}: stage-1 confidence {score:.2f} < {cfg.min_detection_score:.2f}; "
                "review this side",
                {"score": float(score), "threshold": cfg.min_detection_score},
            )
        )
    if not mask.any():
        return flags
    contact = edge_contact(mask, affine, cfg.edge_margin_voxels)
    if contact is not None:
        ends = [e.value for e in contact.ends]
        flags.append(
            QualityFlag(
                FlagCode.CUT_BY_EDGE,
                f"{name} is cut by the image edge at its {' and '.join(ends)} end "
                f"({', '.join(contact.faces)} face, {contact.voxels} voxels); measurements that "
                "need the missing part are omitted",
                {"ends": ends, "faces": list(contact.faces), "voxels": contact.voxels},
            )
        )
    if hu is not None:
        ct = np.asarray(hu)
        if ct.shape != lab.shape:
            raise ValueError(f"hu has shape {ct.shape}, expected the labels' {lab.shape}")
        n = _metal_voxels(mask, ct, cfg.metal_hu)
        if n >= cfg.min_metal_voxels:
            flags.append(
                QualityFlag(
                    FlagCode.METAL_SUSPECTED,
                    f"{name}: {n} voxels >= {cfg.metal_hu:g} HU inside the femur; an implant is "
                    "likely, check the segmentation near it",
                    {"voxels": n, "volume_ml": n * affine_voxel_ml(affine), "hu": cfg.metal_hu},
                )
            )
    return flags


def quality_flags(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    *,
    hu: npt.ArrayLike | None = None,
    scores: Mapping[str, float | None] | None = None,
    config: QualityConfig | None = None,
    boxes: IndexBoxes | None = None,
    workers: int = 1,
) -> dict[str, list[QualityFlag]]:
    """Quality flags for both femurs.

    Args:
        labels: integer label map (X, Y, Z), canonical, values 0/1/2.
        affine: 4x4 voxel -> world RAS+ mm.
        hu: CT in HU on the same grid, or None to skip the metal check.
        scores: stage-1 confidence per side name (``"femur_left"``, ``"femur_right"``); a
            missing name skips that side's confidence check.
        config: thresholds.
        boxes: each side's tight index box in ``labels``, when known (saves a search).
        workers: threads flagging the two femurs side by side (the same result).

    Returns:
        ``{"femur_left": [flags], "femur_right": [flags]}``.
    """
    scores = scores or {}
    cfg = config or QualityConfig()
    lab = np.asarray(labels)
    ct = None if hu is None else np.asarray(hu)
    if ct is not None and ct.shape != lab.shape:
        raise ValueError(f"hu has shape {ct.shape}, expected the labels' {lab.shape}")
    crops = label_crops(lab, affine, cfg.edge_margin_voxels + 1, boxes)

    def one(side: Label) -> list[QualityFlag]:
        crop = crops[side]
        # an absent side: a one-voxel empty map gives the same "not found" flags
        sub, sub_hu = np.zeros((1, 1, 1), dtype=lab.dtype), None
        sub_affine = np.asarray(affine, dtype=np.float64)
        if crop is not None:
            sl, sub_affine = crop
            sub, sub_hu = lab[sl], (None if ct is None else ct[sl])
        return side_flags(
            sub, sub_affine, side, hu=sub_hu, score=scores.get(LABELS[side]), config=cfg
        )

    done = map_sides(one, (Label.FEMUR_LEFT, Label.FEMUR_RIGHT), workers)
    return {LABELS[side]: flags for side, flags in done.items()}
