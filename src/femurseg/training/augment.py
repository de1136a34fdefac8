"""Sampling helpers and intensity augmentation (MONAI transforms), seeded per step."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffined,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandShiftIntensity,
)


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The random generator of one training step: a pure function of (seed, rank, step).

    Deriving every random choice from the step number makes resuming exact without storing
    any random state.
    """
    return np.random.default_rng([seed, rank, step])


def intensity_augment(x: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[Any]:
    """Random scale, shift and Gaussian noise of a normalised image (C, X, Y, Z).

    Units are the normalised [0, 1] window: noise SD up to 0.03 (about 50 HU for an 1800 HU
    window), shift up to 0.05, scale up to 10 %.
    """
    tf = Compose(
        [
            RandScaleIntensity(factors=0.1, prob=0.8),
            RandShiftIntensity(offsets=0.05, prob=0.8),
            RandGaussianNoise(prob=0.5, mean=0.0, std=0.03),
        ]
    )
    tf.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
    out = tf(x)
    return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def shape_augment(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[Any],
    rng: np.random.Generator,
    prob: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any]]:
    """Random geometry and image-quality changes of one (1, X, Y, Z) patch and its labels.

    With probability ``prob`` each: a rotation of up to 12 degrees about each axis with a scale
    of 0.88-1.12 per axis (image linear, labels nearest, borders repeated), a Gaussian blur of
    0.4-1.4 voxels per axis (softer kernels, thicker slices than the training scans), and a
    gamma change of the window (0.75-1.35). Together they widen the narrow anatomy and
    scanner range of the phantoms that stage 2 trains on. ``prob`` 0 returns the inputs.
    """
    if prob <= 0.0:
        return x, y
    angle = np.deg2rad(12.0)
    tf = Compose(
        [
            RandAffined(
                keys=("img", "lab"),
                prob=prob,
                rotate_range=(angle, angle, angle),
                scale_range=(0.12, 0.12, 0.12),
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
        ]
    )
    tf.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
    out = tf({"img": x, "lab": y})
    img = np.asarray(out["img"], dtype=np.float32)
    lab = np.asarray(out["lab"]).astype(y.dtype)
    quality = Compose(
        [
            RandGaussianSmooth(
                sigma_x=(0.4, 1.4), sigma_y=(0.4, 1.4), sigma_z=(0.4, 1.4), prob=prob
            ),
            RandAdjustContrast(gamma=(0.75, 1.35), prob=prob),
        ]
    )
    quality.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
    img = np.asarray(quality(img), dtype=np.float32)
    return img, lab


#: knots of the random intensity transfer curve of :func:`domain_randomize` (window units).
CURVE_KNOTS = 7
#: SD of each knot's random displacement, window units.
CURVE_SD = 0.12
#: control grid of the multiplicative bias field (per axis) and its largest amplitude.
BIAS_GRID = 4
BIAS_AMPLITUDE = 0.15


def domain_randomize(
    x: npt.NDArray[np.float32], rng: np.random.Generator, prob: float
) -> npt.NDArray[np.float32]:
    """Intensity domain randomisation of one windowed patch (C, X, Y, Z) in [0, 1].

    Each part is applied with probability ``prob``: (1) a random piecewise-linear transfer
    curve through :data:`CURVE_KNOTS` knots, each moved by N(0, :data:`CURVE_SD`), so that the
    tissues' HU bands (fat, muscle, marrow, cancellous, cortex) change their brightness and
    contrast independently, as in SynthSeg's per-tissue intensities but on HU bands; the curve
    stays increasing at the top so cortex keeps being the brightest tissue; (2) a smooth
    multiplicative bias field of up to :data:`BIAS_AMPLITUDE`; (3) sharpening (unsharp mask,
    a sharp bone kernel's edge overshoot) or extra blur. ``prob`` 0 returns ``x`` unchanged.
    """
    if prob <= 0.0:
        return x
    from scipy import ndimage as ndi

    out = x.astype(np.float32, copy=True)
    if rng.random() < prob:
        knots = np.linspace(0.0, 1.0, CURVE_KNOTS)
        vals = np.clip(knots + rng.normal(0.0, CURVE_SD, CURVE_KNOTS), 0.0, 1.0)
        vals[0] = min(vals[0], 0.1)
        # the top of the window (cortex) stays above everything below it
        vals[-1] = max(vals[-1], float(vals[:-1].max()) + 0.05)
        vals = vals / vals[-1]
        out = np.interp(out, knots, vals).astype(np.float32)
    if rng.random() < prob:
        coarse = rng.uniform(-1.0, 1.0, (BIAS_GRID,) * 3).astype(np.float32)
        zoom = [s / BIAS_GRID for s in out.shape[1:]]
        field = ndi.zoom(coarse, zoom, order=1, mode="nearest")
        field = field[: out.shape[1], : out.shape[2], : out.shape[3]]
        amp = rng.uniform(0.0, BIAS_AMPLITUDE)
        out = out * (1.0 + amp * field)[None]
    if rng.random() < prob:
        sigma = rng.uniform(0.5, 1.5)
        blurred = ndi.gaussian_filter(out, (0, sigma, sigma, sigma))
        amount = rng.uniform(-0.6, 1.2)  # < 0 blurs further, > 0 sharpens (edge overshoot)
        out = out + amount * (out - blurred)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


#: SD range (window units: 0.045 is about 80 HU of the 1800 HU window) and grain (voxels) of
#: :func:`correlated_noise`.
NOISE_SD = (0.005, 0.045)
NOISE_GRAIN = (0.5, 1.5)


def correlated_noise(
    x: npt.NDArray[np.float32], rng: np.random.Generator, prob: float
) -> npt.NDArray[np.float32]:
    """With probability ``prob``, add CT-like noise to a windowed patch (C, X, Y, Z): white
    noise smoothed over :data:`NOISE_GRAIN` voxels (a reconstruction kernel's grain) scaled
    to an SD drawn from :data:`NOISE_SD`, as a low-dose or large patient's scan has. The
    phantoms' own noise (12-32 HU at 1 mm, less on thick slices) and the white noise of
    :func:`intensity_augment` leave real noisy scans out of range. ``prob`` 0 draws nothing."""
    if prob <= 0.0 or rng.random() >= prob:
        return x
    from scipy import ndimage as ndi

    sd = rng.uniform(*NOISE_SD)
    grain = rng.uniform(*NOISE_GRAIN)
    n = ndi.gaussian_filter(rng.normal(size=x.shape).astype(np.float32), (0, grain, grain, grain))
    n *= np.float32(sd / max(float(n.std()), 1e-6))
    return (x + n).astype(np.float32)


def extract_patch(
    arrays: list[npt.NDArray[Any]],
    centre: npt.NDArray[np.int_],
    size: tuple[int, int, int],
    fills: list[float],
) -> list[npt.NDArray[Any]]:
    """Cut the same ``size`` patch centred on ``centre`` out of several (X, Y, Z) arrays.

    Parts outside an array are padded with its fill value.
    """
    shape = np.asarray(arrays[0].shape)
    sz = np.asarray(size)
    lo = centre - sz // 2
    hi = lo + sz
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi, shape)
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    out = []
    for arr, fill in zip(arrays, fills, strict=True):
        patch = np.full(size, fill, dtype=arr.dtype)
        if np.all(src_hi > src_lo):
            patch[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = arr[
                src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
            ]
        out.append(patch)
    return out


def pad_batch(arrays: list[npt.NDArray[Any]], multiple: int, fill: float) -> npt.NDArray[Any]:
    """Stack (X, Y, Z) arrays of different shapes, padded at the ends to a common shape that is
    a multiple of ``multiple``; returns (B, X', Y', Z')."""
    shape = np.max([a.shape for a in arrays], axis=0)
    shape = (np.ceil(shape / multiple) * multiple).astype(int)
    out = np.full((len(arrays), *shape), fill, dtype=arrays[0].dtype)
    for n, a in enumerate(arrays):
        out[n, : a.shape[0], : a.shape[1], : a.shape[2]] = a
    return out


def draw_patches(
    cases: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    foreground: list[npt.NDArray[np.int_]],
    size: tuple[int, int, int],
    batch_size: int,
    fg_fraction: float,
    rng: np.random.Generator,
    shape_prob: float = 0.0,
    domain_prob: float = 0.0,
    noise_prob: float = 0.0,
    ends: list[npt.NDArray[np.int_]] | None = None,
    end_fraction: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch of patches from (image, label) arrays, augmented.

    Each patch comes from a random case; with probability ``fg_fraction`` it is centred on a
    random label voxel (``foreground[k]`` holds case k's flat label indices), else anywhere.
    Of those label-centred patches, a share ``end_fraction`` is centred on one of ``ends[k]``
    instead (flat indices near the femur's joint ends, see
    :func:`femurseg.training.stage2.joint_end_voxels`), where a case has any.
    Each patch gets :func:`shape_augment` (with ``shape_prob``), then
    :func:`domain_randomize` (with ``domain_prob``), then :func:`correlated_noise` (with
    ``noise_prob``), then intensity augmentation.

    Returns:
        float32 images (B, 1, *size) and int64 labels (B, 1, *size).
    """
    xs, ys = [], []
    for _ in range(batch_size):
        k = int(rng.integers(len(cases)))
        img, lab = cases[k]
        if foreground[k].size and rng.random() < fg_fraction:
            pool = foreground[k]
            if end_fraction > 0.0 and ends is not None and ends[k].size:
                pool = ends[k] if rng.random() < end_fraction else pool
            flat = int(pool[rng.integers(pool.size)])
            centre = np.asarray(np.unravel_index(flat, lab.shape))
        else:
            centre = np.asarray([rng.integers(s) for s in lab.shape])
        x, y = extract_patch([img, lab], centre, size, [0.0, 0])
        xa, ya = shape_augment(x.astype(np.float32)[None], y[None], rng, shape_prob)
        if domain_prob > 0.0:
            xa = domain_randomize(xa, rng, domain_prob)
        xa = correlated_noise(xa, rng, noise_prob)
        xs.append(intensity_augment(xa, rng))
        ys.append(ya.astype(np.int64))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
