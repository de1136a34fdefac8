"""Abdomen above the pelvis: retroperitoneum, organs and colon, painted slice by slice.

All unlabelled (label 0). Placed once per case from the lumbar spine (:mod:`spine`) and the
trunk outline, then painted into each axial slice over the visceral fat and small-bowel loops
that :class:`~femurseg.phantoms.tissues.softtissue.SoftTissueRenderer` has already laid down,
in this order: back muscles (erector spinae, quadratus lumborum) behind the vertebral bodies, psoas
beside them, retroperitoneal fat with the aorta and inferior vena cava in front, kidneys in
perirenal fat (renal sinus fat at the hilum), liver (right upper quadrant, lower edge rising
medially) and spleen (left, high), the colon (ascending, descending, transverse) with mottled
stool and gas, and the intervertebral discs. World RAS+ mm: +x is the patient's right.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from femurseg.phantoms.tissues.body import BodyModel
from femurseg.phantoms.tissues.materials import CaseTissues, Put, SliceField, Tissue, painter
from femurseg.phantoms.tissues.organs import (
    COLON_BELOW_CREST_MM,
    PSOAS_BELOW_S1_MM,
    Organs,
    reaches,
)
from femurseg.phantoms.tissues.slabs import ellipse as _ellipse
from femurseg.phantoms.tissues.spine import Spine, disc_mask

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]

#: the psoas moves laterally and anteriorly by these fractions of its drop below S1.
PSOAS_DRIFT = (0.45, 0.35)
#: the psoas at L1 is this fraction of its L5 radius.
PSOAS_TOP_FRACTION = 0.35
#: the back muscles fill behind this fraction of the vertebral body depth, out to this
#: fraction of the cavity half-width.
BACK_DEPTH_FRACTION = 0.4
BACK_WIDTH_FRACTION = 0.5
#: centre of the back muscles' elliptic section behind the vertebral body, mm.
BACK_CENTRE_MM = 30.0
#: retroperitoneal fat in front of the spine: depth in front of the vertebral body, mm.
RETRO_FRONT_MM = 30.0
#: kidney width and depth as fractions of its half-length; perirenal fat scale; renal sinus.
KIDNEY_SHAPE = (0.45, 0.35)
PERIRENAL_SCALE = 1.35
#: kidney centres lie this many vertebral-body semi-depths behind the body's centre.
KIDNEY_BACK = 0.7
SINUS_SCALE = 0.45
#: height over which the liver's lower edge rises from its lateral tip to its full width,
#: mm, and that width (from the right wall to this fraction of the half-width past the
#: midline).
LIVER_RISE_MM = 150.0
LIVER_LEFT_REACH = 0.25
#: colon wall thickness (mm); stool texture lattice (mm); fraction of stool that is gas.
COLON_WALL_MM = 2.5
STOOL_STEP = (4.0, 4.0, 4.0)
STOOL_GAS = 0.8
#: cavity wall (abdominal muscles) between the trunk outline and the cavity, mm.
WALL_MM = 12.0


class AbdomenPainter:
    """Paints the abdominal contents of one case into axial slices."""

    def __init__(
        self, body: BodyModel, spine: Spine, organs: Organs, t: CaseTissues, stool: SliceField
    ) -> None:
        """Args: the body model, spine and organs (world mm), the tissue draw, and a
        :class:`~femurseg.phantoms.tissues.materials.SliceField` for the stool texture."""
        self.body, self.spine, self.o, self.t, self.stool = body, spine, organs, t, stool
        vs = spine.vertebrae
        self.vz = np.array([x.centre[2] for x in vs])
        self.vy = np.array([x.centre[1] for x in vs])
        self.vrx = np.array([x.rx for x in vs])
        self.vry = np.array([x.ry for x in vs])
        self.s1 = spine.s1_top
        self.stool_thr = float(np.quantile(stool._coarse, STOOL_GAS))

    def reaches(self, z: float) -> bool:
        """Whether slice height z (mm) holds anything this painter draws."""
        return reaches(self.spine, self.o, z)

    def paint(
        self,
        k: int,
        z: float,
        x: F32,
        y: F32,
        cav: B,
        inside: B,
        hu: F32,
        cls: npt.NDArray[np.uint8],
        win: tuple[int, int, int, int],
    ) -> None:
        """Paint slice k (height z mm) over a window: x (n, 1) and y (1, m) world mm, the
        cavity and inside-the-muscle masks, HU and class arrays (n, m), all modified in place;
        ``win`` is the window's (i0, i1, j0, j1) on the grid (for the stool texture)."""
        t, o = self.t, self.o
        cx_t, cy_t, a_t, b_t, _ = self.body.at(self.body.trunk, z)
        hw = max(a_t - WALL_MM, 1.0)
        cx = float(self.s1[0])
        above = z >= self.s1[2]
        if above:
            cy = float(np.interp(z, self.vz, self.vy))
            rx = float(np.interp(z, self.vz, self.vrx))
            ry = float(np.interp(z, self.vz, self.vry))
        else:
            cy, rx, ry = float(self.vy[0]), float(self.vrx[0]), float(self.vry[0])

        put = painter(hu, cls)

        frac = np.clip((self.spine.top_z - z) / max(self.spine.top_z - self.s1[2], 1.0), 0, 1)
        r_ps = o.psoas_mm * (PSOAS_TOP_FRACTION + (1 - PSOAS_TOP_FRACTION) * frac)
        drop = max(float(self.s1[2]) - z, 0.0)
        if above:
            # Back muscles (erector spinae, quadratus lumborum) around the posterior elements;
            # retroperitoneal fat beside them and in front of the spine, around the vessels.
            back = (
                _ellipse(
                    x,
                    y,
                    cx,
                    cy - ry - BACK_CENTRE_MM,
                    BACK_WIDTH_FRACTION * hw,
                    ry + BACK_CENTRE_MM,
                )
                < 1
            )
            behind = y < np.float32(cy - BACK_DEPTH_FRACTION * ry)
            retro = (np.abs(x - np.float32(cx)) < np.float32(rx + 2.5 * r_ps)) & (
                y < np.float32(cy + ry + RETRO_FRONT_MM)
            )
            put(cav & (behind | retro), t.fat, Tissue.FAT)
            put(cav & behind & back, t.muscle, Tissue.MUSCLE)
            ao = _ellipse(x, y, cx - 0.35 * rx, cy + ry + o.aorta_mm + 2.0, o.aorta_mm, o.aorta_mm)
            ivc = _ellipse(
                x,
                y,
                cx + 0.6 * rx,
                cy + ry + 0.8 * o.aorta_mm + 2.0,
                1.3 * o.aorta_mm,
                0.8 * o.aorta_mm,
            )
            put(cav & ((ao < 1) | (ivc < 1)), t.blood, Tissue.ORGAN)
        if drop < PSOAS_BELOW_S1_MM:
            for s in (-1.0, 1.0):
                px = cx + s * (rx + 0.75 * r_ps + PSOAS_DRIFT[0] * drop)
                ps = _ellipse(x, y, px, cy - 0.1 * ry + PSOAS_DRIFT[1] * drop, 0.9 * r_ps, r_ps)
                put(inside & (ps < 1), t.muscle, Tissue.MUSCLE)
        self._liver_spleen(z, x, y, cx_t, hw, cy, ry, b_t, cav, put)
        if above:
            self._kidneys(z, x, y, cx, cy, rx, ry, cav, put)
        self._colon(k, z, x, y, cx_t, cy_t, hw, b_t, cav, put, win)
        self._discs(z, x, y, inside, put)

    def _kidneys(
        self, z: float, x: F32, y: F32, cx: float, cy: float, rx: float, ry: float, cav: B, put
    ) -> None:  # type: ignore[no-untyped-def]
        o, t = self.o, self.t
        kl = o.kidney_mm
        kw, kd = KIDNEY_SHAPE[0] * kl, KIDNEY_SHAPE[1] * kl
        for s, kz in ((-1.0, o.kidney_z[0]), (1.0, o.kidney_z[1])):
            dz2 = ((z - kz) / kl) ** 2
            if dz2 >= PERIRENAL_SCALE**2:
                continue
            kx = cx + s * (rx + 1.6 * o.psoas_mm + kw)
            ky = cy - KIDNEY_BACK * ry
            q = _ellipse(x, y, kx, ky, kw, kd) + np.float32(dz2)
            put(cav & (q < PERIRENAL_SCALE**2), t.fat, Tissue.FAT)
            put(cav & (q < 1.0), t.kidney, Tissue.ORGAN)
            sx = kx - s * 0.45 * kw
            sq = _ellipse(x, y, sx, ky + 0.15 * kd, SINUS_SCALE * kw, SINUS_SCALE * kd)
            put(cav & (q < 1.0) & (sq + np.float32(dz2 / SINUS_SCALE) < 1.0), t.fat, Tissue.FAT)

    def _liver_spleen(
        self,
        z: float,
        x: F32,
        y: F32,
        cx: float,
        hw: float,
        cy: float,
        ry: float,
        b_t: float,
        cav: B,
        put: Put,
    ) -> None:
        o, t = self.o, self.t
        if z > o.liver_tip_z:
            # Lower edge: the lateral tip first, then rising towards (and past) the midline.
            reach = np.clip((z - o.liver_tip_z) / LIVER_RISE_MM, 0.0, 1.0)
            ux = (x - np.float32(cx)) / np.float32(hw)
            edge = np.float32(1.0 - (1.0 + LIVER_LEFT_REACH) * reach)
            put(cav & (ux > edge) & (y > np.float32(cy - ry)), t.liver, Tissue.ORGAN)
        sz = 1.0 - ((z - o.spleen_z) / 60.0) ** 2
        if sz > 0:
            q = _ellipse(x, y, cx - 0.72 * hw, cy + 0.05 * b_t, 0.28 * hw, 0.35 * b_t)
            put(cav & (q < sz), t.spleen, Tissue.ORGAN)

    def _colon(
        self,
        k: int,
        z: float,
        x: F32,
        y: F32,
        cx: float,
        cy_t: float,
        hw: float,
        b_t: float,
        cav: B,
        put: Put,
        win: tuple[int, int, int, int],
    ) -> None:
        o, t = self.o, self.t
        r = o.colon_mm
        tubes = []
        if o.crest_z - COLON_BELOW_CREST_MM[0] < z < o.liver_tip_z + r:  # ascending (right)
            tubes.append(_ellipse(x, y, cx + 0.74 * hw, cy_t - 0.1 * b_t, r, r))
        if o.crest_z - COLON_BELOW_CREST_MM[1] < z < o.spleen_z:  # descending (left)
            tubes.append(_ellipse(x, y, cx - 0.78 * hw, cy_t - 0.1 * b_t, 0.8 * r, 0.8 * r))
        ux = (x - np.float32(cx)) / np.float32(hw)
        zc = np.float32(o.transverse_z) - np.float32(30.0) * (1 - ux * ux)  # sags in the middle
        tr = ((np.float32(z) - zc) / np.float32(r)) ** 2 + (
            (y - np.float32(cy_t + 0.5 * b_t)) / np.float32(r)
        ) ** 2
        tubes.append(np.where(np.abs(ux) < 0.8, tr, np.float32(9.0)))
        d = np.minimum.reduce(tubes) if len(tubes) > 1 else tubes[0]
        colon = cav & (d < 1.0)
        if not colon.any():
            return
        wall = colon & (d > np.float32((1.0 - COLON_WALL_MM / r) ** 2))
        put(colon, t.stool, Tissue.BOWEL)
        i0, i1, j0, j1 = win
        f = self.stool.slice(k, i0, i1, j0, j1)
        ant = (y - np.float32(cy_t)) / np.float32(2.0 * b_t)  # gas rises anteriorly
        put(colon & ~wall & (f + ant > np.float32(self.stool_thr)), t.gas, Tissue.GAS)
        put(wall, t.bowel + 10.0, Tissue.BOWEL)

    def _discs(self, z: float, x: F32, y: F32, inside: B, put: Put) -> None:
        for disc, v in zip(self.spine.discs, self.spine.vertebrae, strict=True):
            m = disc_mask(disc, v, z, x, y)
            if m is not None:
                put(inside & m, self.t.disc, Tissue.ORGAN)
