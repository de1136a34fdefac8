"""Training augmentation: geometry changes keep image and labels together, and are seeded."""

from __future__ import annotations

import numpy as np
import torch

from femurseg.training.augment import draw_patches, shape_augment, step_rng


def _rod() -> tuple[np.ndarray, np.ndarray]:
    """A bright off-centre rod (image) and its mask (labels), as (1, X, Y, Z)."""
    i, j, k = np.meshgrid(np.arange(40), np.arange(32), np.arange(48), indexing="ij")
    mask = ((i - 16) ** 2 + (j - 14) ** 2 <= 36) & (k > 6) & (k < 40)
    return mask.astype(np.float32)[None], mask.astype(np.uint8)[None]


def test_shape_augment_moves_image_and_labels_together() -> None:
    img, lab = _rod()
    moved = 0
    for seed in range(6):
        out_img, out_lab = shape_augment(img, lab, np.random.default_rng(seed), prob=1.0)
        assert out_img.shape == img.shape and out_lab.shape == lab.shape
        assert out_img.dtype == np.float32 and out_lab.dtype == lab.dtype
        assert set(np.unique(out_lab)) <= {0, 1}
        seen = out_img[0] >= 0.5
        truth = out_lab[0].astype(bool)
        dice = 2.0 * (seen & truth).sum() / (seen.sum() + truth.sum())
        assert dice > 0.85, (seed, dice)  # blur and gamma soften the edge; geometry is shared
        moved += int((out_lab != lab).sum() > 50)
    assert moved >= 4  # the geometry really changes


def test_shape_augment_off_and_seeded() -> None:
    img, lab = _rod()
    same_img, same_lab = shape_augment(img, lab, np.random.default_rng(0), prob=0.0)
    assert same_img is img and same_lab is lab
    a = shape_augment(img, lab, np.random.default_rng(3), prob=1.0)
    b = shape_augment(img, lab, np.random.default_rng(3), prob=1.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_draw_patches_is_a_function_of_the_step() -> None:
    img, lab = _rod()
    cases = [(img[0], lab[0])]
    fg = [np.flatnonzero(lab[0])]
    x1, y1 = draw_patches(cases, fg, (24, 24, 32), 2, 0.7, step_rng(0, 0, 5), 0.5)
    x2, y2 = draw_patches(cases, fg, (24, 24, 32), 2, 0.7, step_rng(0, 0, 5), 0.5)
    assert x1.shape == (2, 1, 24, 24, 32) and y1.shape == (2, 1, 24, 24, 32)
    assert bool((x1 == x2).all()) and bool((y1 == y2).all())


def _bands() -> np.ndarray:
    """A (1, 32, 32, 32) windowed patch: fat, muscle, cancellous and cortex as bands."""
    x = np.zeros((1, 32, 32, 32), dtype=np.float32)
    for k, v in enumerate((0.05, 0.13, 0.25, 0.8)):
        x[0, :, :, 8 * k : 8 * k + 8] = v
    return x


def test_domain_randomize_changes_contrast_keeps_range_and_cortex_on_top() -> None:
    from femurseg.training.augment import domain_randomize

    x = _bands()
    changed = 0
    for seed in range(20):
        y = domain_randomize(x, np.random.default_rng(seed), 1.0)
        assert y.shape == x.shape and y.dtype == np.float32
        assert 0.0 <= y.min() and y.max() <= 1.0
        means = [float(y[0, 8:24, 8:24, 8 * k + 2 : 8 * k + 6].mean()) for k in range(4)]
        assert means[3] > max(means[:3])  # cortex stays the brightest band
        ratios = np.diff(means[:3]) / np.diff([0.05, 0.13, 0.25])
        changed += int(np.any(np.abs(ratios - 1.0) > 0.2))
    assert changed >= 10  # the tissues' contrasts really change, most of the time


def test_domain_randomize_off_and_seeded() -> None:
    from femurseg.training.augment import domain_randomize

    x = _bands()
    assert domain_randomize(x, np.random.default_rng(0), 0.0) is x
    a = domain_randomize(x, np.random.default_rng(3), 0.7)
    b = domain_randomize(x, np.random.default_rng(3), 0.7)
    np.testing.assert_array_equal(a, b)


def test_correlated_noise_off_seeded_and_grainy() -> None:
    from femurseg.training.augment import NOISE_SD, correlated_noise

    x = np.full((1, 24, 24, 24), 0.3, dtype=np.float32)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert correlated_noise(x, rng, 0.0) is x
    assert rng.bit_generator.state == state  # off draws nothing: earlier runs repeat exactly
    a = correlated_noise(x, np.random.default_rng(4), 1.0)
    b = correlated_noise(x, np.random.default_rng(4), 1.0)
    np.testing.assert_array_equal(a, b)
    n = a[0] - 0.3
    assert NOISE_SD[0] * 0.9 < float(n.std()) < NOISE_SD[1] * 1.1
    # correlated: neighbours agree far more than white noise's do
    r = np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1]
    assert r > 0.3


def _femur_crop(cut_top: bool) -> tuple[np.ndarray, np.ndarray]:
    """A windowed crop (X, Y, Z) at 1.5 mm holding a rod 'femur' from k=10 to k=89 in tissue
    (0.1); with ``cut_top`` the scan ends right above the rod (the crop reads 0 there)."""
    img = np.full((20, 20, 100), 0.1, dtype=np.float16)
    lab = np.zeros((20, 20, 100), dtype=np.uint8)
    lab[6:14, 6:14, 10:90] = 1
    img[lab.astype(bool)] = 0.6
    if cut_top:
        img[:, :, 90:] = 0.0
    return img, lab


def test_joint_end_voxels_keep_the_joint_ends_only() -> None:
    from femurseg.training.stage2 import END_ZONE_MM, joint_end_voxels

    img, lab = _femur_crop(cut_top=False)
    ends = joint_end_voxels(img, lab, 1.5)
    k = np.unravel_index(ends, lab.shape)[2]
    zone = round(END_ZONE_MM / 1.5)
    assert set(np.unique(k)) == set(range(10, 10 + zone)) | set(range(90 - zone, 90))
    assert bool(lab.ravel()[ends].all())
    # the top cut by the scan is no joint: only the bottom end is kept
    img, lab = _femur_crop(cut_top=True)
    k = np.unravel_index(joint_end_voxels(img, lab, 1.5), lab.shape)[2]
    assert k.min() == 10 and k.max() == 10 + zone - 1
    assert joint_end_voxels(img, np.zeros_like(lab), 1.5).size == 0


def test_draw_patches_centres_end_fraction_on_the_ends() -> None:
    img, lab = _femur_crop(cut_top=False)
    img32 = img.astype(np.float32)
    cases = [(img32, lab)]
    fg = [np.flatnonzero(lab)]
    ends = [np.flatnonzero(lab & (np.arange(100) < 20)[None, None, :])]  # bottom 10 slices
    size = (8, 8, 24)

    def past_an_end(y: torch.Tensor) -> bool:  # some slice of the patch holds no femur
        return bool((y[0, 0].sum(dim=(0, 1)) == 0).any())

    hits_all, hits_end = 0, 0
    for step in range(40):
        _, y0 = draw_patches(cases, fg, size, 1, 1.0, step_rng(0, 0, step))
        _, y1 = draw_patches(
            cases, fg, size, 1, 1.0, step_rng(0, 0, step), ends=ends, end_fraction=1.0
        )
        hits_all += past_an_end(y0)  # about 30 % of centres lie within 12 slices of an end
        hits_end += past_an_end(y1)
    assert hits_end == 40 and hits_all <= 25
    # end_fraction 0 draws exactly as before, ends given or not
    a = draw_patches(cases, fg, size, 2, 0.7, step_rng(1, 0, 3), 0.5)
    b = draw_patches(cases, fg, size, 2, 0.7, step_rng(1, 0, 3), 0.5, ends=ends, end_fraction=0.0)
    assert bool((a[0] == b[0]).all()) and bool((a[1] == b[1]).all())
