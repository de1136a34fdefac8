"""Writing: NIfTI header fidelity, argument checks, atomic writes, write_volume layouts."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from io_cases import ORIENTATIONS, disk_affine, load_independent, unique_ct

from femurseg.errors import OutputError
from femurseg.io import axcodes, read_volume, write_image, write_labels, write_volume
from femurseg.types import Volume

SHAPE = (5, 6, 4)


def _nifti(path: Path, qcode: int, scode: int, slope: float = 1.0, inter: float = 0.0) -> Path:
    m, rot = ORIENTATIONS["PIR_oblique20x"]
    affine = disk_affine(m, SHAPE, rot)
    stored = np.rint((unique_ct(SHAPE) - inter) / slope).astype(np.int16)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(SHAPE)
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(affine, code=qcode)
    hdr.set_sform(affine if scode else None, code=scode)
    hdr["scl_slope"], hdr["scl_inter"], hdr["vox_offset"] = slope, inter, 352
    with gzip.open(path, "wb") as f:  # by hand: nibabel's writer would reset codes and scaling
        f.write(hdr.binaryblock + b"\0" * 4 + stored.tobytes(order="F"))
    h = nib.load(path).header
    assert (int(h["qform_code"]), int(h["sform_code"])) == (qcode, scode)
    return path


@pytest.mark.parametrize(("qcode", "scode"), [(0, 2), (1, 0), (1, 4)])
def test_nifti_header_codes_and_scaling(tmp_path: Path, qcode: int, scode: int) -> None:
    src = _nifti(tmp_path / "ct.nii.gz", qcode, scode, slope=2.0, inter=-1000.0)
    vol = read_volume(src)
    assert float(vol.array.min()) == -1000.0  # scl_slope/scl_inter applied
    out = write_labels(np.ones(vol.shape, np.uint8), vol, tmp_path / "seg.nii.gz")
    a, b = nib.load(src).header, nib.load(out).header
    assert (int(b["qform_code"]), int(b["sform_code"])) == (qcode, scode)
    np.testing.assert_allclose(nib.load(out).affine, nib.load(src).affine, atol=1e-6)
    if qcode:
        np.testing.assert_allclose(b.get_qform(), a.get_qform(), atol=1e-6)
    assert b.get_data_dtype() == np.uint8 and nib.load(out).shape == SHAPE
    assert np.asanyarray(nib.load(out).dataobj).max() == 1  # no scaling carried over


def test_trailing_singleton_is_written_back_3d(tmp_path: Path) -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(unique_ct(SHAPE)[..., None], affine), tmp_path / "ct4.nii.gz")
    vol = read_volume(tmp_path / "ct4.nii.gz")
    back = nib.load(write_labels(np.zeros(vol.shape, bool), vol, tmp_path / "seg.nii.gz"))
    assert back.shape == SHAPE
    np.testing.assert_allclose(back.affine, affine)


def test_label_argument_checks(tmp_path: Path) -> None:
    vol = read_volume(_nifti(tmp_path / "ct.nii.gz", 1, 1))
    with pytest.raises(ValueError, match="integer or bool"):
        write_labels(np.zeros(vol.shape, np.float32), vol, tmp_path / "a.nii.gz")
    with pytest.raises(ValueError, match="shape"):
        write_labels(np.zeros((2, 2, 2), np.uint8), vol, tmp_path / "a.nii.gz")
    with pytest.raises(ValueError, match="label values"):
        write_labels(np.full(vol.shape, 7, np.uint8), vol, tmp_path / "a.nii.gz")
    with pytest.raises(OutputError, match="input file itself"):
        write_labels(np.zeros(vol.shape, np.uint8), vol, tmp_path / "ct.nii.gz")
    with pytest.raises(OutputError, match="expected an output name"):
        write_labels(np.zeros(vol.shape, np.uint8), vol, tmp_path / "a.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    vol = read_volume(_nifti(tmp_path / "ct.nii.gz", 1, 1))
    target = tmp_path / "seg.nii.gz"
    target.write_bytes(b"previous result")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        write_labels(np.zeros(vol.shape, np.uint8), vol, blocker / "sub" / "seg.nii.gz")
    write_labels(np.zeros(vol.shape, np.uint8), vol, target)  # replaces in one step
    assert nib.load(target).shape == SHAPE
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("ext", ["nii.gz", "nrrd", "mha"])
def test_write_volume_layouts(tmp_path: Path, ext: str) -> None:
    src = _nifti(tmp_path / "ct.nii.gz", 1, 1)
    vol = read_volume(src)
    same = write_volume(vol, tmp_path / f"same.{ext}")
    disk, affine = load_independent(same)
    src_disk, src_affine = load_independent(src)
    assert disk.dtype == np.int16
    np.testing.assert_array_equal(disk, src_disk)
    np.testing.assert_allclose(affine, src_affine, atol=1e-5)
    lps = write_volume(vol, tmp_path / f"lps.{ext}", axcodes="LAS")
    assert axcodes(load_independent(lps)[1]) == "LAS"
    np.testing.assert_array_equal(read_volume(lps).array, vol.array)
    with pytest.raises(OutputError, match="input file itself"):
        write_volume(vol, src)


def test_write_image_dtype_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        write_image(np.full((2, 2, 2), 300.0), np.eye(4), tmp_path / "x.nii.gz", dtype=np.uint8)
    with pytest.raises(ValueError, match="3D"):
        write_image(np.zeros((2, 2)), np.eye(4), tmp_path / "x.nii.gz")
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 2, 3] = True
    disk, _ = load_independent(write_image(mask, np.eye(4), tmp_path / "m.nrrd", axcodes="LPS"))
    assert disk.dtype == np.uint8 and disk[0, 0, 3] == 1


def test_memory_volume_written_in_its_own_grid(tmp_path: Path) -> None:
    vol = Volume(unique_ct(SHAPE).astype(np.float32), np.diag([0.5, 0.5, 1.0, 1.0]))
    disk, affine = load_independent(write_labels(np.ones(SHAPE, np.uint8), vol, tmp_path / "s.mha"))
    assert disk.shape == SHAPE
    np.testing.assert_allclose(affine, vol.affine, atol=1e-6)


def test_cli_stderr_is_one_line_for_corrupt_itk_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"ObjectType = Image\nNDims = 3\nbroken")
    proc = subprocess.run(
        [sys.executable, "-m", "femurseg.cli", "inspect", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot read"), (
        proc.stderr
    )


def test_outputs_get_the_umask_mode_not_0600(tmp_path) -> None:
    import os
    import stat

    from femurseg.atomic import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.json", lambda tmp: tmp.write_text("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
