"""Anatomical landmarks of a :class:`~femurseg.phantoms.anatomy.shapes.BoneSet`, in its own frame.

All inputs and outputs are in the LLP26 frame (LPS mm, +x patient left, +y posterior,
+z superior) of a LEFT limb; the functions rely on the femur and tibia being roughly along z and
the medio-lateral direction being roughly x, which holds for every shape source of this package.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import trimesh
from scipy.optimize import minimize_scalar
from scipy.spatial import cKDTree

from femurseg.phantoms.anatomy.shapes import BoneSet

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LimbLandmarks:
    """Landmarks of one subject's bones, LPS mm in the subject's own frame (shape (3,) each).

    Attributes:
        head_centre: femoral head centre (least-squares sphere fit).
        head_radius: femoral head radius, mm.
        femur_axis: unit vector of the femoral mechanical axis, knee centre -> head centre.
        femur_top: most proximal femur vertex along ``femur_axis``.
        femur_bottom: most distal femur vertex along ``femur_axis``.
        knee_centre: midpoint between the centroids of the medial and lateral condyles.
        knee_axis: unit medio-lateral axis of the knee (+x side of the condyles, i.e. lateral).
        knee_pivot: point on the knee flexion axis (centre of the posterior condyle curvature).
        ankle_centre: centroid of the distal end of the tibia.
        pelvis_mid_x: x of the pelvis mid-sagittal (symmetry) plane.
        pelvis_centre: pelvis volume centroid moved onto the mid-sagittal plane.
        pelvis_top: highest pelvis vertex (iliac crest).
    """

    head_centre: Array
    head_radius: float
    femur_axis: Array
    femur_top: Array
    femur_bottom: Array
    knee_centre: Array
    knee_axis: Array
    knee_pivot: Array
    ankle_centre: Array
    pelvis_mid_x: float
    pelvis_centre: Array
    pelvis_top: Array


def fit_sphere(points: npt.ArrayLike) -> tuple[Array, float]:
    """Least-squares sphere through points (algebraic fit).

    Args:
        points: (N, 3) surface points, N >= 4, not coplanar.

    Returns:
        (centre (3,), radius) in the points' units.
    """
    p = np.asarray(points, dtype=np.float64)
    # |p|^2 = 2 p.c + (r^2 - |c|^2) is linear in (c, r^2 - |c|^2).
    a = np.column_stack([2.0 * p, np.ones(len(p))])
    b = np.einsum("ij,ij->i", p, p)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    radius = float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))
    return centre, radius


def femoral_head(
    femur: trimesh.Trimesh, axis: npt.ArrayLike = (0.0, 0.0, 1.0)
) -> tuple[Array, float]:
    """Centre and radius of the femoral head by a trimmed sphere fit.

    Starts from the vertices near the most proximal point along ``axis`` and refits on the
    vertices lying on the current sphere, which sheds the neck and trochanter.

    Args:
        femur: femur mesh, mm.
        axis: approximate proximal direction of the femur (unit not required).

    Returns:
        (centre (3,), radius mm).
    """
    v = np.asarray(femur.vertices, dtype=np.float64)
    ax = np.asarray(axis, dtype=np.float64)
    ax = ax / np.linalg.norm(ax)
    top = v[np.argmax(v @ ax)]
    sel = v[np.linalg.norm(v - top, axis=1) < 40.0]
    centre, radius = fit_sphere(sel)
    for _ in range(8):
        d = np.linalg.norm(v - centre, axis=1)
        keep = np.abs(d - radius) < max(1.5, 0.1 * radius)
        keep &= (v - centre) @ ax > -0.6 * radius  # the head cap, not the shaft below it
        if keep.sum() < 20:
            break
        new_c, new_r = fit_sphere(v[keep])
        done = np.linalg.norm(new_c - centre) < 1e-3 and abs(new_r - radius) < 1e-3
        centre, radius = new_c, new_r
        if done:
            break
    return centre, radius


def _largest_body(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    bodies = mesh.split(only_watertight=False)
    if len(bodies) <= 1:
        return mesh
    return max(bodies, key=lambda b: abs(b.volume))


def pelvis_mid_x(pelvis: trimesh.Trimesh) -> float:
    """x (mm) of the plane x = c about which the pelvis is most nearly mirror-symmetric.

    Minimises the mean distance from the mirrored vertices to the nearest original vertex.
    """
    v = np.asarray(pelvis.vertices, dtype=np.float64)
    tree = cKDTree(v)
    c0 = 0.5 * (v[:, 0].min() + v[:, 0].max())
    sub = v[:: max(1, len(v) // 3000)]

    def cost(c: float) -> float:
        m = sub.copy()
        m[:, 0] = 2.0 * c - m[:, 0]
        d, _ = tree.query(m)
        return float(np.mean(d))

    res = minimize_scalar(
        cost, bounds=(c0 - 25.0, c0 + 25.0), method="bounded", options={"xatol": 0.05}
    )
    return float(res.x)


def mirrored_hip_centre(
    pelvis: trimesh.Trimesh, hip: npt.ArrayLike, mid_x: float, radius: float = 45.0
) -> Array:
    """Right hip centre from the left one: mirror image, refined to the real right acetabulum.

    Shape-model pelves are slightly oblique (in LLP26 the right acetabulum sits ~10 mm from the
    mirror image of the left), so the mirrored left acetabular region is registered by
    translation (trimmed ICP) onto the pelvis and the mirrored centre moved with it.

    Args:
        pelvis: pelvis mesh, LPS mm.
        hip: (3,) left hip (femoral head) centre, mm.
        mid_x: x of the mid-sagittal plane, mm.
        radius: size of the acetabular region used for registration, mm.

    Returns:
        (3,) right hip centre, mm.
    """
    v = np.asarray(pelvis.vertices, dtype=np.float64)
    h = np.asarray(hip, dtype=np.float64)
    patch = v[np.linalg.norm(v - h, axis=1) < radius].copy()
    patch[:, 0] = 2.0 * mid_x - patch[:, 0]
    mirrored = h.copy()
    mirrored[0] = 2.0 * mid_x - h[0]
    if len(patch) < 20:
        return mirrored
    tree = cKDTree(v)
    t = np.zeros(3)
    for _ in range(30):
        d, idx = tree.query(patch + t)
        keep = d <= np.percentile(d, 80)
        step = np.mean(v[idx[keep]] - (patch[keep] + t), axis=0)
        t += step
        if np.linalg.norm(step) < 0.01:
            break
    if np.linalg.norm(t) > 25.0:
        log.warning(
            "right acetabulum registration moved %.0f mm; using the mirror image",
            float(np.linalg.norm(t)),
        )
        return mirrored
    return mirrored + t


def _knee(femur_v: Array, axis: Array) -> tuple[Array, Array, Array, Array]:
    """Knee centre, medio-lateral axis, flexion pivot and the most distal femur vertex."""
    proj = femur_v @ axis
    bottom = femur_v[np.argmin(proj)]
    slab = femur_v[proj < proj.min() + 25.0]
    ml = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    ml /= np.linalg.norm(ml)
    x = slab @ ml
    mid = 0.5 * (x.min() + x.max())
    medial = slab[x < mid].mean(axis=0)
    lateral = slab[x >= mid].mean(axis=0)
    centre = 0.5 * (medial + lateral)
    # Posterior condyles are nearly circular in the sagittal plane: the radius is the distance
    # from the distal-most point back to the posterior-most point (as +y is posterior).
    ap = np.cross(axis, ml)  # points posterior (+y) for a left limb in LPS
    post = slab[np.argmax(slab @ ap)]
    r = float(np.clip((post - bottom) @ ap, 12.0, 35.0))
    pivot = centre + ((bottom - centre) @ axis + r) * axis + ((bottom - centre) @ ap) * ap
    return centre, ml, pivot, bottom


def limb_landmarks(bones: BoneSet) -> LimbLandmarks:
    """Compute all landmarks of a bone set in its own LLP26 frame (LPS mm).

    Args:
        bones: a subject's left-limb bones and pelvis.

    Returns:
        :class:`LimbLandmarks`.
    """
    fv = np.asarray(bones.femur.vertices, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0])
    head_c, head_r = femoral_head(bones.femur, up)
    # Iterate once: the mechanical axis depends on the knee, the knee slab on the axis.
    axis = up
    for _ in range(2):
        knee_c, ml, pivot, bottom = _knee(fv, axis)
        axis = (head_c - knee_c) / np.linalg.norm(head_c - knee_c)
    top = fv[np.argmax(fv @ axis)]

    tibia = _largest_body(bones.tibfib)
    tv = np.asarray(tibia.vertices, dtype=np.float64)
    tz = tv @ axis
    ankle = tv[tz < tz.min() + 25.0].mean(axis=0)

    pv = np.asarray(bones.pelvis.vertices, dtype=np.float64)
    mid_x = pelvis_mid_x(bones.pelvis)
    centre = np.asarray(bones.pelvis.center_mass, dtype=np.float64).copy()
    centre[0] = mid_x
    return LimbLandmarks(
        head_centre=head_c,
        head_radius=head_r,
        femur_axis=axis,
        femur_top=top,
        femur_bottom=bottom,
        knee_centre=knee_c,
        knee_axis=ml,
        knee_pivot=pivot,
        ankle_centre=ankle,
        pelvis_mid_x=mid_x,
        pelvis_centre=centre,
        pelvis_top=pv[np.argmax(pv[:, 2])],
    )
