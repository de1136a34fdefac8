"""Measurements and quality flags against analytic femur phantoms and the real CT case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from clinical_femur import FemurSpec, bilateral_phantom

from femurseg.errors import ConfigError
from femurseg.measure import (
    FlagCode,
    MeasureConfig,
    QualityConfig,
    measure_femurs,
    quality_flags,
)
from femurseg.types import LABELS, Label

Phantom = tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64], dict[int, FemurSpec]]


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    """Both femurs on anisotropic voxels (1.2 x 1.5 x 2.5 mm), NSA 128 (left) / 122 (right)."""
    return bilateral_phantom(spacing=(1.2, 1.5, 2.5), nsa=(128.0, 122.0))


def _flip_x(labels: npt.NDArray[np.uint8], affine: npt.NDArray[np.float64]):
    """The same world content stored with the first array axis reversed."""
    flipped = affine.copy()
    flipped[:3, 3] = affine[:3, 3] + affine[:3, 0] * (labels.shape[0] - 1)
    flipped[:3, 0] = -affine[:3, 0]
    return labels[::-1].copy(), flipped


@pytest.mark.parametrize("flip", [False, True])
def test_measurements_match_known_geometry(phantom: Phantom, flip: bool) -> None:
    labels, affine, specs = phantom
    if flip:
        labels, affine = _flip_x(labels, affine)
    result = measure_femurs(labels, affine)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for value, spec in specs.items():
        m = result[LABELS[Label(value)]]
        assert m.found and m.cut_ends == ()
        assert m.value("volume_ml") == pytest.approx((labels == value).sum() * voxel_ml)
        assert m.value("volume_in_view_ml") == m.value("volume_ml")
        assert m.value("length_mm") == pytest.approx(spec.length, abs=3.0)  # ~1 z voxel
        assert m.value("head_diameter_mm") == pytest.approx(2 * spec.head_radius, abs=1.5)
        assert m.value("neck_shaft_angle_deg") == pytest.approx(spec.nsa_deg, abs=2.5)
        centre = np.asarray(m.landmarks["head_centre"])
        assert np.linalg.norm(centre - spec.head_centre) < 1.5
        assert all(v.reason is None for v in m.items.values())
        assert np.asarray(m.landmarks["shaft_axis"])[2] > 0.99


def test_distal_cut_omits_length_and_volume_keeps_head(phantom: Phantom) -> None:
    labels, affine, specs = phantom
    cut = labels[:, :, 60:]  # starts 150 mm above the condyles: mid-shaft cut
    shifted = affine.copy()
    shifted[:3, 3] += 60 * affine[:3, 2]
    result = measure_femurs(cut, shifted)
    for value, spec in specs.items():
        m = result[LABELS[Label(value)]]
        assert m.cut_ends == ("distal",)
        for name in ("length_mm", "volume_ml"):
            assert m.value(name) is None
            assert "distal" in str(m.items[name].reason)
        assert m.value("volume_in_view_ml") is not None
        assert m.value("head_diameter_mm") == pytest.approx(2 * spec.head_radius, abs=1.5)
        assert m.value("neck_shaft_angle_deg") == pytest.approx(spec.nsa_deg, abs=2.5)


def test_proximal_cut_omits_head_angle_and_length(phantom: Phantom) -> None:
    labels, affine, _ = phantom
    result = measure_femurs(labels[:, :, :130], affine)  # top of view at 285 mm: head cut off
    for side in ("femur_left", "femur_right"):
        m = result[side]
        assert "proximal" in m.cut_ends
        for name in ("length_mm", "head_diameter_mm", "neck_shaft_angle_deg", "volume_ml"):
            assert m.value(name) is None
            assert "proximal" in str(m.items[name].reason)


def test_short_shaft_gives_head_but_no_angle(phantom: Phantom) -> None:
    labels, affine, specs = phantom
    start = 115  # 287 mm: only the head, neck and 20 mm of shaft in view
    shifted = affine.copy()
    shifted[:3, 3] += start * affine[:3, 2]
    result = measure_femurs(labels[:, :, start:], shifted)
    m = result["femur_right"]
    assert m.value("head_diameter_mm") == pytest.approx(2 * specs[2].head_radius, abs=2.0)
    assert m.value("neck_shaft_angle_deg") is None
    assert "shaft" in str(m.items["neck_shaft_angle_deg"].reason)


def test_missing_side_has_every_measurement_omitted(phantom: Phantom) -> None:
    labels, affine, _ = phantom
    only_right = np.where(labels == Label.FEMUR_RIGHT, labels, 0).astype(np.uint8)
    m = measure_femurs(only_right, affine)["femur_left"]
    assert not m.found
    assert all(v.value is None and "not found" in str(v.reason) for v in m.items.values())
    assert m.to_dict()["measurements"]["length_mm"]["value"] is None


def test_measure_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        MeasureConfig(head_radius_mm=(30.0, 20.0))
    with pytest.raises(ConfigError):
        MeasureConfig(min_shaft_mm=0.0)


def test_quality_flags_on_phantom(phantom: Phantom) -> None:
    labels, affine, _ = phantom
    hu = np.where(labels > 0, 1200.0, 0.0).astype(np.float32)
    flags = quality_flags(labels, affine, hu=hu, scores={"femur_left": 0.9, "femur_right": 0.9})
    assert flags == {"femur_left": [], "femur_right": []}

    # A metal stem in the left femur, left out of the mask (a hole) as models often do.
    lab = labels.copy()
    stem = np.zeros(labels.shape, dtype=bool)
    stem[40:44, 25:29, 90:110] = True  # around the left shaft axis (x -90, y 0), z 185-235 mm
    assert np.all(lab[stem] == Label.FEMUR_LEFT)
    lab[stem] = 0
    hu2 = hu.copy()
    hu2[stem] = 3000.0
    flags = quality_flags(lab, affine, hu=hu2, scores={"femur_right": 0.2})
    metal = [f for f in flags["femur_left"] if f.code == FlagCode.METAL_SUSPECTED]
    assert len(metal) == 1 and metal[0].details["voxels"] == stem.sum()
    assert [f.code for f in flags["femur_right"]] == [FlagCode.LOW_CONFIDENCE]
    assert flags["femur_right"][0].details == {"score": 0.2, "threshold": 0.5}
    strict = QualityConfig(min_metal_voxels=int(stem.sum()) + 1)
    assert not quality_flags(lab, affine, hu=hu2, config=strict)["femur_left"]
    assert not quality_flags(lab, affine)["femur_left"]  # no HU: no metal check
    # a metal-bright voxel in the femur's box but outside the bone (a corner of the box): not
    # inside the femur, no flag (a box with no metal-bright voxel at all is not searched)
    corner = tuple(np.argwhere(labels == Label.FEMUR_LEFT).min(axis=0))
    assert labels[corner] == 0
    hu4 = hu.copy()
    hu4[corner] = 3000.0
    assert not quality_flags(labels, affine, hu=hu4)["femur_left"]


def test_quality_flags_cut_ends_and_not_found(phantom: Phantom) -> None:
    labels, affine, _ = phantom
    top = quality_flags(labels[:, :, :130], affine)["femur_left"]
    assert [f.code for f in top] == [FlagCode.CUT_BY_EDGE]
    assert top[0].details["ends"] == ["proximal"]
    assert top[0].details["faces"] == ["superior"]
    shifted = affine.copy()
    shifted[:3, 3] += 60 * affine[:3, 2]
    bottom = quality_flags(labels[:, :, 60:], shifted)["femur_right"][0]
    assert bottom.details["ends"] == ["distal"] and bottom.details["faces"] == ["inferior"]
    empty = quality_flags(np.zeros((10, 10, 10), np.uint8), np.eye(4))
    assert [f.code for f in empty["femur_left"]] == [FlagCode.NOT_FOUND]
    tiny = np.zeros((20, 20, 20), np.uint8)
    tiny[5:7, 5:7, 5:7] = Label.FEMUR_RIGHT  # 8 mm^3 < 1 ml
    assert FlagCode.NOT_FOUND in [f.code for f in quality_flags(tiny, np.eye(4))["femur_right"]]


def test_quality_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        QualityConfig(min_detection_score=1.5)
    with pytest.raises(ConfigError):
        QualityConfig(metal_hu=100.0)


@pytest.mark.shared
def test_real_case_measurements_and_flags(totalseg_case: Path) -> None:
    from femurseg.io import read_labels, read_volume

    vol = read_volume(totalseg_case / "ct.nii.gz")
    labels = np.zeros(vol.shape, dtype=np.uint8)
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        mask, _ = read_labels(totalseg_case / "segmentations" / f"{LABELS[side]}.nii.gz", like=vol)
        labels[mask > 0] = side
    result = measure_femurs(labels, vol.affine)
    flags = quality_flags(labels, vol.affine, hu=vol.array)
    for side in ("femur_left", "femur_right"):
        m = result[side]
        assert m.cut_ends == ("distal",)  # the scan ends at the proximal thighs
        assert m.value("length_mm") is None and "distal" in str(m.items["length_mm"].reason)
        assert m.value("neck_shaft_angle_deg") is None  # too little shaft in view
        codes = [f.code for f in flags[side]]
        assert FlagCode.CUT_BY_EDGE in codes
    # Native right hip: an adult femoral head is about 40 to 55 mm across.
    assert 38.0 < (result["femur_right"].value("head_diameter_mm") or 0) < 56.0
    # Left hip implant: metal inside the left femur only.
    assert FlagCode.METAL_SUSPECTED in [f.code for f in flags["femur_left"]]
    assert FlagCode.METAL_SUSPECTED not in [f.code for f in flags["femur_right"]]


def _assert_close(a: object, b: object) -> None:
    """Equal nested dicts/lists, floats within round-off (sums run in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_close(a[k], b[k])
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_close(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    else:
        assert a == b


@pytest.mark.parametrize("margin", [0, 2])
def test_per_side_crops_give_the_whole_scan_results(phantom: Phantom, margin: int) -> None:
    # measuring inside each femur's box must equal measuring on the full scan, including the
    # image-edge decisions near a face (cut at the bottom, 1 voxel clear of the top)
    from femurseg.measure.measurements import measure_femur
    from femurseg.measure.quality import side_flags

    labels, affine, _ = phantom
    cut = labels[:, :, 60:].copy()
    shifted = affine.copy()
    shifted[:3, 3] += 60 * affine[:3, 2]
    hu = np.where(cut > 0, 1200.0, 0.0).astype(np.float32)
    mcfg, qcfg = MeasureConfig(edge_margin_voxels=margin), QualityConfig(edge_margin_voxels=margin)
    cropped = measure_femurs(cut, shifted, mcfg)
    flags = quality_flags(cut, shifted, hu=hu, config=qcfg)
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        whole = measure_femur(cut == int(side), shifted, side, mcfg)
        _assert_close(cropped[LABELS[side]].to_dict(), whole.to_dict())
        assert [f.to_dict() for f in flags[LABELS[side]]] == [
            f.to_dict() for f in side_flags(cut, shifted, side, hu=hu, config=qcfg)
        ]


def test_metal_in_the_femur_withholds_hip_geometry(phantom: Phantom) -> None:
    from femurseg.measure import withhold_for_metal

    labels, affine, specs = phantom
    m = measure_femurs(labels, affine)["femur_left"]
    assert m.value("head_diameter_mm") is not None
    held = withhold_for_metal(m, 120)
    for name in ("head_diameter_mm", "neck_shaft_angle_deg"):
        assert held.value(name) is None and "metal" in str(held.items[name].reason)
    assert held.value("volume_ml") == m.value("volume_ml")  # the rest stays
    assert withhold_for_metal(m, 0) is m


def test_report_omits_hip_geometry_of_a_femur_with_a_stem(phantom: Phantom) -> None:
    from femurseg.detection.boxes import SideDetection
    from femurseg.export.report import measure_report
    from femurseg.pipeline import Prediction
    from femurseg.types import Volume

    labels, affine, _ = phantom
    lab = labels.copy()
    stem = np.zeros(labels.shape, dtype=bool)
    stem[40:44, 25:29, 90:110] = True  # inside the left shaft, left out of the mask
    lab[stem] = 0
    hu = np.where(labels > 0, 1200.0, 0.0).astype(np.float32)
    hu[stem] = 3000.0
    dets = {
        s: SideDetection(s, True, None, 0.9, 100.0, False, "")
        for s in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)
    }
    pred = Prediction(lab, dets, {}, {})
    report = measure_report(Volume(hu, affine), pred)
    left = report["measurements"]["femur_left"]["measurements"]
    right = report["measurements"]["femur_right"]["measurements"]
    assert left["head_diameter_mm"]["value"] is None
    assert "metal" in left["neck_shaft_angle_deg"]["reason"]
    assert right["head_diameter_mm"]["value"] is not None  # no metal on the right
    codes = [f["code"] for f in report["quality"]["femur_left"]]
    assert "metal_suspected" in codes


def test_two_threads_give_the_same_measurements_and_flags(phantom: Phantom) -> None:
    labels, affine, _ = phantom
    hu = np.where(labels > 0, 1200.0, 0.0).astype(np.float32)
    hu[labels == 1] = np.where(np.arange(labels.shape[2]) % 7 == 0, 3500.0, 1200.0)[
        np.nonzero(labels == 1)[2]
    ]  # some metal-bright voxels in the left femur, so the flags differ by side
    one = measure_femurs(labels, affine, workers=1)
    two = measure_femurs(labels, affine, workers=2)
    assert list(two) == list(one) == ["femur_left", "femur_right"]
    for side in one:
        _assert_close(two[side].to_dict(), one[side].to_dict())
    f1 = quality_flags(labels, affine, hu=hu, workers=1)
    f2 = quality_flags(labels, affine, hu=hu, workers=2)
    assert {k: [f.to_dict() for f in v] for k, v in f2.items()} == {
        k: [f.to_dict() for f in v] for k, v in f1.items()
    }
    assert FlagCode.METAL_SUSPECTED in [f.code for f in f1["femur_left"]]
    assert FlagCode.METAL_SUSPECTED not in [f.code for f in f1["femur_right"]]


def test_neck_axis_follows_the_neck_not_stray_voxels_beside_a_wide_shaft() -> None:
    # a head (sphere r 20 at the origin), a neck running from it along +x and down 40 deg, a
    # shaft whose axis lies so close that most of the neck is within 1.3 shaft radii of it,
    # and a few stray voxels above the head (what a mask may hold there): the axis is the
    # neck's, and a neck-shaft angle computed from it is plausible
    from femurseg.measure.measurements import _neck_axis, _Shaft

    g = np.stack(np.meshgrid(*[np.arange(-40, 61)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = g.astype(np.float64)
    r = 20.0
    neck_dir = np.array([np.cos(np.radians(40.0)), 0.0, -np.sin(np.radians(40.0))])
    along = pts @ neck_dir
    off = np.linalg.norm(pts - np.outer(along, neck_dir), axis=1)
    head = np.linalg.norm(pts, axis=1) <= r
    neck = (along > 0) & (along < 50) & (off <= 10)
    stray = np.linalg.norm(pts - np.array([-8.0, 0.0, 24.0]), axis=1) <= 2.5
    keep = head | neck | stray
    ijk = (g[keep] + 40).astype(np.intp)
    shaft = _Shaft(point=np.array([45.0, 0.0, 0.0]), axis=np.array([0.0, 0.0, 1.0]), radius=24.0)
    axis = _neck_axis(ijk, pts[keep], np.zeros(3), r, shaft)
    assert not isinstance(axis, str)
    assert float(np.degrees(np.arccos(np.clip(axis @ neck_dir, -1, 1)))) < 5.0


def test_an_implausible_neck_shaft_angle_is_omitted_with_its_reason(phantom: Phantom) -> None:
    labels, affine, _ = phantom
    narrow = MeasureConfig(neck_shaft_range_deg=(90.0, 100.0))  # the phantom's are 122-128
    m = measure_femurs(labels, affine, narrow)["femur_left"]
    nsa = m.items["neck_shaft_angle_deg"]
    assert nsa.value is None and "outside the plausible 90 to 100 deg" in (nsa.reason or "")
    assert m.items["torsion_lee_deg"].value is None
    assert m.items["torsion_murphy_deg"].value is not None  # its neck base needs no neck axis
    with pytest.raises(ConfigError):
        MeasureConfig(neck_shaft_range_deg=(120.0, 100.0))
