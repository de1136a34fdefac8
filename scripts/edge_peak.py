"""How bright the proximal femur's edge and its head read: the real example CT against
phantom sets.

For each femur mask (the real CT's reference masks, each phantom's truth labels) it takes the
mask's outer voxel layer from 30 to 100 mm under the femur's top (the neck, trochanters and
proximal metaphysis, below the head), and at each of those voxels the highest HU within one
voxel in-plane (the 3 x 3 maximum, so that a mask drawn one voxel in or out of the cortex reads
the same); and the head's core: the median HU of the mask's top 25 mm without its outer voxel
layer. It prints both for the real femurs, and their range and median over each phantom set
(femurs with metal left out). Meant for scans with 3 mm slices like the real one
(``femurseg phantom --fov hip --spacing 3``).

Usage::

    .venv/bin/python scripts/edge_peak.py [--real ../shared/data/totalseg_example/s0000]
        PHANTOM_SET ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from femurseg.datasets.layout import case_files, read_dataset_json
from femurseg.io.read import read_labels, read_volume

BAND_MM = (30.0, 100.0)
HEAD_MM = 25.0


def local_peak(img: np.ndarray) -> np.ndarray:
    """Each voxel's highest HU within one voxel in-plane (the 3 x 3 maximum)."""
    return ndi.maximum_filter(img, size=(3, 3, 1))


def edge_peak(peak: np.ndarray, mask: np.ndarray, slice_mm: float) -> float | None:
    """Median of ``peak`` (:func:`local_peak` of the scan) over the mask's outer layer in the
    band."""
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    if zs.size == 0:
        return None
    top = int(zs.max())
    lo, hi = top - int(BAND_MM[1] / slice_mm), top - int(BAND_MM[0] / slice_mm)
    outer = mask & ~ndi.binary_erosion(mask)
    outer[:, :, : max(lo, 0)] = False
    outer[:, :, hi:] = False
    if not outer.any():
        return None
    return float(np.median(peak[outer]))


def head_core(img: np.ndarray, mask: np.ndarray, slice_mm: float) -> float | None:
    """Median HU of the mask's top ``HEAD_MM`` without its outer voxel layer."""
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    if zs.size == 0:
        return None
    top_part = mask.copy()
    top_part[:, :, : int(zs.max()) - int(HEAD_MM / slice_mm) + 1] = False
    core = ndi.binary_erosion(top_part)
    return float(np.median(img[core])) if core.any() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", type=Path, help="phantom dataset folders")
    ap.add_argument("--real", type=Path, default=Path("../shared/data/totalseg_example/s0000"))
    args = ap.parse_args()
    if (args.real / "ct.nii.gz").exists():
        vol = read_volume(args.real / "ct.nii.gz")
        img = np.asarray(vol.array, dtype=np.float32)
        peak_img = local_peak(img)
        for side in ("right", "left"):
            ref = read_labels(args.real / "segmentations" / f"femur_{side}.nii.gz", like=vol)[0]
            peak = edge_peak(peak_img, ref > 0, float(vol.spacing[2]))
            core = head_core(img, ref > 0, float(vol.spacing[2]))
            print(
                f"real femur_{side}: edge {peak:.0f} HU, head core {core:.0f} HU"
                + " (implant side)" * (side == "left")
            )
    for root in args.sets:
        peaks, cores = [], []
        for image, label in case_files(root, read_dataset_json(root)).values():
            vol = read_volume(image)
            lab = read_labels(label, like=vol)[0]
            img = np.asarray(vol.array, dtype=np.float32)
            peak_img = local_peak(img)
            for value in (1, 2):
                femur = lab == value
                if not femur.any() or np.percentile(img[femur], 99.9) > 2000.0:
                    continue  # no femur, or an implant's metal in it
                peak = edge_peak(peak_img, femur, float(vol.spacing[2]))
                core = head_core(img, femur, float(vol.spacing[2]))
                if peak is not None and core is not None:
                    peaks.append(peak)
                    cores.append(core)
        print(
            f"{root}: {len(peaks)} femurs; edge {min(peaks):.0f}-{max(peaks):.0f} HU, median "
            f"{np.median(peaks):.0f}; head core {min(cores):.0f}-{max(cores):.0f} HU, median "
            f"{np.median(cores):.0f}"
        )


if __name__ == "__main__":
    main()
