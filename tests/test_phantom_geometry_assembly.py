"""Posing and assembling bone sets into a lower body; procedural shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import trimesh

from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.assemble import LegPose, Pose, assemble, sample_pose
from femurseg.phantoms.anatomy.landmarks import femoral_head, limb_landmarks
from femurseg.phantoms.anatomy.model import BONES, Anatomy
from femurseg.phantoms.anatomy.procedural import procedural_boneset
from femurseg.phantoms.anatomy.shapes import BoneSet, load_subject
from femurseg.phantoms.anatomy.voxelize import voxelize

LANDMARKS = [
    f"{n}_{s}"
    for n in ("hip", "head_radius", "knee", "ankle", "femur_top", "femur_bottom")
    for s in ("left", "right")
]
LANDMARKS += ["pelvis_centre", "pelvis_top"]


@pytest.fixture(scope="module")
def bones() -> BoneSet:
    return procedural_boneset(np.random.default_rng(7))


@pytest.fixture(scope="module")
def neutral(bones: BoneSet) -> Anatomy:
    return assemble(bones, bones, bones, Pose())


def overlaps_ml(anat: Anatomy, spacing: float = 1.5) -> dict[tuple[str, str], float]:
    """Volume shared by each pair of different bones, ml."""
    lo = np.min([m.bounds[0] for m in anat.meshes.values()], axis=0) - 2
    hi = np.max([m.bounds[1] for m in anat.meshes.values()], axis=0) + 2
    shape = tuple(int(x) for x in np.ceil((hi - lo) / spacing))
    aff = np.diag([spacing] * 3 + [1.0])
    aff[:3, 3] = lo
    masks = {k: voxelize(m, aff, shape).to_full() for k, m in anat.meshes.items()}
    out = {}
    for i, a in enumerate(BONES):
        for b in BONES[i + 1 :]:
            out[(a, b)] = float((masks[a] & masks[b]).sum()) * spacing**3 / 1000.0
    return out


def check_anatomy(anat: Anatomy) -> None:
    assert set(anat.meshes) == set(BONES)
    assert set(LANDMARKS) <= set(anat.landmarks)
    for name, mesh in anat.meshes.items():
        assert mesh.is_watertight and mesh.volume > 0, name
    for value in anat.landmarks.values():
        assert value.shape == (3,) and np.all(np.isfinite(value))
    lm = anat.landmarks
    # Patient left is world -x (RAS+): left femur and every left landmark on that side.
    assert anat.meshes["femur_left"].centroid[0] < 0 < anat.meshes["femur_right"].centroid[0]
    for name in ("hip", "knee", "ankle"):
        assert lm[f"{name}_left"][0] < lm[f"{name}_right"][0], name
    for side in ("left", "right"):
        assert lm["pelvis_top"][2] > lm[f"hip_{side}"][2] > lm[f"knee_{side}"][2]
        assert lm[f"knee_{side}"][2] > lm[f"ankle_{side}"][2]
        # The seated head: an independent sphere fit on the posed femur sits on the acetabulum.
        c, r = femoral_head(anat.meshes[f"femur_{side}"], lm[f"hip_{side}"] - lm[f"knee_{side}"])
        assert np.linalg.norm(c - lm[f"acetabulum_{side}"]) < 3.0, side
        assert r == pytest.approx(lm[f"head_radius_{side}"][0], abs=1.0)
    assert np.linalg.norm(lm["pelvis_centre"][:2]) < 1e-6


def test_pose_validation() -> None:
    with pytest.raises(ConfigError, match="knee_flexion"):
        LegPose(knee_flexion=-5.0)
    with pytest.raises(ConfigError, match="hip_abduction"):
        LegPose(hip_abduction=40.0)
    with pytest.raises(ConfigError, match="scale"):
        Pose(scale=2.0)
    with pytest.raises(ConfigError, match="hip_spacing"):
        Pose(hip_spacing=-30.0)
    assert Pose(left=LegPose(hip_flexion=10.0)).left.hip_flexion == 10.0


def test_sample_pose_ranges() -> None:
    rng = np.random.default_rng(3)
    poses = [sample_pose(rng) for _ in range(300)]
    legs = [p.left for p in poses] + [p.right for p in poses]
    for attr, lo, hi in (
        ("hip_flexion", -5, 15),
        ("hip_abduction", -5, 12),
        ("hip_rotation", -20, 25),
        ("knee_flexion", 0, 25),
    ):
        v = np.array([getattr(leg, attr) for leg in legs])
        assert v.min() >= lo and v.max() <= hi and v.max() - v.min() > 0.7 * (hi - lo), attr
    scale = np.array([p.scale for p in poses])
    assert scale.min() >= 0.88 and scale.max() <= 1.12
    assert min(p.left.hip_abduction + p.right.hip_abduction for p in poses) >= -2.0
    assert all(
        -3.0 - 1e-9 <= leg.hip_flexion - 0.5 * leg.knee_flexion <= 5.0 + 1e-9 for leg in legs
    )


def test_procedural_bones_are_anatomical(bones: BoneSet) -> None:
    for name in ("pelvis", "femur", "patella", "tibfib"):
        mesh = getattr(bones, name)
        assert mesh.is_watertight and mesh.volume > 0, name
    lm = limb_landmarks(bones)
    assert 21.0 < lm.head_radius < 26.0
    length = lm.femur_top[2] - lm.femur_bottom[2]
    assert 380.0 < length < 490.0
    assert 760.0 < bones.femur.bounds[0, 2] and bones.femur.bounds[1, 2] < 1260.0
    assert 60.0 < lm.head_centre[0] - lm.pelvis_mid_x < 100.0
    assert 20.0 < lm.pelvis_mid_x < 50.0
    # Shaft width in the middle third, measured on a cut through the mesh (its vertices are
    # too sparse, as in LLP26, for a thin slab of them to span the width).
    zmid = 0.5 * (lm.femur_top[2] + lm.femur_bottom[2])
    ring = trimesh.intersections.mesh_plane(bones.femur, [0, 0, 1], [0, 0, zmid]).reshape(-1, 3)
    assert 22.0 < np.ptp(ring[:, 0]) < 34.0
    assert len(bones.tibfib.split(only_watertight=False)) == 2  # tibia and fibula
    # The head is in the socket with a joint space: pelvis and femur do not touch.
    anat = assemble(bones, bones, bones, Pose())
    assert overlaps_ml(anat)[("pelvis", "femur_left")] < 0.05


def test_procedural_varies_and_repeats(bones: BoneSet) -> None:
    a = procedural_boneset(np.random.default_rng(11))
    b = procedural_boneset(np.random.default_rng(11))
    c = bones
    assert a.name == b.name and np.array_equal(a.femur.vertices, b.femur.vertices)
    assert a.name != c.name and abs(a.femur.volume - c.femur.volume) > 1000.0


def test_neutral_assembly(neutral: Anatomy, bones: BoneSet) -> None:
    check_anatomy(neutral)
    lm = neutral.landmarks
    # Neutral: hip-ankle lines vertical, legs mirror images of each other.
    for side in ("left", "right"):
        d = lm[f"hip_{side}"] - lm[f"ankle_{side}"]
        assert abs(d[0]) < 1.0 and abs(d[1]) < 1.0
    assert lm["hip_left"][0] == pytest.approx(-lm["hip_right"][0], abs=0.5)
    assert neutral.meshes["femur_right"].volume == pytest.approx(bones.femur.volume, rel=1e-6)
    assert max(overlaps_ml(neutral).values()) < 0.1
    assert neutral.meta["subjects"]["left"] == bones.name
    assert neutral.meta["pose"]["scale"] == 1.0


def test_pose_signs(bones: BoneSet, neutral: Anatomy) -> None:
    def moved(leg: LegPose, key: str) -> np.ndarray:
        anat = assemble(bones, bones, bones, Pose(left=leg, right=leg))
        return anat.landmarks[key] - neutral.landmarks[key]

    # RAS+: anterior is +y, patient left is -x.
    assert moved(LegPose(hip_flexion=15.0), "knee_left")[1] > 50.0
    assert moved(LegPose(hip_abduction=10.0), "knee_left")[0] < -40.0
    assert moved(LegPose(hip_abduction=10.0), "knee_right")[0] > 40.0
    knee = moved(LegPose(knee_flexion=25.0), "ankle_left")
    assert knee[1] < -100.0 and knee[2] > 10.0
    anat = assemble(bones, bones, bones, Pose(left=LegPose(hip_rotation=20.0)))
    shift = anat.meshes["patella_left"].centroid - neutral.meshes["patella_left"].centroid
    assert shift[0] > 5.0  # internal rotation turns the knee cap towards the midline (+x)


def test_random_poses_are_anatomical_and_repeatable(bones: BoneSet) -> None:
    for seed in range(3):
        pose = sample_pose(np.random.default_rng(seed))
        anat = assemble(bones, bones, bones, pose)
        check_anatomy(anat)
        lm = anat.landmarks
        for side in ("left", "right"):
            thigh = lm[f"hip_{side}"] - lm[f"knee_{side}"]
            assert np.degrees(np.arccos(thigh[2] / np.linalg.norm(thigh))) < 25.0
        assert lm["ankle_right"][0] - lm["ankle_left"][0] > 80.0
        for side in ("left", "right"):  # the heel stays near the table (hip level +- 12 cm)
            assert abs(lm[f"ankle_{side}"][1] - lm[f"hip_{side}"][1]) < 120.0
        assert max(overlaps_ml(anat, 2.0).values()) < 0.5
        hips = np.linalg.norm(lm["hip_left"] - lm["hip_right"])
        base = assemble(bones, bones, bones, dataclasses.replace(pose, scale=1.0))
        base_hips = np.linalg.norm(base.landmarks["hip_left"] - base.landmarks["hip_right"])
        assert hips == pytest.approx(pose.scale * base_hips, rel=1e-6)
    again = assemble(bones, bones, bones, sample_pose(np.random.default_rng(2)))
    for k in BONES:
        assert np.array_equal(again.meshes[k].vertices, anat.meshes[k].vertices)


@pytest.mark.shared
def test_llp26_mixed_subjects(llp26_dir: Path) -> None:
    pel, left, right = (load_subject(llp26_dir, n) for n in ("LLP26_01", "LLP26_10", "LLP26_16"))
    pose = sample_pose(np.random.default_rng(5))
    anat = assemble(pel, left, right, pose)
    check_anatomy(anat)
    ov = overlaps_ml(anat)
    # Raw LLP26 meshes overlap by up to ~90 ml at the knee and ~25 ml at the hip; assembled
    # bones keep joint spaces.
    assert max(ov.values()) < 0.2, ov
    assert anat.meta["subjects"] == {"pelvis": "LLP26_01", "left": "LLP26_10", "right": "LLP26_16"}
    # The right limb is subject 16's left limb mirrored: outward normals (positive volume),
    # the same size but for the drawn shape change (length within 5 %, bowing, torsion).
    assert anat.meshes["femur_right"].volume == pytest.approx(
        right.femur.volume * pose.scale**3, rel=0.08
    )
    assert anat.meshes["patella_right"].volume == pytest.approx(
        right.patella.volume * pose.scale**3, rel=1e-6
    )
    r_hip = anat.landmarks["hip_right"] - anat.landmarks["pelvis_centre"]
    l_hip = anat.landmarks["hip_left"] - anat.landmarks["pelvis_centre"]
    assert 60.0 < r_hip[0] < 110.0 and -110.0 < l_hip[0] < -60.0
