"""Orientation matrix: on-disk layouts read to canonical RAS+ and labels written back unchanged.

Input files are written and output files re-read with nibabel/SimpleITK directly (tests/io_cases),
so the checks do not rely on femurseg's own geometry code agreeing with itself.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from io_cases import (
    ORIENTATIONS,
    disk_affine,
    left_right_labels,
    load_independent,
    sample_at,
    save_independent,
    unique_ct,
    world_of_all,
)

from femurseg.io import axcodes, read_labels, read_volume, write_image, write_labels
from femurseg.types import Label

FORMATS = ["nii.gz", "nrrd", "mha"]
DISK_SHAPE = (7, 8, 9)


def _write_case(tmp: Path, name: str, ext: str) -> tuple[Path, np.ndarray, np.ndarray]:
    m, rot = ORIENTATIONS[name]
    affine = disk_affine(m, DISK_SHAPE, rot)
    disk = unique_ct(DISK_SHAPE)
    # a bright blob at the voxel nearest world (-4, 3, 5) mm: patient left, anterior, superior
    world = world_of_all(affine, DISK_SHAPE)
    blob = np.unravel_index(np.argmin(np.linalg.norm(world - [-4.0, 3.0, 5.0], axis=1)), DISK_SHAPE)
    disk[blob] = 3000
    path = tmp / f"ct_{name}.{ext}"
    save_independent(disk, affine, path)
    return path, disk, affine


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_orientation_matrix(tmp_path: Path, name: str, ext: str) -> None:
    path, disk, affine = _write_case(tmp_path, name, ext)
    _, file_affine = load_independent(path)
    vol = read_volume(path)

    assert axcodes(vol.affine) == "RAS"
    assert vol.array.dtype == np.float32
    assert vol.source is not None and vol.source.shape == DISK_SHAPE
    np.testing.assert_allclose(vol.source.affine, file_affine, atol=1e-5)
    np.testing.assert_allclose(sorted(vol.spacing), sorted((0.8, 1.1, 2.5)), atol=1e-6)
    # every on-disk voxel's world position holds the same value in the canonical volume
    world = world_of_all(file_affine, DISK_SHAPE)
    np.testing.assert_array_equal(sample_at(vol.array, vol.affine, world), disk.reshape(-1))
    # the blob is still on the patient's left, anterior and superior
    blob_world = vol.index_to_world(np.unravel_index(np.argmax(vol.array), vol.shape))
    assert blob_world[0] < 0 and blob_world[1] > 0 and blob_world[2] > 0

    labels = left_right_labels(vol.affine, vol.shape)
    out = write_labels(labels, vol, tmp_path / f"labels.{ext}")
    back, back_affine = load_independent(out)
    assert back.shape == DISK_SHAPE and back.dtype == np.uint8
    np.testing.assert_allclose(back_affine, file_affine, atol=1e-5)
    flat = back.reshape(-1)
    x = world_of_all(back_affine, DISK_SHAPE)[:, 0]
    assert (flat == Label.FEMUR_LEFT).any() and (flat == Label.FEMUR_RIGHT).any()
    assert (x[flat == Label.FEMUR_LEFT] < 0).all(), "left label moved to the patient's right"
    assert (x[flat == Label.FEMUR_RIGHT] > 0).all(), "right label moved to the patient's left"
    np.testing.assert_array_equal(sample_at(labels, vol.affine, world), flat)


@pytest.mark.parametrize(("src", "dst"), [("mha", "nii.gz"), ("nii.gz", "nrrd"), ("nrrd", "mha")])
def test_labels_in_another_format_keep_geometry(tmp_path: Path, src: str, dst: str) -> None:
    path, _, _ = _write_case(tmp_path, "PIR_oblique20x", src)
    _, file_affine = load_independent(path)
    vol = read_volume(path)
    labels = left_right_labels(vol.affine, vol.shape)
    back, back_affine = load_independent(write_labels(labels, vol, tmp_path / f"out.{dst}"))
    assert back.shape == DISK_SHAPE
    np.testing.assert_allclose(back_affine, file_affine, atol=1e-5)
    relabelled, _ = read_labels(tmp_path / f"out.{dst}", like=vol)
    np.testing.assert_array_equal(relabelled, labels)


def _all_axcodes() -> list[str]:
    out = []
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((0, 1), repeat=3):
            out.append(
                "".join("RAS"[p] if not f else "LPI"[p] for p, f in zip(perm, flips, strict=True))
            )
    return out


@settings(max_examples=15, deadline=None)
@given(
    codes=st.sampled_from(_all_axcodes()),
    ext=st.sampled_from(FORMATS),
    shape=st.tuples(*(st.integers(2, 6),) * 3),
    degrees=st.sampled_from([0.0, 15.0, -30.0]),
)
def test_any_layout_round_trips(
    codes: str, ext: str, shape: tuple[int, int, int], degrees: float
) -> None:
    from io_cases import rotation

    affine = disk_affine(np.eye(3), shape, rotation("y", degrees))
    canon = unique_ct(shape, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(canon, affine, Path(tmp) / f"img.{ext}", axcodes=codes, dtype=np.int16)
        disk, disk_affine_ = load_independent(path)
        assert axcodes(disk_affine_) == codes
        vol = read_volume(path)
        np.testing.assert_array_equal(vol.array, canon)
        np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
        labels = (canon % 3).astype(np.uint8)
        back, back_affine = load_independent(write_labels(labels, vol, Path(tmp) / f"l.{ext}"))
        np.testing.assert_array_equal(back, disk % 3)
        np.testing.assert_allclose(back_affine, disk_affine_, atol=1e-5)


def test_bad_axcodes_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="axis codes"):
        write_image(np.zeros((2, 2, 2)), np.eye(4), tmp_path / "x.nii.gz", axcodes="RRS")


def test_points_lps_ras_conversion_matches_the_affine_conversion() -> None:
    """Converting points and converting the affine that maps to them agree (one convention)."""
    from femurseg.io.orient import lps_to_ras, points_lps_to_ras, points_ras_to_lps
    from femurseg.types import affine_to_world

    rng = np.random.default_rng(3)
    affine = np.eye(4)
    affine[:3, :3] = rng.normal(size=(3, 3))
    affine[:3, 3] = rng.normal(size=3) * 50
    ijk = rng.integers(0, 40, size=(5, 3))
    lps = affine_to_world(ijk, affine)
    assert np.allclose(points_lps_to_ras(lps), affine_to_world(ijk, lps_to_ras(affine)))
    assert np.allclose(points_ras_to_lps(points_lps_to_ras(lps)), lps)
    assert points_lps_to_ras([1.0, 2.0, 3.0]).tolist() == [-1.0, -2.0, 3.0]
