"""Shape side of the phantoms: voxeliser, mesh loading, landmarks (analytic and real oracles)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from femurseg.errors import InputError
from femurseg.phantoms.anatomy.landmarks import fit_sphere, limb_landmarks, mirrored_hip_centre
from femurseg.phantoms.anatomy.shapes import list_subjects, load_subject
from femurseg.phantoms.anatomy.voxelize import paste, voxelize


def winding_number(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """Independent oracle: generalised winding number by summed solid angles (exact, slow)."""
    tri = mesh.triangles[None, :, :, :] - pts[:, None, None, :]  # (P, F, 3, 3)
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    num = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = (
        la * lb * lc
        + np.einsum("pfi,pfi->pf", a, b) * lc
        + np.einsum("pfi,pfi->pf", b, c) * la
        + np.einsum("pfi,pfi->pf", c, a) * lb
    )
    return np.arctan2(num, den).sum(axis=1) / (2 * np.pi)


def grid_for(mesh: trimesh.Trimesh, spacing: float, margin: float = 3.0):
    lo = mesh.bounds[0] - margin
    shape = tuple(int(x) for x in np.ceil((mesh.extents + 2 * margin) / spacing))
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = lo
    return aff, shape


def oblique_affine(spacing, angles_deg, centre, shape, perm=(0, 1, 2), flip=(1, 1, 1)):
    """Rotated, permuted, flipped, anisotropic grid whose middle voxel sits at ``centre``."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = (rz @ ry @ rx)[:, list(perm)] * np.asarray(flip) * np.asarray(spacing)
    aff = np.eye(4)
    aff[:3, :3] = m
    aff[:3, 3] = np.asarray(centre) - m @ (np.asarray(shape) / 2.0)
    return aff


def world_centres(crop, aff):
    idx = np.argwhere(crop.mask) + [s.start for s in crop.slices]
    return idx @ aff[:3, :3].T + aff[:3, 3]


# ----------------------------------------------------------------------------- voxelize


def test_sphere_volume_on_anisotropic_grid() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=20.0)
    aff = np.diag([0.7, 0.9, 1.1, 1.0])
    aff[:3, 3] = -30.0
    crop = voxelize(mesh, aff, (90, 70, 60))
    vol = crop.count * 0.7 * 0.9 * 1.1
    assert vol == pytest.approx(mesh.volume, rel=0.01)
    assert vol == pytest.approx(4 / 3 * np.pi * 20**3, rel=0.015)


def test_ellipsoid_volume_matches_analytic() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=4)
    mesh.apply_scale([30.0, 18.0, 12.0])
    aff, shape = grid_for(mesh, 0.8)
    vol = voxelize(mesh, aff, shape).count * 0.8**3
    assert vol == pytest.approx(4 / 3 * np.pi * 30 * 18 * 12, rel=0.02)


def test_box_on_lattice_counts_each_voxel_once() -> None:
    # Faces pass exactly through voxel centres: shared edges and ties must not double count.
    mesh = trimesh.creation.box(extents=(10.0, 12.0, 14.0))
    aff = np.eye(4)
    aff[:3, 3] = -20.0
    crop = voxelize(mesh, aff, (40, 40, 40))
    assert crop.count == 10 * 12 * 14
    assert crop.mask.shape == (11, 13, 15)


@settings(max_examples=25, deadline=None)
@given(
    lo=st.tuples(*[st.floats(-20, 20)] * 3),
    ext=st.tuples(*[st.floats(2, 25)] * 3),
    sp=st.tuples(*[st.floats(0.5, 2.5)] * 3),
)
def test_box_lattice_count_property(lo, ext, sp) -> None:
    lo, ext, sp = np.array(lo), np.array(ext), np.array(sp)
    mesh = trimesh.creation.box(bounds=[lo, lo + ext])
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = -40.0
    shape = tuple(int(x) for x in np.ceil(90.0 / sp))
    i_lo, i_hi = (lo + 40.0) / sp, (lo + ext + 40.0) / sp
    frac = np.concatenate([i_lo % 1, i_hi % 1])
    if np.any((frac < 1e-4) | (frac > 1 - 1e-4)):
        return  # a face on a voxel centre: covered by the exact lattice test above
    expected = np.prod(np.floor(i_hi) - np.floor(i_lo))
    crop = voxelize(mesh, aff, shape)
    assert crop.count == expected
    if expected == 0:
        return  # a box between voxel centres has no voxels to move
    # Negative case: a box shifted by one voxel is not the same mask.
    moved = voxelize(mesh.copy().apply_translation([sp[0], 0, 0]), aff, shape)
    assert moved.slices != crop.slices or not np.array_equal(moved.to_full(), crop.to_full())


def test_matches_winding_oracle_on_nonconvex_mesh() -> None:
    mesh = trimesh.creation.torus(major_radius=20.0, minor_radius=7.0)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(0.6, [1, 1, 0]))
    shape = (100, 70, 110)
    aff = oblique_affine(
        (0.9, 1.3, 0.7), (10, -25, 40), (0, 0, 0), shape, perm=(2, 0, 1), flip=(1, -1, 1)
    )
    full = voxelize(mesh, aff, shape).to_full()
    rng = np.random.default_rng(0)
    idx = np.argwhere(np.ones(shape, bool))[rng.choice(np.prod(shape), 1500, replace=False)]
    inside = np.argwhere(full)
    idx = np.concatenate([idx, inside[rng.choice(len(inside), 500, replace=False)]])
    pts = idx @ aff[:3, :3].T + aff[:3, 3]
    truth = np.abs(winding_number(mesh, pts)) > 0.5
    got = full[tuple(idx.T)]
    assert truth.sum() > 400 and (~truth).sum() > 400
    assert np.mean(got == truth) > 0.999


def test_oblique_and_permuted_grids_give_same_world_shape() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=4)
    mesh.apply_scale([25.0, 14.0, 9.0])
    mesh.apply_translation([5.0, -3.0, 2.0])
    ref = None
    shape = (120, 120, 120)
    for aff in (
        oblique_affine((0.8, 0.8, 0.8), (0, 0, 0), (1, 2, 3), shape),
        oblique_affine(
            (0.6, 1.2, 0.9), (0, 0, 0), (0, 0, 0), shape, perm=(1, 2, 0), flip=(-1, 1, -1)
        ),
        oblique_affine((0.7, 0.9, 1.0), (20, 35, -15), (3, -2, 1), shape),
    ):
        crop = voxelize(mesh, aff, shape)
        vox_vol = abs(np.linalg.det(aff[:3, :3]))
        centre = world_centres(crop, aff).mean(axis=0)
        assert crop.count * vox_vol == pytest.approx(mesh.volume, rel=0.02)
        assert np.linalg.norm(centre - mesh.center_mass) < 0.3
        ref = centre if ref is None else ref
        assert np.linalg.norm(centre - ref) < 0.3


def test_overlapping_bodies_stay_solid() -> None:
    a = trimesh.creation.box(bounds=[[0.3, 0.3, 0.3], [10.3, 10.3, 10.3]])
    b = trimesh.creation.box(bounds=[[5.3, 5.3, 5.3], [15.3, 15.3, 15.3]])
    both = trimesh.util.concatenate([a, b])
    crop = voxelize(both, np.eye(4), (20, 20, 20))
    assert crop.count == 2 * 1000 - 125


def test_empty_and_partial_grids_and_paste() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    far = np.eye(4)
    far[:3, 3] = 100.0
    empty = voxelize(mesh, far, (10, 10, 10))
    assert empty.count == 0 and empty.to_full().shape == (10, 10, 10)
    # Grid cut through the middle of the sphere: exactly the half inside the grid.
    half = np.eye(4)
    half[:3, 3] = [-15.0, -15.0, 0.5]
    crop = voxelize(mesh, half, (31, 31, 20))
    assert crop.count * 1.0 == pytest.approx(mesh.volume / 2, rel=0.03)
    labels = np.zeros((31, 31, 20), np.uint8)
    paste(labels, crop, 2)
    assert (labels == 2).sum() == crop.count
    with pytest.raises(ValueError, match="shape"):
        paste(np.zeros((5, 5, 5), np.uint8), crop, 1)


# ----------------------------------------------------------------------------- shapes


def _write_subject(folder: Path, open_femur: bool = False) -> None:
    folder.mkdir(parents=True)
    for name in ("pelvis", "femur", "patella", "tibfib"):
        m = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
        if name == "femur" and open_femur:
            m = trimesh.Trimesh(m.vertices, m.faces[:-3], process=False)
        m.export(folder / f"{name}.ply")


def test_shapes_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_subjects(tmp_path / "nope")
    with pytest.raises(InputError, match="No subject folders"):
        list_subjects(tmp_path)
    _write_subject(tmp_path / "LLP26_01")
    _write_subject(tmp_path / "LLP26_02", open_femur=True)
    (tmp_path / "LLP26_03").mkdir()
    assert list_subjects(tmp_path) == ["LLP26_01", "LLP26_02", "LLP26_03"]
    assert load_subject(tmp_path, "LLP26_01").femur.is_watertight
    with pytest.raises(InputError, match="not watertight"):
        load_subject(tmp_path, "LLP26_02")
    with pytest.raises(InputError, match="missing"):
        load_subject(tmp_path, "LLP26_03")
    with pytest.raises(InputError, match="does not exist"):
        load_subject(tmp_path, "LLP26_99")


@pytest.mark.shared
def test_llp26_subjects_load_and_cache(llp26_dir: Path) -> None:
    names = list_subjects(llp26_dir)
    assert len(names) == 26 and "mean" not in names
    assert list_subjects(llp26_dir, include_mean=True)[-1] == "mean"
    a = load_subject(llp26_dir, "LLP26_01")
    assert load_subject(llp26_dir, "LLP26_01") is a
    assert a.femur.is_watertight and a.femur.volume > 0
    assert 780 < a.femur.bounds[0, 2] < 800 and 1220 < a.femur.bounds[1, 2] < 1240


@pytest.mark.shared
def test_llp26_femur_voxel_volume_and_speed(llp26_dir: Path) -> None:
    femur = load_subject(llp26_dir, "LLP26_05").femur
    aff, shape = grid_for(femur, 0.8)
    voxelize(femur, aff, shape)
    t0 = time.perf_counter()
    crop = voxelize(femur, aff, shape)
    elapsed = time.perf_counter() - t0
    assert crop.count * 0.8**3 == pytest.approx(femur.volume, rel=0.01)
    assert elapsed < 2.0  # about 0.05 s; generous for a shared CPU


# ----------------------------------------------------------------------------- landmarks


def test_fit_sphere_recovers_centre_and_radius() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(size=(400, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cap = d[d[:, 2] > 0.2]  # a cap only, like a femoral head
    pts = np.array([3.0, -4.0, 100.0]) + 23.0 * cap + rng.normal(0, 0.05, cap.shape)
    c, r = fit_sphere(pts)
    assert np.allclose(c, [3.0, -4.0, 100.0], atol=0.2) and r == pytest.approx(23.0, abs=0.2)


def assert_head_in_acetabulum(pelvis, centre, radius, name="") -> None:
    """The pelvis surrounds the head from above and medially (roof and floor of the socket)."""
    v = pelvis.vertices - centre
    d = np.linalg.norm(v, axis=1)
    near = v[d < radius + 12.0] / d[d < radius + 12.0, None]
    assert len(near) > 30, name
    assert near[:, 2].max() > 0.8, name  # roof above the head
    x_mid = 0.5 * (pelvis.bounds[0, 0] + pelvis.bounds[1, 0])
    medial = np.sign(x_mid - centre[0])
    assert (near[:, 0] * medial).max() > 0.8, name  # floor on the midline side
    lo, hi = pelvis.bounds
    assert np.all(centre > lo) and np.all(centre < hi), name


@pytest.mark.shared
def test_llp26_landmarks_are_anatomical(llp26_dir: Path) -> None:
    for name in list_subjects(llp26_dir):
        bones = load_subject(llp26_dir, name)
        lm = limb_landmarks(bones)
        assert 18.0 < lm.head_radius < 30.0, name
        assert_head_in_acetabulum(bones.pelvis, lm.head_centre, lm.head_radius, name)
        assert 60.0 < lm.head_centre[0] - lm.pelvis_mid_x < 100.0, name  # left hip, +x = left
        assert lm.pelvis_top[2] - lm.head_centre[2] > 100.0, name
        assert 360.0 < lm.head_centre[2] - lm.knee_centre[2] < 460.0, name
        assert 300.0 < lm.knee_centre[2] - lm.ankle_centre[2] < 420.0, name
        assert lm.femur_axis[2] > 0.95 and abs(lm.knee_axis[0]) > 0.95, name
        assert lm.femur_bottom[2] < lm.knee_centre[2] < lm.knee_pivot[2], name
        right = mirrored_hip_centre(bones.pelvis, lm.head_centre, lm.pelvis_mid_x)
        assert right[0] < lm.pelvis_mid_x - 60.0, name


def test_phantom_layers_import_only_the_layers_before_them() -> None:
    """anatomy -> tissues -> scanner: no module imports a later layer (or generate/dataset),
    and no two phantom modules import each other."""
    import ast
    from pathlib import Path

    import femurseg.phantoms as ph

    root = Path(ph.__file__).parent
    order = {"anatomy": 0, "tissues": 1, "scanner": 2, "generate": 3, "dataset": 4}
    edges: set[tuple[str, str]] = set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        me = ".".join(rel.parts)
        layer = order.get(rel.parts[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                if not mod.startswith("femurseg.phantoms."):
                    continue
                target = mod.removeprefix("femurseg.phantoms.")
                edges.add((me, target))
                t_layer = order.get(target.split(".")[0])
                if layer is not None and t_layer is not None:
                    assert t_layer <= layer, f"{me} imports the later layer {target}"
    for a, b in edges:
        assert (b, a) not in edges, f"{a} and {b} import each other"
