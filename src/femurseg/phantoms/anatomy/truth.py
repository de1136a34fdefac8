"""True femur measurements of a phantom, from its posed femur meshes (not its label map).

Each posed femur mesh is voxelised on its own 0.5-1 mm grid (:data:`TRUTH_SPACING_MM`), whatever
the phantom's scan spacing, and measured with the same definitions the pipeline reports
(:mod:`femurseg.measure`): landmarks in world RAS+ mm and every measurement with its method.
``femurseg phantom`` writes them into ``dataset.json`` (``case_info[case]["femur_truth"]``), so
that predicted measurements can be scored against them.

The same measurement imposes a chosen torsion or length: :func:`impose_shape` measures the
posed femur, changes the femur's deformation (:class:`~femurseg.phantoms.anatomy.deform.FemurShape`
twist about the mechanical axis, length factor) by the difference to the target, and the
anatomy is posed again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import trimesh

from femurseg.measure import measure_femur
from femurseg.phantoms.anatomy.voxelize import voxelize
from femurseg.types import Label

#: voxel size of the grid the truth is measured on, mm.
TRUTH_SPACING_MM = 1.0
#: the torsion method used to impose a torsion (the high-neck one, seen along the mechanical
#: axis, which is the axis the deformation twists about).
TORSION_METHOD = "torsion_lee_deg"
SIDES = {"femur_left": Label.FEMUR_LEFT, "femur_right": Label.FEMUR_RIGHT}


def mesh_measurements(mesh: trimesh.Trimesh, side: str) -> dict[str, Any]:
    """Landmarks and measurements of one femur mesh (world RAS+ mm), JSON-ready."""
    sp = TRUTH_SPACING_MM
    lo = np.asarray(mesh.bounds[0]) - 3.0 * sp
    hi = np.asarray(mesh.bounds[1]) + 3.0 * sp
    shape = tuple(int(n) for n in np.ceil((hi - lo) / sp) + 1)
    affine = np.diag([sp, sp, sp, 1.0])
    affine[:3, 3] = lo
    mask = voxelize(mesh, affine, shape).to_full()  # type: ignore[arg-type]
    measured = measure_femur(mask, affine, SIDES[side])
    out = measured.to_dict()
    out["source"] = f"posed mesh voxelised at {sp:g} mm"
    return out


def femur_truth(meshes: dict[str, trimesh.Trimesh]) -> dict[str, Any]:
    """``{"femur_left": {...}, "femur_right": {...}}`` measured on the posed meshes."""
    return {side: mesh_measurements(meshes[side], side) for side in SIDES}


def _value(truth: dict[str, Any], name: str) -> float | None:
    m = (truth.get("measurements") or {}).get(name) or {}
    v = m.get("value")
    return None if v is None else float(v)


def shape_changes(
    meshes: dict[str, trimesh.Trimesh],
    targets: dict[str, dict[str, float]],
) -> dict[str, dict[str, float]]:
    """How much to add to each femur's twist and multiply its length to reach the targets.

    Args:
        meshes: the posed femur meshes.
        targets: per side, ``{"torsion_deg": ..., "length_mm": ...}`` (either may be absent).

    Returns:
        per side, ``{"twist_deg": ..., "length_factor": ...}`` for the sides with targets.
    """
    out: dict[str, dict[str, float]] = {}
    for side, want in targets.items():
        now = mesh_measurements(meshes[side], side)
        change: dict[str, float] = {}
        torsion = _value(now, TORSION_METHOD)
        if "torsion_deg" in want and torsion is not None:
            change["twist_deg"] = want["torsion_deg"] - torsion
        length = _value(now, "femoral_length_mm")
        if "length_mm" in want and length is not None:
            change["length_factor"] = want["length_mm"] / length
        out[side] = change
    return out


def apply_changes(pose: Any, changes: dict[str, dict[str, float]]) -> Any:
    """The pose with each femur's deformation changed (see :func:`shape_changes`)."""
    legs = {}
    for side, leg_name in (("femur_left", "left"), ("femur_right", "right")):
        leg = getattr(pose, leg_name)
        change = changes.get(side) or {}
        shape = leg.femur
        if "twist_deg" in change:
            shape = dataclasses.replace(shape, torsion_deg=shape.torsion_deg + change["twist_deg"])
        if "length_factor" in change:
            shape = dataclasses.replace(
                shape, length_factor=shape.length_factor * change["length_factor"]
            )
        legs[leg_name] = dataclasses.replace(leg, femur=shape)
    return dataclasses.replace(pose, **legs)
