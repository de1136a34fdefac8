"""The femur check's companion rule measured on true bones: femurs must pass, tibiae must not.

The rule (:func:`femurseg.segmentation.checks.companion_run`) calls a mask a tibia when a
slender bone runs beside its lateral side over enough of its length, as the fibula does. This
script generates phantom cases with whole legs in view (the LLP26 subjects' real tibiae and
fibulae, posed and rendered with the training generator's scanner variety), and reports for
each case and side:

* the **true femur**: mm and fraction of its length with a companion (must stay under the
  rule's limits: a femur called a tibia would be removed);
* the **true tibia** (the posed tibia-fibula mesh voxelized, and in each slice only its largest
  piece kept, so the fibula is left out as stage 2 would leave it): the same (should reach the
  limits: that is the tibia the rule must reject);
* and the same tibia cut to its top half or third (a lower-leg view's mask of the proximal
  tibia).

It also scores the true femurs of existing phantom folders (``--folders``; labels only, no
network), which have every field of view the training sets have. Usage::

    python scripts/companion_rule.py --shapes ../shared/shapes/llp26 --n 8 --seed 1 \\
        [--folders /work/data/valall ...]

Prints one line per bone and a summary; exits 1 if any femur would be rejected.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from femurseg.io import read_volume
from femurseg.io.read import read_labels
from femurseg.phantoms.anatomy.voxelize import voxelize
from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import PhantomConfig
from femurseg.phantoms.scanner.fov import FovKind
from femurseg.preprocessing.grid import Grid
from femurseg.segmentation.checks import (
    FemurCheckRules,
    Surround,
    companion_run,
    largest_piece_per_slice,
)
from femurseg.types import Label

RULES = FemurCheckRules()


def _score(
    hu: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
    labelled: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    side: Label,
) -> tuple[float, float, bool]:
    lateral = 1.0 if side == Label.FEMUR_RIGHT else -1.0
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    zz = slice(int(zs[0]), int(zs[-1]) + 1)
    mm, frac = companion_run(
        Surround(hu[:, :, zz], mask[:, :, zz], labelled[:, :, zz]), spacing, lateral, RULES
    )
    return mm, frac, RULES.companion_says_tibia(mm, frac)


def phantoms(shapes: Path, n: int, seed: int) -> tuple[int, int, int]:
    cfg = PhantomConfig(fov=FovKind.FULL, max_voxels_m=150.0)
    cfg = replace(cfg, exclude_subjects=())
    femurs_bad = tibiae_caught = tibiae = 0
    for i, ss in enumerate(np.random.SeedSequence(seed).spawn(n)):
        case = generate_case(cfg, np.random.default_rng(ss), shapes)
        hu = case.image.array
        grid = Grid.of(case.image)
        sp = grid.spacing
        for side, name in ((Label.FEMUR_LEFT, "left"), (Label.FEMUR_RIGHT, "right")):
            femur = case.labels == int(side)
            if femur.sum() * grid.voxel_ml < 10:
                continue
            mm, frac, rej = _score(hu, femur, case.labels != 0, sp, side)
            femurs_bad += rej
            print(f"case {i} {name} femur: {mm:5.0f} mm {frac:4.2f}{'  REJECTED' if rej else ''}")
            tib = np.zeros(grid.shape, dtype=np.uint8)
            voxelize(case.anatomy.meshes[f"tibfib_{name}"], grid.affine, grid.shape).paste(tib, 1)
            tibia = largest_piece_per_slice(tib.astype(bool))
            if tibia.sum() * grid.voxel_ml < 10:
                continue
            zs = np.flatnonzero(tibia.any(axis=(0, 1)))
            half, third = tibia.copy(), tibia.copy()
            half[:, :, : zs[len(zs) // 2]] = False
            third[:, :, : zs[2 * len(zs) // 3]] = False
            for what, m in (("tibia", tibia), ("tibia top half", half), ("tibia top third", third)):
                mm, frac, rej = _score(hu, m, m | (case.labels != 0), sp, side)
                tibiae += 1
                tibiae_caught += rej
                verdict = "rejected" if rej else "KEPT"
                print(f"case {i} {name} {what}: {mm:5.0f} mm {frac:4.2f} {verdict}")
    return femurs_bad, tibiae_caught, tibiae


def folders(paths: list[Path]) -> tuple[int, int]:
    bad = total = 0
    for folder in paths:
        for img in sorted((folder / "images").glob("*.nii.gz")):
            vol = read_volume(img)
            lab = read_labels(folder / "labels" / img.name, like=vol)[0]
            grid = Grid.of(vol)
            for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
                femur = lab == int(side)
                if femur.sum() * grid.voxel_ml < 10:
                    continue
                mm, frac, rej = _score(vol.array, femur, lab != 0, grid.spacing, side)
                total += 1
                bad += rej
                if rej or mm > 0.5 * RULES.companion_min_mm:
                    print(
                        f"{folder.name}/{img.name} {side.name}: {mm:.0f} mm {frac:.2f}"
                        f"{'  REJECTED' if rej else ''}"
                    )
    return bad, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", type=Path, default=Path("../shared/shapes/llp26"))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--folders", type=Path, nargs="*", default=[])
    a = ap.parse_args()
    bad = 0
    if a.n:
        fb, caught, tib = phantoms(a.shapes, a.n, a.seed)
        print(f"generated: femurs rejected {fb}; tibiae rejected {caught} of {tib}")
        bad += fb
    if a.folders:
        fb, total = folders(a.folders)
        print(f"folders: femurs rejected {fb} of {total}")
        bad += fb
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
