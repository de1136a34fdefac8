"""Hip joints as a CT shows them: a socket congruent with the seated head, a sourcil in its
roof, and thin, porous shells at the long bones' ends."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from femurseg.errors import ConfigError
from femurseg.phantoms.anatomy.assemble import SOCKET_PULL_MM, Pose, _carve_socket, assemble
from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.shapes import load_subject
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import TissueParams
from femurseg.phantoms.tissues.bone import LongAxis, render_bone, sourcil_thickness
from femurseg.phantoms.tissues.materials import Tissue, draw_case_tissues


def _socket(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A hollow ball's inner surface (normals facing its centre, as a socket's do)."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    v = np.asarray(sphere.vertices, dtype=np.float64)
    return v, -v / np.linalg.norm(v, axis=1, keepdims=True)


def test_socket_closes_on_a_smaller_head_over_its_roof_only() -> None:
    centre = np.zeros(3)
    for wide in (3.0, 1.5 * SOCKET_PULL_MM, 3.0 * SOCKET_PULL_MM):
        v, n = _socket(20.0 + wide)
        out = _carve_socket(v, n, centre, 20.0)
        r0, r1 = np.linalg.norm(v, axis=1), np.linalg.norm(out, axis=1)
        up = v[:, 2] / r0
        roof = up > 0.35
        # never pushed outwards, never inside the ball, and each vertex moves only radially
        assert np.all(r1 <= r0 + 1e-9) and np.all(r1 >= 20.0 - 1e-9)
        assert np.allclose(np.cross(v, out), 0.0, atol=1e-6)
        # the floor below the centre (the fossa) is left where the pelvis has it
        assert np.allclose(out[up < -0.15], v[up < -0.15])
        if wide <= SOCKET_PULL_MM:
            assert np.allclose(r1[roof], 20.0)
        elif wide < 2 * SOCKET_PULL_MM:
            assert np.all((r1[roof] > 20.0) & (r1[roof] < r0[roof]))
        else:
            assert np.allclose(out, v)  # too far to be this head's socket


def test_socket_still_pushes_out_a_sunken_head() -> None:
    v, n = _socket(18.0)
    out = _carve_socket(v, n, np.zeros(3), 20.0)
    assert np.allclose(np.linalg.norm(out, axis=1), 20.0)


@pytest.mark.shared
def test_mixed_subjects_roof_lies_the_joint_gap_from_the_head(llp26_dir: Path) -> None:
    # Pelvis of LLP26_09 with smaller heads from other subjects: before the socket was closed,
    # the right head's roof stood 5.5 mm off (median; 8.3 mm at the 90th percentile).
    sets = [load_subject(llp26_dir, s) for s in ("LLP26_09", "LLP26_19", "LLP26_10")]
    anat = assemble(*sets, Pose(hip_gap=2.0))
    pelvis = trimesh.sample.sample_surface(anat.meshes["pelvis"], 300000, seed=0)[0]
    tree = cKDTree(pelvis)
    for side in ("left", "right"):
        c = anat.landmarks[f"hip_{side}"]
        r = anat.landmarks[f"head_radius_{side}"][0]
        pts = trimesh.sample.sample_surface(anat.meshes[f"femur_{side}"], 100000, seed=1)[0]
        rel = pts - c
        dist = np.linalg.norm(rel, axis=1)
        dome = pts[(dist < r + 3.0) & (rel[:, 2] > np.cos(np.radians(35.0)) * dist)]
        gap, _ = tree.query(dome)
        assert np.median(gap) < 2.0 + 1.0, side
        assert np.percentile(gap, 90) < 2.0 + 2.0, side


def _ball(radius_vox: int) -> MaskCrop:
    n = 2 * radius_vox + 3
    i = np.indices((n, n, n)) - n // 2
    mask = (i**2).sum(axis=0) <= radius_vox**2
    return MaskCrop(mask, (slice(0, n), slice(0, n), slice(0, n)), (n, n, n))


def _tissues(**kw: float):  # type: ignore[no-untyped-def]
    """A drawn case without texture, its metaphyses dense and 1 mm thick and its head no
    denser than the rest unless given."""
    t = draw_case_tissues(TissueParams(), np.random.default_rng(0))
    kw = {"cortex_metaphysis_mm": 1.0, "metaphysis_density": 1.0, "head_cancellous_hu": 0.0, **kw}
    return replace(t, trabecular_contrast=0.0, cancellous_variation=0.0, **kw)


def _paint(crop: MaskCrop, t, axis=None, extra=None):  # type: ignore[no-untyped-def]
    grid = RenderGrid(crop.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    hu = np.zeros(crop.shape, np.float32)
    cls = np.zeros(crop.shape, np.uint8)
    render_bone(crop, grid, t, np.random.default_rng(1), hu, cls, axis, extra)
    return hu, cls


def _outer_layer(crop: MaskCrop) -> np.ndarray:
    from scipy import ndimage as ndi

    return crop.mask & ~ndi.binary_erosion(crop.mask)


def test_shell_thinner_than_a_voxel_fills_its_share_of_the_outer_layer() -> None:
    crop = _ball(12)
    outer = _outer_layer(crop)
    n = crop.shape[0]
    axis = LongAxis(np.array([0.0, 0.0, n]), np.array([0.0, 0.0, -4.0 * n]), (0.24, 0.78))
    means = {}
    for mm in (0.0, 0.3, 0.6, 1.0):
        t = _tissues(cortex_end_mm=mm, end_plate_density=1.0)
        hu, cls = _paint(crop, t, axis)
        means[mm] = float(hu[outer].mean())
        assert np.all(cls[outer] == Tissue.CORTICAL)
    assert means[0.0] < means[0.3] < means[0.6] < means[1.0]
    bare, full = means[0.0], means[1.0]  # no shell at all; a shell filling the layer
    assert full == pytest.approx(t.cortical, rel=0.05)
    assert means[0.3] == pytest.approx(bare + 0.3 * (full - bare), rel=0.1)


def test_end_plates_are_less_dense_than_the_shaft_cortex() -> None:
    crop = _ball(12)
    outer = _outer_layer(crop)
    n = crop.shape[0]
    # The ball as the proximal end of a long bone, then as the middle of its shaft.
    end = LongAxis(np.array([0.0, 0.0, n]), np.array([0.0, 0.0, -4.0 * n]), (0.24, 0.78))
    shaft = LongAxis(np.array([0.0, 0.0, 4.0 * n]), np.array([0.0, 0.0, -4.0 * n]), (0.2, 0.8))
    t = _tissues(cortex_end_mm=1.2, cortex_shaft_mm=1.2, end_plate_density=0.5)
    at_end, _ = _paint(crop, t, end)
    in_shaft, _ = _paint(crop, t, shaft)
    assert at_end[outer].mean() == pytest.approx(0.5 * t.cortical, rel=0.08)
    assert in_shaft[outer].mean() == pytest.approx(t.cortical, rel=0.08)


def test_femur_end_plate_is_porous_over_the_head_only() -> None:
    """With the head's sphere given, the proximal end's faint plate covers the head; the
    rest of the proximal end (neck, calcar, trochanters) keeps dense cortex; the distal end
    (condyles) stays porous throughout."""
    crop = _ball(12)
    outer = _outer_layer(crop)
    n = crop.shape[0]
    i = np.indices(crop.shape)
    head = (np.array([13.0, 13.0, 22.0]), 5.0)  # a cap at the top of the ball
    r_head = np.sqrt(((i - head[0][:, None, None, None]) ** 2).sum(axis=0))
    on_head = outer & (r_head <= head[1] + 2.0)
    away = outer & (r_head >= head[1] + 4.5)
    assert on_head.sum() > 20 and away.sum() > 200
    t = _tissues(cortex_end_mm=1.2, cortex_shaft_mm=1.2, end_plate_density=0.5)
    top = LongAxis(np.array([0.0, 0.0, n]), np.array([0.0, 0.0, -4.0 * n]), (0.24, 0.78), head)
    hu, _ = _paint(crop, t, top)
    assert hu[on_head].mean() == pytest.approx(0.5 * t.cortical, rel=0.08)
    assert hu[away].mean() == pytest.approx(t.cortical, rel=0.08)
    bottom = LongAxis(np.array([0.0, 0.0, 5.0 * n]), np.zeros(3), (0.2, 0.78), head)
    hu, _ = _paint(crop, t, bottom)
    assert hu[outer].mean() == pytest.approx(0.5 * t.cortical, rel=0.08)


@pytest.mark.parametrize("density", [1.0, 0.6])
def test_metaphysis_cortex_away_from_the_joint(density: float) -> None:
    """The end region 40 mm or more above the distal joint (metaphysis) has a cortex
    cortex_metaphysis_mm thick at metaphysis_density of the cortical HU, however thin and
    porous the joint plate is drawn; at the joint itself the thin faint plate."""
    crop = _ball(12)
    outer = _outer_layer(crop)  # the ball spans z = 1-25 mm
    t = _tissues(
        cortex_end_mm=0.3, cortex_shaft_mm=4.0, end_plate_density=0.5, metaphysis_density=density
    )
    # distal end 40 mm below the ball on a 540 mm bone: the ball is end region, not joint
    meta = LongAxis(np.array([0.0, 0.0, 500.0]), np.array([0.0, 0.0, -40.0]), (0.2, 0.8))
    at_joint = LongAxis(np.array([0.0, 0.0, 540.0]), np.zeros(3), (0.2, 0.8))
    hu_meta, _ = _paint(crop, t, meta)
    hu_joint, _ = _paint(crop, t, at_joint)
    assert hu_meta[outer].mean() == pytest.approx(density * t.cortical, rel=0.08)
    assert hu_joint[outer].mean() < 0.5 * t.cortical
    # a thinner metaphyseal cortex (0.6 of a 1 mm voxel) reads fainter in the outer layer,
    # but never thinner than the joint plate: drawn under it, the plate's thickness is used
    thin, _ = _paint(crop, replace(t, cortex_metaphysis_mm=0.6), meta)
    assert thin[outer].mean() < hu_meta[outer].mean() - 0.2 * density * t.cortical
    floor, _ = _paint(crop, replace(t, cortex_metaphysis_mm=0.1, cortex_end_mm=0.6), meta)
    assert np.allclose(floor, thin)


def test_femoral_head_cancellous_is_denser_than_the_neck() -> None:
    """Inside the head's sphere the cancellous bone reads head_cancellous_hu more; 8 mm or more
    beyond it (the neck, the trochanters) nothing changes."""
    crop = _ball(12)
    n = crop.shape[0]
    i = np.indices(crop.shape)
    head = (np.array([13.0, 13.0, 22.0]), 5.0)  # a cap at the top of the ball
    r_head = np.sqrt(((i - head[0][:, None, None, None]) ** 2).sum(axis=0))
    deep = crop.mask & ~_outer_layer(crop)
    top = LongAxis(np.array([0.0, 0.0, n]), np.array([0.0, 0.0, -4.0 * n]), (0.24, 0.78), head)
    plain, _ = _paint(crop, _tissues(cortex_end_mm=0.5), top)
    dense, _ = _paint(crop, _tissues(cortex_end_mm=0.5, head_cancellous_hu=150.0), top)
    inside = deep & (r_head <= 3.0)  # under the head's subchondral layer
    assert (dense - plain)[inside].mean() == pytest.approx(150.0, rel=0.1)
    far = crop.mask & (r_head >= 5.0 + 8.0)
    assert far.sum() > 100 and np.array_equal(dense[far], plain[far])
    draws = [draw_case_tissues(TissueParams(), np.random.default_rng(s)) for s in range(20)]
    assert all(80.0 <= d.head_cancellous_hu <= 220.0 for d in draws)


def test_sourcil_thickens_the_socket_roof_only() -> None:
    n = 61
    grid = RenderGrid((n, n, n), (1.0, 1.0, 1.0), (-30.0, -30.0, -30.0))
    i = np.stack(np.meshgrid(*[grid.axis(d) for d in range(3)], indexing="ij"))
    r = np.sqrt((i**2).sum(axis=0))
    shell = (r > 22.0) & (r < 29.0)  # a hollow ball standing in for the pelvis round a socket
    crop = MaskCrop(shell, (slice(0, n),) * 3, (n, n, n))
    assert sourcil_thickness(crop, grid, [(np.zeros(3), 22.0)], 0.0) is None
    extra = sourcil_thickness(crop, grid, [(np.zeros(3), 22.0)], 2.5)
    assert extra is not None and extra.max() == pytest.approx(2.5)
    roof = shell & (i[2] > 0.8 * r) & (r < 25.0)
    assert np.all(extra[roof] == pytest.approx(2.5))
    assert np.all(extra[shell & (i[2] < 0.25 * r)] == 0.0)  # walls and floor: as before
    t = _tissues(cortex_pelvis_mm=1.0)
    with_sourcil, _ = _paint(crop, t, None, extra)
    without, _ = _paint(crop, t, None, None)
    below_roof = roof & (r > 23.5) & (r < 24.5)  # 1.5-2.5 mm into the bone over the socket
    assert with_sourcil[below_roof].mean() > without[below_roof].mean() + 300.0
    floor = shell & (i[2] < -0.8 * r)
    assert np.array_equal(with_sourcil[floor], without[floor])


def test_tissue_ranges_reach_thin_porous_end_plates() -> None:
    p = TissueParams()
    assert p.cortex_end_mm[0] <= 0.3 and p.end_plate_density[0] <= 0.5
    draws = [draw_case_tissues(p, np.random.default_rng(s)) for s in range(40)]
    assert min(d.end_plate_density for d in draws) < 0.6 < max(d.end_plate_density for d in draws)
    assert min(d.sourcil_mm for d in draws) < 1.0 < 2.0 < max(d.sourcil_mm for d in draws)
    # metaphyses: from faint and thin (older bone) to dense, always under the shaft's cortex
    assert (
        min(d.metaphysis_density for d in draws)
        < 0.7
        < 0.95
        < max(d.metaphysis_density for d in draws)
    )
    assert (
        min(d.cortex_metaphysis_mm for d in draws)
        < 0.8
        < 1.3
        < max(d.cortex_metaphysis_mm for d in draws)
    )
    assert all(d.cortex_metaphysis_mm < d.cortex_shaft_mm for d in draws)
    with pytest.raises(ConfigError):
        TissueParams(end_plate_density=(0.0, 1.0))
    with pytest.raises(ConfigError):
        TissueParams(metaphysis_density=(0.5, 1.2))
