"""DICOM as hospitals export it: compressed transfer syntaxes and enhanced (multi-frame) CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from model_synth import synth_case
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from femurseg.errors import InputError
from femurseg.io import read_volume
from femurseg.io.dicom_write import write_dicom_series
from femurseg.types import Volume


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> tuple[Path, Volume]:
    root = tmp_path_factory.mktemp("dicom")
    image, _, affine = synth_case(shape=(32, 32, 8), seed=3)
    write_dicom_series(Volume(image, affine), root / "plain")
    return root / "plain", read_volume(root / "plain")


def _rewrite(src: Path, dst: Path, change) -> Path:
    dst.mkdir()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        change(ds, dst / f.name)
    return dst


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_series_read_like_the_uncompressed_one(series, tmp_path, syntax) -> None:
    plain, ref = series

    def compress(ds, out):
        ds.compress(syntax)
        ds.save_as(out)

    folder = _rewrite(plain, tmp_path / "c", compress)
    assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == syntax
    got = read_volume(folder)
    assert np.array_equal(got.array, ref.array) and np.allclose(got.affine, ref.affine)


def test_deflated_series(series, tmp_path) -> None:
    plain, ref = series

    def deflate(ds, out):
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(out, enforce_file_format=True)

    got = read_volume(_rewrite(plain, tmp_path / "d", deflate))
    assert np.array_equal(got.array, ref.array)


def test_jpeg_lossless_series(series, tmp_path) -> None:
    """JPEG Lossless SV1 (1.2.840.10008.1.2.4.70), the most common lossless archive syntax."""
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm (dev extra) encodes the test series")
    plain, ref = series
    out = tmp_path / "jl"
    out.mkdir()
    for f in sorted(plain.iterdir()):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(f))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(out / f.name))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
    ts = pydicom.dcmread(next(out.iterdir())).file_meta.TransferSyntaxUID
    assert ts == "1.2.840.10008.1.2.4.70"
    assert np.array_equal(read_volume(out).array, ref.array)


def test_enhanced_multiframe_ct_is_read_frame_by_frame(series, tmp_path) -> None:
    hd = pytest.importorskip("highdicom")
    plain, ref = series
    legacy = [pydicom.dcmread(f) for f in sorted(plain.iterdir())]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=legacy,
        series_instance_uid=hd.UID(),
        series_number=9,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    (tmp_path / "enh").mkdir()
    enhanced.save_as(tmp_path / "enh" / "ct.dcm")
    got = read_volume(tmp_path / "enh")
    assert got.source.extra["dicom"]["frames"] is not None
    assert np.array_equal(got.array, ref.array) and np.allclose(got.affine, ref.affine)
    # a frame without its plane position cannot be placed: a clear error
    broken = pydicom.dcmread(tmp_path / "enh" / "ct.dcm")
    del broken.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence
    (tmp_path / "bad").mkdir()
    broken.save_as(tmp_path / "bad" / "ct.dcm")
    with pytest.raises(InputError, match="frame 4 has no plane position"):
        read_volume(tmp_path / "bad")


def test_undecodable_pixels_name_the_file_and_syntax(series, tmp_path) -> None:
    plain, _ = series

    def mislabel(ds, out):  # a JPEG baseline frame that is not a JPEG: no decoder can read it
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
        ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg stream"])
        ds.save_as(out, enforce_file_format=True)

    folder = _rewrite(plain, tmp_path / "m", mislabel)
    syntax = r"1\.2\.840\.10008\.1\.2\.4\.50"
    with pytest.raises(InputError, match=r"cannot decode pixel data of .*" + syntax):
        read_volume(folder)


def test_series_without_rescale_tags_says_so(series, tmp_path) -> None:
    plain, _ = series

    def raw_numbers(ds, out):  # stored as CT numbers + 1024 with the rescale tags dropped
        px = ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept) + 1024
        ds.PixelRepresentation = 0
        ds.PixelData = px.clip(0, 65535).astype(np.uint16).tobytes()
        del ds.RescaleIntercept
        del ds.RescaleSlope
        ds.save_as(out)

    folder = _rewrite(plain, tmp_path / "raw", raw_numbers)
    with pytest.raises(InputError, match="no RescaleIntercept or RescaleSlope"):
        read_volume(folder)
