"""Intravenous contrast and the arteries (with their veins) of the pelvis and legs.

A contrast-enhanced lower-limb CT shows what an unenhanced one hides: in a run-off angiogram
(arterial phase) the iliac, femoral, popliteal and tibial arteries are bright tubes of
250-550 HU running beside the femur from the groin to the knee and on to the ankle; in a portal
venous scan the arteries and veins are both enhanced, and so are the kidneys, liver and
spleen; a delayed scan fills the bladder with excreted contrast. Older patients' arteries
also carry calcified plaques, bright specks on the vessel wall, with or without contrast.
None of that is femur, and some of it (a bright round section with a rim) looks like bone to a
network that has only seen unenhanced phantoms.

The arteries follow the bones of each leg (world RAS+ mm): the common and external iliac
arteries run from the aortic bifurcation at L4 over the pelvic brim to the groin in front of
the femoral head; the femoral artery then runs down the thigh in front of and medial to the
shaft, turning medial and then posterior through the adductor canal into the popliteal fossa
behind the knee, and divides below it into the posterior tibial artery (behind the tibia) and
the anterior tibial artery (in front of the interosseous membrane). Each vein runs beside its
artery, posterior and medial, a little wider. Paths are sampled every
:data:`STEP_MM` in z and painted slice by slice as discs inside the body; bones are painted
over them afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.params import VesselParams
from femurseg.phantoms.tissues.materials import CaseTissues, Tissue, draw
from femurseg.phantoms.tissues.organs import Organs
from femurseg.phantoms.tissues.slabs import binned, leg_position
from femurseg.phantoms.tissues.spine import Spine

A = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

#: z step of the vessel paths, mm.
STEP_MM = 2.0
#: course of the femoral / popliteal artery around the bone: position along the leg (0 hip,
#: 1 knee, 2 ankle) -> angle from anterior towards medial (degrees) and gap outside the bone's
#: bounding ellipse (mm).
COURSE_U = (0.0, 0.15, 0.55, 0.8, 0.95, 1.2, 2.0)
COURSE_DEG = (15.0, 25.0, 75.0, 130.0, 175.0, 180.0, 140.0)
COURSE_GAP_MM = (12.0, 12.0, 10.0, 10.0, 8.0, 10.0, 10.0)
#: artery radius (mm) along the leg at ``COURSE_U``, before the per-case scale.
COURSE_RADIUS_MM = (4.0, 3.6, 3.3, 3.1, 3.0, 2.6, 1.8)
#: the groin point lies this far medial of the hip centre and this far in front of the head, mm.
GROIN_MEDIAL_MM = 8.0
GROIN_FRONT_MM = 12.0
#: radii of the common and external iliac arteries, mm; of the anterior tibial artery, mm.
ILIAC_RADIUS_MM = (5.0, 4.3)
ANTERIOR_TIBIAL_MM = 1.5
#: the anterior tibial artery starts this far down the leg (knee 1, ankle 2).
ANTERIOR_TIBIAL_U = 1.25
#: vein radius as a multiple of its artery's.
VEIN_FACTOR = 1.35
#: plaque speck radius range, mm.
PLAQUE_MM = (0.8, 1.6)


@dataclass(frozen=True)
class VesselDraw:
    """One case's draw: the contrast phase and the lumens' and plaques' HU.

    ``phase`` is ``"none"``, ``"arterial"`` or ``"venous"``; ``artery_hu`` / ``vein_hu`` are
    None where the lumen is not enhanced (then it is not painted: unenhanced blood reads as
    muscle); ``plaque_fraction`` 0 means no calcification.
    """

    phase: str
    artery_hu: float | None
    vein_hu: float | None
    excreted: bool
    plaque_fraction: float
    plaque_hu: float
    scale: float

    @property
    def visible(self) -> bool:
        """Whether anything is painted at all."""
        return self.artery_hu is not None or self.plaque_fraction > 0.0

    def to_meta(self) -> dict[str, object]:
        """JSON-ready, rounded."""
        return {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in dataclasses.asdict(self).items()
        }


def draw_vessels(p: VesselParams, rng: np.random.Generator) -> VesselDraw:
    """Draw one case's contrast phase and plaques (always the same number of draws, so the
    rest of the case does not depend on which phase came out)."""
    u_contrast, u_phase, u_excrete, u_calc = rng.uniform(size=4)
    art = (draw(rng, p.artery_arterial_hu), draw(rng, p.artery_venous_hu))
    vein = draw(rng, p.vein_venous_hu)
    frac = draw(rng, p.plaque_fraction)
    plaque_hu = draw(rng, p.calcification_hu)
    scale = draw(rng, p.artery_scale)
    phase = "none"
    if u_contrast < p.contrast_probability:
        phase = "arterial" if u_phase < p.arterial_share else "venous"
    return VesselDraw(
        phase=phase,
        artery_hu={"none": None, "arterial": art[0], "venous": art[1]}[phase],
        vein_hu=vein if phase == "venous" else None,
        excreted=phase != "none" and u_excrete < p.excretion_probability,
        plaque_fraction=frac if u_calc < p.calcification_probability else 0.0,
        plaque_hu=plaque_hu,
        scale=scale,
    )


def enhance_tissues(
    t: CaseTissues, d: VesselDraw, p: VesselParams, rng: np.random.Generator
) -> CaseTissues:
    """The tissue draw with the organs' enhancement of ``d``'s phase (unchanged without
    contrast): aorta and vena cava take the arterial lumen HU, kidneys, liver and spleen
    their enhanced HU (the liver enhances little in the arterial phase), the bladder its
    excreted-contrast HU where drawn."""
    kidney, liver, spleen, bladder = (
        draw(rng, p.kidney_enhanced_hu),
        draw(rng, p.liver_venous_hu),
        draw(rng, p.spleen_enhanced_hu),
        draw(rng, p.bladder_excreted_hu),
    )
    if d.artery_hu is None:  # unenhanced
        return t
    return dataclasses.replace(
        t,
        blood=d.artery_hu,
        kidney=kidney,
        liver=liver if d.phase == "venous" else t.liver + 0.25 * (liver - t.liver),
        spleen=spleen,
        fluid=bladder if d.excreted else t.fluid,
    )


@dataclass(frozen=True)
class VesselPath:
    """One vessel sampled along z (ascending): centre (x, y), radius and lumen HU (None: not
    painted), with calcified plaque specks (angle on the wall, radius; radius 0: none)."""

    zs: A
    x: A
    y: A
    r: A
    hu: float | None
    plaque_angle: A
    plaque_r: A
    plaque_hu: float

    def at(self, z: float) -> tuple[float, float, float, float, float] | None:
        """(x, y, r, plaque angle, plaque radius) at height ``z``, or None outside."""
        if z < self.zs[0] or z > self.zs[-1]:
            return None
        k = int(np.clip(np.searchsorted(self.zs, z), 1, len(self.zs) - 1))
        w = float((z - self.zs[k - 1]) / max(self.zs[k] - self.zs[k - 1], 1e-6))

        def lerp(v: A) -> float:
            return float((1.0 - w) * v[k - 1] + w * v[k])

        near = k if w >= 0.5 else k - 1
        return (
            lerp(self.x),
            lerp(self.y),
            lerp(self.r),
            float(self.plaque_angle[near]),
            float(self.plaque_r[near]),
        )


@dataclass(frozen=True)
class VesselTree:
    """Every painted vessel of one case."""

    paths: tuple[VesselPath, ...]

    def paint(
        self,
        z: float,
        xs: F32,
        ys: F32,
        inside: npt.NDArray[np.bool_],
        hu: F32,
        cls: npt.NDArray[np.uint8],
    ) -> None:
        """Paint slice height ``z`` over a window: ``xs`` (n,) and ``ys`` (m,) world mm,
        ``inside`` (n, m) where vessels may go (inside the skin), ``hu`` and ``cls`` (n, m)
        modified in place. Lumens first, plaques over them."""
        specks = []
        for p in self.paths:
            s = p.at(z)
            if s is None:
                continue
            cx, cy, r, ang, pr = s
            if p.hu is not None:
                _disc(xs, ys, cx, cy, r, inside, hu, cls, p.hu)
            if pr > 0.0:
                specks.append((cx + r * math.cos(ang), cy + r * math.sin(ang), pr, p.plaque_hu))
        for sx, sy, pr, phu in specks:
            _disc(xs, ys, sx, sy, pr, inside, hu, cls, phu)


def _disc(
    xs: F32,
    ys: F32,
    cx: float,
    cy: float,
    r: float,
    inside: npt.NDArray[np.bool_],
    hu: F32,
    cls: npt.NDArray[np.uint8],
    value: float,
) -> None:
    i0, i1 = np.searchsorted(xs, [cx - r, cx + r])
    j0, j1 = np.searchsorted(ys, [cy - r, cy + r])
    if i1 <= i0 or j1 <= j0:
        return
    dx = xs[i0:i1, None] - np.float32(cx)
    dy = ys[None, j0:j1] - np.float32(cy)
    m = (dx * dx + dy * dy <= np.float32(r * r)) & inside[i0:i1, j0:j1]
    np.copyto(hu[i0:i1, j0:j1], np.float32(value), where=m)
    np.copyto(cls[i0:i1, j0:j1], np.uint8(Tissue.ORGAN), where=m)


def _bone_frame(anatomy: Anatomy, side: str, zs: A) -> tuple[A, A, A, A]:
    """Centre (x, y) and half extents (x, y) of the leg's bones (femur, tibia and fibula) in
    the body model's slabs at ``zs`` (:func:`~femurseg.phantoms.tissues.slabs.binned`); gaps
    (no bone vertex in a slab) are interpolated."""
    names = [f"femur_{side}", f"tibfib_{side}"]
    v = np.concatenate(
        [np.asarray(anatomy.meshes[n].vertices) for n in names if n in anatomy.meshes]
    )
    out = np.full((len(zs), 4), np.nan)
    for k, pts in enumerate(binned(zs, v)):
        if len(pts):
            mn, mx = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
            out[k] = [*(0.5 * (mn + mx)), *(0.5 * (mx - mn))]
    ok = ~np.isnan(out[:, 0])
    if not ok.any():
        raise ValueError(f"no {side} leg bone between z {zs[0]:.0f} and {zs[-1]:.0f} mm")
    for c in range(4):
        out[:, c] = np.interp(zs, zs[ok], out[ok, c])
    return out[:, 0], out[:, 1], out[:, 2], out[:, 3]


def _plaques(n: int, d: VesselDraw, rng: np.random.Generator) -> tuple[A, A]:
    """Per-sample plaque angle and speck radius (0 where none) for a path of ``n`` samples."""
    field = ndi.gaussian_filter1d(rng.normal(size=n), 3.0)
    angle = 2.0 * np.pi * rng.uniform() + np.cumsum(rng.normal(0.0, 0.3, n))
    sizes = rng.uniform(*PLAQUE_MM, n)
    if d.plaque_fraction <= 0.0:
        return angle, np.zeros(n)
    thr = float(np.quantile(field, 1.0 - d.plaque_fraction))
    return angle, np.where(field > thr, sizes, 0.0)


def _path(
    zs: A, x: A, y: A, r: A, hu: float | None, d: VesselDraw, rng: np.random.Generator
) -> VesselPath:
    angle, pr = _plaques(len(zs), d, rng)
    return VesselPath(zs, x, y, r, hu, angle, pr, d.plaque_hu)


def aorta_at_l4(spine: Spine | None, organs: Organs | None) -> A | None:
    """Centre (x, y, z) of the aorta at L4, where the abdomen painter draws it (in front of
    the vertebral body, left of the midline), or None without a spine."""
    if spine is None or organs is None or len(spine.vertebrae) < 2:
        return None
    v = spine.vertebrae[1]
    return np.array(
        [
            float(spine.s1_top[0]) - 0.35 * v.rx,
            float(v.centre[1]) + v.ry + organs.aorta_mm + 2.0,
            float(v.centre[2]),
        ]
    )


def build_vessels(
    anatomy: Anatomy, aorta_l4: A | None, d: VesselDraw, rng: np.random.Generator
) -> VesselTree | None:
    """The case's vessel paths, or None when nothing is to be painted.

    Args:
        anatomy: posed bones and landmarks (world RAS+ mm).
        aorta_l4: the aorta's centre (x, y, z) at L4, where it divides; None without a spine
            (the iliac arteries then stop 60 mm above the hips).
        d: the case's draw.
        rng: random generator (plaques, small wander of the course).
    """
    if not d.visible:
        return None
    lm = anatomy.landmarks
    paths: list[VesselPath] = []
    # Plaques only on arteries; lumens only where enhanced.
    no_plaque = dataclasses.replace(d, plaque_fraction=0.0)
    for side in ("left", "right"):
        if f"femur_{side}" not in anatomy.meshes:
            continue
        lat = 1.0 if side == "right" else -1.0  # RAS: patient right is +x
        med = -lat
        hip, knee, ankle = (
            np.asarray(lm[f"{n}_{side}"], dtype=np.float64) for n in ("hip", "knee", "ankle")
        )
        head_r = float(np.asarray(lm[f"head_radius_{side}"]).ravel()[0])
        zs = np.arange(ankle[2], hip[2], STEP_MM)
        if len(zs) < 4:
            continue
        cx, cy, hx, hy = _bone_frame(anatomy, side, zs)
        u = leg_position(zs, hip, knee, ankle)
        phi = np.deg2rad(np.interp(u, COURSE_U, COURSE_DEG) + rng.normal(0.0, 5.0))
        gap = np.interp(u, COURSE_U, COURSE_GAP_MM) * rng.uniform(0.8, 1.2)
        ax = cx + med * np.sin(phi) * (hx + gap)
        ay = cy + np.cos(phi) * (hy + gap)
        groin = hip + np.array([med * GROIN_MEDIAL_MM, head_r + GROIN_FRONT_MM, 0.0])
        w = np.clip((0.25 - u) / 0.15, 0.0, 1.0)
        ax = ndi.gaussian_filter1d(w * groin[0] + (1 - w) * ax, 4.0, mode="nearest")
        ay = ndi.gaussian_filter1d(w * groin[1] + (1 - w) * ay, 4.0, mode="nearest")
        ar = np.interp(u, COURSE_U, COURSE_RADIUS_MM) * d.scale
        # The iliac arteries, from the groin up to the bifurcation (or 60 mm up without one).
        top = (
            aorta_l4
            if aorta_l4 is not None and aorta_l4[2] > hip[2] + 40.0
            else groin + [0.0, -10.0, 60.0]
        )
        brim_z = hip[2] + 0.45 * (top[2] - hip[2])
        brim = np.array([0.5 * (groin[0] + top[0]) + lat * 15.0, groin[1] - 15.0, brim_z])
        iz = np.arange(hip[2], top[2], STEP_MM)
        knots = np.array([groin, brim, top])
        ix = np.interp(iz, knots[:, 2], knots[:, 0])
        iy = np.interp(iz, knots[:, 2], knots[:, 1])
        ir = np.interp(
            iz, [hip[2], brim_z, top[2]], [ILIAC_RADIUS_MM[1]] * 2 + [ILIAC_RADIUS_MM[0]]
        )
        if aorta_l4 is not None:
            # the common iliac leaves the aorta's side, not its centre
            ix = ix + lat * np.clip((iz - brim_z) / max(top[2] - brim_z, 1.0), 0, 1) * 4.0
        az = np.concatenate([zs, iz])
        ax_all = ndi.gaussian_filter1d(np.concatenate([ax, ix]), 3.0, mode="nearest")
        ay_all = ndi.gaussian_filter1d(np.concatenate([ay, iy]), 3.0, mode="nearest")
        ar_all = np.concatenate([ar, ir * d.scale])
        paths.append(_path(az, ax_all, ay_all, ar_all, d.artery_hu, d, rng))
        # The vein beside the artery, posterior and medial.
        vr = ar_all * VEIN_FACTOR
        off = ar_all + vr + 1.0
        vx = ax_all + med * 0.6 * off
        vy = ay_all - 0.8 * off
        if d.vein_hu is not None:
            paths.append(_path(az, vx, vy, vr, d.vein_hu, no_plaque, rng))
        # The anterior tibial artery, in front of the interosseous membrane.
        sel = u >= ANTERIOR_TIBIAL_U
        if sel.sum() >= 4:
            tx = cx[sel] + lat * 0.1 * hx[sel]
            ty = cy[sel] + 0.25 * hy[sel]
            tr = np.full(int(sel.sum()), ANTERIOR_TIBIAL_MM * d.scale)
            paths.append(_path(zs[sel], tx, ty, tr, d.artery_hu, d, rng))
    return VesselTree(tuple(paths)) if paths else None
