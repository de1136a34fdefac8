"""Orthopaedic landmarks and measurements against analytic femurs with a known torsion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clinical_femur import bilateral_phantom
from scipy import ndimage

from femurseg.export.landmarks import left_right, write_landmark_figure, write_markups
from femurseg.measure import measure_femurs, withhold_for_metal
from femurseg.measure.landmarks import femur_frame, signed_angle_deg

SPACING = (1.5, 1.5, 1.5)


@pytest.fixture(scope="module")
def twisted():
    """Left femur anteverted -10 deg (retroverted), right femur +40 deg."""
    return bilateral_phantom(spacing=SPACING, anteversion=(-10.0, 40.0))


@pytest.fixture(scope="module")
def measured(twisted):
    labels, affine, _ = twisted
    return measure_femurs(labels, affine)


def values(m, names=("torsion_lee_deg", "torsion_murphy_deg", "mldfa_deg",
                     "anatomical_mechanical_angle_deg", "femoral_offset_mm")):  # fmt: skip
    return {side: {n: fm.value(n) for n in names} for side, fm in m.items()}


def test_signed_angle_and_frame() -> None:
    up, medial, anterior = femur_frame(np.array([0.0, 0.0, 1.0]), -1.0)  # a right femur
    assert np.allclose(medial, [-1, 0, 0]) and np.allclose(anterior, [0, 1, 0])
    ref = medial
    turned = np.cos(np.radians(30)) * medial + np.sin(np.radians(30)) * anterior
    assert signed_angle_deg(turned, ref, anterior, up) == pytest.approx(30.0)
    assert signed_angle_deg(turned * [1, -1, 1], ref, anterior, up) == pytest.approx(-30.0)


def test_torsion_of_a_twisted_femur_comes_back_within_a_degree(twisted, measured) -> None:
    _, _, specs = twisted
    got = values(measured)
    # sides never swap: the left femur is the retroverted one
    assert got["femur_left"]["torsion_lee_deg"] == pytest.approx(-10.0, abs=1.0)
    assert got["femur_right"]["torsion_lee_deg"] == pytest.approx(40.0, abs=1.0)
    # the neck-base method agrees on a femur whose neck is straight, within its own error
    assert got["femur_left"]["torsion_murphy_deg"] == pytest.approx(-10.0, abs=5.0)
    assert got["femur_right"]["torsion_murphy_deg"] == pytest.approx(40.0, abs=5.0)
    # twisting a femur by 20 deg changes both methods by 20 deg
    base = values(measure_femurs(*bilateral_phantom(spacing=SPACING, anteversion=(5.0, 5.0))[:2]))
    more = values(measure_femurs(*bilateral_phantom(spacing=SPACING, anteversion=(25.0, 25.0))[:2]))
    for side in base:
        for method in ("torsion_lee_deg", "torsion_murphy_deg"):
            assert more[side][method] - base[side][method] == pytest.approx(20.0, abs=1.0)
    # offset: head centre to shaft axis = neck length x sin(180 - NSA)
    for value, side in ((1, "femur_left"), (2, "femur_right")):
        spec = specs[value]
        expected = spec.neck_length * np.sin(np.radians(180.0 - spec.nsa_deg))
        assert got[side]["femoral_offset_mm"] == pytest.approx(expected, abs=1.5)
        # the joint line is perpendicular to the (vertical) shaft, so mLDFA = 90 + the
        # mechanical axis' tilt from vertical in the coronal plane (the knee centre lies on
        # the shaft axis by symmetry)
        knee = measured[side].landmarks["knee_centre"]
        assert knee[0] == pytest.approx(spec.shaft_x, abs=0.5)
        tilt = np.degrees(
            np.arctan2(abs(spec.head_centre[0] - spec.shaft_x), spec.head_centre[2] - knee[2])
        )
        assert got[side]["mldfa_deg"] == pytest.approx(90.0 + tilt, abs=1.0)
    marks = measured["femur_right"].landmarks
    assert np.allclose(marks["head_centre"], specs[2].head_centre, atol=1.0)
    lt = np.asarray(marks["lesser_trochanter_tip"])
    assert np.linalg.norm(lt - specs[2].lesser_trochanter_centre) < 12.0


def test_angles_do_not_depend_on_how_the_file_is_stored(twisted, measured) -> None:
    labels, affine, _ = twisted
    ref = values(measured)
    # LPS storage: the first two array axes reversed, the same world
    flip = affine.copy()
    for a in (0, 1):
        flip[:3, 3] += flip[:3, a] * (labels.shape[a] - 1)
        flip[:3, a] = -flip[:3, a]
    lps = values(measure_femurs(labels[::-1, ::-1].copy(), flip))
    # an oblique grid: rotated 12 deg about z and 8 deg about x, resampled (nearest)
    rz, rx = np.radians(12.0), np.radians(8.0)
    rot = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    rot = rot @ np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    obl = np.eye(4)
    obl[:3, :3] = rot * np.asarray(SPACING)
    shape = tuple(int(n * f) for n, f in zip(labels.shape, (1.3, 1.9, 1.2), strict=True))
    centre = affine[:3, :3] @ ((np.asarray(labels.shape) - 1) / 2) + affine[:3, 3]
    obl[:3, 3] = centre - obl[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    to_src = np.linalg.inv(affine) @ obl  # oblique index -> stored index
    moved = ndimage.affine_transform(labels, to_src[:3, :3], to_src[:3, 3], shape, order=0)
    oblique = values(measure_femurs(moved, obl))
    for side in ref:
        for name, v in ref[side].items():
            assert lps[side][name] == pytest.approx(v, abs=1e-6), (side, name)
            assert oblique[side][name] == pytest.approx(v, abs=1.5), (side, name)


def test_missing_anatomy_metal_and_coarse_scans_give_reasons_not_numbers(twisted) -> None:
    labels, affine, _ = twisted
    # proximal femur only: the condyles are cut off by the image edge
    top = labels[:, :, labels.shape[2] // 2 :].copy()
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, 2] * (labels.shape[2] // 2)
    prox = measure_femurs(top, shifted)["femur_right"]
    assert prox.value("torsion_lee_deg") is None
    assert "distal" in prox.items["torsion_lee_deg"].reason
    assert prox.value("femoral_offset_mm") is not None  # needs only the head and the shaft
    # metal in the femur: the head centre and all that hangs on it are withheld
    full = measure_femurs(labels, affine)["femur_right"]
    metal = withhold_for_metal(full, 500)
    assert "head_centre" not in metal.landmarks and "knee_centre" in metal.landmarks
    for name in ("torsion_lee_deg", "femoral_offset_mm", "femoral_length_mm", "mldfa_deg"):
        assert metal.value(name) is None and "metal" in metal.items[name].reason
    # a 4 mm slice spacing is too coarse for landmarks, and says which axis
    coarse = affine.copy()
    coarse[2, 2] = 4.0
    c = measure_femurs(labels[:, :, ::3].copy(), coarse * [1, 1, 1, 1])["femur_left"]
    assert c.value("torsion_lee_deg") is None and "along z" in c.items["torsion_lee_deg"].reason


def test_markups_figure_and_left_right(measured, twisted, tmp_path) -> None:
    as_dict = {k: v.to_dict() for k, v in measured.items()}
    path = write_markups(as_dict, tmp_path / "case_landmarks.mrk.json")
    doc = json.loads(path.read_text())
    (markup,) = doc["markups"]
    assert markup["coordinateSystem"] == "LPS" and markup["type"] == "Fiducial"
    points = {p["label"]: p["position"] for p in markup["controlPoints"]}
    ras = as_dict["femur_right"]["landmarks_ras_mm"]["head_centre"]
    assert points["femur_right head_centre"] == pytest.approx([-ras[0], -ras[1], ras[2]])
    assert "femur_left lesser_trochanter_tip" in points and len(points) == 22
    diff = left_right(as_dict)
    assert diff["torsion_lee_difference_deg"]["value"] == pytest.approx(50.0, abs=2.0)
    assert diff["length_difference_mm"]["unit"] == "mm"
    one = dict(as_dict)
    one["femur_left"] = {"measurements": {}}
    assert left_right(one)["length_difference_mm"]["value"] is None
    labels, affine, _ = twisted
    png = write_landmark_figure(labels, affine, as_dict, tmp_path / "case_landmarks.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_figure_points_searched_in_the_label_boxes_match_a_whole_map_search() -> None:
    from femurseg.export.landmarks import femur_points
    from femurseg.preprocessing.boxes import mask_index_range
    from femurseg.types import Label

    rng = np.random.default_rng(0)
    labels = np.zeros((40, 30, 50), np.uint8)
    labels[5:15, 4:20, 10:40] = (rng.random((10, 16, 30)) > 0.3).astype(np.uint8)
    labels[22:35, 8:25, 3:30][rng.random((13, 17, 27)) > 0.4] = 2
    labels = np.asfortranarray(labels)
    affine = np.array([[-0.8, 0, 0, 10], [0, 0.7, 0, -5], [0, 0, 2.0, 30], [0, 0, 0, 1]])
    boxes = {
        side: mask_index_range(labels == side) for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT)
    }
    whole = femur_points(labels, affine)
    boxed = femur_points(labels, affine, boxes)
    for side in boxes:
        assert len(whole[side]) == int((labels == side).sum()) > 0
        np.testing.assert_allclose(np.sort(boxed[side], axis=0), np.sort(whole[side], axis=0))
    # a side the boxes say is absent has no points, and none is searched for
    assert len(femur_points(labels, affine, {Label.FEMUR_LEFT: None})[Label.FEMUR_LEFT]) == 0
    # thinned to about `most` points: every n-th voxel, picked before the conversion
    few = femur_points(labels, affine, boxes, most=500)
    for side in boxes:
        n = int((labels == side).sum())
        assert 500 <= len(few[side]) < 1000
        np.testing.assert_allclose(few[side], whole[side][:: n // 500])


def test_voxel_points_every_nth_are_the_same_points() -> None:
    from femurseg.measure.geometry import voxel_points

    rng = np.random.default_rng(1)
    mask = rng.random((17, 9, 23)) > 0.6
    affine = np.array([[0.8, 0.1, 0, 3], [0, -0.7, 0, 5], [0.05, 0, 2.5, -30], [0, 0, 0, 1]])
    every = voxel_points(mask, affine)
    for n in (1, 2, 7, 1000):
        np.testing.assert_array_equal(voxel_points(mask, affine, n), every[::n])
    np.testing.assert_array_equal(voxel_points(np.asfortranarray(mask), affine, 3), every[::3])
