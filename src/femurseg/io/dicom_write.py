"""Writing a Volume as a CT DICOM series (one file per slice) with pydicom.

The world geometry is preserved: the volume is laid out in the chosen axis order (default LPS,
the usual axial DICOM layout: rows run to patient Left, columns to Posterior, slices go
Superior), and each slice gets ImagePositionPatient / ImageOrientationPatient / PixelSpacing from
the affine converted to LPS. HU are stored as int16 with RescaleSlope/RescaleIntercept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from femurseg.errors import OutputError
from femurseg.io.orient import ras_to_lps, reorient
from femurseg.types import Volume

_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class DicomSeriesInfo:
    """Identifying tags and storage settings for :func:`write_dicom_series`.

    UIDs left as None are generated. Give the same ``study_uid`` and ``frame_of_reference_uid``
    to several calls to put their series in one study and one patient frame.

    Attributes:
        patient_name, patient_id: PatientName and PatientID.
        study_uid, series_uid, frame_of_reference_uid: UIDs, None to generate.
        series_number: SeriesNumber; also the file-name prefix ``S{series_number:03d}_``.
        series_description: SeriesDescription.
        image_type: ImageType values; ``("ORIGINAL", "PRIMARY", "LOCALIZER")`` marks a scout.
        rescale_slope, rescale_intercept: stored int16 -> HU mapping (HU = v * slope + inter).
    """

    patient_name: str = "Anonymous^"
    patient_id: str = "FEMURSEG"
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_number: int = 1
    series_description: str = "femurseg CT"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    rescale_slope: float = 1.0
    rescale_intercept: float = -1024.0

    def __post_init__(self) -> None:
        if not self.rescale_slope > 0:
            raise ValueError(f"rescale_slope={self.rescale_slope}; expected > 0")
        if not 0 <= self.series_number < 1000:
            raise ValueError(f"series_number={self.series_number}; expected 0 to 999")


def _ds(values: np.ndarray) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    info: DicomSeriesInfo | None = None,
    axcodes: str = "LPS",
) -> list[Path]:
    """Write ``volume`` as a CT series, one file per slice, into ``folder``.

    Args:
        volume: canonical CT (float HU, affine voxel -> RAS+ mm); its in-plane axes must be
            perpendicular to its slice axis (any oblique rotation is fine, shear is not).
        folder: output folder, created if needed; existing files are never overwritten.
        info: patient/study/series tags and rescale settings (defaults: new UIDs, slope 1,
            intercept -1024).
        axcodes: on-disk layout of the series; the third letter is the slice direction
            (``"LPS"``: axial slices from inferior to superior).

    Returns:
        The written files, in slice order ``S{series}_{k:05d}.dcm``.

    Raises:
        ValueError: HU that do not fit int16 with the given rescale, or a sheared affine.
        OutputError: a target file already exists or cannot be written.
    """
    info = info or DicomSeriesInfo()
    arr, affine = reorient(np.asarray(volume.array), volume.affine, axcodes)
    lps = ras_to_lps(affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row, col, step = (lps[:3, n] / spacing[n] for n in range(3))
    normal = np.cross(row, col)
    if abs(float(row @ col)) > 1e-6 or abs(abs(float(normal @ step)) - 1.0) > 1e-6:
        raise ValueError("volume affine is sheared; a DICOM series needs orthogonal axes")
    stored = np.rint((arr.astype(np.float64) - info.rescale_intercept) / info.rescale_slope)
    if stored.min() < _INT16.min or stored.max() > _INT16.max:
        raise ValueError(
            f"HU {arr.min():g}..{arr.max():g} do not fit int16 with slope {info.rescale_slope:g} "
            f"and intercept {info.rescale_intercept:g}; raise the slope"
        )
    stored16 = stored.astype(np.int16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = info.study_uid or generate_uid()
    series_uid = info.series_uid or generate_uid()
    for_uid = info.frame_of_reference_uid or generate_uid()
    now = dt.datetime.now()
    paths = []
    for k in range(arr.shape[2]):
        path = folder / f"S{info.series_number:03d}_{k + 1:05d}.dcm"
        if path.exists():
            raise OutputError(
                f"{path} already exists; expected a new or empty folder; choose another folder"
            )
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = info.patient_name
        ds.PatientID = info.patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = info.series_number
        ds.SeriesDescription = info.series_description
        ds.Modality = "CT"
        ds.Manufacturer = "femurseg"
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.ImageType = list(info.image_type)
        ds.KVP = "120"
        ipp = lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + lps[:3, 3]
        ds.ImagePositionPatient = _ds(ipp)
        ds.ImageOrientationPatient = _ds(np.concatenate([row, col]))
        ds.PixelSpacing = _ds(np.array([spacing[1], spacing[0]]))
        ds.SliceThickness = format_number_as_ds(float(spacing[2]))
        ds.SliceLocation = format_number_as_ds(float(ipp @ normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = format_number_as_ds(info.rescale_intercept)
        ds.RescaleSlope = format_number_as_ds(info.rescale_slope)
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = np.ascontiguousarray(stored16[:, :, k].T).astype("<i2").tobytes()
        try:
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err}; check the folder is writable") from err
        paths.append(path)
    return paths
