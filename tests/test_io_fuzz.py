"""Fuzzed readers: damaged files give a one-line InputError, never a traceback or a wrong scan.

Valid small scans (NIfTI gz and plain, NRRD, MHA, a DICOM series) are truncated or have bytes
overwritten at random places; reading must either succeed with the original shape or raise
:class:`InputError`. Any other exception is a bug.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_synth import synth_case

from femurseg.errors import InputError
from femurseg.io import read_volume, write_dicom_series, write_image
from femurseg.types import Volume

#: examples per reader in `make test`; for a longer run set FEMURSEG_FUZZ_EXAMPLES=2000
FUZZ = settings(
    max_examples=int(os.environ.get("FEMURSEG_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    image, _, affine = synth_case(shape=(24, 20, 16), seed=7)
    image[:2] = -1000.0  # some air
    out = {}
    for name in ("ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha"):
        out[name] = write_image(image, affine, root / name, dtype=np.int16)
    write_dicom_series(Volume(image, affine), root / "dcm")
    out["dcm"] = root / "dcm"
    return out


def _read_or_input_error(path: Path, shape: tuple[int, ...]) -> None:
    try:
        vol = read_volume(path)
    except InputError as err:
        msg = str(err)
        assert msg and "\n" not in msg.strip()
        return
    assert vol.array.shape == shape or sorted(vol.array.shape) == sorted(shape)
    assert np.isfinite(vol.array).all()


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha"])
@FUZZ
@given(data=st.data())
def test_damaged_image_files(originals, tmp_path, name, data) -> None:
    src = originals[name]
    shape = read_volume(src).array.shape
    raw = bytearray(src.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
        raw = raw[:cut]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            # headers matter most: half of the flips land in the first 512 bytes
            hi = min(len(raw), 512) if data.draw(st.booleans()) else len(raw)
            pos = data.draw(st.integers(0, hi - 1), label="pos")
            raw[pos] = data.draw(st.integers(0, 255), label="byte")
    bad = tmp_path / name
    bad.write_bytes(bytes(raw))
    _read_or_input_error(bad, shape)


@FUZZ
@given(data=st.data())
def test_damaged_dicom_series(originals, tmp_path, data) -> None:
    src = originals["dcm"]
    shape = read_volume(src).array.shape
    folder = tmp_path / "dcm"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(src, folder)
    files = sorted(folder.iterdir())
    victim = files[data.draw(st.integers(0, len(files) - 1), label="file")]
    raw = bytearray(victim.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
            raw[pos] = data.draw(st.integers(0, 255), label="byte")
    victim.write_bytes(bytes(raw))
    _read_or_input_error(folder, shape)
