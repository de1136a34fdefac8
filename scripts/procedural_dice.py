"""Dice per side of model candidates on fixed procedural full lower-limb phantoms.

The phantoms are those of ``make demo`` (seed 7, 1 x 1 x 1.5 mm) and of the golden test
(``tests/test_model_golden.py``: seed 21, 1.5 x 1.5 x 2 mm, no implant), made once in memory and
scored for each candidate (NAME=STAGE1.pt:STAGE2.pt, either may be ``shipped``)::

    python scripts/procedural_dice.py v3=shipped:shipped v2=OLD_S1.pt:OLD_S2.pt
"""

from __future__ import annotations

import sys

import numpy as np

from femurseg.evaluation.metrics import overlap_metrics
from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import FovKind, ImplantParams, PhantomConfig
from femurseg.pipeline import Predictor

NO_IMPLANT = ImplantParams(hip_probability=0.0, knee_probability=0.0, fixation_probability=0.0)
CASES = {
    "demo (seed 7)": (PhantomConfig(fov=FovKind.FULL, spacing=(1.0, 1.0, 1.5)), 7),
    "golden (seed 21)": (
        PhantomConfig(fov=FovKind.FULL, spacing=(1.5, 1.5, 2.0), implants=NO_IMPLANT),
        21,
    ),
}


def main() -> None:
    specs = sys.argv[1:] or ["shipped=shipped:shipped"]
    cases = {n: generate_case(c, np.random.default_rng(s), None) for n, (c, s) in CASES.items()}
    for spec in specs:
        name, weights = spec.split("=", 1)
        s1, s2 = (None if w == "shipped" else w for w in weights.split(":"))
        predictor = Predictor(s1, s2)
        parts = []
        for label, case in cases.items():
            pred = predictor.predict(case.image)
            dice = [overlap_metrics(pred.labels == v, case.labels == v)["dice"] for v in (1, 2)]
            parts.append(f"{label} left {dice[0]:.3f} right {dice[1]:.3f}")
        print(f"{name}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
