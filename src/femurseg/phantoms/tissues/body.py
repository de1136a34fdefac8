"""The body outline model: per-height cross-sections of the legs and trunk, and the table.

Everything here is in world RAS+ mm (+x patient right, +y anterior, +z superior) and does not
depend on the image grid, so that the field of view can be chosen from the body's extent
before anything is rendered. A :class:`BodyModel` holds, on a z lattice, for each leg the
ellipse of its muscle compartment (centred on the bones, sized by a radius profile along the
hip -> knee -> ankle polyline and grown wherever a bone would come closer than a margin to its
edge) and the subcutaneous fat over it, and for the trunk an ellipse sized from the pelvis
bones. The legs are separate ellipses that merge with the trunk by a smooth union, so they part
below the groin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.model import Anatomy
from femurseg.phantoms.params import TableParams
from femurseg.phantoms.tissues.arms import Arm
from femurseg.phantoms.tissues.materials import CaseTissues, draw
from femurseg.phantoms.tissues.organs import Organs
from femurseg.phantoms.tissues.slabs import binned, leg_position
from femurseg.phantoms.tissues.spine import Spine
from femurseg.phantoms.tissues.thorax import Thorax
from femurseg.phantoms.tissues.vessels import VesselTree

A = npt.NDArray[np.float64]

#: z lattice step of the body model, mm.
Z_STEP_MM = 2.0
#: smoothing of the profiles along z, mm (Gaussian sigma).
Z_SMOOTH_MM = 12.0
#: distance over which the trunk rounds off below the ischial tuberosities (buttocks), mm.
BUTTOCK_FADE_MM = 45.0
#: anterior abdominal wall muscle thickness, mm.
ABDOMINAL_WALL_MM = 12.0
#: lengths of soft tissue kept beyond the bones, above the pelvis and below the ankle, mm.
TRUNK_ABOVE_MM = 250.0
FOOT_BELOW_MM = 60.0
#: least depth by which the body's back flattens on its support, mm.
SINK_MIN_MM = 3.0


@dataclass
class Profile:
    """One ellipse per z sample: centre (cx, cy), semi-axes (a along x, b along y), fat (mm).

    ``a == 0`` marks heights where the structure is absent. ``fourier`` modulates the fat
    thickness with the angle around the centre; ``lat`` is +1 when lateral is +x.
    """

    cx: A
    cy: A
    a: A
    b: A
    fat: A
    fourier: A = field(default_factory=lambda: np.zeros(4))
    lat: float = 1.0
    septa: A = field(default_factory=lambda: np.zeros(0))


@dataclass
class Table:
    """Patient table cross-section (constant along z), world mm.

    A curved carbon-fibre sandwich: its top is ``y_top(x) = y0 + curve * (x - xc)**2`` within
    its width and its bottom runs ``thickness`` below, with skins ``top_skin`` and
    ``bottom_skin`` thick over a foam core. A pad ``mattress_mm`` thick (0: none) with a cover
    ``cover_mm`` thick lies on it, and the body rests on that, with ``contact_fat`` mm of
    compressed fat (below the skin) between its muscle and the support.
    """

    xc: float
    y0: float
    curve: float
    width: float
    thickness: float
    top_skin: float
    bottom_skin: float
    mattress_mm: float
    cover_mm: float
    contact_fat: float = 0.0

    def top(self, x: A) -> A:
        """Table top y (mm) at world x (mm)."""
        return self.y0 + self.curve * (x - self.xc) ** 2

    def rest(self, x: A) -> A:
        """The y (mm) the body rests on (top of the mattress) at world x (mm)."""
        return self.top(x) + self.mattress_mm


@dataclass
class BodyModel:
    """Cross-section profiles on the z lattice ``zs`` (mm), plus pelvic organs and the table."""

    zs: A
    legs: dict[str, Profile]
    trunk: Profile
    pelvis_bottom_z: float
    bladder_centre: A
    bladder_axes: A
    table: Table
    spine: Spine | None = None
    organs: Organs | None = None
    #: contrast-filled or calcified vessels painted inside the body, or None
    vessels: VesselTree | None = None
    #: the lower chest above the lumbar spine (ribs, lungs, heart), or None
    thorax: Thorax | None = None
    #: arms lying down along the body (none: raised out of view)
    arms: list[Arm] = field(default_factory=list)

    def at(self, prof: Profile, z: float) -> tuple[float, float, float, float, float]:
        """(cx, cy, a, b, fat) of ``prof`` interpolated at height ``z`` (mm)."""
        return tuple(  # type: ignore[return-value]
            float(np.interp(z, self.zs, v)) for v in (prof.cx, prof.cy, prof.a, prof.b, prof.fat)
        )

    def max_radius(self, centre: A, z_lo: float, z_hi: float) -> float:
        """Upper bound (mm) on the in-plane distance from ``centre`` (x, y) to the body's
        outline between two heights."""
        sel = (self.zs >= z_lo - Z_STEP_MM) & (self.zs <= z_hi + Z_STEP_MM)
        r = 0.0
        for p in [*self.legs.values(), self.trunk]:
            m = sel & (p.a > 0)
            if m.any():
                grow = p.fat[m] * (1.0 + np.abs(p.fourier).sum())
                d = np.hypot(p.cx[m] - centre[0], p.cy[m] - centre[1])
                r = max(r, float(np.max(d + np.maximum(p.a[m], p.b[m]) + grow)))
        for arm in self.arms:
            box = arm.box_between(z_lo, z_hi)
            if box is not None:
                far = np.maximum(np.abs(box[0] - centre[:2]), np.abs(box[1] - centre[:2]))
                r = max(r, float(np.hypot(*far)))
        return r

    def extent(self, z_lo: float, z_hi: float) -> tuple[A, A]:
        """World (x, y) lower and upper bounds (mm) of body and table between two heights."""
        sel = (self.zs >= z_lo - Z_STEP_MM) & (self.zs <= z_hi + Z_STEP_MM)
        lo = np.array([np.inf, np.inf])
        hi = -lo
        for p in [*self.legs.values(), self.trunk]:
            m = sel & (p.a > 0)
            if not m.any():
                continue
            grow = p.fat[m] * (1.0 + np.abs(p.fourier).sum())
            lo = np.minimum(lo, [np.min(p.cx[m] - p.a[m] - grow), np.min(p.cy[m] - p.b[m] - grow)])
            hi = np.maximum(hi, [np.max(p.cx[m] + p.a[m] + grow), np.max(p.cy[m] + p.b[m] + grow)])
        for arm in self.arms:
            box = arm.box_between(z_lo, z_hi)
            if box is not None:
                lo, hi = np.minimum(lo, box[0]), np.maximum(hi, box[1])
        t = self.table
        lo[1] = min(lo[1], t.y0 - t.thickness)
        return lo, hi


def _verts(anatomy: Anatomy, names: list[str]) -> A:
    vs = [np.asarray(anatomy.meshes[n].vertices) for n in names if n in anatomy.meshes]
    tc = [np.asarray(anatomy.meshes[n].triangles_center) for n in names if n in anatomy.meshes]
    return np.concatenate(vs + tc) if vs else np.zeros((0, 3))


def _smooth(v: A, grow: bool = False) -> A:
    s = Z_SMOOTH_MM / Z_STEP_MM
    if grow:  # keep the enlarged sizes after smoothing: max over the smoothing window first
        v = ndi.maximum_filter1d(v, size=int(2 * s) + 1, mode="nearest")
    return ndi.gaussian_filter1d(v, s, mode="nearest")


def build_body(
    anatomy: Anatomy,
    t: CaseTissues,
    rng: np.random.Generator,
    table: TableParams | None = None,
    spine: Spine | None = None,
    organs: Organs | None = None,
) -> BodyModel:
    """Fit the soft tissue outline of one case around its posed bones.

    Args:
        anatomy: posed bones and landmarks in world RAS+ mm.
        t: the case's tissue draw (fat thickness, muscle sizes, margins).
        rng: random generator for shape variation.
        table: the table's parameter ranges (defaults if None).
        spine: the lumbar spine, kept inside the trunk's muscle (None: no spine).
        organs: the abdominal organs placed around the spine (None: none).

    Returns:
        The case's :class:`BodyModel`.
    """
    lm = anatomy.landmarks
    allv = _verts(anatomy, list(anatomy.meshes))
    z_lo = float(allv[:, 2].min()) - FOOT_BELOW_MM
    spine_pts = spine.outline_points() if spine is not None else np.zeros((0, 3))
    z_hi = float(max(allv[:, 2].max(), *spine_pts[:, 2])) + TRUNK_ABOVE_MM
    zs = np.arange(z_lo, z_hi + Z_STEP_MM, Z_STEP_MM)
    legs = {side: _leg(anatomy, side, zs, t, rng) for side in ("left", "right")}
    trunk, pelvis_bottom = _trunk(anatomy, zs, t, rng, spine_pts)
    # Bladder: behind and above the pubic symphysis (most anterior pelvis point near midline).
    pv = np.asarray(anatomy.meshes["pelvis"].vertices)
    cx = float(lm["pelvis_centre"][0])
    near = pv[np.abs(pv[:, 0] - cx) < 20.0]
    pubis = near[np.argmax(near[:, 1])] if len(near) else np.asarray(lm["pelvis_centre"])
    r = t.bladder_mm
    axes = np.array([1.2 * r, 0.85 * r, 0.8 * r])
    centre = np.array([cx, pubis[1] - axes[1] - 12.0, pubis[2] + 0.6 * axes[2]])
    table_ = _table(legs, trunk, anatomy, spine_pts, t, table or TableParams(), rng)
    _lay_back_on(trunk, float(table_.rest(np.array([table_.xc]))[0]), zs >= pelvis_bottom)
    return BodyModel(zs, legs, trunk, pelvis_bottom, centre, axes, table_, spine, organs)


def _leg(anatomy: Anatomy, side: str, zs: A, t: CaseTissues, rng: np.random.Generator) -> Profile:
    lm = anatomy.landmarks
    hip, knee, ankle = (
        np.asarray(lm[f"{n}_{side}"], dtype=np.float64) for n in ("hip", "knee", "ankle")
    )
    lat = 1.0 if side == "right" else -1.0  # RAS: patient right is +x
    # Leg axis polyline, extended into the trunk and below the ankle.
    poly = np.array([hip + [0, 0, 150.0], hip, knee, ankle, ankle - [0, 0, 200.0]])
    order = np.argsort(poly[:, 2])
    cx = np.interp(zs, poly[order, 2], poly[order, 0])
    cy = np.interp(zs, poly[order, 2], poly[order, 1])
    # Position along the leg: 0 at the hip, 1 at the knee, 2 at the ankle.
    u = leg_position(zs, hip, knee, ankle)
    uk = np.array([-0.5, 0.0, 0.15, 0.5, 0.85, 1.0, 1.12, 1.35, 1.7, 2.0, 2.5])
    ml = np.array([1.05, 1.05, 1.0, 0.85, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) * t.thigh_ml_mm
    ml += np.array([0, 0, 0, 0, 1.15, 1.0, 1.05, 0, 0, 0, 0]) * t.knee_mm
    ml += np.array([0, 0, 0, 0, 0, 0, 0, 1.0, 0.75, 0, 0]) * t.calf_mm
    ml += np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0, 0.9]) * t.ankle_mm
    ap = ml.copy()
    ap[:4] *= t.thigh_ap_mm / t.thigh_ml_mm
    a = np.interp(u, uk, ml)
    b = np.interp(u, uk, ap)
    # Centre on the bones: the bone centroid per slab, with the muscle mass medial and
    # posterior of the femur in the thigh, posterior of the tibia in the calf.
    bones = _verts(anatomy, [f"femur_{side}", f"tibfib_{side}", f"patella_{side}"])
    bins = binned(zs, bones)
    has = np.array([len(v) > 0 for v in bins])
    bc = np.array(
        [
            (v[:, :2].min(axis=0) + v[:, :2].max(axis=0)) / 2 if len(v) else [np.nan, np.nan]
            for v in bins
        ]
    )
    cx = np.where(has, bc[:, 0], cx)
    cy = np.where(has, bc[:, 1], cy)
    thigh = np.clip(1.0 - np.abs(u - 0.45) / 0.6, 0.0, 1.0)
    calf = np.clip(1.0 - np.abs(u - 1.45) / 0.45, 0.0, 1.0)
    cx = cx - lat * 0.1 * a * thigh + lat * 0.08 * a * calf
    cy = cy - 0.1 * b * thigh - 0.3 * b * calf
    cx, cy = _smooth(cx), _smooth(cy)
    a, b = _contain(bins, cx, cy, a, b, t.muscle_margin_mm)
    region = np.interp(u, [0.0, 0.6, 1.0, 1.4, 2.0], [1.0, 0.9, 0.55, 0.65, 0.35])
    fat = t.subcut_fat_mm * region
    fourier = rng.uniform(-0.25, 0.25, 4)
    thigh_septa = np.deg2rad([-25.0, 150.0, 240.0]) + rng.uniform(-0.25, 0.25, 3)
    return Profile(cx, cy, a, b, fat, fourier, lat, thigh_septa)


def _contain(
    bins: list[A], cx: A, cy: A, a: A, b: A, margin: float, smooth: bool = True
) -> tuple[A, A]:
    """Grow the ellipses so that every bone point stays ``margin`` mm inside them.

    Each semi-axis first grows to the bone's extent along it, then both scale together until
    the points off the axes fit too.
    """
    a = a.copy()
    b = b.copy()
    for i, v in enumerate(bins):
        if not len(v):
            continue
        dx = np.abs(v[:, 0] - cx[i])
        dy = np.abs(v[:, 1] - cy[i])
        a[i] = max(a[i], float(dx.max()) + margin)
        b[i] = max(b[i], float(dy.max()) + margin)
        am, bm = max(a[i] - margin, 1.0), max(b[i] - margin, 1.0)
        rho = float(np.sqrt((dx / am) ** 2 + (dy / bm) ** 2).max())
        if rho > 1.0:
            a[i] = am * rho + margin
            b[i] = bm * rho + margin
    if not smooth:
        return a, b
    return _smooth(a, grow=True), _smooth(b, grow=True)


def _trunk(
    anatomy: Anatomy, zs: A, t: CaseTissues, rng: np.random.Generator, spine_pts: A
) -> tuple[Profile, float]:
    pv = _verts(anatomy, ["pelvis"])
    cx0 = float(anatomy.landmarks["pelvis_centre"][0])
    bins = binned(zs, pv)
    has = np.array([len(v) > 0 for v in bins])
    idx = np.nonzero(has)[0]
    n = len(zs)
    a = np.zeros(n)
    y_lo = np.zeros(n)
    y_hi = np.zeros(n)
    for i in idx:
        v = bins[i]
        a[i] = np.abs(v[:, 0] - cx0).max() + 0.3 * t.gluteal_mm
        y_lo[i] = v[:, 1].min() - t.gluteal_mm
        y_hi[i] = v[:, 1].max() + ABDOMINAL_WALL_MM
    top, bot = idx.max(), idx.min()
    # Above the iliac crests: the abdomen keeps the crest-level section, narrowing a little
    # at the waist, with the belly in front.
    a[top + 1 :] = a[top] * 0.95
    y_lo[top + 1 :] = y_lo[top]
    y_hi[top + 1 :] = y_hi[top] + 0.3 * t.subcut_fat_mm
    cy = (y_lo + y_hi) / 2
    b = (y_hi - y_lo) / 2
    cy[bot : top + 1] = _smooth(cy[bot : top + 1])
    # Every pelvis point (the anterior iliac spines too) inside the muscle with a margin.
    a[bot : top + 1], b[bot : top + 1] = _contain(
        bins[bot : top + 1],
        np.full(top + 1 - bot, cx0),
        cy[bot : top + 1],
        a[bot : top + 1],
        b[bot : top + 1],
        ABDOMINAL_WALL_MM,
        smooth=False,
    )
    a[top + 1 :], b[top + 1 :] = a[top] * 0.95, b[top]
    if len(spine_pts):  # the lumbar spine inside the back muscles
        sb = binned(zs, spine_pts)
        a, b = _contain(sb, np.full(n, cx0), cy, a, b, ABDOMINAL_WALL_MM, smooth=False)
    cy[:bot] = cy[bot]
    # Buttocks: round off below the lowest pelvis point.
    zb = zs[bot]
    fade = np.sqrt(np.clip(1.0 - ((zb - zs) / BUTTOCK_FADE_MM) ** 2, 0.0, 1.0))
    a[:bot] = a[bot] * fade[:bot]
    b[:bot] = b[bot] * fade[:bot]
    a, b = _smooth(a, grow=True), _smooth(b, grow=True)
    a[zs < zb - BUTTOCK_FADE_MM] = 0.0
    fat = np.full(n, 1.25 * t.subcut_fat_mm)
    fourier = rng.uniform(-0.2, 0.2, 4)
    return Profile(np.full(n, cx0), cy, a, b, fat, fourier, 1.0), float(zb)


def _lay_back_on(trunk: Profile, rest: float, where: npt.NDArray[np.bool_]) -> None:
    """Deepen the trunk's back (in place, front fixed) wherever its outline would stand off
    the support surface at height ``rest`` (mm): a supine back lies on the table all along,
    and the renderer flattens what reaches below it."""
    f = trunk.fourier
    post = max(1.0 - f[1] - f[2], 0.3)  # fat modulation straight behind the centre
    outer = trunk.cy - trunk.b - trunk.fat * post
    d = np.where(where & (trunk.a > 0), outer - (rest - SINK_MIN_MM), 0.0)
    d = np.maximum(d, 0.0)
    trunk.cy -= d / 2
    trunk.b += d / 2


def _table(
    legs: dict[str, Profile],
    trunk: Profile,
    anatomy: Anatomy,
    spine_pts: A,
    t: CaseTissues,
    p: TableParams,
    rng: np.random.Generator,
) -> Table:
    posts = []
    for prof in [*legs.values(), trunk]:
        m = prof.a > 0
        posts.append(np.min(prof.cy[m] - prof.b[m] - prof.fat[m] * (1 - abs(prof.fourier[1]))))
    y_back = float(min(posts))
    xc = float(anatomy.landmarks["pelvis_centre"][0])
    curve = draw(rng, p.curve)
    width = draw(rng, p.width_mm)
    # The patient's weight flattens the back and buttocks on the support: the support surface
    # lies a muscle margin, the skin and a compressed layer of fat below the hindmost bones of
    # the trunk and thighs (measured along the curved surface; lower legs rest on positioning
    # aids, see the soft tissue cushions), and at least SINK_MIN_MM inside the outline.
    knee_z = max(float(anatomy.landmarks[f"knee_{s}"][2]) for s in ("left", "right"))
    allv = np.concatenate([_verts(anatomy, list(anatomy.meshes)), spine_pts])
    allv = allv[(np.abs(allv[:, 0] - xc) < width / 2) & (allv[:, 2] > knee_z)]
    bone_back = float(np.min(allv[:, 1] - curve * (allv[:, 0] - xc) ** 2))
    limit = bone_back - t.muscle_margin_mm - t.skin_mm
    fat = draw(rng, p.sink_fraction) * t.subcut_fat_mm
    rest = min(max(y_back + SINK_MIN_MM, limit - fat), limit)
    pad = draw(rng, p.pad_mm) if rng.uniform() < p.pad_probability else 0.0
    return Table(
        xc=xc,
        y0=rest - pad,
        curve=curve,
        width=width,
        thickness=draw(rng, p.thickness_mm),
        top_skin=draw(rng, p.top_skin_mm),
        bottom_skin=draw(rng, p.bottom_skin_mm),
        mattress_mm=pad,
        cover_mm=min(draw(rng, p.pad_cover_mm), pad),
        contact_fat=max(min(fat, limit - rest), 0.0),
    )
