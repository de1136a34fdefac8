"""DICOM series: write/read round trips, series choice, and refused inconsistent series."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_cases import disk_affine, left_right_labels, load_independent, rotation, unique_ct
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from femurseg.errors import InputError, OutputError
from femurseg.io import DicomSeriesInfo, read_labels, read_volume, write_dicom_series, write_labels
from femurseg.types import Volume

SHAPE = (6, 7, 5)


def _volume(rot: np.ndarray | None = None, shape: tuple[int, int, int] = SHAPE) -> Volume:
    return Volume(unique_ct(shape).astype(np.float32), disk_affine(np.eye(3), shape, rot))


def _positions(files: list[Path]) -> list[float]:
    return [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files]


@pytest.mark.parametrize("codes", ["LPS", "LPI", "RAI", "PIR"])
@pytest.mark.parametrize("oblique", [False, True])
def test_round_trip(tmp_path: Path, codes: str, oblique: bool) -> None:
    vol = _volume(rotation("z", 20.0) @ rotation("x", 10.0) if oblique else None)
    files = write_dicom_series(vol, tmp_path / "ct", axcodes=codes)
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.pixel_array.dtype == np.int16
    back = read_volume(tmp_path / "ct")
    assert back.source is not None and back.source.fmt == "dicom"
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


def test_rescale_precision(tmp_path: Path) -> None:
    vol = _volume()
    hu = vol.array + np.float32(0.3)
    info = DicomSeriesInfo(rescale_slope=0.5, rescale_intercept=-1000.0)
    write_dicom_series(Volume(hu, vol.affine), tmp_path, info=info)
    back = read_volume(tmp_path)
    assert np.abs(back.array - hu).max() <= 0.25 + 1e-6


def test_shuffled_files_and_per_slice_rescale(tmp_path: Path) -> None:
    vol = _volume()
    files = write_dicom_series(vol, tmp_path / "src")
    # one slice stored with a different slope/intercept: HU must not change
    ds = pydicom.dcmread(files[2])
    hu = ds.pixel_array.astype(np.float64) * 1.0 - 1024.0
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-2000"
    ds.PixelData = np.rint((hu + 2000.0) / 2.0).astype("<i2").tobytes()
    ds.save_as(files[2])
    dst = tmp_path / "shuffled" / "nested"
    dst.mkdir(parents=True)
    names = [f"x{n}" for n in range(len(files))]
    random.Random(3).shuffle(names)
    for f, n in zip(files, names, strict=True):
        shutil.copy(f, dst / n)  # no extension, random order on disk
    back = read_volume(tmp_path / "shuffled")
    expected = vol.array.copy()
    expected[:, :, 2] = 2.0 * np.rint((expected[:, :, 2] + 2000.0) / 2.0) - 2000.0
    np.testing.assert_array_equal(back.array, expected)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


def _sr(folder: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    folder.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(folder / "report.dcm", ds, enforce_file_format=True)


def test_ct_chosen_over_localizer_and_non_image(tmp_path: Path) -> None:
    vol = _volume()
    study = generate_uid()
    write_dicom_series(vol, tmp_path, info=DicomSeriesInfo(study_uid=study, series_number=2))
    scout = Volume(np.full((6, 7, 1), -1000.0, np.float32), vol.affine)
    loc = DicomSeriesInfo(
        study_uid=study, series_number=1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")
    )
    write_dicom_series(scout, tmp_path, info=loc)
    _sr(tmp_path)
    (tmp_path / "notes.txt").write_text("not dicom")
    back = read_volume(tmp_path)
    np.testing.assert_array_equal(back.array, vol.array)


def test_two_ct_series_largest_wins_and_series_selects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big, small = _volume(), _volume(shape=(6, 7, 3))
    big_uid, small_uid = generate_uid(), generate_uid()
    write_dicom_series(big, tmp_path, info=DicomSeriesInfo(series_uid=big_uid, series_number=1))
    write_dicom_series(small, tmp_path, info=DicomSeriesInfo(series_uid=small_uid, series_number=2))
    with caplog.at_level(logging.WARNING, logger="femurseg.io"):
        chosen = read_volume(tmp_path)
    assert chosen.shape == big.shape
    assert small_uid in caplog.text and "--series" in caplog.text
    picked = read_volume(tmp_path, series_uid=small_uid)
    assert picked.shape == small.shape
    assert picked.source is not None and picked.source.extra["dicom"]["series_uid"] == small_uid
    with pytest.raises(InputError, match="not in") as err:
        read_volume(tmp_path, series_uid="1.2.3.4")
    assert big_uid in str(err.value) and small_uid in str(err.value)


def test_single_file_reads_its_series(tmp_path: Path) -> None:
    vol = _volume()
    files = write_dicom_series(vol, tmp_path)
    back = read_volume(files[0])
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.source is not None and back.source.path == tmp_path


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    below, above = _positions([files[1], files[3]])
    files[2].unlink()
    with pytest.raises(InputError, match="missing slice") as err:
        read_volume(tmp_path)
    assert f"{below:.2f}" in str(err.value) and f"{above:.2f}" in str(err.value)


def _edit(path: Path, **tags: object) -> None:
    ds = pydicom.dcmread(path)
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.save_as(path)


def test_uneven_spacing_is_refused(tmp_path: Path) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    ipp = [float(v) for v in pydicom.dcmread(files[2]).ImagePositionPatient]
    ipp[2] += 0.8  # step 2.5 mm becomes 3.3 then 1.7
    _edit(files[2], ImagePositionPatient=[f"{v:.6f}" for v in ipp])
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_volume(tmp_path)


def test_duplicate_position_is_refused(tmp_path: Path) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    _edit(files[3], ImagePositionPatient=pydicom.dcmread(files[2]).ImagePositionPatient)
    with pytest.raises(InputError, match="same position"):
        read_volume(tmp_path)


def test_mixed_orientation_is_refused(tmp_path: Path) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    _edit(files[1], ImageOrientationPatient=["0", "1", "0", "1", "0", "0"])
    with pytest.raises(InputError, match="mixes 2 different orientations"):
        read_volume(tmp_path)


def test_gantry_tilt_is_refused(tmp_path: Path) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    for k, f in enumerate(files):
        ipp = [float(v) for v in pydicom.dcmread(f).ImagePositionPatient]
        ipp[1] += 0.5 * k
        _edit(f, ImagePositionPatient=[f"{v:.6f}" for v in ipp])
    with pytest.raises(InputError, match="shifted in-plane"):
        read_volume(tmp_path)


def test_only_series_not_ct(tmp_path: Path) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    for f in files:
        _edit(f, Modality="MR")
    with pytest.raises(InputError, match="no CT series"):
        read_volume(tmp_path)


def test_only_non_image_objects(tmp_path: Path) -> None:
    _sr(tmp_path)
    with pytest.raises(InputError, match="no image series"):
        read_volume(tmp_path)


def test_labels_for_dicom_written_as_nifti(tmp_path: Path) -> None:
    vol = _volume(rotation("z", 20.0))
    write_dicom_series(vol, tmp_path / "ct")
    back = read_volume(tmp_path / "ct")
    labels = left_right_labels(back.affine, back.shape)
    out = write_labels(labels, back, tmp_path / "seg.nii.gz")
    disk, affine = load_independent(out)
    assert back.source is not None
    assert disk.shape == back.source.shape
    np.testing.assert_allclose(affine, back.source.affine, atol=1e-5)
    np.testing.assert_array_equal(read_labels(out, like=back)[0], labels)


def test_writer_refuses_overwrite_and_overflow(tmp_path: Path) -> None:
    vol = _volume()
    write_dicom_series(vol, tmp_path)
    with pytest.raises(OutputError, match="already exists"):
        write_dicom_series(vol, tmp_path)
    hot = Volume(vol.array + 40000.0, vol.affine)
    with pytest.raises(ValueError, match="do not fit int16"):
        write_dicom_series(hot, tmp_path / "hot")


@pytest.mark.parametrize("codes", ["LPS", "PIR"])
def test_written_pixels_sit_where_the_standard_says(tmp_path: Path, codes: str) -> None:
    """Oracle from the DICOM standard (C.7.6.2.1.1), not from femurseg's reader."""
    vol = _volume(rotation("z", 20.0))
    for f in write_dicom_series(vol, tmp_path, axcodes=codes):
        ds = pydicom.dcmread(f)
        ipp = np.array(ds.ImagePositionPatient, dtype=float)
        row, col = (
            np.array(ds.ImageOrientationPatient[:3]),
            np.array(ds.ImageOrientationPatient[3:]),
        )
        dr, dc = (float(v) for v in ds.PixelSpacing)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        for r, c in [(0, 0), (0, ds.Columns - 1), (ds.Rows - 1, 1)]:
            lps = ipp + c * dc * row + r * dr * col
            ras = lps * [-1.0, -1.0, 1.0]
            (ijk,) = np.argwhere(vol.array == hu[r, c])  # values are unique
            np.testing.assert_allclose(vol.index_to_world(ijk), ras, atol=1e-4)


def test_localizer_inside_the_ct_series_is_left_out(tmp_path: Path) -> None:
    vol = _volume()
    uid = generate_uid()
    write_dicom_series(vol, tmp_path / "ct", info=DicomSeriesInfo(series_uid=uid))
    scout = Volume(np.full((6, 7, 1), -1000.0, np.float32), vol.affine)
    loc = DicomSeriesInfo(series_uid=uid, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    write_dicom_series(scout, tmp_path / "scout", info=loc)
    for f in (tmp_path / "scout").iterdir():
        shutil.move(str(f), tmp_path / "ct" / f"scout_{f.name}")
    back = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(back.array, vol.array)


def test_byte_identical_duplicate_file_is_read_once(tmp_path: Path) -> None:
    vol = _volume()
    files = write_dicom_series(vol, tmp_path)
    shutil.copy(files[2], tmp_path / "copy_of_slice.dcm")
    back = read_volume(tmp_path)
    np.testing.assert_array_equal(back.array, vol.array)
    # a different file claiming the same instance is still refused
    ds = pydicom.dcmread(files[2])
    ds.ImagePositionPatient = pydicom.dcmread(files[3]).ImagePositionPatient
    ds.save_as(tmp_path / "copy_of_slice.dcm")
    with pytest.raises(InputError, match="same position"):
        read_volume(tmp_path)


@pytest.mark.parametrize("keep", [200, 600])
def test_truncated_file_is_named(tmp_path: Path, keep: int) -> None:
    files = write_dicom_series(_volume(), tmp_path)
    raw = files[-1].read_bytes()
    files[-1].write_bytes(raw[:keep])  # an interrupted copy of the last slice
    with pytest.raises(InputError, match=str(files[-1].name)) as err:
        read_volume(tmp_path)
    assert "\n" not in str(err.value) and "expected" in str(err.value)
