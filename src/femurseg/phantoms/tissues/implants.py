"""Metal implants: total hip (head, stem, acetabular cup), total knee (femoral component,
tibial tray with keel, polyethylene insert) and proximal femoral fracture fixation (a lag
screw through the neck into the kept natural head, with a lateral side plate, an
intramedullary nail, or two or three parallel cannulated screws).

Implants are painted into the render grid's HU and tissue maps after the bones. The femur
label is never changed: like TotalSegmentator's masks, it keeps the femur's extent, so it
holds the implant where the implant replaced bone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import ImplantParams
from femurseg.phantoms.tissues.materials import CaseTissues, Tissue, draw

F32 = npt.NDArray[np.float32]
A = npt.NDArray[np.float64]

#: polyethylene (UHMWPE) liner and insert HU.
PLASTIC_HU = -70.0
#: hip: polyethylene liner and metal cup thickness, mm.
LINER_MM = 5.0
CUP_MM = 3.0
#: fixation: lag screw radius, its tip's depth under the head's surface, nail and plate sizes.
LAG_SCREW_RADIUS_MM = (4.0, 6.5)
CANNULATED_RADIUS_MM = 3.5
SCREW_TIP_DEPTH_MM = (6.0, 14.0)
NAIL_RADIUS_MM = (5.0, 7.0)
NAIL_LENGTH_MM = (170.0, 340.0)
PLATE_LENGTH_MM = (60.0, 130.0)
PLATE_HALF_WIDTH_MM = 8.0
PLATE_MM = 5.0
#: fixation styles drawn with equal chance.
FIXATION_STYLES = ("plate", "nail", "cannulated")
#: knee: femoral component thickness, its height above the condyles, tibial cut, tray, keel.
FEMORAL_COMPONENT_MM = 3.5
FEMORAL_CAP_MM = 30.0
#: smoothing (mm) of the femur mask whose gradient tells a condyle's side faces from the rest.
SIDE_SMOOTH_MM = 2.0
TIBIAL_CUT_MM = 9.0
TRAY_MM = 4.0
KEEL_LENGTH_MM = 40.0
KEEL_RADIUS_MM = 6.0


@dataclass(frozen=True)
class Implant:
    """One drawn implant: ``kind`` is ``"hip"``, ``"knee"`` or ``"fixation"``, ``side``
    left/right; ``style`` names the fixation device (:data:`FIXATION_STYLES`)."""

    kind: str
    side: str
    metal_hu: float
    head_radius: float = 0.0
    stem_length: float = 0.0
    style: str = ""

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "kind": self.kind,
            "side": self.side,
            "metal_hu": round(self.metal_hu, 1),
            "head_radius_mm": round(self.head_radius, 2),
            "stem_length_mm": round(self.stem_length, 1),
            "style": self.style,
        }


def draw_implants(p: ImplantParams, rng: np.random.Generator) -> list[Implant]:
    """Draw which implants a case has (each side independently)."""
    out = []
    for side in ("left", "right"):
        u_hip, u_knee = rng.uniform(size=2)
        metal = draw(rng, p.metal_hu)
        if u_hip < p.hip_probability:
            out.append(
                Implant(
                    "hip", side, metal, draw(rng, p.head_radius_mm), draw(rng, p.stem_length_mm)
                )
            )
        elif u_hip < p.hip_probability + p.fixation_probability:
            style = FIXATION_STYLES[int(rng.integers(len(FIXATION_STYLES)))]
            length = draw(rng, NAIL_LENGTH_MM if style == "nail" else PLATE_LENGTH_MM)
            out.append(Implant("fixation", side, metal, stem_length=length, style=style))
        if u_knee < p.knee_probability:
            out.append(Implant("knee", side, metal))
    return out


def _coords(grid: RenderGrid, sl: tuple[slice, slice, slice]) -> tuple[F32, F32, F32]:
    """Broadcastable world x, y, z (mm) of the voxels of a box of the grid."""
    x = grid.axis(0)[sl[0]].astype(np.float32)[:, None, None]
    y = grid.axis(1)[sl[1]].astype(np.float32)[None, :, None]
    z = grid.axis(2)[sl[2]].astype(np.float32)[None, None, :]
    return x, y, z


def _box(grid: RenderGrid, lo: A, hi: A) -> tuple[slice, slice, slice] | None:
    i0 = np.floor(grid.world_to_index(lo)).astype(int)
    i1 = np.ceil(grid.world_to_index(hi)).astype(int) + 1
    i0 = np.maximum(i0, 0)
    i1 = np.minimum(i1, grid.shape)
    if np.any(i1 <= i0):
        return None
    return (
        slice(int(i0[0]), int(i1[0])),
        slice(int(i0[1]), int(i1[1])),
        slice(int(i0[2]), int(i1[2])),
    )


def _segment_distance(x: F32, y: F32, z: F32, a: A, b: A) -> tuple[F32, F32]:
    """Distance (mm) to segment a-b and the position (0..1) of the nearest point on it."""
    v = (b - a).astype(np.float32)
    ll = float(v @ v)
    s = ((x - a[0]) * v[0] + (y - a[1]) * v[1] + (z - a[2]) * v[2]) / np.float32(ll)
    s = np.clip(s, 0.0, 1.0)
    dx = x - (a[0] + s * v[0])
    dy = y - (a[1] + s * v[1])
    dz = z - (a[2] + s * v[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz), s


def _shaft_point(femur: A, z: float) -> A:
    """Centroid of the femur's vertices within 5 mm of height z (a point on the canal)."""
    sel = femur[np.abs(femur[:, 2] - z) < 5.0]
    return sel.mean(axis=0) if len(sel) else femur.mean(axis=0)


def paint_hip(
    imp: Implant,
    anatomy: Anatomy,
    grid: RenderGrid,
    femur: MaskCrop,
    t: CaseTissues,
    hu: F32,
    cls: npt.NDArray[np.uint8],
) -> None:
    """Paint a total hip: the femoral head resected and replaced by a metal ball in a liner and
    metal cup seated in the acetabulum, a neck to a stem running down the medullary canal."""
    side = imp.side
    h = np.asarray(anatomy.landmarks[f"hip_{side}"], dtype=np.float64)
    r_nat = float(np.asarray(anatomy.landmarks[f"head_radius_{side}"])[0])
    fv = np.asarray(anatomy.meshes[f"femur_{side}"].vertices)
    j = _shaft_point(fv, h[2] - 60.0)  # neck base / top of the stem, near the lesser trochanter
    j[2] = h[2] - 45.0
    lower = _shaft_point(fv, h[2] - 60.0 - imp.stem_length)
    d = lower - j
    tip = j + d / np.linalg.norm(d) * imp.stem_length
    cut = h + 0.45 * (j - h)  # neck osteotomy
    n_cut = (h - cut) / np.linalg.norm(h - cut)
    r_cup = max(r_nat + 1.0, imp.head_radius + LINER_MM + CUP_MM)
    metal = np.float32(imp.metal_hu)

    # Resect the head and neck above the osteotomy inside the femur (fibrous tissue remains).
    fs = femur.slices
    x, y, z = _coords(grid, fs)
    above = ((x - cut[0]) * n_cut[0] + (y - cut[1]) * n_cut[1] + (z - cut[2]) * n_cut[2]) > 0
    res = femur.mask & above
    hu[fs][res] = t.muscle
    cls[fs][res] = Tissue.MUSCLE

    # Cup (metal shell opening towards the neck), liner, head.
    box = _box(grid, h - r_cup - 2, h + r_cup + 2)
    if box is not None:
        x, y, z = _coords(grid, box)
        rr = np.sqrt((x - h[0]) ** 2 + (y - h[1]) ** 2 + (z - h[2]) ** 2)
        facing = (x - h[0]) * -n_cut[0] + (y - h[1]) * -n_cut[1] + (z - h[2]) * -n_cut[2]
        cup_side = facing < 0.15 * r_cup
        shell = cup_side & (rr <= r_cup) & (rr > r_cup - CUP_MM)
        liner = cup_side & (rr <= r_cup - CUP_MM) & (rr > imp.head_radius)
        ball = rr <= imp.head_radius
        hb, cb = hu[box], cls[box]
        hb[liner] = PLASTIC_HU
        cb[liner] = Tissue.FAT
        for region in (shell, ball):
            hb[region] = metal
            cb[region] = Tissue.METAL

    # Neck (free, from the ball to the osteotomy and on into the bone) and stem (in the canal).
    lo = np.minimum.reduce([h, j, tip]) - 12.0
    hi = np.maximum.reduce([h, j, tip]) + 12.0
    box = _box(grid, lo, hi)
    if box is None:
        return
    x, y, z = _coords(grid, box)
    dn, _ = _segment_distance(x, y, z, h, j)
    ds, s = _segment_distance(x, y, z, j, tip)
    neck = dn < 6.5
    stem = ds < (9.0 - 4.5 * s)
    # The stem never leaves the bone: keep it to the femur's interior (not its cortex).
    inside = np.zeros(neck.shape, dtype=bool)
    inter = _intersect(box, fs)
    if inter is not None:
        bsl, fsl = inter
        inside[bsl] = ndi.binary_erosion(femur.mask, iterations=2)[fsl]
    metal_vox = neck | (stem & inside)
    hu[box][metal_vox] = metal
    cls[box][metal_vox] = Tissue.METAL


def paint_fixation(
    imp: Implant,
    anatomy: Anatomy,
    grid: RenderGrid,
    femur: MaskCrop,
    hu: F32,
    cls: npt.NDArray[np.uint8],
    rng: np.random.Generator,
) -> None:
    """Paint a proximal femoral fracture fixation; the natural head is kept (it stays femur).

    A lag screw runs from the lateral cortex below the greater trochanter up the neck to a few
    mm under the head's surface, with (``plate``) a side plate on the lateral shaft, or
    (``nail``) an intramedullary nail down the canal that the screw passes through, or
    (``cannulated``) as two or three thin parallel screws instead of one lag screw.
    """
    side = imp.side
    other = "right" if side == "left" else "left"
    h = np.asarray(anatomy.landmarks[f"hip_{side}"], dtype=np.float64)
    h_other = np.asarray(anatomy.landmarks[f"hip_{other}"], dtype=np.float64)
    r_nat = float(np.asarray(anatomy.landmarks[f"head_radius_{side}"])[0])
    lateral = 1.0 if h[0] > h_other[0] else -1.0
    fv = np.asarray(anatomy.meshes[f"femur_{side}"].vertices)
    metal = np.float32(imp.metal_hu)
    # Neck axis: from the head centre towards the shaft's centre some 45-60 mm lower, which
    # leaves the bone through the lateral cortex below the greater trochanter.
    j = _shaft_point(fv, h[2] - rng.uniform(45.0, 60.0))
    u = (j - h) / np.linalg.norm(j - h)
    tip = h - u * (r_nat - draw(rng, SCREW_TIP_DEPTH_MM))
    tail = h + u * 140.0
    fs = femur.slices
    near = ndi.binary_dilation(femur.mask, iterations=2)  # a screw head just out of the cortex
    x, y, z = _coords(grid, fs)
    vox = np.zeros(femur.mask.shape, dtype=bool)
    if imp.style == "cannulated":
        perp = np.cross(u, [0.0, 1.0, 0.0])
        perp /= np.linalg.norm(perp) + 1e-9
        perp2 = np.cross(u, perp)
        n = int(rng.integers(2, 4))
        for k in range(n):
            ang = 2 * np.pi * k / n + rng.uniform(0, 0.5)
            off = (np.cos(ang) * perp + np.sin(ang) * perp2) * min(8.0, 0.45 * r_nat)
            d, _ = _segment_distance(x, y, z, tip + off, tail + off)
            vox |= d < CANNULATED_RADIUS_MM
    else:
        d, _ = _segment_distance(x, y, z, tip, tail)
        vox |= d < draw(rng, LAG_SCREW_RADIUS_MM)
    vox &= near
    if imp.style == "nail":
        top = _shaft_point(fv, h[2] - 10.0)
        top[0] += lateral * 0.6 * r_nat  # entry at the greater trochanter's tip
        top[2] = float(fv[np.abs(fv[:, 0] - top[0]) < 6.0][:, 2].max(initial=h[2])) + 5.0
        low = _shaft_point(fv, h[2] - imp.stem_length)
        d, _ = _segment_distance(x, y, z, top, low)
        vox |= (d < draw(rng, NAIL_RADIUS_MM)) & (near | (z > h[2] - 20.0))
    elif imp.style == "plate":
        exit_pts = np.argwhere(vox & ~femur.mask)
        z_top = h[2] - 25.0
        if len(exit_pts):
            z_top = float(z[0, 0, int(exit_pts[:, 2].max())]) + 10.0
        z_low = z_top - imp.stem_length
        c = _shaft_point(fv, 0.5 * (z_top + z_low))
        band = (np.abs(y - c[1]) < PLATE_HALF_WIDTH_MM) & (z < z_top) & (z > z_low)
        band = band & ((x - c[0]) * lateral > 0)
        shell = ndi.binary_dilation(
            femur.mask, iterations=max(1, round(PLATE_MM / grid.spacing[0]))
        )
        vox |= band & shell & ~femur.mask
    hu[fs][vox] = metal
    cls[fs][vox] = Tissue.METAL


def _intersect(
    a: tuple[slice, slice, slice], b: tuple[slice, slice, slice]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Overlap of two boxes as (slices into a's box, slices into b's box)."""
    sa, sb = [], []
    for u, v in zip(a, b, strict=True):
        lo, hi = max(u.start, v.start), min(u.stop, v.stop)
        if hi <= lo:
            return None
        sa.append(slice(lo - u.start, hi - u.start))
        sb.append(slice(lo - v.start, hi - v.start))
    return tuple(sa), tuple(sb)


def paint_knee(
    imp: Implant,
    anatomy: Anatomy,
    grid: RenderGrid,
    femur: MaskCrop,
    tibfib: MaskCrop | None,
    hu: F32,
    cls: npt.NDArray[np.uint8],
) -> None:
    """Paint a total knee: a metal shell capping the femoral condyles in front, below and
    behind (open on the medial and lateral faces, as a real femoral component is), a
    polyethylene insert replacing the top of the tibia, a metal tray under it and a keel down
    the tibia."""
    side = imp.side
    metal = np.float32(imp.metal_hu)
    fb = float(np.asarray(anatomy.landmarks[f"femur_bottom_{side}"])[2])
    knee = np.asarray(anatomy.landmarks[f"knee_{side}"], dtype=np.float64)
    ankle = np.asarray(anatomy.landmarks[f"ankle_{side}"], dtype=np.float64)
    sp = grid.spacing
    fs = femur.slices
    _, _, z = _coords(grid, fs)
    low = z[0, 0, :] < fb + FEMORAL_CAP_MM
    if low.any():
        k1 = int(np.nonzero(low)[0].max()) + 1
        sub = femur.mask[:, :, :k1]
        core = ndi.binary_erosion(
            sub, structure=_ellipsoid(FEMORAL_COMPONENT_MM, sp), border_value=1
        )
        shell = sub & ~core
        # the metal covers the faces that look forwards, down and backwards (the flange, the
        # distal and posterior condyles); where the surface faces medially or laterally (its
        # normal within 45 degrees of x), a real component is open and the cortex stays
        k2 = min(k1 + 8, femur.mask.shape[2])
        smooth = ndi.gaussian_filter(
            femur.mask[:, :, :k2].astype(np.float32), sigma=[SIDE_SMOOTH_MM / s for s in sp]
        )[:, :, :k1]
        gx, gy, gz = np.gradient(smooth, *sp)
        shell &= gx * gx <= 0.5 * (gx * gx + gy * gy + gz * gz)
        box = (fs[0], fs[1], slice(fs[2].start, fs[2].start + k1))
        hu[box][shell] = metal
        cls[box][shell] = Tissue.METAL
    if tibfib is None or tibfib.count == 0:
        return
    ts = tibfib.slices
    x, y, z = _coords(grid, ts)
    near_axis = np.sqrt((x - knee[0]) ** 2 + (y - knee[1]) ** 2) < 45.0
    tv = np.asarray(anatomy.meshes[f"tibfib_{side}"].vertices)
    top = float(tv[np.hypot(tv[:, 0] - knee[0], tv[:, 1] - knee[1]) < 45.0][:, 2].max())
    insert = tibfib.mask & near_axis & (z > top - TIBIAL_CUT_MM)
    tray = (
        tibfib.mask & near_axis & (z <= top - TIBIAL_CUT_MM) & (z > top - TIBIAL_CUT_MM - TRAY_MM)
    )
    hu[ts][insert] = PLASTIC_HU
    cls[ts][insert] = Tissue.FAT
    hu[ts][tray] = metal
    cls[ts][tray] = Tissue.METAL
    a = np.array([knee[0], knee[1], top - TIBIAL_CUT_MM])
    u = (ankle - knee) / np.linalg.norm(ankle - knee)
    dk, _ = _segment_distance(x, y, z, a, a + u * KEEL_LENGTH_MM)
    keel = tibfib.mask & (dk < KEEL_RADIUS_MM)
    hu[ts][keel] = metal
    cls[ts][keel] = Tissue.METAL


def _ellipsoid(r_mm: float, spacing: tuple[float, float, float]) -> npt.NDArray[np.bool_]:
    """Ball structuring element of radius ``r_mm`` on an anisotropic grid."""
    n = [max(int(np.ceil(r_mm / s)), 1) for s in spacing]
    g = np.ogrid[-n[0] : n[0] + 1, -n[1] : n[1] + 1, -n[2] : n[2] + 1]
    q = sum((gi * s / r_mm) ** 2 for gi, s in zip(g, spacing, strict=True))
    return np.asarray(q <= 1.0)
