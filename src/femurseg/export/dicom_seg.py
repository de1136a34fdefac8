"""DICOM Segmentation (DICOM-SEG) of the femurs for a DICOM CT input, written with highdicom.

The SEG references the source CT series (same study, frame of reference, one frame per source
slice it covers) so PACS viewers and 3D Slicer overlay it on that series. Two binary segments:

====  =============  =====================================  ==================================
 #    label          segmented property type                type modifier (laterality)
====  =============  =====================================  ==================================
 1    Femur left     SCT 71341001 "Femur"                   SCT 7771000 "Left"
 2    Femur right    SCT 71341001 "Femur"                   SCT 24028007 "Right"
====  =============  =====================================  ==================================

Category SCT 91723000 "Anatomical Structure"; the anatomic region is the femur with the same
laterality modifier. Laterality is post-coordinated with a modifier, as DICOM PS3.16 CID 7151
and dcmqi do, because the pre-coordinated "left femur" concepts are not in the DICOM code
dictionaries. The algorithm is identified as femurseg with its version (family "Artificial
Intelligence").

highdicom is an optional dependency (extra ``dicomseg``); it is imported when a SEG is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from femurseg.atomic import atomic_write
from femurseg.config import check_range
from femurseg.errors import InputError, OutputError
from femurseg.io.orient import ras_to_lps, to_disk
from femurseg.types import Label, SourceGeometry, Volume

if TYPE_CHECKING:
    import highdicom as hd

log = logging.getLogger(__name__)

#: allowed distance (mm) between a source file's ImagePositionPatient and the read geometry.
POSITION_ATOL_MM = 0.01


@dataclass(frozen=True)
class DicomSegConfig:
    """Identifying tags of the written SEG series.

    Attributes:
        series_number: SeriesNumber of the SEG series.
        series_description: SeriesDescription.
        content_label: ContentLabel (a DICOM CS: upper case, digits, underscore, max 16).
    """

    series_number: int = 300
    series_description: str = "femurseg femur segmentation"
    content_label: str = "FEMURSEG"

    def __post_init__(self) -> None:
        check_range("series_number", self.series_number, 1, 99999)
        ok = self.content_label.replace("_", "").isalnum() and self.content_label.isupper()
        if not ok or len(self.content_label) > 16:
            raise InputError(
                f"content_label={self.content_label!r}; expected up to 16 upper-case letters, "
                "digits or underscores"
            )


def _source_datasets(volume: Volume) -> tuple[SourceGeometry, list[Any]]:
    """Read the source slice headers in slice order and check they match the read geometry."""
    import pydicom

    src = volume.source
    dcm = src.extra.get("dicom") if src is not None else None
    if src is None or src.fmt != "dicom" or not dcm:
        fmt = "an in-memory volume" if src is None else f"a {src.fmt} file"
        raise InputError(
            f"DICOM-SEG needs a DICOM series input but this volume comes from {fmt}; expected "
            "a volume read from a DICOM folder; drop --dicom-seg or give the DICOM series"
        )
    files, uids = dcm["files"], dcm["sop_instance_uids"]
    lps = ras_to_lps(src.affine)
    datasets = []
    for k, (f, uid) in enumerate(zip(files, uids, strict=True)):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as err:  # noqa: BLE001 - any unreadable source file
            raise InputError(
                f"cannot re-read source slice {f} ({type(err).__name__}: {err}); expected the "
                "DICOM files read at the start; keep the input folder in place while running"
            ) from err
        if str(ds.SOPInstanceUID) != uid:
            raise InputError(
                f"source slice {f} now has SOPInstanceUID {ds.SOPInstanceUID}, expected {uid}; "
                "the input folder changed while running; run again"
            )
        want = lps[:3, 3] + k * lps[:3, 2]
        got = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
        if float(np.abs(got - want).max()) > POSITION_ATOL_MM:
            raise InputError(
                f"source slice {f} lies at {got.tolist()} mm but the read geometry puts slice {k} "
                f"at {want.round(3).tolist()} mm; the folder changed while running; run again"
            )
        if "SliceThickness" not in ds or not ds.SliceThickness:
            # optional in a CT series, required for the SEG's pixel measures: the slice step
            ds.SliceThickness = f"{float(np.linalg.norm(lps[:3, 2])):.6g}"
        datasets.append(ds)
    return src, datasets


#: what a DICOM-SEG needs from its source series and cannot make up.
SEG_REQUIRED = ("FrameOfReferenceUID", "StudyInstanceUID", "SOPClassUID", "SOPInstanceUID")


def check_dicom_seg_source(volume: Volume) -> None:
    """Check, before any work, that a DICOM-SEG can be made for this volume.

    What can be derived is (a missing SliceThickness becomes the slice step when the SEG is
    built); what cannot is an error now rather than after the networks ran.

    Raises:
        InputError: not a DICOM input, an enhanced multi-frame source, or a source series
            without a tag the SEG must copy (e.g. FrameOfReferenceUID).
    """
    import pydicom

    src = volume.source
    dcm = src.extra.get("dicom") if src is not None else None
    if src is None or src.fmt != "dicom" or not dcm:
        return  # the caller reports the non-DICOM case with its own message
    if dcm.get("frames"):
        raise InputError(
            "--dicom-seg was asked for an enhanced (multi-frame) CT; expected a classic series "
            "with one slice per file for DICOM-SEG output; drop --dicom-seg (the NIfTI label "
            "map is still written) or export the series as single-frame files"
        )
    first = pydicom.dcmread(dcm["files"][0], stop_before_pixels=True)
    missing = [k for k in SEG_REQUIRED if not first.get(k)]
    if missing:
        raise InputError(
            f"--dicom-seg needs {', '.join(missing)} in the source series but "
            f"{dcm['files'][0]} has none; expected a complete CT export; drop --dicom-seg "
            "or re-export the series with its frame of reference"
        )


def _segment_descriptions(sides: list[Label]) -> list[hd.seg.SegmentDescription]:
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    import femurseg

    algorithm = hd.AlgorithmIdentificationSequence(
        name="femurseg",
        family=codes.cid7162.ArtificialIntelligence,
        version=femurseg.__version__,
    )
    side = {Label.FEMUR_LEFT: ("Femur left", codes.SCT.Left),
            Label.FEMUR_RIGHT: ("Femur right", codes.SCT.Right)}  # fmt: skip
    out = []
    for label in sides:
        name, laterality = side[label]
        desc = hd.seg.SegmentDescription(
            segment_number=int(label),
            segment_label=name,
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.Femur,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[codes.SCT.Femur],
        )
        # highdicom has no argument for modifiers: add the standard attributes to the items.
        modifier = hd.sr.CodedConcept.from_code(laterality)
        desc.SegmentedPropertyTypeModifierCodeSequence = [modifier]
        region: Dataset = desc.AnatomicRegionSequence[0]
        region.AnatomicRegionModifierSequence = [hd.sr.CodedConcept.from_code(laterality)]
        out.append(desc)
    return out


def build_dicom_seg(
    labels: npt.ArrayLike, volume: Volume, config: DicomSegConfig | None = None
) -> hd.seg.Segmentation:
    """Make a binary DICOM-SEG of the femurs that references ``volume``'s DICOM source series.

    Args:
        labels: integer label map, shape ``volume.shape`` (X, Y, Z) in canonical RAS+ order,
            values 0 background, 1 femur_left, 2 femur_right.
        volume: the CT as returned by :func:`femurseg.io.read_volume` from a DICOM folder
            (its ``source.extra["dicom"]`` names the slice files in slice order).
        config: series tags.

    Returns:
        The highdicom Segmentation: one frame per source slice that holds a femur, per segment.
        Both segments are always described (segment number = label value); a side with no
        voxels has no frames.

    Raises:
        InputError: the volume is not from DICOM, or its files changed since reading.
        OutputError: ``labels`` has no femur voxels (an empty SEG is not written).
        ValueError: ``labels`` has the wrong shape or values.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    import femurseg

    cfg = config or DicomSegConfig()
    lab = np.asarray(labels)
    if lab.shape != volume.shape:
        raise ValueError(f"labels have shape {lab.shape}, expected the volume's {volume.shape}")
    if lab.size and (lab.min() < 0 or lab.max() > max(Label)):
        raise ValueError(f"label values {lab.min()}..{lab.max()}; expected 0, 1, 2")
    present = [s for s in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT) if np.any(lab == s)]
    if not present:
        raise OutputError(
            "the label map has no femur voxels; expected at least one femur to store in a "
            "DICOM-SEG; check the quality flags (femur not found)"
        )
    src, datasets = _source_datasets(volume)
    # On-disk order is array[col, row, slice]; a SEG frame is (row, col) of the same slice.
    disk = to_disk(lab.astype(np.uint8), src.ornt, src.shape)
    frames = np.ascontiguousarray(np.transpose(disk, (2, 1, 0)))
    frames = frames.astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions([Label.FEMUR_LEFT, Label.FEMUR_RIGHT]),
        series_instance_uid=generate_uid(),
        series_number=cfg.series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="femurseg",
        manufacturer_model_name="femurseg",
        software_versions=femurseg.__version__,
        device_serial_number="0",
        content_label=cfg.content_label,
        content_description="Left and right femur (patient sides), automatic",
        series_description=cfg.series_description,
    )
    return seg


def write_dicom_seg(
    labels: npt.ArrayLike,
    volume: Volume,
    path: str | Path,
    config: DicomSegConfig | None = None,
) -> Path:
    """Write the femur DICOM-SEG of a DICOM CT input atomically (see :func:`build_dicom_seg`).

    Args:
        labels: canonical label map, shape ``volume.shape`` (X, Y, Z), values 0/1/2.
        volume: the DICOM-read CT the labels belong to.
        path: output file, conventionally ``<case>_femur_seg.dcm``.
        config: series tags.

    Returns:
        The written path.

    Raises:
        InputError, OutputError, ValueError: as :func:`build_dicom_seg`, or the file cannot be
            written.
    """
    try:
        import highdicom  # noqa: F401
    except ImportError as err:
        raise InputError(
            "DICOM-SEG output needs highdicom, which is not installed; expected the 'dicomseg' "
            "extra; run: pip install 'femurseg[dicomseg]'"
        ) from err
    seg = build_dicom_seg(labels, volume, config)
    return atomic_write(Path(path), lambda tmp: seg.save_as(tmp, enforce_file_format=True))
