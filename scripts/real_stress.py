"""Robustness of a model on the real scans: the same anatomy under other scanner conditions.

Each real scan under a data root (``../shared/data``, the scorecard's layout) is predicted as
it is and changed the way another scanner, dose or protocol would change it, and every
variant is scored the scorecard's way (labelled scans: per-side Dice with voxels above
2000 HU left out of both masks; negatives: ml labelled femur, both sides must be not_found):

* ``noise30`` / ``noise50`` / ``noise80``: correlated noise of that SD (HU; Gaussian noise
  smoothed over about a voxel, the grain of a reconstruction kernel), a lower-dose or larger
  patient's scan;
* ``sharp``: an unsharp mask (a bone kernel's edge overshoot); ``smooth``: a 1.5 mm blur;
* ``hu+20`` / ``hu+40`` / ``hu-40``: every voxel shifted (a calibration offset; a positive
  shift of soft tissue is also roughly what contrast enhancement does to organs);
* ``head_top20`` / ``head_top45`` (labelled scans): only the slices from 20 or 45 mm below the
  top of the higher reference femur upwards: a pelvic scan with the femoral heads cut;
* ``fine1.0mm`` / ``fine1.5mm``: every axis coarser than 1.0 (1.5) mm resampled to it (cubic
  spline; the reference masks linearly, kept where above one half), so that the steps which
  run only on fine scans (the edge refinement, in 3D when every voxel side is 1.5 mm or less)
  run on real anatomy too. A resampled 3 mm scan is blurrier than one reconstructed at 1 mm,
  so this is the hard side of a fine scan, not a stand-in for one.

A model that holds by design changes little between the variants. The noise is seeded, so a
run repeats exactly. Usage::

    python scripts/real_stress.py --data ../shared/data [--model NAME=S1.pt:S2.pt ...]

(``shipped`` for either checkpoint; default the shipped weights). Prints one markdown table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.cli.evaluate import _model_option
from femurseg.detection.boxes import SIDES
from femurseg.evaluation.metrics import segmentation_metrics
from femurseg.evaluation.scorecard import (
    METAL_HU,
    MIN_TRUTH_ML,
    find_real_cases,
    read_truth,
    side_statuses,
    slices_from,
)
from femurseg.io import read_volume
from femurseg.pipeline import Predictor
from femurseg.preprocessing.grid import Grid
from femurseg.types import LABELS, Volume

F32 = npt.NDArray[np.float32]


def _noise(sd: float) -> Callable[[F32, tuple[float, float, float], int], F32]:
    def f(a: F32, spacing: tuple[float, float, float], seed: int) -> F32:
        n = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=a.shape), 0.8)
        return a + (n * (sd / n.std())).astype(np.float32)

    return f


def _sharp(a: F32, spacing: tuple[float, float, float], seed: int) -> F32:
    return a + (a - ndi.gaussian_filter(a, 1.0 / np.asarray(spacing))).astype(np.float32)


def _smooth(a: F32, spacing: tuple[float, float, float], seed: int) -> F32:
    return ndi.gaussian_filter(a, 1.5 / np.asarray(spacing)).astype(np.float32)


def _shift(hu: float) -> Callable[[F32, tuple[float, float, float], int], F32]:
    return lambda a, spacing, seed: a + np.float32(hu)


VARIANTS: dict[str, Callable[[F32, tuple[float, float, float], int], F32]] = {
    "as is": lambda a, spacing, seed: a,
    "noise30": _noise(30.0),
    "noise50": _noise(50.0),
    "noise80": _noise(80.0),
    "sharp": _sharp,
    "smooth": _smooth,
    "hu+20": _shift(20.0),
    "hu+40": _shift(40.0),
    "hu-40": _shift(-40.0),
}
HEAD_TOPS_MM = (20.0, 45.0)
FINE_MM = (1.0, 1.5)


def finer(
    vol: Volume, truth: npt.NDArray[np.uint8] | None, mm: float
) -> tuple[Volume, npt.NDArray[np.uint8] | None] | None:
    """``vol`` (and ``truth``) with every axis coarser than ``mm`` resampled to about ``mm``;
    None when no axis is coarser. The resampled grid covers the same extent (voxel edges
    aligned), so the affine keeps the scan where it was."""
    shape = np.asarray(vol.shape)
    spacing = np.asarray(vol.spacing, dtype=np.float64)
    new = np.where(spacing > mm, np.round(shape * spacing / mm), shape).astype(int)
    if (new == shape).all():
        return None
    zoom = new / shape
    a = ndi.zoom(vol.array.astype(np.float32), zoom, order=3, mode="nearest", grid_mode=True)
    affine = np.array(vol.affine, dtype=np.float64)
    affine[:3, 3] += affine[:3, :3] @ (0.5 / zoom - 0.5)
    affine[:3, :3] = affine[:3, :3] / zoom
    out = Volume(a.astype(np.float32), affine)
    if truth is None:
        return out, None
    lab = np.zeros(a.shape, dtype=np.uint8)
    for side in SIDES:
        m = (truth == int(side)).astype(np.float32)
        m = ndi.zoom(m, zoom, order=1, mode="nearest", grid_mode=True)
        lab[m > 0.5] = int(side)
    return out, lab


def _views(
    vol: Volume, truth: npt.NDArray[np.uint8] | None
) -> Iterator[tuple[str, Volume, npt.NDArray[np.uint8] | None]]:
    a = vol.array.astype(np.float32)
    for k, (name, f) in enumerate(VARIANTS.items()):
        yield name, Volume(f(a, vol.spacing, 1000 + k), vol.affine), truth
    for mm in FINE_MM:
        fine = finer(vol, truth, mm)
        if fine is not None:
            yield f"fine{mm:.1f}mm", fine[0], fine[1]
    if truth is None:
        return
    k_any = np.flatnonzero(truth.any(axis=(0, 1)))
    for mm in HEAD_TOPS_MM:
        start = int(k_any.max()) + 1 - int(round(mm / vol.spacing[2]))
        if start <= 0:
            continue
        yield (
            f"head_top{mm:.0f}",
            slices_from(vol, start),
            np.ascontiguousarray(truth[:, :, start:]),
        )


def _cell(
    pred_lab: npt.NDArray[np.uint8],
    status: dict[str, str],
    vol: Volume,
    truth: npt.NDArray[np.uint8] | None,
) -> str:
    ml = Grid.of(vol).voxel_ml
    out = []
    for side in SIDES:
        p = pred_lab == int(side)
        st = status[LABELS[side]]
        if truth is None:
            out.append(f"{st} {p.sum() * ml:.1f} ml")
            continue
        t = truth == int(side)
        if t.sum() * ml < MIN_TRUTH_ML:
            out.append(f"(ref {t.sum() * ml:.0f} ml) {st} {p.sum() * ml:.1f} ml")
            continue
        keep = vol.array <= METAL_HU
        dice = segmentation_metrics(p & keep, t & keep, vol.spacing, surface=False)["dice"]
        out.append(f"{dice:.3f}")
    return " / ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument(
        "--model", action="append", default=[], help="NAME=S1.pt:S2.pt ('shipped' allowed)"
    )
    args = ap.parse_args()
    cases, notes = find_real_cases(args.data)
    if not cases:
        raise SystemExit(f"no real scans under {args.data}; expected folders with ct.nii.gz")
    models = [
        (name, Predictor(s1, s2)) for name, s1, s2 in _model_option(args.model or ["shipped"])
    ]
    rows: dict[str, dict[str, str]] = {}
    for case in cases:
        vol = read_volume(case.image)
        truth = read_truth(case.masks, vol) if case.masks is not None else None
        for name, pred in models:
            for view, v, t in _views(vol, truth):
                r = pred.predict(v)
                status = side_statuses(r)
                rows.setdefault(f"{case.name} {view}", {})[name] = _cell(r.labels, status, v, t)
                print(f"{case.name} {view} {name}: {rows[f'{case.name} {view}'][name]}", flush=True)
    names = [m[0] for m in models]
    print("\n| scan, view | " + " | ".join(f"{n} (L / R)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for key, cells in rows.items():
        print(f"| {key} | " + " | ".join(cells.get(n, "-") for n in names) + " |")


if __name__ == "__main__":
    main()
