"""Compare a phantom with the real example CT: docs/realism.png and summary HU statistics.

Renders a procedural (or LLP26) phantom at the real CT's spacing (3 mm) and field of view (hip,
reaching up into the lumbar spine like the real one), then shows both side by side with axes
in mm: a coronal view through the femoral heads, an axial slice at the heads, an axial slice
through the abdomen (L2-L3), and HU histograms of femur bone and of soft tissue. Prints mean/SD
HU of fat, muscle and cortical bone and the noise SD in fat for both, measured the same way on
each; femur statistics use only the top of each femur, as long as the real CT shows of it.

Usage::

    .venv/bin/python scripts/realism_figure.py [--real ../shared/data/totalseg_example/s0000]
        [--shapes ../shared/shapes/llp26] [--seed 0] [--out docs/realism.png]

The real CT is read from its path and never copied into the repository.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from femurseg.io.read import read_labels, read_volume  # noqa: E402
from femurseg.phantoms.generate import generate_case  # noqa: E402
from femurseg.phantoms.params import FovKind, ImplantParams, PhantomConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WINDOW = (-250, 600)


def tissue_stats(img: np.ndarray, femur: np.ndarray) -> dict[str, tuple[float, float]]:
    """Mean and SD HU of fat, muscle, cortical bone, and the noise SD in fat.

    Fat and muscle are voxels whose 3x3x3 neighbourhood mean lies in a band and whose
    neighbourhood SD is low (homogeneous tissue); cortical bone is the brightest tenth of the
    femur mask's voxels (below metal); noise is the SD of the residual from the 3x3x3 mean in fat.
    """
    a = img.astype(np.float64)
    m = ndi.uniform_filter(a, 3)
    sd = np.sqrt(np.maximum(ndi.uniform_filter(a * a, 3) - m * m, 0.0))
    body = ndi.binary_fill_holes(a > -500)
    fat = body & (m > -160) & (m < -50) & (sd < 40)
    muscle = body & (m > 15) & (m < 90) & (sd < 35)
    bone = a[femur & (a < 2000)]
    cort = bone[bone >= np.percentile(bone, 90)] if bone.size else np.zeros(1)
    fat_core = ndi.binary_erosion(fat)
    resid = (a - m)[fat_core] * np.sqrt(27.0 / 26.0)
    return {
        "fat": (float(a[fat].mean()), float(a[fat].std())),
        "muscle": (float(a[muscle].mean()), float(a[muscle].std())),
        "cortical (top 10% of femur)": (float(cort.mean()), float(cort.std())),
        "cancellous/marrow (femur median)": (float(np.median(bone)), float(bone.std())),
        "noise SD in fat": (float(resid.std()), 0.0),
    }


def _show(ax, sl, sp, title):  # type: ignore[no-untyped-def]
    """Show a 2D (u, v) slice with axes in mm (u horizontal, v vertical)."""
    ext = (0.0, sl.shape[0] * sp[0], 0.0, sl.shape[1] * sp[1])
    ax.imshow(sl.T, origin="lower", cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], extent=ext)
    ax.set_xlabel("mm")
    ax.set_title(title)
    return ext


def _panel_row(axes, img, femur, head_k, head_j, abd_k, title, sp):  # type: ignore[no-untyped-def]
    _show(axes[0], img[:, head_j, :], (sp[0], sp[2]), f"{title}: coronal through the hips")
    ext = _show(axes[1], img[:, :, head_k], (sp[0], sp[1]), f"{title}: axial at the femoral heads")
    axes[1].contour(femur[:, :, head_k].T, [0.5], colors="r", linewidths=0.6, extent=ext)
    _show(axes[2], img[:, :, abd_k], (sp[0], sp[1]), f"{title}: axial through the abdomen")
    body = ndi.binary_fill_holes(img > -500)
    soft = img[body & (img > -250) & (img < 250)]
    bone = img[femur]
    axes[3].hist(soft, bins=np.arange(-250, 251, 5), density=True, alpha=0.6, label="soft tissue")
    axes[3].hist(bone, bins=np.arange(-250, 1800, 20), density=True, alpha=0.6, label="femur")
    axes[3].set_yscale("log")
    axes[3].set_xlabel("HU")
    axes[3].legend()
    axes[3].set_title(f"{title}: HU histograms")


def top_of(femur: np.ndarray, length_vox: int) -> np.ndarray:
    """The femur mask cut to its top ``length_vox`` slices (like a scan ending below it)."""
    ks = np.nonzero(femur.any(axis=(0, 1)))[0]
    out = femur.copy()
    if len(ks):
        out[:, :, : max(int(ks.max()) - length_vox + 1, 0)] = False
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--real", type=Path, default=REPO.parent / "shared" / "data" / "totalseg_example" / "s0000"
    )
    ap.add_argument("--shapes", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hip-implant", action="store_true", help="give the phantom a hip implant")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "realism.png")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    real = read_volume(args.real / "ct.nii.gz")
    seg = args.real / "segmentations"
    fl, _ = read_labels(seg / "femur_left.nii.gz", like=real)
    fr, _ = read_labels(seg / "femur_right.nii.gz", like=real)
    real_femur = fr > 0  # the right femur has no implant

    cfg = PhantomConfig(
        fov=FovKind.HIP,
        spacing=real.spacing,
        recon_circle=False,
        abdomen_probability=1.0,
        implants=ImplantParams(
            hip_probability=1.0 if args.hip_implant else 0.0, knee_probability=0.0
        ),
    )
    case = generate_case(cfg, np.random.default_rng(args.seed), args.shapes)
    ph = case.image.array
    ph_femur = case.labels == 2

    # Slices through the femoral heads, and through the abdomen 60 % of the way from the heads
    # to the top of the image (about L2-L3 in both).
    real_k = int(np.nonzero(real_femur.any(axis=(0, 1)))[0].max()) - 7  # ~20 mm below the top
    real_j = int(np.argwhere(real_femur[:, :, real_k]).mean(axis=0)[1])
    hip = case.anatomy.landmarks["hip_right"]
    ph_ijk = np.rint(case.image.world_to_index(hip)).astype(int)

    def abd(k: int, n: int) -> int:
        return min(int(k + 0.6 * (n - k)), n - 1)

    fig, ax = plt.subplots(2, 4, figsize=(22, 11))
    _panel_row(
        ax[0],
        real.array,
        real_femur | (fl > 0),
        real_k,
        real_j,
        abd(real_k, real.shape[2]),
        "real CT",
        real.spacing,
    )
    _panel_row(
        ax[1],
        ph,
        case.labels > 0,
        int(ph_ijk[2]),
        int(ph_ijk[1]),
        abd(int(ph_ijk[2]), ph.shape[2]),
        "phantom",
        case.image.spacing,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=60)

    ks = np.nonzero(real_femur.any(axis=(0, 1)))[0]
    length = int(ks.max() - ks.min() + 1)
    ph_femur = top_of(ph_femur, length)
    rs = tissue_stats(real.array, real_femur)
    ps = tissue_stats(ph, ph_femur)
    print(f"{'(HU)':34s} {'real mean':>10s} {'real sd':>8s} {'phantom mean':>13s} {'sd':>8s}")
    for k in rs:
        print(f"{k:34s} {rs[k][0]:10.1f} {rs[k][1]:8.1f} {ps[k][0]:13.1f} {ps[k][1]:8.1f}")
    print(
        f"phantom: {case.image.shape} at {case.image.spacing} mm, "
        f"{case.meta['timings_s']['total']:.1f} s; figure {args.out}"
    )


if __name__ == "__main__":
    main()
