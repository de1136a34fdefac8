"""Soft tissue, pelvic organs and the table, rendered one axial slice at a time.

Each slice evaluates the :class:`~femurseg.phantoms.tissues.body.BodyModel` ellipses as approximate
signed distances (mm, negative inside), joins legs and trunk with a smooth minimum, and fills:
skin on the outer rim, subcutaneous fat, muscle with intramuscular fat (a smooth random field
elongated along z) and fat planes between muscle groups, and inside the pelvis a cavity of
visceral fat with bowel loops (wall, contents, gas rising anteriorly) and the bladder. The
table and mattress lie under the body, whose back is flattened against them. Bones are painted
over this afterwards (:mod:`femurseg.phantoms.tissues.bone`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.tissues.abdomen import STOOL_STEP, AbdomenPainter
from femurseg.phantoms.tissues.body import BodyModel, Profile
from femurseg.phantoms.tissues.materials import CaseTissues, SliceField, Tissue
from femurseg.phantoms.tissues.organs import reaches
from femurseg.phantoms.tissues.thorax import LUNG_VESSEL_STEP, ThoraxPainter

F32 = npt.NDArray[np.float32]

#: smooth-union radius between legs and trunk, mm.
UNION_MM = 25.0
#: muscle kept around the pelvic bones (iliacus, glutei, obturators), mm.
PELVIC_MUSCLE_MM = 22.0
#: pixel size (mm) of the distance map used for it.
PELVIC_EDT_MM = 3.0
#: coarse lattice steps (x, y, z) of the random fields, mm; muscle texture runs along z.
MARBLING_STEP = (9.0, 9.0, 40.0)
BOWEL_STEP = (13.0, 13.0, 13.0)
GAS_STEP = (9.0, 9.0, 9.0)
#: bowel loops fill this quantile of the pelvic cavity's field; wall width in field units.
BOWEL_THRESHOLD = -0.25
BOWEL_WALL = 0.22
_BIG = np.float32(1e4)
#: abdominal wall muscle between the trunk outline and the visceral cavity, mm; above the
#: iliac crest the thick posterior (gluteal) wall thins to it over this height, mm.
CAVITY_WALL_MM = 12.0
CREST_BLEND_MM = 40.0
#: the pad stops this far inside the table's edges, mm.
PAD_INSET_MM = 10.0
#: a leg further than this above the table gets a foam cushion under it, mm.
CUSHION_MIN_GAP_MM = 8.0


def _smin(a: F32, b: F32, k: float) -> F32:
    """Polynomial smooth minimum of two distance fields (radius ``k`` mm)."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * (k * 0.25)


def _threshold_for_fraction(values: F32, frac: float, ramp: float) -> float:
    """Threshold t such that mean(clip((values - t) / ramp, 0, 1)) is about ``frac``."""
    lo, hi = float(values.min()) - ramp, float(values.max())
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if np.clip((values - mid) / ramp, 0, 1).mean() > frac:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class SoftTissueRenderer:
    """Renders the soft tissue of one case slice by slice on a grid."""

    def __init__(
        self,
        body: BodyModel,
        t: CaseTissues,
        grid: RenderGrid,
        rng: np.random.Generator,
        pelvis: MaskCrop | None,
    ) -> None:
        """Prepare the random fields and the table section.

        Args:
            body: the case's body model (world RAS+ mm).
            t: the case's tissue draw.
            grid: the axis-aligned render grid.
            rng: random generator.
            pelvis: the pelvis voxelised on ``grid`` (for the muscle around it), or None.
        """
        self.body, self.t, self.grid, self.pelvis = body, t, grid, pelvis
        self.x = grid.axis(0).astype(np.float32)[:, None]
        self.y = grid.axis(1).astype(np.float32)[None, :]
        self.z = grid.axis(2)
        org, sp = grid.origin, grid.spacing
        self.marbling = SliceField(rng, org, sp, grid.shape, MARBLING_STEP)
        self.bowel = SliceField(rng, org, sp, grid.shape, BOWEL_STEP)
        self.gas = SliceField(rng, org, sp, grid.shape, GAS_STEP)
        # Intramuscular fat lies along the zero set of a smooth field: thin curved sheets
        # (planes between muscle bundles) rather than blobs; P(|F| < w) ~ 0.8 w.
        self.marb_w = np.float32(max(t.marbling, 1e-3) / 0.8)
        self.gas_thr = _threshold_for_fraction(self.gas._coarse, t.gas_fraction, 0.05)
        self.table_hu, self.table_cls = self._table_section()
        self.abdomen: AbdomenPainter | None = None
        sp_, org_ = body.spine, body.organs
        if sp_ is not None and org_ is not None and reaches(sp_, org_, float(self.z[-1])):
            stool = SliceField(rng, org, sp, grid.shape, STOOL_STEP)
            self.abdomen = AbdomenPainter(body, sp_, org_, t, stool)
        self.thorax: ThoraxPainter | None = None
        chest = body.thorax
        if chest is not None and self.abdomen is not None and float(self.z[-1]) > chest.bottom_z:
            # drawn after every other field, so cases without a chest are unchanged
            lung = SliceField(rng, org, sp, grid.shape, LUNG_VESSEL_STEP)
            self.thorax = ThoraxPainter(chest, partial(body.at, body.trunk), t, lung)
        self.rest = body.table.rest(self.x.astype(np.float64)).astype(np.float32)
        # Muscle stops a skin and a compressed fat layer above the support.
        self.rest_m = self.rest + np.float32(t.skin_mm + body.table.contact_fat)
        self.rest_j = int((float(self.rest.min()) - grid.origin[1]) / grid.spacing[1])

    def _table_section(self) -> tuple[F32, npt.NDArray[np.uint8]]:
        """HU and class of the table and pad cross-section (the same on every slice)."""
        tb, t = self.body.table, self.t
        x = self.x.astype(np.float64)
        y = self.y.astype(np.float64)
        top = tb.top(x)
        half = tb.width / 2
        inside_w = np.abs(x - tb.xc) <= half
        slab = inside_w & (y <= top) & (y >= top - tb.thickness)
        skin = slab & (
            (y > top - tb.top_skin)
            | (y < top - tb.thickness + tb.bottom_skin)
            | (np.abs(x - tb.xc) > half - tb.bottom_skin)
        )
        pad_w = np.abs(x - tb.xc) <= half - PAD_INSET_MM
        pad = pad_w & (y > top) & (y <= top + tb.mattress_mm)
        cover = pad & (y > top + tb.mattress_mm - tb.cover_mm)
        cls = np.zeros((x.shape[0], y.shape[1]), dtype=np.uint8)
        hu = np.full(cls.shape, t.air, dtype=np.float32)
        for where, c, v in (
            (slab, Tissue.TABLE_FOAM, t.table_foam),
            (skin, Tissue.TABLE_SHELL, t.table_shell),
            (pad, Tissue.TABLE_FOAM, t.mattress),
            (cover, Tissue.TABLE_FOAM, t.pad_cover),
        ):
            np.copyto(cls, np.uint8(c), where=where)
            np.copyto(hu, np.float32(v), where=where)
        return hu, cls

    def _bbox(
        self, p: Profile, z: float
    ) -> tuple[tuple[float, ...], tuple[int, int, int, int]] | None:
        """Ellipse parameters at height z and their index box (i0, i1, j0, j1) on the grid."""
        cx, cy, a, bb, fat = self.body.at(p, z)
        if a <= 1.0 or bb <= 1.0:
            return None
        reach = max(a, bb) + fat * (1.0 + float(np.abs(p.fourier).sum())) + UNION_MM
        g = self.grid
        i0 = max(int((cx - reach - g.origin[0]) / g.spacing[0]), 0)
        i1 = min(int((cx + reach - g.origin[0]) / g.spacing[0]) + 2, g.shape[0])
        j0 = max(int((cy - reach - g.origin[1]) / g.spacing[1]), 0)
        j1 = min(int((cy + reach - g.origin[1]) / g.spacing[1]) + 2, g.shape[1])
        if i1 <= i0 or j1 <= j0:
            return None
        return (cx, cy, a, bb, fat), (i0, i1, j0, j1)

    def _index_box(
        self, lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64]
    ) -> tuple[int, int, int, int] | None:
        """Grid index box (i0, i1, j0, j1) over world (x, y) bounds, or None off the grid."""
        g = self.grid
        i0 = max(int((lo[0] - g.origin[0]) / g.spacing[0]), 0)
        i1 = min(int((hi[0] - g.origin[0]) / g.spacing[0]) + 2, g.shape[0])
        j0 = max(int((lo[1] - g.origin[1]) / g.spacing[1]), 0)
        j1 = min(int((hi[1] - g.origin[1]) / g.spacing[1]) + 2, g.shape[1])
        return None if i1 <= i0 or j1 <= j0 else (i0, i1, j0, j1)

    def _structure(
        self,
        p: Profile,
        par: tuple[float, ...],
        box: tuple[int, int, int, int],
        win: tuple[int, int],
        m: F32,
        b: F32,
        septa: npt.NDArray[np.bool_] | None,
    ) -> tuple[tuple[slice, slice], F32, F32]:
        """Add one ellipse (leg or trunk) into the window's muscle/body distance maps."""
        cx, cy, a, bb, fat = par
        i0, i1, j0, j1 = box
        sl = (slice(i0 - win[0], i1 - win[0]), slice(j0 - win[1], j1 - win[1]))
        dx = (self.x[i0:i1] - np.float32(cx)) * np.float32(p.lat)
        dy = self.y[:, j0:j1] - np.float32(cy)
        d = np.sqrt(dx * dx + dy * dy) + np.float32(1e-3)
        rho = np.sqrt((dx / np.float32(a)) ** 2 + (dy / np.float32(bb)) ** 2) + np.float32(1e-6)
        sdf_m = d - d / rho
        c, s = dx / d, dy / d
        f1, f2, f3, f4 = (np.float32(v) for v in p.fourier)
        mod = 1.0 + f1 * c + f2 * s + f3 * (c * c - s * s) + f4 * (2 * c * s)
        sdf_b = sdf_m - np.float32(fat) * np.maximum(mod, np.float32(0.3))
        m[sl] = _smin(m[sl], sdf_m, UNION_MM)
        b[sl] = _smin(b[sl], sdf_b, UNION_MM)
        if septa is not None and len(p.septa):
            r_bone = np.float32(0.35 * min(a, bb))
            w = np.float32(self.t.fascia_mm / 2)
            for phi in p.septa:
                cp, sp = np.float32(np.cos(phi)), np.float32(np.sin(phi))
                along = dx * cp + dy * sp
                perp = np.abs(dx * sp - dy * cp)
                septa[sl] |= (perp < w) & (along > r_bone) & (sdf_m < 0)
        return sl, sdf_m, s

    def render_slice(self, k: int, hu: F32, cls: npt.NDArray[np.uint8]) -> None:
        """Fill slice ``k`` of the grid.

        Args:
            k: slice index along the grid's z axis.
            hu: float32 (X, Y) output, HU, written in place.
            cls: uint8 (X, Y) output, :class:`Tissue` values, written in place.
        """
        t, z = self.t, float(self.z[k])
        hu[...] = self.table_hu
        cls[...] = self.table_cls
        parts = [(p, self._bbox(p, z)) for p in (*self.body.legs.values(), self.body.trunk)]
        live = [(p, bx) for p, bx in parts if bx is not None]
        arms = []
        for arm in self.body.arms:
            wb = arm.slice_box(z)
            ib = None if wb is None else self._index_box(*wb)
            if ib is not None:
                arms.append((arm, ib))
        if not live and not arms:
            return
        boxes = np.array([bx[1] for _, bx in live] + [ib for _, ib in arms])
        i0, i1 = int(boxes[:, 0].min()), int(boxes[:, 1].max())
        j0, j1 = int(boxes[:, 2].min()), int(boxes[:, 3].max())
        # Down to the table, for the cushions under raised legs.
        j0 = max(min(j0, self.rest_j), 0)
        win = (i0, j0)
        shape = (i1 - i0, j1 - j0)
        m = np.full(shape, _BIG, dtype=np.float32)
        b = np.full(shape, _BIG, dtype=np.float32)
        septa = np.zeros(shape, dtype=bool)
        trunk = None
        for p, (par, box) in live:
            is_trunk = p is self.body.trunk
            r = self._structure(p, par, box, win, m, b, None if is_trunk else septa)
            if is_trunk:
                trunk = r
        for arm, (a0, a1, b0, b1) in arms:  # a plain union: an arm touches, never merges
            arm_m, arm_b = arm.outline(self.x[a0:a1], self.y[:, b0:b1], z)
            sl = (slice(a0 - i0, a1 - i0), slice(b0 - j0, b1 - j0))
            np.minimum(m[sl], arm_m, out=m[sl])
            np.minimum(b[sl], arm_b, out=b[sl])
        y = self.y[:, j0:j1]
        b = np.maximum(b, self.rest[i0:i1] - y)  # the back flattened on the table
        m = np.maximum(m, self.rest_m[i0:i1] - y)
        body = b < 0
        muscle = body & (m < 0)
        hw, cw = hu[i0:i1, j0:j1], cls[i0:i1, j0:j1]
        np.copyto(hw, t.fat, where=body)
        np.copyto(cw, np.uint8(Tissue.FAT), where=body)
        fm = self.marbling.slice(k, i0, i1, j0, j1)
        frac = np.clip((self.marb_w - np.abs(fm)) / (0.5 * self.marb_w), 0.0, 1.0)
        mus_hu = np.float32(t.muscle) + np.float32(t.fat - t.muscle) * frac
        np.copyto(hw, mus_hu, where=muscle)
        np.copyto(cw, np.uint8(Tissue.MUSCLE), where=muscle & (frac <= 0.5))
        fascia = septa & muscle
        np.copyto(hw, t.fat, where=fascia)
        np.copyto(cw, np.uint8(Tissue.FAT), where=fascia)
        if trunk is not None and z > self.body.pelvis_bottom_z:
            self._pelvic_cavity(k, z, trunk, win, m, hw, cw)
        if self.body.vessels is not None:
            inner = body & (b <= -t.skin_mm)
            self.body.vessels.paint(z, self.x[i0:i1, 0], self.y[0, j0:j1], inner, hw, cw)
        skin = body & (b > -t.skin_mm)
        np.copyto(hw, t.skin, where=skin)
        np.copyto(cw, np.uint8(Tissue.SKIN), where=skin)
        self._cushions(z, win, body, hw, cw)

    def _cushions(
        self,
        z: float,
        win: tuple[int, int],
        body: npt.NDArray[np.bool_],
        hu: F32,
        cls: npt.NDArray[np.uint8],
    ) -> None:
        """Foam supports under legs that do not rest on the table (flexed hips or knees)."""
        i0, j0 = win
        x = self.x[i0 : i0 + body.shape[0]]
        y = self.y[:, j0 : j0 + body.shape[1]]
        rest_w = self.rest[i0 : i0 + body.shape[0]]
        for p in self.body.legs.values():
            cx, cy, a, bb, fat = self.body.at(p, z)
            if a <= 1.0:
                continue
            back = cy - bb - fat * 0.8
            rest = float(self.body.table.rest(np.array([cx]))[0])
            if back - rest < CUSHION_MIN_GAP_MM:
                continue
            reg = (
                (np.abs(x - np.float32(cx)) < 0.7 * (a + fat))
                & (y > rest_w)
                & (y < np.float32(cy))
                & ~body
            )
            np.copyto(hu, self.t.mattress, where=reg)
            np.copyto(cls, np.uint8(Tissue.TABLE_FOAM), where=reg)

    def _pelvic_cavity(
        self,
        k: int,
        z: float,
        trunk: tuple[tuple[slice, slice], F32, F32],
        win: tuple[int, int],
        m: F32,
        hu: F32,
        cls: npt.NDArray[np.uint8],
    ) -> None:
        """Visceral fat, bowel and bladder inside the trunk's muscular wall (window arrays)."""
        t = self.t
        sl, sdf, s = trunk
        # Thick gluteal and iliopsoas muscle behind and beside the pelvis; above the iliac
        # crests only the thin abdominal wall (the abdomen painter adds the back muscles).
        post = np.float32(t.gluteal_mm - CAVITY_WALL_MM)
        org = self.body.organs
        if org is not None:
            post *= np.float32(np.clip((org.crest_z + CREST_BLEND_MM - z) / CREST_BLEND_MM, 0, 1))
        wall = np.float32(CAVITY_WALL_MM) + post * (0.5 - 0.5 * s)
        cav = (sdf < -wall) & (m[sl] < -wall)
        if not cav.any():
            return
        wsl = (slice(win[0], win[0] + hu.shape[0]), slice(win[1], win[1] + hu.shape[1]))
        if self.pelvis is not None:
            near_full = self._near_pelvis(k)
            if near_full is not None:
                near = near_full[wsl]
                cav &= ~near[sl]
                region_m = near & (cls != Tissue.SKIN) & (m < 0)
                np.copyto(hu, t.muscle, where=region_m)
                np.copyto(cls, np.uint8(Tissue.MUSCLE), where=region_m)
        hu_s, cls_s = hu[sl], cls[sl]
        np.copyto(hu_s, t.fat, where=cav)
        np.copyto(cls_s, np.uint8(Tissue.FAT), where=cav)
        gi = (sl[0].start + win[0], sl[0].stop + win[0])
        gj = (sl[1].start + win[1], sl[1].stop + win[1])
        x = self.x[gi[0] : gi[1]]
        y = self.y[:, gj[0] : gj[1]]
        bc, ba = self.body.bladder_centre, self.body.bladder_axes
        q = (
            ((x - bc[0]) / ba[0]) ** 2
            + ((y - bc[1]) / ba[1]) ** 2
            + np.float32(((z - bc[2]) / ba[2]) ** 2)
        )
        bladder = cav & (q < 1.0)
        if z > bc[2] - ba[2]:
            f = self.bowel.slice(k, gi[0], gi[1], gj[0], gj[1])
            loop = cav & ~bladder & (q > 1.3) & (f > BOWEL_THRESHOLD)
            lumen = loop & (f > BOWEL_THRESHOLD + BOWEL_WALL)
            np.copyto(hu_s, t.bowel + 10.0, where=loop)
            np.copyto(cls_s, np.uint8(Tissue.BOWEL), where=loop)
            np.copyto(hu_s, t.bowel + 12.0 * f, where=lumen)
            # Gas rises to the anterior (non-dependent) side of a supine patient.
            ant = (y - np.float32(bc[1])) / np.float32(100.0)
            g = self.gas.slice(k, gi[0], gi[1], gj[0], gj[1])
            gas = lumen & (g + ant > self.gas_thr)
            np.copyto(hu_s, t.gas, where=gas)
            np.copyto(cls_s, np.uint8(Tissue.GAS), where=gas)
        np.copyto(hu_s, t.fluid, where=bladder)
        np.copyto(cls_s, np.uint8(Tissue.FLUID), where=bladder)
        if self.abdomen is not None and self.abdomen.reaches(z):
            self.abdomen.paint(k, z, x, y, cav, m[sl] < 0, hu_s, cls_s, (*gi, *gj))
        if self.thorax is not None and self.thorax.reaches(z):
            self.thorax.paint(k, z, x, y, cav, hu_s, cls_s, (*gi, *gj))

    def _near_pelvis(self, k: int) -> npt.NDArray[np.bool_] | None:
        """Pixels of slice k within PELVIC_MUSCLE_MM of the pelvic bones (2D distance)."""
        crop = self.pelvis
        assert crop is not None
        sx, sy, sz = crop.slices
        if not (sz.start <= k < sz.stop) or crop.mask.size == 0:
            return None
        sl2 = crop.mask[:, :, k - sz.start]
        if not sl2.any():
            return None
        g = self.grid
        # Coarse is enough for a muscle boundary: distance on a grid about 3 mm apart.
        q = max(1, int(round(PELVIC_EDT_MM / min(g.spacing[:2]))))
        pad = (int(np.ceil(PELVIC_MUSCLE_MM / min(g.spacing[:2]))) // q + 2) * q
        i0, j0 = max(sx.start - pad, 0), max(sy.start - pad, 0)
        i1, j1 = min(sx.stop + pad, g.shape[0]), min(sy.stop + pad, g.shape[1])
        ni, nj = -(-(i1 - i0) // q) * q, -(-(j1 - j0) // q) * q
        local = np.zeros((ni, nj), dtype=bool)
        local[sx.start - i0 : sx.stop - i0, sy.start - j0 : sy.stop - j0] = sl2
        low = local.reshape(ni // q, q, nj // q, q).any(axis=(1, 3))
        d = ndi.distance_transform_edt(~low, sampling=(g.spacing[0] * q, g.spacing[1] * q))
        near = np.repeat(np.repeat(d < PELVIC_MUSCLE_MM, q, axis=0), q, axis=1)
        out = np.zeros(g.shape[:2], dtype=bool)
        out[i0:i1, j0:j1] = near[: i1 - i0, : j1 - j0]
        return out
