"""Render a posed :class:`~femurseg.phantoms.anatomy.model.Anatomy` into a CT image and label map.

``render_ct`` reads top to bottom like the physics: clean phantom on a fine render grid
(soft tissue slice by slice, then each bone in its bounding box, then implants), then the
scanner (slice integration, blur, streaks, noise, stored values, reconstruction circle). The
label map is the femur meshes voxelised at the output voxel centres, so it overlays the femurs
exactly whatever the spacing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.anatomy.fractures import fractured_crop
from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.osteophytes import blob_mask, with_blobs
from femurseg.phantoms.anatomy.voxelize import MaskCrop, voxelize
from femurseg.phantoms.params import JointTissueParams, PhantomConfig
from femurseg.phantoms.scanner.acquisition import (
    ScanDraw,
    add_noise,
    add_streaks,
    block_mean,
    blur,
    circle_mask,
    finish,
)
from femurseg.phantoms.scanner.fov import Fov
from femurseg.phantoms.tissues.body import BodyModel
from femurseg.phantoms.tissues.bone import LongAxis, render_bone, sourcil_thickness
from femurseg.phantoms.tissues.implants import Implant, paint_fixation, paint_hip, paint_knee
from femurseg.phantoms.tissues.joints import paint_joint_tissue
from femurseg.phantoms.tissues.materials import CaseTissues, Tissue
from femurseg.phantoms.tissues.softtissue import SoftTissueRenderer

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

#: shaft (diaphysis) as a fraction of the bone's length from its proximal end.
FEMUR_SHAFT = (0.24, 0.78)
TIBIA_SHAFT = (0.2, 0.82)
#: bones are painted in this order; later ones win where meshes touch.
PAINT_ORDER = (
    "pelvis",
    "patella_left",
    "patella_right",
    "tibfib_left",
    "tibfib_right",
    "femur_left",
    "femur_right",
)


#: an output voxel at least this full of metal is not labelled femur (metal is not femur).
METAL_LABEL_FRACTION = 0.5


@dataclass
class Rendered:
    """A rendered case on the output grid.

    Attributes:
        image: float32 HU (X, Y, Z), canonical RAS+ axes, integers as stored.
        labels: uint8 (X, Y, Z): 0 background, 1 femur_left, 2 femur_right.
        tissue: uint8 (X, Y, Z) :class:`Tissue` at each output voxel centre (clean phantom).
        clean: float32 (X, Y, Z) HU before the scanner (slice-averaged), or None.
        timings: seconds per stage.
        drawn: what the render drew beyond the case's tissues, for the record (``joints``:
            the cartilage HU and voxels painted, where the case has joint tissue).
    """

    image: F32
    labels: U8
    tissue: U8
    clean: F32 | None = None
    timings: dict[str, float] = field(default_factory=dict)
    drawn: dict[str, Any] = field(default_factory=dict)


def supersampling(out: RenderGrid, max_mm: float) -> tuple[int, int, int]:
    """Sub-samples per output voxel along (x, y, z) so the render step is <= ``max_mm``."""
    f = tuple(max(1, math.ceil(s / max_mm - 1e-6)) for s in out.spacing)
    return f  # type: ignore[return-value]


def bone_crop(anatomy: Anatomy, name: str, grid: RenderGrid) -> MaskCrop:
    """One bone's mesh at the voxel centres of ``grid``, with its osteophytes joined."""
    broken = [f for f in anatomy.fractures if f"femur_{f.side}" == name]
    if broken:
        crop = fractured_crop(anatomy, name, broken[0], grid)
    else:
        crop = voxelize(anatomy.meshes[name], grid.affine, grid.shape)
    mine = [b for b in anatomy.osteophytes if b.bone == name]
    if mine:
        crop = with_blobs(crop, blob_mask(mine, grid.affine, grid.shape))
    return crop


def label_map(anatomy: Anatomy, grid: RenderGrid) -> U8:
    """Femur labels at the voxel centres of ``grid``: uint8 (X, Y, Z), 1 left, 2 right (a
    femur's osteophytes are femur)."""
    lab = np.zeros(grid.shape, dtype=np.uint8)
    for name, value in (("femur_left", 1), ("femur_right", 2)):
        bone_crop(anatomy, name, grid).paste(lab, value)
    return lab


def _axes(anatomy: Anatomy) -> dict[str, LongAxis]:
    lm = anatomy.landmarks
    out = {}
    for s in ("left", "right"):
        head = None
        if f"hip_{s}" in lm and f"head_radius_{s}" in lm:
            head = (np.asarray(lm[f"hip_{s}"]), float(lm[f"head_radius_{s}"][0]))
        out[f"femur_{s}"] = LongAxis(
            lm[f"femur_top_{s}"], lm[f"femur_bottom_{s}"], FEMUR_SHAFT, head
        )
        out[f"tibfib_{s}"] = LongAxis(lm[f"knee_{s}"], lm[f"ankle_{s}"], TIBIA_SHAFT)
    return out


def _sockets(anatomy: Anatomy) -> list[tuple[npt.NDArray[np.float64], float]]:
    """(centre, radius) of each acetabulum in world mm: the seated head's radius plus the hip
    joint's clearance, where the anatomy records them."""
    lm = anatomy.landmarks
    pose = anatomy.meta.get("pose", {})
    scale = float(anatomy.meta.get("scale", 1.0))
    gap = float(pose.get("hip_gap", 0.0)) * scale if isinstance(pose, dict) else 0.0
    out = []
    for s in ("left", "right"):
        if f"acetabulum_{s}" in lm and f"head_radius_{s}" in lm:
            out.append((np.asarray(lm[f"acetabulum_{s}"]), float(lm[f"head_radius_{s}"][0]) + gap))
    return out


def render_clean(
    anatomy: Anatomy,
    body: BodyModel,
    t: CaseTissues,
    implants: list[Implant],
    grid: RenderGrid,
    rng: np.random.Generator,
    timings: dict[str, float],
    joints: JointTissueParams | None = None,
    drawn: dict[str, Any] | None = None,
) -> tuple[F32, U8]:
    """The clean phantom (HU, tissue class) on ``grid``, Fortran-ordered (X, Y, Z) arrays;
    with ``joints``, cartilage in the joint spaces where the case draws it (recorded in
    ``drawn["joints"]``)."""
    t0 = time.perf_counter()
    crops: dict[str, MaskCrop] = {
        n: bone_crop(anatomy, n, grid) for n in PAINT_ORDER if n in anatomy.meshes
    }
    spine = body.spine
    if spine is not None and grid.axis(2)[-1] > spine.s1_top[2]:
        crops = {"spine": spine.rasterize(grid), **crops}  # painted first: the sacrum wins
    chest = body.thorax
    if chest is not None and spine is not None and grid.axis(2)[-1] > spine.top_z:
        # last, so the other bones' texture draws (and every case without a chest) stay as
        # they were
        crops["thoracic_spine"] = chest.spine_crop(grid)
        crops["ribs"] = chest.rib_crop(grid)
    arm_axes: dict[str, LongAxis | None] = {}
    for arm in body.arms:  # last again: every case without arms stays as it was
        for name, crop, axis in arm.bone_crops(grid):
            crops[name] = crop
            arm_axes[name] = axis
    timings["voxelize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r_soft, r_bone = rng.spawn(2)
    # Fortran order: each axial slice is contiguous for the slice-by-slice soft tissue pass.
    hu = np.empty(grid.shape, dtype=np.float32, order="F")
    cls = np.empty(grid.shape, dtype=np.uint8, order="F")
    soft = SoftTissueRenderer(body, t, grid, r_soft, crops.get("pelvis"))
    for k in range(grid.shape[2]):
        soft.render_slice(k, hu[:, :, k], cls[:, :, k])
    timings["soft_tissue"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    axes: dict[str, LongAxis | None] = {**_axes(anatomy), **arm_axes}
    for name, r in zip(crops, r_bone.spawn(len(crops)), strict=True):
        extra = None
        if name == "pelvis":
            extra = sourcil_thickness(crops[name], grid, _sockets(anatomy), t.sourcil_mm)
        render_bone(crops[name], grid, t, r, hu, cls, axes.get(name), extra)
    timings["bones"] = time.perf_counter() - t0
    if joints is not None and joints.probability > 0.0:
        # its own stream, spawned only here: every case without joint tissue stays as it was
        t0 = time.perf_counter()
        (r_joint,) = rng.spawn(1)
        got = paint_joint_tissue(crops, grid, joints, r_joint, hu, cls)
        if got is not None and drawn is not None:
            drawn["joints"] = got
        timings["joints"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r_imp = r_bone.spawn(1)[0]
    for imp in implants:
        femur = crops[f"femur_{imp.side}"]
        if imp.kind == "hip":
            paint_hip(imp, anatomy, grid, femur, t, hu, cls)
        elif imp.kind == "fixation":
            paint_fixation(imp, anatomy, grid, femur, hu, cls, r_imp)
        else:
            paint_knee(imp, anatomy, grid, femur, crops.get(f"tibfib_{imp.side}"), hu, cls)
    timings["implants"] = time.perf_counter() - t0
    return hu, cls


def render_ct(
    anatomy: Anatomy,
    body: BodyModel,
    t: CaseTissues,
    implants: list[Implant],
    fov: Fov,
    scan: ScanDraw,
    cfg: PhantomConfig,
    rng: np.random.Generator,
    keep_clean: bool = False,
) -> Rendered:
    """Render one case on the field of view's output grid.

    Args:
        anatomy: posed bones in world RAS+ mm.
        body: the case's body model.
        t: the case's tissue draw.
        implants: implants to paint.
        fov: the output grid and reconstruction circle.
        scan: the case's scanner draw.
        cfg: the phantom configuration (implant streak settings, render step).
        rng: random generator.
        keep_clean: also return the clean slice-averaged HU image (for tests and figures).

    Returns:
        The :class:`Rendered` case.
    """
    timings: dict[str, float] = {}
    out = fov.grid
    f = supersampling(out, cfg.scanner.max_render_mm)
    fine = out.supersampled(*f)
    r_clean, r_streak, r_noise = rng.spawn(3)
    drawn: dict[str, Any] = {}
    hu, cls = render_clean(anatomy, body, t, implants, fine, r_clean, timings, cfg.joints, drawn)
    t0 = time.perf_counter()
    metal, k_off = _metal_fraction(cls, f) if implants else (None, 0)
    centre = tuple(fi // 2 for fi in f)
    tissue = np.ascontiguousarray(cls[centre[0] :: f[0], centre[1] :: f[1], centre[2] :: f[2]])
    del cls
    img = block_mean(hu, f)
    del hu
    clean = img.copy() if keep_clean else None
    blur(img, out, scan)
    timings["slice_blur"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_streak = 0
    if metal is not None:
        n_streak = add_streaks(img, metal, k_off, out, scan, cfg.implants, r_streak)
    timings["streaks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    add_noise(img, out, scan, r_noise)
    finish(img, scan)
    timings["noise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = label_map(anatomy, out)
    if metal is not None:
        # Convention: metal is not femur. A voxel mostly filled by an implant (a hip stem in
        # the canal, a femoral knee component) is not labelled, as in the real reference.
        slab = labels[:, :, k_off : k_off + metal.shape[2]]
        slab[metal >= METAL_LABEL_FRACTION] = 0
    if fov.circle is not None:
        # Nothing is reconstructed outside the circle: padding in the image, no label.
        inside = circle_mask(out, fov.circle[:2], fov.circle[2])
        img[~inside] = scan.padding if scan.padding is not None else -1024.0
        labels[~inside] = 0
    timings["labels"] = time.perf_counter() - t0
    log.debug(
        "rendered %s (supersampling %s, %d streak slices) in %s",
        out.shape,
        f,
        n_streak,
        {k: round(v, 2) for k, v in timings.items()},
    )
    return Rendered(img, labels, tissue, clean, timings, drawn)


def _metal_fraction(cls: U8, f: tuple[int, int, int]) -> tuple[F32 | None, int]:
    """Metal fraction per output voxel over the output slices holding metal, and the first of
    those slices (None, 0 when there is no metal)."""
    has = np.nonzero((cls == Tissue.METAL).any(axis=(0, 1)))[0]
    if len(has) == 0:
        return None, 0
    k0, k1 = int(has[0]) // f[2], int(has[-1]) // f[2] + 1
    sub = cls[:, :, k0 * f[2] : k1 * f[2]] == Tissue.METAL
    return block_mean(sub.astype(np.float32), f), k0


def timings_meta(r: Rendered) -> dict[str, Any]:
    """Rounded per-stage timings for the case's metadata."""
    return {k: round(v, 3) for k, v in r.timings.items()}
