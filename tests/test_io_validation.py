"""Every bad input gives a one-line InputError, and `femurseg inspect` maps it to exit 2."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_inputs import BAD, _ct, _nii, _no_xform, _series_for_nifti, _unoriented
from io_cases import unique_ct
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.errors import InputError
from femurseg.io import read_labels, read_volume, write_dicom_series
from femurseg.types import Volume

runner = CliRunner()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_input_error(tmp_path: Path, case: str) -> None:
    make, pattern, _ = BAD[case]
    path = make(tmp_path)
    with pytest.raises(InputError, match=pattern) as err:
        read_volume(path)
    msg = str(err.value)
    assert "\n" not in msg and "expected" in msg, msg


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR"])
def test_stated_orientation_is_applied_and_recorded(tmp_path: Path, codes: str) -> None:
    from femurseg.io.orient import axcodes
    from femurseg.io.validate import ReadChecks

    path = _unoriented(tmp_path)
    vol = read_volume(path, checks=ReadChecks(assume_orientation=codes.lower()))
    assert vol.source is not None and axcodes(vol.source.affine) == codes
    assert vol.source.extra["assumed_orientation"] == codes
    assert sorted(vol.spacing) == [1.0, 1.0, 3.0]
    # a label map on the same unoriented grid is read with the same stated orientation
    labels, _ = read_labels(
        _no_xform(np.zeros((5, 6, 7), dtype=np.uint8), tmp_path / "lab.nii.gz"), like=vol
    )
    assert labels.shape == vol.shape


def test_bad_stated_orientation_is_refused() -> None:
    from femurseg.io.validate import ReadChecks

    for bad in ("RRS", "LP", "XYZ"):
        with pytest.raises(InputError, match="three axis codes"):
            ReadChecks(assume_orientation=bad)


def test_series_option_needs_dicom(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a DICOM folder"):
        read_volume(_series_for_nifti(tmp_path), series_uid="1.2.3")


@pytest.mark.parametrize(
    "case", ["missing", "corrupt_gzip", "4d", "normalised", "no_dicom", "unoriented"]
)
def test_inspect_bad_input_exits_2(tmp_path: Path, case: str) -> None:
    result = runner.invoke(app, ["inspect", str(BAD[case][0](tmp_path))])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output


def test_plausible_ct_ranges_accepted(tmp_path: Path) -> None:
    data = _ct((4, 4, 4, 1))  # trailing singleton 4th dimension is squeezed
    data[0, 0, 0, 0] = -3024.0  # scanner padding
    data[1, 1, 1, 0] = 25000.0  # metal on an extended HU scale
    vol = read_volume(_nii(tmp_path / "ok.nii.gz", data))
    assert vol.shape == (4, 4, 4) and vol.source is not None and vol.source.shape == (4, 4, 4)
    assert float(vol.array.min()) == -3024.0 and float(vol.array.max()) == 25000.0


def test_inspect_prints_summary(tmp_path: Path) -> None:
    vol = Volume(unique_ct((4, 5, 3)).astype(np.float32), np.diag([0.5, 0.6, 2.0, 1.0]))
    write_dicom_series(vol, tmp_path)
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    expected = [
        "format: dicom",
        "on-disk shape: 4 x 5 x 3 (axes LPS)",
        "canonical shape: 4 x 5 x 3 (axes RAS)",
        "spacing: 0.5 x 0.6 x 2 mm",
        "world bounding box: x 0.0..1.5, y 0.0..2.4, z 0.0..4.0",
        "HU range: -1000 .. -941",
    ]
    for key in expected:
        assert key in result.output, result.output
    bad = runner.invoke(app, ["inspect", str(tmp_path), "--series", "9.9.9"])
    assert bad.exit_code == 2 and "available" in bad.output


def test_read_labels_checks(tmp_path: Path) -> None:
    ct = read_volume(_nii(tmp_path / "ct.nii.gz", _ct()))
    half = _nii(tmp_path / "half.nii.gz", np.full((5, 6, 7), 0.5, np.float32))
    with pytest.raises(InputError, match="non-integer"):
        read_labels(half)
    neg = _nii(tmp_path / "neg.nii.gz", np.full((5, 6, 7), -1, np.int16))
    with pytest.raises(InputError, match="expected 0 to 255"):
        read_labels(neg)
    small = _nii(tmp_path / "small.nii.gz", np.zeros((5, 6, 6), np.uint8))
    with pytest.raises(InputError, match="canonical shape"):
        read_labels(small, like=ct)
    shifted = _nii(
        tmp_path / "shift.nii.gz", np.zeros((5, 6, 7), np.uint8), np.diag([1, 1, 2.5, 1])
    )
    with pytest.raises(InputError, match="placed differently"):
        read_labels(shifted, like=ct)
    with pytest.raises(InputError, match="is DICOM"):
        read_labels(tmp_path)
    labels, affine = read_labels(
        _nii(tmp_path / "ok.nii.gz", np.ones((5, 6, 7), np.float32)), like=ct
    )
    assert labels.dtype == np.uint8 and labels.shape == ct.shape and labels.all()
    np.testing.assert_array_equal(affine, ct.affine)


def test_intercept_twice_and_hu_times_ten_are_refused(tmp_path) -> None:
    """Both pass a range check; the histogram of air and soft tissue gives them away."""
    from model_synth import synth_case

    from femurseg.io import read_volume, write_image

    image, _, affine = synth_case(seed=4)
    ok = write_image(image, affine, tmp_path / "ok.nii.gz", dtype=np.int16)
    read_volume(ok)
    twice = write_image(image - 1024.0, affine, tmp_path / "twice.nii.gz", dtype=np.int16)
    with pytest.raises(InputError, match="intercept seems applied twice"):
        read_volume(twice)
    ten = write_image(image * 10.0, affine, tmp_path / "ten.nii.gz", dtype=np.int16)
    with pytest.raises(InputError, match="times ten"):
        read_volume(ten)


def test_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    import struct

    for name in ("big.nii", "big.nii.gz"):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(np.full((20, 20, 20), -1000, np.int16), np.eye(4)), path)
        raw = bytearray(
            gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        )
        struct.pack_into("<hhh", raw, 42, 4000, 4000, 4000)  # dim[1..3]: 128 GB of int16
        path.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
        with pytest.raises(InputError, match="header claims a 4000 x 4000 x 4000"):
            read_volume(path)


def test_bad_inputs_page_is_what_the_code_answers(tmp_path: Path) -> None:
    """docs/bad_inputs.md is generated from these cases; regenerate it when a message changes
    (python scripts/bad_inputs_table.py)."""
    import re

    from bad_inputs import markdown_table

    def mask(text: str) -> str:
        # a library's own wording inside our message may change with its version
        return re.sub(r"\((?:\w+Error|File cannot be read)[^)]*\)", "(...)", text)

    page = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
    assert mask(page.read_text(encoding="utf-8")) == mask(markdown_table(tmp_path))
