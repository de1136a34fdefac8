"""Procedural bones: implicit-surface toolkit (analytic oracles) and shape distribution.

The distribution bounds are those of the LLP26 subjects (``scripts/compare_procedural.py``
prints both side by side): femur 374-722 ml, length 411-473 mm, head radius 21-28 mm, neck-shaft
angle 99-139 deg measured the same way.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from femurseg.phantoms.anatomy.landmarks import limb_landmarks
from femurseg.phantoms.anatomy.procedural import procedural_boneset
from femurseg.phantoms.anatomy.sdf import (
    Field,
    bodies,
    capsule,
    decimate,
    elliptic_cylinder,
    intersect,
    polyline,
    shell,
    signed_volume,
    sphere,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_procedural.py"


def _compare():
    spec = importlib.util.spec_from_file_location("compare_procedural", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- sdf toolkit


def test_polyline_is_one_tube_without_bulges() -> None:
    # A straight polyline of equal radii is a cylinder: the group union must not bulge at joints.
    f = Field([-20, -20, -10], [20, 20, 110], 1.0)
    pts = [[0, 0, z] for z in (0, 20, 45, 60, 100)]
    f.union(polyline(pts, np.full(5, 8.0)), k=10.0)
    m = f.mesh()
    v = m.vertices[(m.vertices[:, 2] > 10) & (m.vertices[:, 2] < 90)]
    r = np.linalg.norm(v[:, :2], axis=1)
    assert r.max() - r.min() < 0.3 and r.mean() == pytest.approx(8.0, abs=0.2)


def test_closed_polyline_is_a_ring() -> None:
    f = Field([-40, -40, -10], [40, 40, 10], 1.0)
    th = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([25 * np.cos(th), 25 * np.sin(th), 0 * th], 1)
    f.union(polyline(ring, np.full(24, 5.0), closed=True))
    m = f.mesh()
    assert m.is_watertight and m.euler_number == 0  # a torus: one hole
    assert m.volume == pytest.approx(2 * np.pi**2 * 25 * 5**2, rel=0.03)


def test_shell_and_intersect_volumes() -> None:
    f = Field([-25, -25, -25], [25, 25, 25], 0.5)
    f.union(
        intersect(
            shell(sphere([0, 0, 0], 20.0), 4.0),
            elliptic_cylinder([0, 0, 15], [30, 30], axis=2, half_length=15),
        )
    )
    m = f.mesh()
    # Upper half of a spherical shell between radii 18 and 22.
    assert m.volume == pytest.approx(2 / 3 * np.pi * (22**3 - 18**3), rel=0.03)
    assert m.bounds[0, 2] > -0.6


def test_subtract_field_leaves_gap_and_checks_grid() -> None:
    a = Field([-20, -20, -20], [20, 20, 20], 1.0)
    b = Field([-20, -20, -20], [20, 20, 20], 1.0)
    a.union(sphere([-8, 0, 0], 10.0))
    b.union(sphere([8, 0, 0], 10.0))
    a.subtract_field(b, gap=1.8)
    np.minimum(a.values, b.values, out=a.values)
    parts = bodies(a.mesh())
    assert len(parts) == 2
    left, right = sorted(parts, key=lambda p: p.centroid[0])
    # Along the line of centres the gap is exact; at the rim the crease is chamfered a little.
    on_axis = [p.vertices[np.linalg.norm(p.vertices[:, 1:], axis=1) < 2.0] for p in (left, right)]
    assert on_axis[1][:, 0].min() - on_axis[0][:, 0].max() == pytest.approx(1.8, abs=0.3)
    assert cKDTree(left.vertices).query(right.vertices)[0].min() > 1.0
    with pytest.raises(ValueError, match="same grid"):
        a.subtract_field(Field([-10, -10, -10], [10, 10, 10], 1.0))
    with pytest.raises(ValueError, match="grid steps"):
        a.subtract_field(b, gap=3.0)


def test_decimate_keeps_closed_bodies_and_volume() -> None:
    f = Field([-30, -20, -20], [60, 20, 20], 0.75)
    f.union(capsule([-15, 0, 0], [10, 0, 0], 9.0))
    f.union(sphere([40, 0, 0], 12.0))
    m = f.mesh()
    d = decimate(m, 1500)
    assert len(d.faces) <= 1600 and len(m.faces) > 5 * len(d.faces)
    assert d.is_watertight and len(bodies(d)) == 2
    assert signed_volume(d) == pytest.approx(m.volume, rel=0.02)
    assert signed_volume(d.copy().invert()) < 0  # negative case: inward normals
    assert decimate(m, 10**6) is m


# ----------------------------------------------------------------------------- distribution


@pytest.fixture(scope="module")
def samples() -> list:
    cp = _compare()
    out = []
    for seed in range(5):
        t0 = time.process_time()
        bones = procedural_boneset(np.random.default_rng(100 + seed))
        cpu = time.process_time() - t0
        lm = limb_landmarks(bones)
        out.append((bones, lm, cp.neck_shaft_angle(bones.femur, lm)[0], cpu))
    return out


def test_procedural_distribution_matches_llp26(samples: list) -> None:
    vol, length, head, nsa = [], [], [], []
    for bones, lm, angle, _ in samples:
        vol.append(bones.femur.volume / 1000.0)
        length.append(float((lm.femur_top - lm.femur_bottom) @ lm.femur_axis))
        head.append(lm.head_radius)
        nsa.append(angle)
    for name, v, lo, hi in (
        ("volume ml", vol, 300, 650),
        ("length mm", length, 380, 500),
        ("head radius mm", head, 19, 27),
        ("neck angle", nsa, 105, 135),
    ):
        assert lo < min(v) and max(v) < hi, (name, v)
    # Means near LLP26 (491 ml, 442 mm, 23.0 mm, 115 deg), and the samples differ.
    assert 430 < np.mean(vol) < 560 and 425 < np.mean(length) < 460
    assert 21.5 < np.mean(head) < 24.5 and 110 < np.mean(nsa) < 125
    assert np.ptp(vol) > 20 and np.ptp(length) > 5


def test_procedural_meshes_like_llp26(samples: list) -> None:
    expected = {"pelvis": (3, 45000), "femur": (1, 8000), "patella": (1, 1000), "tibfib": (2, 8000)}
    for bones, _, _, cpu in samples:
        for name, (n_bodies, max_faces) in expected.items():
            mesh: trimesh.Trimesh = getattr(bones, name)
            assert mesh.is_watertight and signed_volume(mesh) > 0, name
            assert len(bodies(mesh)) == n_bodies, name
            assert len(mesh.faces) < max_faces, (name, len(mesh.faces))
        assert cpu < 4.0  # about 0.8 s of CPU; generous for a shared machine


def test_femur_profile_narrow_shaft_wide_ends(samples: list) -> None:
    cp = _compare()
    for bones, lm, _, _ in samples:
        length = float((lm.femur_top - lm.femur_bottom) @ lm.femur_axis)
        area = [
            cp.cross_section(
                bones.femur, lm.femur_bottom + f * length * lm.femur_axis, lm.femur_axis
            )[0]
            for f in (0.05, 0.15, 0.5, 0.85)
        ]
        assert area[0] > 2.5 * area[2] and area[1] > 1.3 * area[2] and area[3] > 1.6 * area[2]
        assert 380 < area[2] < 850  # mid-shaft, LLP26 480-910 mm^2
