"""Classical femur segmentation (no learning): the floor every learned model must beat.

Steps, all on the canonical RAS+ volume:

1. bone = HU >= ``bone_hu``; holes filled slice by slice in axial slices (only holes up to
   ``max_hole_area_mm2``, so that the marrow cavity closes but the pelvic ring does not) and
   then in 3D (enclosed cavities);
2. separation of touching bones: markers are the parts of the bone deeper than
   ``seed_radius_mm`` from its surface (a Euclidean distance transform with the voxel spacing,
   i.e. an erosion by a ball), so thin contacts such as the hip and knee joints and thin bones
   (ribs, fibula, acetabular wall) leave no marker; a watershed on the negative distance then
   splits the bone mask between markers along its narrowest necks (scikit-image);
3. selection per leg: regions smaller than ``min_volume_ml`` or with more than
   ``max_cross_fraction`` of their volume across the body's midline (world x of the centroid of
   the body mask, HU >= ``body_hu``) are dropped; the rest are given to patient left (centroid
   world x below the midline; RAS+ x points to patient right) or right. On each side, when
   the highest-reaching region's top lies more than ``pelvis_gap_mm`` above the next one's, it
   is taken to be the hip bone and dropped; the femur is then the largest remaining region
   (femur > tibia > patella by volume).

It works on clean anatomy (phantoms, young bone) and fails honestly where a joint is fused at
the scan's resolution or the bone is osteoporotic: the femur then merges with the hip bone or
loses its head. It is a baseline, not a method to ship.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.config import check_range
from femurseg.types import LABELS, Label, Volume, affine_voxel_ml

log = logging.getLogger(__name__)

_FULL = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class ClassicalConfig:
    """Settings of the classical baseline (HU in Hounsfield units, lengths in mm).

    Attributes:
        bone_hu: lowest HU counted as bone.
        body_hu: lowest HU counted as body (for the midline).
        max_hole_area_mm2: largest axial hole filled slice by slice (marrow, femoral head).
        fill_3d: also fill enclosed 3D cavities.
        seed_radius_mm: depth below the bone surface that makes a watershed marker.
        min_volume_ml: smallest region kept as a candidate bone.
        pelvis_gap_mm: on a side, a top region reaching this much above the next is the hip.
        max_cross_fraction: a region with more than this fraction of its volume on the far
            side of the midline from its centroid is a midline structure (spine, sacrum, both
            hip bones joined) and dropped. A hip bone joined to its femur reaches the midline
            only at the pubic symphysis, a small fraction.
    """

    bone_hu: float = 200.0
    body_hu: float = -500.0
    max_hole_area_mm2: float = 3000.0
    fill_3d: bool = True
    seed_radius_mm: float = 9.0
    min_volume_ml: float = 5.0
    pelvis_gap_mm: float = 20.0
    max_cross_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_range("bone_hu", self.bone_hu, -200.0, 2000.0)
        check_range("body_hu", self.body_hu, -1000.0, 0.0)
        check_range("max_hole_area_mm2", self.max_hole_area_mm2, 0.0, 1e5)
        check_range("seed_radius_mm", self.seed_radius_mm, 0.5, 50.0)
        check_range("min_volume_ml", self.min_volume_ml, 0.0, 1e4)
        check_range("pelvis_gap_mm", self.pelvis_gap_mm, 0.0, 500.0)
        check_range("max_cross_fraction", self.max_cross_fraction, 0.0, 0.5)


def fill_holes_axial(
    mask: npt.NDArray[np.bool_], max_area_mm2: float, pixel_mm2: float
) -> npt.NDArray[np.bool_]:
    """Fill 2D holes up to ``max_area_mm2`` in every axial (k) slice.

    Args:
        mask: bool (X, Y, Z) in canonical RAS+ axes (k runs inferior -> superior).
        max_area_mm2: largest hole filled.
        pixel_mm2: area of one in-slice pixel in mm^2.
    """
    out = mask.copy()
    limit = max_area_mm2 / pixel_mm2
    for k in range(mask.shape[2]):
        sl = mask[:, :, k]
        if not sl.any():
            continue
        holes = ndimage.binary_fill_holes(sl) & ~sl
        lab, n = ndimage.label(holes)
        if n == 0:
            continue
        keep = np.bincount(lab.ravel()) <= limit
        keep[0] = False
        out[:, :, k] |= keep[lab]
    return out


def bone_mask(volume: Volume, cfg: ClassicalConfig) -> npt.NDArray[np.bool_]:
    """Thresholded bone with its marrow and enclosed cavities filled (step 1)."""
    mask = volume.array >= cfg.bone_hu
    sx, sy, _ = volume.spacing
    if cfg.max_hole_area_mm2 > 0:
        mask = fill_holes_axial(mask, cfg.max_hole_area_mm2, sx * sy)
    if cfg.fill_3d:
        mask = ndimage.binary_fill_holes(mask)
    return mask


def split_bones(
    mask: npt.NDArray[np.bool_], spacing: tuple[float, float, float], seed_radius_mm: float
) -> tuple[npt.NDArray[np.int32], int]:
    """Split a bone mask into regions at thin contacts (step 2).

    Returns:
        ``(regions, n)``: int32 (X, Y, Z), 0 outside the bone and in bone with no marker, and
        the number of markers.
    """
    from skimage.segmentation import watershed

    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    markers, n = ndimage.label(depth >= seed_radius_mm, structure=_FULL)
    if n == 0:
        return np.zeros(mask.shape, dtype=np.int32), 0
    regions = watershed(-depth, markers, mask=mask)
    return regions.astype(np.int32, copy=False), int(n)


def body_midline_x(volume: Volume, body_hu: float) -> float:
    """World x (mm) of the centroid of the body mask (HU >= ``body_hu``)."""
    body = volume.array >= body_hu
    if not body.any():
        raise ValueError(f"no voxel reaches {body_hu} HU; expected a CT of a body")
    centre = np.asarray(ndimage.center_of_mass(body))
    return float(volume.index_to_world(centre)[0])


def _world_extent(
    volume: Volume, sl: tuple[slice, slice, slice]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """World min and max corner of the voxel range ``sl`` (edges of its voxels)."""
    lo = np.array([s.start for s in sl], dtype=np.float64) - 0.5
    hi = np.array([s.stop for s in sl], dtype=np.float64) - 0.5
    corners = np.array([[(lo, hi)[(n >> a) & 1][a] for a in range(3)] for n in range(8)])
    w = volume.index_to_world(corners)
    return w.min(axis=0), w.max(axis=0)


def _cross_fraction(
    regions: npt.NDArray[np.int32],
    rid: int,
    sl: tuple[slice, slice, slice],
    volume: Volume,
    mid: float,
    side: Label,
) -> float:
    """Fraction of region ``rid``'s voxels whose world x lies on the other side of ``mid``."""
    idx = np.argwhere(regions[sl] == rid) + np.array([s.start for s in sl])
    x = volume.index_to_world(idx)[:, 0]
    far = x >= mid if side == Label.FEMUR_LEFT else x < mid
    return float(np.count_nonzero(far)) / max(idx.shape[0], 1)


def select_femurs(
    regions: npt.NDArray[np.int32], n: int, volume: Volume, cfg: ClassicalConfig
) -> dict[Label, int]:
    """Region id chosen for each side (step 3); a side with no candidate is left out."""
    if n == 0:
        return {}
    mid = body_midline_x(volume, cfg.body_hu)
    voxel_ml = affine_voxel_ml(volume.affine)
    ids = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones(regions.shape, dtype=np.uint8), regions, ids) * voxel_ml
    centres = ndimage.center_of_mass(regions > 0, regions, ids)
    boxes = ndimage.find_objects(regions, max_label=n)
    cands: dict[Label, list[tuple[int, float, float]]] = {
        Label.FEMUR_LEFT: [],
        Label.FEMUR_RIGHT: [],
    }
    for rid, size, centre, sl in zip(ids, sizes, centres, boxes, strict=True):
        if sl is None or size < cfg.min_volume_ml:
            continue
        x = float(volume.index_to_world(np.asarray(centre))[0])
        side = Label.FEMUR_LEFT if x < mid else Label.FEMUR_RIGHT
        if _cross_fraction(regions, int(rid), sl, volume, mid, side) > cfg.max_cross_fraction:
            continue
        _, hi = _world_extent(volume, sl)
        cands[side].append((int(rid), float(size), float(hi[2])))
    chosen: dict[Label, int] = {}
    for side, items in cands.items():
        items = sorted(items, key=lambda t: -t[2])
        if len(items) >= 2 and items[0][2] - items[1][2] > cfg.pelvis_gap_mm:
            log.debug("%s: region %d taken as hip bone", LABELS[side], items[0][0])
            items = items[1:]
        if not items:
            log.warning(
                "classical baseline found no %s: no bone region of >= %g ml on that side of "
                "the midline (x=%.0f mm)",
                LABELS[side],
                cfg.min_volume_ml,
                mid,
            )
            continue
        chosen[side] = max(items, key=lambda t: t[1])[0]
    return chosen


def segment_classical(volume: Volume, cfg: ClassicalConfig | None = None) -> npt.NDArray[np.uint8]:
    """Segment both femurs by threshold, hole filling, watershed splitting and anatomy rules.

    Args:
        volume: canonical CT volume (float32 HU, (X, Y, Z) RAS+, affine in mm).
        cfg: settings.

    Returns:
        uint8 label map (X, Y, Z) on the volume's grid: 0 background, 1 femur_left,
        2 femur_right (patient sides, decided by world x).
    """
    cfg = cfg or ClassicalConfig()
    mask = bone_mask(volume, cfg)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    if not mask.any():
        log.warning(
            "classical baseline: no voxel >= %g HU; returning an empty label map", cfg.bone_hu
        )
        return labels
    regions, n = split_bones(mask, volume.spacing, cfg.seed_radius_mm)
    for side, rid in select_femurs(regions, n, volume, cfg).items():
        labels[regions == rid] = int(side)
    return labels
