"""Where the abdominal organs of one case sit: sizes and heights drawn from its spine and
iliac crest (world RAS+ mm), before anything is painted.

The body model (:mod:`~femurseg.phantoms.tissues.body`) carries an :class:`Organs`; the painter
(:mod:`~femurseg.phantoms.tissues.abdomen`) draws them into slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femurseg.phantoms.params import TrunkParams
from femurseg.phantoms.tissues.materials import draw
from femurseg.phantoms.tissues.spine import Spine

#: the psoas runs this far below S1 (to the pelvic brim, where the iliacus takes over), mm.
PSOAS_BELOW_S1_MM = 70.0
#: the right kidney sits this much lower than the left (under the liver), mm.
RIGHT_KIDNEY_DROP_MM = 15.0
#: the caecum and ascending colon start this far below the iliac crest, the descending colon
#: a little higher, mm.
COLON_BELOW_CREST_MM = (40.0, 20.0)


@dataclass(frozen=True)
class Organs:
    """Per-case sizes and heights of the abdominal contents (world mm)."""

    psoas_mm: float
    kidney_mm: float
    kidney_z: tuple[float, float]  # left, right
    liver_tip_z: float
    spleen_z: float
    colon_mm: float
    transverse_z: float
    aorta_mm: float
    crest_z: float

    def to_meta(self) -> dict[str, float | list[float]]:
        """JSON-ready, rounded."""
        return {
            k: ([round(x, 1) for x in v] if isinstance(v, tuple) else round(v, 1))
            for k, v in self.__dict__.items()
        }


def place_organs(spine: Spine, crest_z: float, p: TrunkParams, rng: np.random.Generator) -> Organs:
    """Draw the abdominal organs of one case relative to its spine and iliac crest (mm)."""
    v = spine.vertebrae
    l1_l2 = 0.5 * (v[-1].centre[2] + v[-2].centre[2])
    return Organs(
        psoas_mm=draw(rng, p.psoas_mm),
        kidney_mm=draw(rng, p.kidney_mm),
        kidney_z=(l1_l2, l1_l2 - RIGHT_KIDNEY_DROP_MM),
        liver_tip_z=crest_z + draw(rng, p.liver_below_crest_mm),
        spleen_z=spine.top_z + float(rng.uniform(0.0, 40.0)),
        colon_mm=draw(rng, p.colon_mm),
        transverse_z=crest_z + float(rng.uniform(20.0, 90.0)),
        aorta_mm=draw(rng, p.aorta_mm),
        crest_z=crest_z,
    )


def reaches(spine: Spine, organs: Organs, z: float) -> bool:
    """Whether height z (mm) holds any abdominal content (psoas, colon or above)."""
    return z > min(spine.s1_top[2] - PSOAS_BELOW_S1_MM, organs.crest_z - COLON_BELOW_CREST_MM[0])
