"""Landmark outputs: a 3D Slicer markups file (LPS) and a figure of both femurs with their axes.

::

    write_markups(measurements, path) -> Path
        ``<case>_landmarks.mrk.json``: one point list, one named control point per landmark
        and side ("femur_left head_centre", ...), world LPS mm as Slicer expects.
    write_landmark_figure(labels, affine, measurements, path) -> Path
        ``<case>_landmarks.png``: front (coronal) and axial views of both femurs with the
        landmarks, the mechanical axes and the posterior condylar lines, torsion in the titles.
    left_right(measurements) -> dict
        left-against-right differences (length, torsion by each method) when both are known.

``measurements`` is the report's ``"measurements"`` entry (per side: ``measurements`` and
``landmarks_ras_mm``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.atomic import atomic_write
from femurseg.io.orient import points_ras_to_lps
from femurseg.measure.geometry import FloatArray, voxel_points
from femurseg.measure.landmarks import LANDMARKS
from femurseg.measure.quality import IndexBoxes, label_crops
from femurseg.types import SIDE_NAMES, Label

SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
SIDES = SIDE_NAMES
#: the values compared left against right, and the name of their difference.
COMPARED = {
    "femoral_length_mm": "length_difference_mm",
    "torsion_lee_deg": "torsion_lee_difference_deg",
    "torsion_murphy_deg": "torsion_murphy_difference_deg",
}


def landmark_points(measurements: dict[str, Any]) -> list[tuple[str, str, list[float]]]:
    """(side, landmark, RAS point) of every landmark found, in :data:`LANDMARKS` order."""
    out = []
    for side in SIDES:
        marks = (measurements.get(side) or {}).get("landmarks_ras_mm") or {}
        for name in LANDMARKS:
            if name in marks:
                out.append((side, name, [float(v) for v in marks[name]]))
    return out


def write_markups(measurements: dict[str, Any], path: Path) -> Path:
    """Write the landmarks as a Slicer markups point list (``.mrk.json``, LPS mm)."""
    points = [
        {
            "id": str(i + 1),
            "label": f"{side} {name}",
            "description": f"{name} of the {side.replace('_', ' ')}",
            "position": [float(v) for v in points_ras_to_lps(p)],
            "positionStatus": "defined",
        }
        for i, (side, name, p) in enumerate(landmark_points(measurements))
    ]
    doc = {
        "@schema": SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "controlPoints": points,
            }
        ],
    }

    def _write(tmp: Path) -> None:
        tmp.write_text(json.dumps(doc, indent=2))

    return atomic_write(path, _write)


def left_right(measurements: dict[str, Any]) -> dict[str, Any]:
    """Right minus left of femoral length and of each torsion, or None with the reason."""
    out: dict[str, Any] = {}
    for name, diff in COMPARED.items():
        vals, why = [], ""
        for side in SIDES:
            m = ((measurements.get(side) or {}).get("measurements") or {}).get(name) or {}
            if m.get("value") is None:
                why = why or f"{side} {name} not measured: {m.get('reason') or 'not found'}"
            vals.append(m.get("value"))
        unit = "mm" if name.endswith("_mm") else "deg"
        value = None
        if not why and vals[0] is not None and vals[1] is not None:
            value = round(float(vals[1]) - float(vals[0]), 2)
        out[diff] = {
            "value": value,
            "unit": unit,
            "reason": why or None,
            "method": f"right minus left {name}",
        }
    return out


def femur_points(
    labels: npt.NDArray[np.uint8],
    affine: npt.NDArray[np.float64],
    boxes: IndexBoxes | None = None,
    most: int = 40000,
) -> dict[Label, FloatArray]:
    """World RAS+ mm points of each femur side (every n-th voxel, at most about ``most``),
    searched only inside each side's box (``label_crops``: the given ``boxes``, else one
    search of the map); an empty side has no points."""
    out: dict[Label, FloatArray] = {}
    for side, crop in label_crops(labels, affine, 0, boxes).items():
        if crop is None:
            out[side] = np.zeros((0, 3))
            continue
        box, crop_affine = crop
        mask = labels[box] == side
        out[side] = voxel_points(mask, crop_affine, max(1, int(np.count_nonzero(mask)) // most))
    return out


def write_landmark_figure(
    labels: npt.NDArray[np.uint8],
    affine: npt.NDArray[np.float64],
    measurements: dict[str, Any],
    path: Path,
    boxes: IndexBoxes | None = None,
) -> Path:
    """Front and axial views of both femurs with landmarks and axes (PNG, atomic).

    ``boxes`` (each side's tight index box in ``labels``, as the pipeline knows them) keeps
    the point search inside each femur: a search of a whole 512 x 512 x 1000 map took 2.6 s
    per side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (front, axial) = plt.subplots(1, 2, figsize=(10, 7), dpi=90)
    # the preview's colours: left orange, right blue
    colours = {"femur_left": (1.0, 0.55, 0.0), "femur_right": (0.15, 0.65, 1.0)}
    titles = []
    points = femur_points(labels, affine, boxes)
    for value, side in ((1, "femur_left"), (2, "femur_right")):
        pts = points[Label(value)]
        if len(pts) == 0:
            continue
        # patient's right on the viewer's left, as radiologists look at a scan
        front.scatter(-pts[:, 0], pts[:, 2], s=0.3, c="0.8", rasterized=True)
        axial.scatter(-pts[:, 0], pts[:, 1], s=0.3, c="0.8", rasterized=True)
        side_m = measurements.get(side) or {}
        marks = side_m.get("landmarks_ras_mm") or {}
        for name in LANDMARKS:
            if name in marks:
                p = marks[name]
                front.plot(-p[0], p[2], "o", ms=4, color=colours[side])
                axial.plot(-p[0], p[1], "o", ms=4, color=colours[side])
        if "head_centre" in marks and "knee_centre" in marks:
            h, k = marks["head_centre"], marks["knee_centre"]
            front.plot([-h[0], -k[0]], [h[2], k[2]], "-", color=colours[side], lw=1.5)
        if "medial_condyle_posterior" in marks and "lateral_condyle_posterior" in marks:
            a, b = marks["medial_condyle_posterior"], marks["lateral_condyle_posterior"]
            axial.plot([-a[0], -b[0]], [a[1], b[1]], "-", color=colours[side], lw=1.5)
        if "head_centre" in marks and "neck_base_centre" in marks:
            a, b = marks["head_centre"], marks["neck_base_centre"]
            axial.plot([-a[0], -b[0]], [a[1], b[1]], "--", color=colours[side], lw=1.5)
        items = side_m.get("measurements") or {}
        parts = []
        for name, label in (("torsion_lee_deg", "Lee"), ("torsion_murphy_deg", "Murphy")):
            v = (items.get(name) or {}).get("value")
            parts.append(f"{label} {v:.1f} deg" if v is not None else f"{label} n/a")
        name = side.replace("_", " ")
        titles.append(
            f"{name} ({'orange' if side == 'femur_left' else 'blue'}): torsion {', '.join(parts)}"
        )
    front.set_title("front view (patient right on the left)")
    front.set_xlabel("x (mm, RAS, mirrored)")
    front.set_ylabel("z (mm)")
    axial.set_title("axial, seen from the feet:\nposterior condylar lines, neck-base axes (dashed)")
    axial.set_xlabel("x (mm, RAS, mirrored)")
    axial.set_ylabel("y (mm, anterior up)")
    for ax in (front, axial):
        ax.set_aspect("equal")
    fig.suptitle("\n".join(titles) or "no femur found", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)

    def _write(tmp: Path) -> None:
        tmp.write_bytes(buf.getvalue())

    return atomic_write(path, _write)
