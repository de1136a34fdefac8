"""The real CT in ../shared (TotalSegmentator layout): sides, position, and label write-back."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from femurseg.io import read_labels, read_volume, write_labels
from femurseg.types import Label

pytestmark = pytest.mark.shared


def test_real_ct_sides_and_write_back(totalseg_case: Path, tmp_path: Path) -> None:
    vol = read_volume(totalseg_case / "ct.nii.gz")
    assert vol.array.dtype == np.float32 and float(vol.array.min()) < -900
    seg = totalseg_case / "segmentations"
    left, _ = read_labels(seg / "femur_left.nii.gz", like=vol)
    right, _ = read_labels(seg / "femur_right.nii.gz", like=vol)
    assert left.any() and right.any() and not (left & right).any()

    c_left = vol.index_to_world(np.argwhere(left).mean(axis=0))
    c_right = vol.index_to_world(np.argwhere(right).mean(axis=0))
    # RAS+: +x is the patient's right, so the left femur has the smaller x
    assert c_left[0] < c_right[0]
    assert c_left[0] < 0 < c_right[0]  # scan roughly centred on the patient
    z = vol.index_to_world(np.array([[0, 0, 0], [0, 0, vol.shape[2] - 1]]))[:, 2]
    lower_third = z.min() + (z.max() - z.min()) / 3
    assert c_left[2] < lower_third and c_right[2] < lower_third  # hips/thighs at the bottom

    labels = np.zeros(vol.shape, np.uint8)
    labels[left > 0] = Label.FEMUR_LEFT
    labels[right > 0] = Label.FEMUR_RIGHT
    out = write_labels(labels, vol, tmp_path / "femur.nii.gz")
    ct_img, out_img = nib.load(totalseg_case / "ct.nii.gz"), nib.load(out)
    assert out_img.shape == ct_img.shape
    np.testing.assert_array_equal(out_img.affine, ct_img.affine)
    for code in ("qform_code", "sform_code"):
        assert int(out_img.header[code]) == int(ct_img.header[code])
    disk = np.asanyarray(out_img.dataobj)
    np.testing.assert_array_equal(
        disk == Label.FEMUR_LEFT, np.asanyarray(nib.load(seg / "femur_left.nii.gz").dataobj) > 0
    )
    np.testing.assert_array_equal(
        disk == Label.FEMUR_RIGHT, np.asanyarray(nib.load(seg / "femur_right.nii.gz").dataobj) > 0
    )
