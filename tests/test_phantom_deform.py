"""Femur shape variety (phantoms/anatomy/deform.py): analytic checks of each deformation."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.deform import FemurShape, deform_femur, sample_femur_shape
from femurseg.phantoms.anatomy.landmarks import limb_landmarks
from femurseg.phantoms.anatomy.procedural import procedural_boneset


@pytest.fixture(scope="module")
def femur():
    bones = procedural_boneset(np.random.default_rng(3))
    lm = limb_landmarks(bones)
    return np.asarray(bones.femur.vertices, dtype=np.float64), bones.femur.faces, lm


def _run(femur, **kw):
    v, _, lm = femur
    return deform_femur(
        v, lm.head_centre, lm.head_radius, lm.knee_centre, lm.knee_axis, FemurShape(**kw)
    )


def _frame(lm):
    a = lm.head_centre - lm.knee_centre
    length = float(np.linalg.norm(a))
    return a / length, length


def test_torsion_turns_the_proximal_femur_rigidly_about_the_mechanical_axis(femur) -> None:
    v, _, lm = femur
    out, head = _run(femur, torsion_deg=15.0)
    a, length = _frame(lm)
    s = ((v - lm.knee_centre) @ a) / length
    np.testing.assert_allclose(head, lm.head_centre, atol=1e-9)
    np.testing.assert_allclose(out[s < 0.2], v[s < 0.2], atol=1e-9)  # condyles stay seated
    prox = s > 0.85

    def perp(x):
        d = x - lm.knee_centre
        return d - np.outer(d @ a, a)

    p0, p1 = perp(v[prox]), perp(out[prox])
    keep = np.linalg.norm(p0, axis=1) > 5.0
    cos = np.sum(p0[keep] * p1[keep], axis=1) / (
        np.linalg.norm(p0[keep], axis=1) * np.linalg.norm(p1[keep], axis=1)
    )
    np.testing.assert_allclose(np.degrees(np.arccos(np.clip(cos, -1, 1))), 15.0, atol=1e-6)
    # more anteversion: the greater trochanter (lateral, +x in a left limb's LPS frame) turns
    # posteriorly (+y in LPS), so the neck, trochanter -> head, points more anteriorly
    troch = prox & (v[:, 0] > lm.head_centre[0] + 25.0)
    assert troch.any()
    assert out[troch, 1].mean() > v[troch, 1].mean() + 2.0


def test_length_moves_the_head_along_the_axis_and_keeps_the_ends_rigid(femur) -> None:
    v, _, lm = femur
    out, head = _run(femur, length_factor=1.06)
    a, length = _frame(lm)
    assert np.linalg.norm(head - lm.knee_centre) == pytest.approx(1.06 * length, rel=1e-9)
    s = ((v - lm.knee_centre) @ a) / length
    np.testing.assert_allclose(out[s < 0.2], v[s < 0.2], atol=1e-9)
    np.testing.assert_allclose(
        out[s > 0.8] - v[s > 0.8], np.tile(0.06 * length * a, (np.sum(s > 0.8), 1)), atol=1e-9
    )


@pytest.mark.parametrize("deg", [-8.0, 8.0])
def test_neck_shaft_change_keeps_the_head_a_sphere_and_raises_it_for_valgus(femur, deg) -> None:
    v, _, lm = femur
    out, head = _run(femur, neck_shaft_deg=deg)
    a, _ = _frame(lm)
    d0 = np.linalg.norm(v - lm.head_centre, axis=1)
    on_head = d0 < 1.2 * lm.head_radius
    d1 = np.linalg.norm(out[on_head] - head, axis=1)
    np.testing.assert_allclose(d1, d0[on_head], atol=1e-9)
    rise = (head - lm.head_centre) @ a
    assert rise * np.sign(deg) > 1.0  # valgus lifts the head, varus lowers it


def test_bowing_moves_the_mid_shaft_anteriorly_only(femur) -> None:
    v, _, lm = femur
    out, head = _run(femur, bow_mm=6.0)
    a, length = _frame(lm)
    s = ((v - lm.knee_centre) @ a) / length
    np.testing.assert_allclose(head, lm.head_centre)
    mid = np.abs(s - 0.475) < 0.03
    assert -(out[mid, 1] - v[mid, 1]).mean() > 5.0  # anterior is -y in LPS
    np.testing.assert_allclose(out[(s < 0.1) | (s > 0.85)], v[(s < 0.1) | (s > 0.85)])


def test_random_shapes_keep_the_mesh_closed_and_unfolded(femur) -> None:
    v, faces, lm = femur
    rng = np.random.default_rng(0)
    base = trimesh.Trimesh(v, faces, process=False)
    for _ in range(5):
        shape = sample_femur_shape(rng)
        out, _ = deform_femur(
            v, lm.head_centre, lm.head_radius, lm.knee_centre, lm.knee_axis, shape
        )
        mesh = trimesh.Trimesh(out, faces, process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume == pytest.approx(base.volume, rel=0.08)
        # no face turned inside out: normals stay within 90 degrees of the undeformed ones
        real = base.area_faces > 1e-6  # degenerate faces have no normal
        dots = np.sum(mesh.face_normals * base.face_normals, axis=1)[real]
        assert dots.min() > 0.0


def test_shape_validation() -> None:
    with pytest.raises(ConfigError):
        FemurShape(torsion_deg=75.0)
    with pytest.raises(ConfigError):
        FemurShape(length_factor=1.5)
