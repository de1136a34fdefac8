"""Surface meshes (STL) of each femur from a label map, in world millimetres, LPS frame.

Steps, per label: crop to the label's bounding box and pad with background so the surface
closes; marching cubes at level 0.5 on the binary mask (vertices land on the voxel faces between
inside and outside centres); vertices through the voxel -> world RAS+ affine, then x and y
negated to LPS+ (the frame 3D Slicer assumes for STL files); winding fixed so that normals point
outward; Taubin (lambda/mu) smoothing, which removes the voxel staircase without the shrinking
of plain Laplacian smoothing; decimation to at most ``max_faces`` triangles.

Decimation: quadric edge collapse (``trimesh.Trimesh.simplify_quadric_decimation``, through the
``fast_simplification`` dependency), which keeps the mesh closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from skimage import measure

from femurseg.atomic import atomic_write
from femurseg.config import check_range
from femurseg.errors import ConfigError
from femurseg.io.orient import points_ras_to_lps
from femurseg.types import LABELS, Label, affine_to_world

if TYPE_CHECKING:
    # imported where a mesh is made: trimesh takes about 0.5 s to import, which every
    # `predict` without --mesh would otherwise pay on its start-up
    import trimesh

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshConfig:
    """Settings for :func:`mask_mesh` and :func:`write_femur_meshes`.

    Attributes:
        smooth_iterations: Taubin smoothing passes (0 = no smoothing).
        taubin_lambda: Taubin shrink step, 0 < lambda < 1.
        taubin_mu: Taubin inflate step magnitude (trimesh's ``nu``); slightly above lambda so the
            volume is kept.
        max_faces: triangle budget per femur after decimation.
    """

    smooth_iterations: int = 10
    taubin_lambda: float = 0.5
    taubin_mu: float = 0.53
    max_faces: int = 150_000

    def __post_init__(self) -> None:
        check_range("smooth_iterations", self.smooth_iterations, 0, 200)
        check_range("taubin_lambda", self.taubin_lambda, 0.01, 0.99)
        check_range("taubin_mu", self.taubin_mu, 0.01, 0.99)
        if self.taubin_mu < self.taubin_lambda:
            raise ConfigError(
                f"taubin_mu={self.taubin_mu} < taubin_lambda={self.taubin_lambda}; expected "
                "mu >= lambda, otherwise the mesh shrinks; raise taubin_mu"
            )
        check_range("max_faces", self.max_faces, 100, 10_000_000)


def _marching_cubes(
    mask: npt.NDArray[np.bool_], step: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Marching cubes on the bounding box of ``mask``; vertices in full-array voxel indices."""
    nz = np.nonzero(mask)
    lo = np.array([int(a.min()) for a in nz])
    hi = np.array([int(a.max()) + 1 for a in nz])
    crop = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    # Pad by the sampling step so every sampled border plane lies outside: the surface closes.
    padded = np.pad(crop, step).astype(np.float32)
    verts, faces, _, _ = measure.marching_cubes(
        padded, level=0.5, step_size=step, allow_degenerate=False
    )
    return verts.astype(np.float64) + (lo - step), faces.astype(np.int64)


def mask_mesh(
    mask: npt.ArrayLike, affine: npt.ArrayLike, config: MeshConfig | None = None
) -> trimesh.Trimesh:
    """Closed, smoothed, decimated surface of a binary mask, in world LPS+ millimetres.

    Args:
        mask: bool array, shape (X, Y, Z), indexed like the affine's voxel axes.
        affine: 4x4 voxel index -> world RAS+ mm (any orientation, oblique allowed).
        config: smoothing and decimation settings.

    Returns:
        Triangle mesh with vertices in world LPS+ mm (x to patient Left, y Posterior,
        z Superior), faces wound counter-clockwise seen from outside (normals outward).

    Raises:
        ValueError: the mask is empty or the affine is not an invertible 4x4.
    """
    cfg = config or MeshConfig()
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"mask must be 3D (X, Y, Z), got shape {m.shape}")
    if not m.any():
        raise ValueError("mask is empty; expected at least one voxel to mesh")
    a = np.asarray(affine, dtype=np.float64)
    det = float(np.linalg.det(a[:3, :3])) if a.shape == (4, 4) else 0.0
    if abs(det) < 1e-12:
        raise ValueError(f"affine must be an invertible 4x4 matrix, got {a.tolist()}")

    import trimesh

    verts, faces = _marching_cubes(m, 1)
    lps = points_ras_to_lps(affine_to_world(verts, a))
    # The LPS flip has determinant +1; a left-handed voxel grid reverses the winding.
    if det < 0:
        faces = faces[:, ::-1]
    mesh = trimesh.Trimesh(vertices=lps, faces=faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    if cfg.smooth_iterations:
        trimesh.smoothing.filter_taubin(
            mesh, lamb=cfg.taubin_lambda, nu=cfg.taubin_mu, iterations=cfg.smooth_iterations
        )
    if len(mesh.faces) > cfg.max_faces:
        mesh = mesh.simplify_quadric_decimation(face_count=cfg.max_faces)
    if not mesh.is_watertight:
        log.warning(
            "mesh of %d faces is not watertight; 3D printing software may need to repair it",
            len(mesh.faces),
        )
    return mesh


def mesh_path(folder: Path, case: str, label: Label) -> Path:
    """Where the STL of ``label`` goes: ``<folder>/<case>_<femur_left|femur_right>.stl``."""
    return Path(folder) / f"{case}_{LABELS[label]}.stl"


def write_femur_meshes(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    folder: str | Path,
    case: str,
    config: MeshConfig | None = None,
) -> dict[str, Path]:
    """Write one binary STL per femur found in a label map (atomic writes).

    Sides with no voxels are skipped with a log message (the quality flags report them).

    Args:
        labels: integer label map, shape (X, Y, Z), values 0/1/2 (see :class:`Label`).
        affine: 4x4 voxel index -> world RAS+ mm of ``labels``.
        folder: output folder (created if needed).
        case: file-name prefix, e.g. the input's case name.
        config: mesh settings.

    Returns:
        ``{"femur_left": path, "femur_right": path}`` for the sides written; the files hold
        world LPS+ millimetres.

    Raises:
        OutputError: a file cannot be written.
    """
    lab = np.asarray(labels)
    out: dict[str, Path] = {}
    for label in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        mask = lab == int(label)
        if not mask.any():
            log.info("no %s voxels; no mesh written", LABELS[label])
            continue
        mesh = mask_mesh(mask, affine, config)
        path = mesh_path(Path(folder), case, label)

        def _write(tmp: Path, mesh: trimesh.Trimesh = mesh) -> None:
            mesh.export(file_obj=str(tmp), file_type="stl")

        out[LABELS[label]] = atomic_write(path, _write)
    return out
