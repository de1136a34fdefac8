"""The fast reading path: ISA-L gzip for NIfTI, one-pass canonical copy, precision choice."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from femurseg.devices import Precision, inference_autocast
from femurseg.errors import InputError
from femurseg.io import read_volume


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "S"), ("P", "I", "R")])
def test_gzipped_nifti_reads_like_nibabel(tmp_path, klass, axcodes) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(-1024, 2000, size=(20, 16, 12)).astype(np.int16)
    ornt = nib.orientations.axcodes2ornt(axcodes)
    affine = nib.orientations.inv_ornt_aff(ornt, data.shape)
    affine[:3, :3] *= 0.7
    img = klass(data, affine)
    img.header.set_slope_inter(1.0, -24.0)  # scaling must be applied on the fast path too
    path = tmp_path / "ct.nii.gz"
    nib.save(img, path)
    vol = read_volume(path)
    ref = nib.as_closest_canonical(nib.load(path))
    assert np.allclose(vol.affine, ref.affine)
    assert vol.array.dtype == np.float32
    assert np.array_equal(vol.array, np.asarray(ref.dataobj, dtype=np.float32))
    assert all(s > 0 for s in vol.array.strides)  # torch.from_numpy needs positive strides
    torch.from_numpy(vol.array)


def test_truncated_gzip_is_a_clear_error(tmp_path) -> None:
    data = np.zeros((8, 8, 8), dtype=np.int16) - 1000
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="cannot read .* as NIfTI"):
        read_volume(path)


def test_precision_choices() -> None:
    cpu = torch.device("cpu")
    with inference_autocast(cpu, Precision.FLOAT32):
        assert not torch.is_autocast_enabled("cpu")
    with inference_autocast(cpu, Precision.BFLOAT16):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError):
        Precision("half")


@pytest.mark.parametrize("spacing", [4.0, 2.5])
def test_resample_of_fortran_order_matches_c_order(spacing) -> None:
    from femurseg.preprocessing.grid import Grid, spacing_grid
    from femurseg.preprocessing.resample import resample

    rng = np.random.default_rng(1)
    c_arr = rng.normal(size=(41, 30, 52)).astype(np.float32)
    f_arr = np.asfortranarray(c_arr)
    src = Grid(c_arr.shape, np.diag([0.8, 0.9, 1.0, 1.0]))
    dst = spacing_grid(src, spacing)
    a = resample(c_arr, src, dst).numpy()
    b = resample(f_arr, src, dst).numpy()
    assert a.shape == dst.shape
    assert np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("axcodes", "dtype", "slope", "inter"),
    [
        (("L", "P", "S"), "<i2", 1.0, 0.0),
        (("R", "A", "S"), ">i2", 2.0, -1024.0),  # big-endian, scaled
        (("P", "I", "R"), "<f4", 1.0, 0.0),
        (("S", "L", "A"), "<u2", -1.0, 1000.0),  # negative slope swaps the HU range ends
    ],
)
@pytest.mark.parametrize("slab_bytes", [1, 700])
def test_streamed_slabs_match_nibabel(
    tmp_path, monkeypatch, axcodes, dtype, slope, inter, slab_bytes
) -> None:
    """Many small slabs (one slice, or a few with a short last one) give nibabel's canonical."""
    from femurseg.io import nifti

    monkeypatch.setattr(nifti, "SLAB_BYTES", slab_bytes)
    rng = np.random.default_rng(2)
    hu = rng.integers(-1000, 900, size=(9, 7, 11)).astype(np.float64)
    data = np.rint((hu - inter) / slope).astype(dtype)
    ornt = nib.orientations.axcodes2ornt(axcodes)
    affine = nib.orientations.inv_ornt_aff(ornt, data.shape)
    affine[:3, 3] = (4.0, -7.0, 12.5)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(np.dtype(dtype))
    img.header.set_slope_inter(slope, inter)
    path = tmp_path / "ct.nii.gz"
    nib.save(img, path)
    assert nifti.gz_slabs(path) is not None  # the streaming path is the one under test
    vol = read_volume(path)
    ref = nib.as_closest_canonical(nib.load(path))
    assert np.allclose(vol.affine, ref.affine)
    assert np.array_equal(vol.array, np.asarray(ref.dataobj, dtype=np.float32))
    assert all(s > 0 for s in vol.array.strides)
    assert vol.source is not None and vol.source.shape == data.shape
    assert vol.source.extra["nifti_header"]["scl_slope"] == pytest.approx(slope)


def test_streaming_takes_only_single_volumes(tmp_path) -> None:
    from femurseg.io import nifti

    one = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.int16) - 1000, np.eye(4)), one)
    assert nifti.gz_slabs(one) is not None
    assert read_volume(one).shape == (4, 5, 6)
    two = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.int16) - 1000, np.eye(4)), two)
    assert nifti.gz_slabs(two) is None
    with pytest.raises(InputError, match="2 volumes"):
        read_volume(two)
    plain = tmp_path / "plain.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16) - 1000, np.eye(4)), plain)
    assert nifti.gz_slabs(plain) is None


def test_streamed_nan_and_non_hu_are_clear_errors(tmp_path, monkeypatch) -> None:
    from femurseg.io import nifti

    monkeypatch.setattr(nifti, "SLAB_BYTES", 1)
    data = np.full((6, 6, 8), -1000.0, np.float32)
    data[2, 3, 5] = np.nan
    data[1, 1, 1] = np.inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError, match="has 2 NaN or infinite voxels"):
        read_volume(path)
    mr = tmp_path / "mr.nii.gz"
    nib.save(
        nib.Nifti1Image(np.linspace(0, 1, 288, dtype=np.float32).reshape(6, 6, 8), np.eye(4)), mr
    )
    with pytest.raises(InputError, match="not CT in Hounsfield units"):
        read_volume(mr)


def test_read_ahead_hands_over_the_volume_or_the_error(tmp_path) -> None:
    from femurseg.io import ReadAhead

    data = np.full((6, 7, 8), -1000, np.int16)
    data[2:4, 2:5, 1:7] = 700
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-0.8, -0.8, 1.5, 1.0])), path)
    vol, seconds = ReadAhead(path).result()
    ref = read_volume(path)
    assert np.array_equal(vol.array, ref.array) and np.allclose(vol.affine, ref.affine)
    assert seconds > 0.0
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(path.read_bytes()[:60])
    ahead = ReadAhead(bad)
    with pytest.raises(InputError, match="cannot read"):
        ahead.result()
