"""DICOM-SEG: reads back with highdicom onto the same voxels and sides as the label map."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

hd = pytest.importorskip("highdicom")

import femurseg  # noqa: E402
from femurseg.errors import InputError, OutputError  # noqa: E402
from femurseg.export import write_dicom_seg  # noqa: E402
from femurseg.io import read_labels, read_volume, write_dicom_series, write_labels  # noqa: E402
from femurseg.types import Label, Volume  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LEFT_CENTRE = np.array([-20.0, 10.0, 14.0])  # patient left, anterior, superior (RAS)
RIGHT_CENTRE = np.array([18.0, -12.0, -6.0])  # patient right, posterior, inferior


def _dicom_case(tmp_path: Path, axcodes: str) -> tuple[Volume, npt.NDArray[np.uint8]]:
    affine = np.diag([1.5, 1.25, 2.0, 1.0])
    affine[:3, 3] = [-45.0, -30.0, -20.0]
    shape = (60, 48, 22)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    ct = np.full(shape, -1000.0, dtype=np.float32)
    ct += (ijk * [1.0, 2.0, 3.0]).sum(axis=-1)  # no symmetry to hide a flip
    ct[10:50, 8:40, :] = 40.0
    write_dicom_series(Volume(ct, affine), tmp_path / "ct", axcodes=axcodes)
    vol = read_volume(tmp_path / "ct")
    # Labels from world positions on the read grid (independent of the writer's layout).
    w = vol.index_to_world(np.argwhere(np.ones(vol.shape, bool))).reshape(*vol.shape, 3)
    labels = np.zeros(vol.shape, dtype=np.uint8)
    labels[np.all(np.abs(w - LEFT_CENTRE) <= [7, 5, 4], axis=-1)] = Label.FEMUR_LEFT
    labels[np.linalg.norm(w - RIGHT_CENTRE, axis=-1) <= 8] = Label.FEMUR_RIGHT
    return vol, labels


def _segment_world_ras(seg, number: int) -> npt.NDArray[np.float64]:  # type: ignore[no-untyped-def]
    v = seg.get_volume(segment_numbers=[number], combine_segments=True)
    ijk = np.argwhere(v.array > 0)
    lps = ijk @ v.affine[:3, :3].T + v.affine[:3, 3]
    return lps * np.array([-1.0, -1.0, 1.0])


@pytest.mark.parametrize("axcodes", ["LPS", "RAI", "LIP"])
def test_seg_matches_label_map_geometry_and_sides(tmp_path: Path, axcodes: str) -> None:
    vol, labels = _dicom_case(tmp_path, axcodes)
    nifti = write_labels(labels, vol, tmp_path / "labels.nii.gz")
    truth, truth_affine = read_labels(nifti)
    out = write_dicom_seg(labels, vol, tmp_path / "seg.dcm")
    seg = hd.seg.segread(out)

    for label in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        got = _segment_world_ras(seg, int(label))
        inv = np.linalg.inv(truth_affine)
        idx = np.rint(got @ inv[:3, :3].T + inv[:3, 3])
        want = np.argwhere(truth == label)
        assert len(got) == len(want)
        assert {tuple(r) for r in idx.astype(int)} == {tuple(r) for r in want}
    left = _segment_world_ras(seg, 1).mean(axis=0)
    right = _segment_world_ras(seg, 2).mean(axis=0)
    np.testing.assert_allclose(left, LEFT_CENTRE, atol=1.0)
    np.testing.assert_allclose(right, RIGHT_CENTRE, atol=1.0)
    assert left[0] < 0 < right[0]  # no left/right mirroring
    assert left[1] > 0 > right[1]  # no front/back mirroring


def test_seg_references_source_series_and_codes(tmp_path: Path) -> None:
    vol, labels = _dicom_case(tmp_path, "LPS")
    out = write_dicom_seg(labels, vol, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(out)
    dcm = vol.source.extra["dicom"]  # type: ignore[union-attr]
    assert ds.Modality == "SEG"
    assert ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == dcm["study_uid"]
    assert ds.FrameOfReferenceUID == dcm["frame_of_reference_uid"]
    assert ds.SeriesInstanceUID != dcm["series_uid"]
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == dcm["series_uid"]
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} <= set(
        dcm["sop_instance_uids"]
    )
    segs = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    assert set(segs) == {1, 2}
    for number, (label, laterality) in {1: ("Femur left", "7771000"),
                                        2: ("Femur right", "24028007")}.items():  # fmt: skip
        s = segs[number]
        assert s.SegmentLabel == label
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
        assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == "71341001"
        assert s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert s.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == laterality
        region = s.AnatomicRegionSequence[0]
        assert region.AnatomicRegionModifierSequence[0].CodeValue == laterality
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        alg = s.SegmentationAlgorithmIdentificationSequence[0]
        assert alg.AlgorithmName == "femurseg"
        assert alg.AlgorithmVersion == femurseg.__version__
    # Each frame lies exactly on the source slice it references.
    positions = {}
    for f in sorted(Path(tmp_path / "ct").iterdir()):
        src = pydicom.dcmread(f, stop_before_pixels=True)
        positions[src.SOPInstanceUID] = np.asarray(src.ImagePositionPatient, dtype=float)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(ipp, positions[uid], atol=1e-3)


def test_seg_refuses_non_dicom_input_and_empty_labels(tmp_path: Path) -> None:
    vol, labels = _dicom_case(tmp_path, "LPS")
    with pytest.raises(InputError, match="DICOM series input"):
        write_dicom_seg(labels, Volume(vol.array, vol.affine), tmp_path / "x.dcm")
    with pytest.raises(OutputError, match="no femur voxels"):
        write_dicom_seg(np.zeros_like(labels), vol, tmp_path / "x.dcm")
    with pytest.raises(ValueError, match="shape"):
        write_dicom_seg(labels[:-1], vol, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_seg_refuses_a_changed_source_folder(tmp_path: Path) -> None:
    vol, labels = _dicom_case(tmp_path, "LPS")
    first = Path(vol.source.extra["dicom"]["files"][0])  # type: ignore[union-attr]
    ds = pydicom.dcmread(first)
    ds.ImagePositionPatient = [float(v) + 5.0 for v in ds.ImagePositionPatient]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(first)
    with pytest.raises(InputError, match="folder changed"):
        write_dicom_seg(labels, vol, tmp_path / "seg.dcm")


def test_seg_with_one_side_only(tmp_path: Path) -> None:
    vol, labels = _dicom_case(tmp_path, "LPS")
    labels[labels == Label.FEMUR_LEFT] = 0
    seg = hd.seg.segread(write_dicom_seg(labels, vol, tmp_path / "seg.dcm"))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Femur left", "Femur right"]
    assert not np.any(seg.get_volume(segment_numbers=[1], combine_segments=True).array)
    assert len(_segment_world_ras(seg, 2)) == np.count_nonzero(labels == Label.FEMUR_RIGHT)


def test_seg_needs_checked_before_work_and_validates_in_dciodvfy(tmp_path) -> None:
    """A series without SliceThickness still gets a SEG (the step is used); one without a
    FrameOfReferenceUID is refused before any network runs; dciodvfy finds no error."""
    import subprocess

    from debian_tools import debian_tool
    from model_synth import synth_case

    from femurseg.export.dicom_seg import check_dicom_seg_source

    image, labels, affine = synth_case(seed=2)
    write_dicom_series(Volume(image, affine), tmp_path / "ct")
    for tag, folder in (("SliceThickness", "no_st"), ("FrameOfReferenceUID", "no_for")):
        (tmp_path / folder).mkdir()
        for f in (tmp_path / "ct").iterdir():
            ds = pydicom.dcmread(f)
            delattr(ds, tag)
            ds.save_as(tmp_path / folder / f.name)
    no_for = read_volume(tmp_path / "no_for")
    with pytest.raises(InputError, match="needs FrameOfReferenceUID"):
        check_dicom_seg_source(no_for)
    volume = read_volume(tmp_path / "no_st")
    check_dicom_seg_source(volume)
    canon = np.asarray(labels, dtype=np.uint8)  # synth_case is already canonical RAS+
    path = write_dicom_seg(canon, volume, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    thickness = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness
    assert float(thickness) == pytest.approx(float(np.linalg.norm(affine[:3, 2])))
    tool = debian_tool("dicom3tools", "dciodvfy", timeout=600)
    if tool is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed and cannot be installed here")
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors
