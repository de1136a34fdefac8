"""Where the femoral heads of the real example CT end: the reference's top slices, the model's,
and what the scan shows there.

For each side it prints, slice by slice from six slices under the reference's top slice to
four above it: the voxels of the reference femur mask, of a predicted label map (when given),
and the median HU in three rings around the head's axis (the in-plane centre of the reference's
top slice): the core (within 5 mm), 8-12 mm and 15-21 mm out. A femoral head
inside its socket shows, slice by slice upwards, a bone disc (the head) shrinking inside a
bright ring (the acetabulum's subchondral bone) until the socket's roof closes over it; the
reference's last slice, where the head's section is still wide, then tells how far the head
goes on above it. With ``--out`` it also draws the axial slices round each top as a PNG (for
reading only: it shows the real CT, so keep it out of the repository).

Usage::

    .venv/bin/python scripts/real_head_top.py [--real ../shared/data/totalseg_example/s0000]
        [--pred OUT/ct_femur.nii.gz] [--out /tmp/head_tops.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from femurseg.io.read import read_labels, read_volume

LABELS = {"femur_left": 1, "femur_right": 2}
RINGS_MM = ((0.0, 5.0), (8.0, 12.0), (15.0, 21.0))


def _ring_median(
    img: np.ndarray, centre: np.ndarray, sp: np.ndarray, k: int, lo: float, hi: float
) -> float:
    xx, yy = np.meshgrid(np.arange(img.shape[0]), np.arange(img.shape[1]), indexing="ij")
    r = np.hypot((xx - centre[0]) * sp[0], (yy - centre[1]) * sp[1])
    sel = (r >= lo) & (r <= hi)
    return float(np.median(img[:, :, k][sel]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=Path("../shared/data/totalseg_example/s0000"))
    ap.add_argument("--pred", type=Path, default=None, help="a femurseg label map of this CT")
    ap.add_argument("--out", type=Path, default=None, help="PNG of the axial slices")
    args = ap.parse_args()

    vol = read_volume(args.real / "ct.nii.gz")
    img = np.asarray(vol.array, dtype=np.float32)
    sp = np.asarray(vol.spacing, dtype=np.float64)
    pred = read_labels(args.pred, like=vol)[0] if args.pred else None
    views = []
    for name, value in LABELS.items():
        ref = read_labels(args.real / "segmentations" / f"{name}.nii.gz", like=vol)[0] > 0
        zs = np.flatnonzero(ref.any(axis=(0, 1)))
        top = int(zs.max())
        base = max(top - 6, 0)
        centre = np.argwhere(ref[:, :, top]).mean(axis=0)
        print(f"{name}: reference top slice {top}, head axis at voxel {centre.round(1)}")
        print("  slice  ref  pred  HU core  HU 8-12 mm  HU 15-21 mm")
        for k in range(base, min(top + 5, img.shape[2])):
            p = int((pred[:, :, k] == value).sum()) if pred is not None else -1
            hu = [_ring_median(img, centre, sp, k, lo, hi) for lo, hi in RINGS_MM]
            print(
                f"  {k:5d} {int(ref[:, :, k].sum()):4d} {p:5d} "
                f"{hu[0]:8.0f} {hu[1]:11.0f} {hu[2]:12.0f}"
            )
        views.append((name, top, centre, ref))
    if args.out is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(views), 7, figsize=(16, 2.6 * len(views)))
    half = int(round(30.0 / sp[0]))
    for row, (name, top, centre, ref) in enumerate(views):
        cx, cy = (int(round(c)) for c in centre)
        xs = slice(max(cx - half, 0), cx + half)
        ys = slice(max(cy - half, 0), cy + half)
        for j, k in enumerate(range(top - 2, top + 5)):
            ax = axes[row, j]
            ax.imshow(img[xs, ys, k].T, cmap="gray", vmin=-100, vmax=700, origin="lower")
            if ref[xs, ys, k].any():
                ax.contour(ref[xs, ys, k].T, [0.5], colors="g", linewidths=1)
            if pred is not None and (pred[xs, ys, k] == LABELS[name]).any():
                ax.contour((pred[xs, ys, k] == LABELS[name]).T, [0.5], colors="r", linewidths=1)
            ax.set_title(f"{name} z={k} ({k - top:+d})", fontsize=8)
            ax.axis("off")
    fig.suptitle("green: reference femur, red: prediction; window -100..700 HU", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
