"""Bone shape sources: one subject's left-limb bones in the LLP26 frame.

The LLP26 frame (see ``shapes/README.md`` beside the meshes) is LPS millimetres: +x towards the
patient's left, +y posterior, +z superior, with z measured from an arbitrary origin (the femur
spans roughly z 790-1230). Only the LEFT limb is given; the right limb is made by mirroring (see
:mod:`femurseg.phantoms.anatomy.assemble`).

The meshes are real subject data under their own licence: they are read from the folder the user
names and never copied into the project.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import trimesh

from femurseg.errors import InputError

log = logging.getLogger(__name__)

#: Bone files expected in every subject folder, by :class:`BoneSet` field.
BONE_FILES: dict[str, str] = {
    "pelvis": "pelvis.ply",
    "femur": "femur.ply",
    "patella": "patella.ply",
    "tibfib": "tibfib.ply",
}

_SUBJECT_RE = re.compile(r"^LLP26_\d+$")


@dataclass(frozen=True)
class BoneSet:
    """One subject's bones in the LLP26 frame (LPS mm, left limb).

    The meshes are shared (for example by the :func:`load_subject` cache): treat them as
    read-only and copy before changing them.

    Attributes:
        name: subject id, e.g. ``"LLP26_01"`` or ``"procedural_1234"``.
        pelvis: whole pelvis (both hip bones and the sacrum; may be several bodies).
        femur: left femur.
        patella: left patella.
        tibfib: left tibia and fibula (one mesh, usually two bodies).
    """

    name: str
    pelvis: trimesh.Trimesh
    femur: trimesh.Trimesh
    patella: trimesh.Trimesh
    tibfib: trimesh.Trimesh


def list_subjects(shapes_dir: str | Path, include_mean: bool = False) -> list[str]:
    """Names of the subject folders (``LLP26_NN``) under ``shapes_dir``, sorted.

    Args:
        shapes_dir: the ``llp26`` folder holding one sub-folder per subject.
        include_mean: also list the ``mean`` shape folder (last) when present.

    Raises:
        InputError: the folder does not exist or holds no subject folders.
    """
    root = Path(shapes_dir)
    if not root.is_dir():
        raise InputError(
            f"Bone shape folder {root} does not exist; expected a folder of LLP26_NN "
            "sub-folders; pass the path to shapes/llp26 or use procedural shapes"
        )
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and _SUBJECT_RE.match(p.name))
    if include_mean and (root / "mean").is_dir():
        names.append("mean")
    if not names:
        raise InputError(
            f"No subject folders found in {root}; expected sub-folders named LLP26_NN with "
            f"{', '.join(BONE_FILES.values())}; check the path"
        )
    return names


def load_subject(shapes_dir: str | Path, name: str) -> BoneSet:
    """Load (once, then from a cache) one subject's four bone meshes.

    Args:
        shapes_dir: the ``llp26`` folder.
        name: subject folder name, e.g. ``"LLP26_01"`` or ``"mean"``.

    Returns:
        The subject's :class:`BoneSet` in the LLP26 frame (LPS mm). Cached: do not modify.

    Raises:
        InputError: a folder or file is missing, unreadable, or a mesh is not watertight.
    """
    return _load_subject_cached(str(Path(shapes_dir).resolve()), name)


@functools.lru_cache(maxsize=64)
def _load_subject_cached(root: str, name: str) -> BoneSet:
    folder = Path(root) / name
    if not folder.is_dir():
        raise InputError(
            f"Subject folder {folder} does not exist; expected one of the names from "
            f"list_subjects({root!r}); check the subject name and shapes path"
        )
    meshes = {field: _load_mesh(folder / fname) for field, fname in BONE_FILES.items()}
    log.debug("loaded bone shapes of %s from %s", name, folder)
    return BoneSet(name=name, **meshes)


def _load_mesh(path: Path) -> trimesh.Trimesh:
    """Read one closed bone mesh, checking it can be voxelised (watertight, outward normals)."""
    if not path.is_file():
        raise InputError(
            f"Bone mesh {path} is missing; expected {', '.join(BONE_FILES.values())} in "
            f"{path.parent}; restore the file or choose another subject"
        )
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as e:  # trimesh raises many types for damaged files
        raise InputError(
            f"Cannot read bone mesh {path} ({e}); expected a binary or ASCII PLY surface; "
            "re-export the mesh"
        ) from e
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(
            f"Bone mesh {path} holds no triangles; expected a closed triangle surface; "
            "re-export the mesh"
        )
    if not mesh.is_watertight:
        raise InputError(
            f"Bone mesh {path} is not watertight (has holes or open edges); expected a closed "
            "surface so that inside/outside is defined; repair it (e.g. fill holes) first"
        )
    if mesh.volume < 0:
        # Inward-facing normals: the shape is fine, only the winding is reversed.
        log.warning("bone mesh %s has inward normals; inverting its faces", path)
        mesh.invert()
    return mesh
