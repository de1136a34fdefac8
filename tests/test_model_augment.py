"""Training augmentation: geometry changes keep image and labels together, and are seeded."""

from __future__ import annotations

import numpy as np

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
