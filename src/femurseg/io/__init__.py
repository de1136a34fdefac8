"""Reading and writing CT volumes and label maps: the one place orientation is interpreted.

Reading (every format ends in the canonical :class:`femurseg.types.Volume`: float32 HU, axes
permuted/flipped to the closest RAS+ order, 4x4 voxel -> world RAS+ mm affine, on-disk layout in
``volume.source``)::

    read_volume(path, series_uid=None, *, checks=None) -> Volume
    read_labels(path, like=None) -> (uint8 labels (X, Y, Z) canonical, affine)
    describe_volume(volume) -> {name: text}            # what `femurseg inspect` prints
    ReadAhead(path).result() -> (Volume, seconds)      # read on a thread, meanwhile do other work

Inputs: NIfTI ``.nii``/``.nii.gz`` (nibabel; scl_slope/inter applied, header kept), NRRD
``.nrrd``/``.nhdr`` and MetaImage ``.mha``/``.mhd`` (SimpleITK; LPS converted to RAS), and DICOM
series folders (pydicom; CT series chosen, slices sorted along the normal, rescaled per slice,
gaps and uneven spacing refused). Bad input raises a one-line :class:`~femurseg.errors.InputError`.

Writing (atomic: temporary file in the target folder, then :func:`os.replace`)::

    write_labels(labels, like, path) -> Path
        canonical uint8 labels back in the input's exact on-disk geometry (shape, axis order,
        affine; NIfTI header codes when the input was NIfTI); format from the ending of path.
    write_image(array, affine, path, *, axcodes="RAS", dtype=None) -> Path
        a canonical array laid out on disk in any axis order ("LPS", "PIR" ...), e.g. phantoms.
    write_volume(volume, path, *, axcodes=None, dtype=np.int16) -> Path
        a Volume's HU image, in its input's layout by default.
    write_dicom_series(volume, folder, *, info=DicomSeriesInfo(), axcodes="LPS") -> [Path]
        a CT DICOM series, one int16 file per slice, world geometry preserved.

Output endings: ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``.
"""

from femurseg.io.dicom_write import DicomSeriesInfo, write_dicom_series
from femurseg.io.orient import axcodes, canonicalize, reorient, to_disk
from femurseg.io.read import ReadAhead, describe_volume, read_labels, read_volume
from femurseg.io.validate import ReadChecks
from femurseg.io.write import write_image, write_labels, write_volume

__all__ = [
    "DicomSeriesInfo",
    "ReadAhead",
    "ReadChecks",
    "axcodes",
    "canonicalize",
    "describe_volume",
    "read_labels",
    "read_volume",
    "reorient",
    "to_disk",
    "write_dicom_series",
    "write_image",
    "write_labels",
    "write_volume",
]
