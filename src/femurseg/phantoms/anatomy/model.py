"""Posed anatomy of one phantom: bone meshes and landmarks in world RAS+ millimetres.

This module is the contract between the shape side of the phantom generator (meshes,
landmarks, pose; see :mod:`femurseg.phantoms.anatomy.shapes` and
:mod:`femurseg.phantoms.anatomy.assemble`) and the render side (tissues, scanner; see
:mod:`femurseg.phantoms.scanner.render`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh

#: Mesh keys of an :class:`Anatomy`; ``femur_left``/``femur_right`` are labels 1 and 2.
BONES: tuple[str, ...] = (
    "pelvis",
    "femur_left",
    "femur_right",
    "patella_left",
    "patella_right",
    "tibfib_left",
    "tibfib_right",
)

#: the femur's joints: joint name -> the mesh key (without side) of the femur's partner bone.
JOINTS: dict[str, str] = {"hip": "pelvis", "knee": "tibfib", "patellofemoral": "patella"}


def joint_bones(joint: str, side: str) -> tuple[str, str]:
    """Mesh keys of the two bones of ``joint`` on ``side`` (left or right): the femur first,
    then its partner (the one pelvis serves both sides)."""
    other = JOINTS[joint]
    return f"femur_{side}", other if other == "pelvis" else f"{other}_{side}"


@dataclass
class Anatomy:
    """Bones of one posed lower body, in world RAS+ mm (+x towards the patient's right).

    Attributes:
        meshes: watertight triangle meshes keyed by :data:`BONES`, vertices in world RAS+ mm.
        landmarks: named points in world RAS+ mm, shape (3,) each. Always present:
            ``hip_left``/``hip_right`` (femoral head centres), ``head_radius_left``/``_right``
            (stored as (r, 0, 0)), ``knee_left``/``knee_right`` (midpoint between the femoral
            condyles), ``ankle_left``/``ankle_right`` (distal tibia centre), ``pelvis_centre``,
            ``pelvis_top`` (highest point of the iliac crests), ``femur_top_left``/``_right`` and
            ``femur_bottom_left``/``_right`` (most proximal / distal femur points along its axis).
        meta: how it was made (shape subjects, pose angles, scale), JSON-ready.
        osteophytes: bony spurs at the joint margins, each joined to its bone when rendered
            and labelled (:class:`femurseg.phantoms.anatomy.osteophytes.Blob`); none by default.
        fractures: femurs broken in two, each voxelised in its pieces when rendered and
            labelled (:class:`femurseg.phantoms.anatomy.fractures.Fracture`); none by default.
    """

    meshes: dict[str, trimesh.Trimesh]
    landmarks: dict[str, npt.NDArray[np.float64]]
    meta: dict[str, Any] = field(default_factory=dict)
    osteophytes: list[Any] = field(default_factory=list)
    fractures: list[Any] = field(default_factory=list)
