"""NIfTI (.nii, .nii.gz) reading and writing with nibabel.

nibabel's own voxel -> RAS+ affine is used (sform when its code is set, else qform), and the
scl_slope/scl_inter scaling is applied on reading. The header is kept so that a label map written
back carries the same qform/sform matrices and codes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt

from femurseg.errors import InputError
from femurseg.io.raw import RawImage

log = logging.getLogger(__name__)

#: NIfTI xform code written for geometry that came from a scanner (DICOM, ITK formats).
SCANNER_CODE = 1


def read_nifti(path: Path) -> RawImage:
    """Read a NIfTI-1/2 file in its on-disk axis order.

    Returns:
        RawImage with the scaled voxel values (shape as stored, trailing dims kept), nibabel's
        affine (voxel -> RAS+ mm) and ``extra["nifti_header"]``.

    Raises:
        InputError: unreadable, truncated or non-NIfTI content, or non-numeric voxels.
    """
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise TypeError(f"nibabel read it as {type(img).__name__}")
        data = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as err:  # nibabel, gzip and zlib each raise their own types
        raise InputError(
            f"cannot read {path} as NIfTI ({type(err).__name__}: {' '.join(str(err).split())}); "
            "expected a complete .nii/.nii.gz file; check that it is not truncated or corrupt"
        ) from err
    if data.dtype.kind not in "biuf":
        raise InputError(
            f"{path} holds {data.dtype} voxels; expected one scalar number per voxel (not RGB or "
            "complex); convert it to a scalar CT image"
        )
    hdr = img.header
    if int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 0:
        log.warning(
            "%s has no qform or sform (both codes 0): orientation, hence left/right, is "
            "unknown and assumed from voxel order; fix the header if sides come out swapped",
            path,
        )
    return RawImage(data, affine, "nifti", {"nifti_header": hdr.copy()})


def write_nifti(
    array: npt.NDArray[Any],
    affine: npt.NDArray[np.float64],
    path: Path,
    header: Any = None,
) -> None:
    """Write an array in on-disk axis order to ``path`` (gzip if it ends in .gz).

    Args:
        array: shape (I, J, K) in the file's axis order, already in the dtype to store.
        affine: 4x4 voxel -> RAS+ mm of that axis order.
        path: output file.
        header: a NIfTI header to copy (qform/sform matrices and codes kept as they are; its
            dtype, scaling and display range are replaced). Its affine must equal ``affine``.
            Without one, both qform and sform are set to ``affine`` with the scanner code.
    """
    if header is not None:
        hdr = header.copy()
        hdr.set_data_dtype(array.dtype)
        hdr.set_slope_inter(1.0, 0.0)
        hdr["cal_min"], hdr["cal_max"] = 0.0, 0.0
        if not np.allclose(hdr.get_best_affine(), affine, atol=1e-5):
            raise ValueError("header affine differs from the affine to write")
        klass = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
        img = klass(array, None, header=hdr)
    else:
        img = nib.Nifti1Image(array, affine)
        img.set_qform(affine, code=SCANNER_CODE)
        img.set_sform(affine, code=SCANNER_CODE)
        img.header.set_xyzt_units("mm")
    img.header.set_data_dtype(array.dtype)
    nib.save(img, str(path))
