"""STL meshes: volume, centroid and sides against analytic masks, in world LPS millimetres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import trimesh

from femurseg.errors import ConfigError
from femurseg.export import MeshConfig, mask_mesh, write_femur_meshes
from femurseg.types import Label


def _grid(shape: tuple[int, int, int], affine: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _ellipsoid(
    shape: tuple[int, int, int],
    affine: npt.NDArray[np.float64],
    centre: npt.ArrayLike,
    radii: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    rel = (_grid(shape, affine) - np.asarray(centre)) / np.asarray(radii)
    return (rel**2).sum(axis=-1) <= 1.0


def _mask_centroid_lps(mask: npt.NDArray[np.bool_], affine: npt.NDArray[np.float64]):
    ras = np.argwhere(mask).mean(axis=0) @ affine[:3, :3].T + affine[:3, 3]
    return ras * np.array([-1.0, -1.0, 1.0])


def _anisotropic_affine(flip: bool = False) -> npt.NDArray[np.float64]:
    a = np.diag([0.8, 1.1, 1.7, 1.0])
    a[:3, 3] = [-30.0, -25.0, 12.0]
    if flip:  # a left-handed voxel grid (i runs to patient left): the winding must still be right
        a[:, 0] *= -1
        a[0, 3] = 30.0
    return a


@pytest.mark.parametrize(
    ("radii", "flip"),
    [((16.0, 16.0, 16.0), False), ((14.0, 20.0, 26.0), False), ((18.0, 12.0, 22.0), True)],
)
def test_mesh_volume_centroid_and_closure(radii: tuple[float, float, float], flip: bool) -> None:
    affine = _anisotropic_affine(flip)
    shape = (76, 50, 36)
    centre_ras = _grid(shape, affine)[38, 24, 18] + np.array([0.3, -0.2, 0.4])
    mask = _ellipsoid(shape, affine, centre_ras, radii)
    mesh = mask_mesh(mask, affine)
    analytic = 4.0 / 3.0 * np.pi * np.prod(radii)
    voxels = mask.sum() * abs(np.linalg.det(affine[:3, :3]))
    assert mesh.is_watertight
    assert mesh.volume > 0  # outward winding
    assert mesh.volume == pytest.approx(voxels, rel=0.03)
    assert mesh.volume == pytest.approx(analytic, rel=0.04)
    centroid = mesh.center_mass
    assert np.linalg.norm(centroid - _mask_centroid_lps(mask, affine)) < 1.0
    assert np.linalg.norm(centroid - centre_ras * [-1, -1, 1]) < 1.0
    # Normals point outward: the vertex farthest along +x (LPS) has a normal pointing +x.
    tip = int(np.argmax(mesh.vertices[:, 0]))
    assert mesh.vertex_normals[tip, 0] > 0.9


def test_decimation_keeps_a_closed_surface_of_the_right_volume() -> None:
    affine = _anisotropic_affine()
    shape = (76, 50, 36)
    mask = _ellipsoid(shape, affine, _grid(shape, affine)[38, 24, 18], (20.0, 18.0, 24.0))
    full = mask_mesh(mask, affine)
    small = mask_mesh(mask, affine, MeshConfig(max_faces=2000))
    assert len(small.faces) <= 2000 < len(full.faces)
    assert small.is_watertight
    assert small.volume == pytest.approx(full.volume, rel=0.04)


def test_written_stl_has_sides_in_lps(tmp_path: Path) -> None:
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [-60.0, -30.0, 0.0]
    shape = (81, 41, 30)
    world = _grid(shape, affine)
    labels = np.zeros(shape, dtype=np.uint8)
    # Patient left femur at RAS x < 0, right at x > 0 (different sizes, so they cannot swap).
    labels[np.linalg.norm(world - [-35.0, 0.0, 30.0], axis=-1) <= 12] = Label.FEMUR_LEFT
    labels[np.linalg.norm(world - [30.0, 5.0, 25.0], axis=-1) <= 16] = Label.FEMUR_RIGHT
    paths = write_femur_meshes(labels, affine, tmp_path / "out", "case1")
    assert set(paths) == {"femur_left", "femur_right"}
    assert paths["femur_left"].name == "case1_femur_left.stl"
    left = trimesh.load(paths["femur_left"])
    right = trimesh.load(paths["femur_right"])
    assert left.is_watertight and right.is_watertight
    # LPS: patient left is +x, patient posterior is +y.
    np.testing.assert_allclose(left.center_mass, [35.0, 0.0, 30.0], atol=1.0)
    np.testing.assert_allclose(right.center_mass, [-30.0, -5.0, 25.0], atol=1.0)
    assert left.volume < right.volume
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_missing_side_is_skipped(tmp_path: Path) -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[5:12, 5:12, 5:12] = Label.FEMUR_RIGHT
    paths = write_femur_meshes(labels, np.eye(4), tmp_path, "c")
    assert list(paths) == ["femur_right"]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        mask_mesh(np.zeros((5, 5, 5), dtype=bool), np.eye(4))
    with pytest.raises(ValueError, match="invertible"):
        mask_mesh(np.ones((5, 5, 5), dtype=bool), np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="taubin_mu"):
        MeshConfig(taubin_lambda=0.6, taubin_mu=0.5)
    with pytest.raises(ConfigError, match="max_faces"):
        MeshConfig(max_faces=10)
