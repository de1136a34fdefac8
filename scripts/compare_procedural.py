"""Compare procedural bones with the real LLP26 shapes: numbers per bone and a figure.

Usage::

    .venv/bin/python scripts/compare_procedural.py [--shapes ../shared/shapes/llp26] [-n 20]
        [--figure docs/procedural_vs_llp26.png] [--seed 0]

Prints, for the LLP26 subjects and for ``n`` procedural samples, the mean, standard deviation
and range of each measurement (volumes in ml, lengths in mm, angles in degrees), the femur
cross-section area profile at 10 stations along its mechanical axis, and the procedural/LLP26
ratio of the means. With ``--figure`` it also draws anterior and lateral views of the LLP26
mean femur, pelvis and tibia/fibula beside a procedural sample.

All measurements are taken in the LLP26 frame (LPS mm, left limb) with the landmark functions
of :mod:`femurseg.phantoms.anatomy.landmarks`. The LLP26 meshes are read by path and never copied.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import trimesh

from femurseg.phantoms.anatomy.landmarks import LimbLandmarks, limb_landmarks
from femurseg.phantoms.anatomy.shapes import BoneSet, list_subjects, load_subject

Array = npt.NDArray[np.float64]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHAPES = REPO.parent / "shared" / "shapes" / "llp26"
#: Fractions of femur length (from the distal end) of the cross-section stations.
STATIONS = np.linspace(0.05, 0.95, 10)


def cross_section(
    mesh: trimesh.Trimesh, origin: Array, normal: Array
) -> tuple[float, Array, Array]:
    """Area (mm^2), centroid (3,) and boundary points (N, 3) of a planar cut of a closed mesh.

    Each cut segment is oriented so that its in-plane outward normal agrees with its face's
    normal; the area is then the sum of the signed triangle areas of a fan from ``origin``
    (holes subtract themselves), with no polygon library.
    """
    n = normal / np.linalg.norm(normal)
    segs, faces = trimesh.intersections.mesh_plane(mesh, n, origin, return_faces=True)
    if len(segs) == 0:
        return 0.0, origin.copy(), np.zeros((0, 3))
    a, b = segs[:, 0] - origin, segs[:, 1] - origin
    fn = np.asarray(mesh.face_normals)[faces]
    flip = np.einsum("ij,ij->i", np.cross(b - a, n), fn) < 0
    a[flip], b[flip] = b[flip].copy(), a[flip].copy()
    tri = 0.5 * (np.cross(a, b) @ n)
    area = float(tri.sum())
    centroid = origin + (tri[:, None] * (a + b) / 3.0).sum(axis=0) / max(area, 1e-9)
    return area, centroid, segs.reshape(-1, 3)


def neck_shaft_angle(femur: trimesh.Trimesh, lm: LimbLandmarks) -> tuple[float, Array]:
    """Angle (deg) between the femoral neck axis and the proximal shaft axis.

    Shaft axis: line through the centroids of cross-sections at 35-75 % of the femur length
    (from the distal end). Neck axis: head centre -> centroid of the surface points in a shell
    1.15-1.6 head radii from the head centre inside a cone around the current neck guess
    (started towards the shaft axis 1.6 head radii below the head), refined three times.

    Returns:
        (angle in degrees, unit neck direction from the head centre towards the shaft).
    """
    ax = lm.femur_axis
    length = float((lm.femur_top - lm.femur_bottom) @ ax)
    c = np.array(
        [
            cross_section(femur, lm.femur_bottom + h * length * ax, ax)[1]
            for h in np.linspace(0.35, 0.75, 9)
        ]
    )
    mu = c.mean(axis=0)
    shaft = np.linalg.svd(c - mu)[2][0]
    shaft = shaft if shaft @ ax > 0 else -shaft  # pointing proximally
    v = np.asarray(femur.vertices, dtype=np.float64)
    hc, r = lm.head_centre, lm.head_radius
    # Start: the shaft-axis point level with 1.6 head radii below the head centre.
    t = ((hc - 1.6 * r * ax) - mu) @ shaft
    neck = mu + t * shaft - hc
    neck /= np.linalg.norm(neck)
    d = v - hc
    dist = np.linalg.norm(d, axis=1)
    shell = (dist > 1.15 * r) & (dist < 1.6 * r)
    for cone in (50.0, 40.0, 35.0):
        cosang = (d @ neck) / np.maximum(dist, 1e-9)
        sel = shell & (cosang > np.cos(np.radians(cone)))
        if sel.sum() < 10:
            break
        neck = d[sel].mean(axis=0)
        neck /= np.linalg.norm(neck)
    # Between the neck pointing to the head (-neck) and the shaft pointing distally (-shaft).
    ang = float(np.degrees(np.arccos(np.clip(neck @ shaft, -1.0, 1.0))))
    return ang, neck


def measure(bones: BoneSet) -> dict[str, float]:
    """All measurements of one bone set (LLP26 frame, left limb)."""
    lm = limb_landmarks(bones)
    out: dict[str, float] = {}
    for name in ("femur", "pelvis", "tibfib", "patella"):
        mesh: trimesh.Trimesh = getattr(bones, name)
        out[f"{name}.volume_ml"] = mesh.volume / 1000.0
        for i, a in enumerate("xyz"):
            out[f"{name}.extent_{a}"] = float(mesh.extents[i])
        out[f"{name}.vertices"] = float(len(mesh.vertices))
        out[f"{name}.faces"] = float(len(mesh.faces))
        out[f"{name}.bodies"] = float(len(mesh.split(only_watertight=False)))
        out[f"{name}.edge_mm"] = float(mesh.edges_unique_length.mean())
    femur = bones.femur
    ax = lm.femur_axis
    length = float((lm.femur_top - lm.femur_bottom) @ ax)
    out["femur.length"] = length
    out["femur.head_radius"] = lm.head_radius
    out["femur.neck_shaft_angle"] = neck_shaft_angle(femur, lm)[0]
    for f in STATIONS:
        out[f"femur.area@{f:.2f}"] = cross_section(femur, lm.femur_bottom + f * length * ax, ax)[0]
    area, _, p3 = cross_section(femur, lm.femur_bottom + 0.5 * length * ax, ax)
    ap = np.cross(ax, lm.knee_axis)
    out["femur.shaft_ml_mm"] = float(np.ptp(p3 @ lm.knee_axis))
    out["femur.shaft_ap_mm"] = float(np.ptp(p3 @ ap))
    out["femur.shaft_eq_diam"] = float(2.0 * np.sqrt(area / np.pi))
    v = np.asarray(femur.vertices)
    along = (v - lm.femur_bottom) @ ax
    distal = v[along < 40.0]
    out["femur.condyle_width"] = float(np.ptp(distal @ lm.knee_axis))
    ap = np.cross(ax, lm.knee_axis)  # posterior
    out["femur.condyle_depth"] = float(np.ptp(distal @ ap))
    # Intercondylar notch: depth of the gap between the condyles seen from behind, 0-15 mm up.
    slab = v[(along > 2.0) & (along < 15.0)]
    x = slab @ lm.knee_axis
    xm = 0.5 * (x.min() + x.max())
    centre = slab[np.abs(x - xm) < 4.0]
    out["femur.notch_mm"] = (
        float((slab @ ap).max() - (centre @ ap).max()) if len(centre) else float("nan")
    )
    pv = np.asarray(bones.pelvis.vertices)
    out["pelvis.width"] = float(np.ptp(pv[:, 0]))
    out["pelvis.height"] = float(np.ptp(pv[:, 2]))
    out["pelvis.hip_to_mid"] = float(lm.head_centre[0] - lm.pelvis_mid_x)
    out["pelvis.crest_above_hip"] = float(lm.pelvis_top[2] - lm.head_centre[2])
    bodies = sorted(bones.tibfib.split(only_watertight=False), key=lambda b: -b.volume)
    tib = bodies[0]
    out["tibia.length"] = float(np.ptp(np.asarray(tib.vertices) @ ax))
    out["tibia.volume_ml"] = tib.volume / 1000.0
    tv = np.asarray(tib.vertices)
    tz = tv @ ax
    out["tibia.plateau_width"] = float(np.ptp(tv[tz > tz.max() - 20.0] @ lm.knee_axis))
    if len(bodies) > 1:
        fib = bodies[1]
        out["fibula.length"] = float(np.ptp(np.asarray(fib.vertices) @ ax))
        out["fibula.volume_ml"] = fib.volume / 1000.0
    return out


def summarise(rows: list[dict[str, float]]) -> dict[str, tuple[float, float, float, float]]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = {}
    for k in keys:
        a = np.array([r.get(k, np.nan) for r in rows], dtype=np.float64)
        out[k] = (
            float(np.nanmean(a)),
            float(np.nanstd(a)),
            float(np.nanmin(a)),
            float(np.nanmax(a)),
        )
    return out


def print_table(real: dict, proc: dict) -> None:
    print(
        f"{'measure':26s} {'LLP26 mean+-sd [min,max]':>30s} "
        f"{'procedural mean+-sd [min,max]':>32s}  ratio"
    )
    for k in real:
        if k not in proc:
            continue
        r, p = real[k], proc[k]
        ratio = p[0] / r[0] if r[0] else float("nan")
        print(
            f"{k:26s} {r[0]:9.1f} +- {r[1]:6.1f} [{r[2]:7.1f},{r[3]:7.1f}]"
            f" {p[0]:9.1f} +- {p[1]:6.1f} [{p[2]:7.1f},{p[3]:7.1f}]  {ratio:5.2f}"
        )


# ----------------------------------------------------------------------------- figure


def _draw(ax: object, mesh: trimesh.Trimesh, view: str, colour: tuple[float, float, float]) -> None:
    """Shaded orthographic view (painter's algorithm) of a mesh; LPS frame.

    ``view`` "anterior": seen from the front (-y), patient left (+x) on the right;
    "lateral": seen from the patient's left (+x), anterior (-y) on the right.
    """
    from matplotlib.collections import PolyCollection

    tri = np.asarray(mesh.triangles)
    n = np.asarray(mesh.face_normals)
    if view == "anterior":
        xy, depth, towards = tri[:, :, [0, 2]], tri[:, :, 1].mean(axis=1), np.array([0, -1, 0])
    else:
        xy = np.stack([-tri[:, :, 1], tri[:, :, 2]], axis=-1)
        depth, towards = -tri[:, :, 0].mean(axis=1), np.array([1, 0, 0])
    facing = n @ towards
    order = np.argsort(-depth)  # far first
    light = np.clip(0.25 + 0.75 * np.clip(facing, 0, 1), 0, 1)[order]
    cols = np.clip(np.outer(light, colour), 0, 1)
    pc = PolyCollection(xy[order], facecolors=cols, edgecolors="none", antialiased=False)
    ax.add_collection(pc)  # type: ignore[attr-defined]


def figure(real: BoneSet, proc: BoneSet, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ("femur", "pelvis", "tibfib")
    fig, axes = plt.subplots(3, 4, figsize=(12, 14), height_ratios=(1.25, 0.8, 1.1))
    grey, tan = (0.85, 0.85, 0.9), (0.95, 0.85, 0.65)
    for i, name in enumerate(rows):
        for j, (view, src, col) in enumerate(
            (
                ("anterior", real, grey),
                ("anterior", proc, tan),
                ("lateral", real, grey),
                ("lateral", proc, tan),
            )
        ):
            ax = axes[i, j]
            _draw(ax, getattr(src, name), view, col)
            both = np.vstack([getattr(real, name).bounds, getattr(proc, name).bounds])
            if view == "anterior":
                lo, hi = both[:, [0, 2]].min(axis=0), both[:, [0, 2]].max(axis=0)
            else:
                ys = -both[:, 1]
                lo = np.array([ys.min(), both[:, 2].min()])
                hi = np.array([ys.max(), both[:, 2].max()])
            c, half = 0.5 * (lo + hi), 0.5 * (hi - lo).max() + 8
            if name == "pelvis":
                ax.set_xlim(c[0] - half, c[0] + half)
                ax.set_ylim(c[1] - 0.85 * half, c[1] + 0.85 * half)
            else:
                ax.set_xlim(c[0] - 0.45 * half, c[0] + 0.45 * half)
                ax.set_ylim(c[1] - half, c[1] + half)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            who = "LLP26 mean" if src is real else "procedural"
            ax.set_title(f"{who} {name}, {view}", fontsize=9)
    fig.suptitle(
        "Procedural bones (tan) vs LLP26 mean (grey), same frame and scale (mm).\n"
        "Anterior: patient left on the right; lateral: seen from the patient's left, "
        "anterior on the right",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", type=Path, default=DEFAULT_SHAPES)
    parser.add_argument("-n", type=int, default=20, help="procedural samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-subjects", type=int, default=26)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args(argv)

    from femurseg.phantoms.anatomy.procedural import procedural_boneset

    real_rows = [
        measure(load_subject(args.shapes, s))
        for s in list_subjects(args.shapes)[: args.max_subjects]
    ]
    proc_rows, times = [], []
    first = None
    for i in range(args.n):
        t0 = time.perf_counter()
        b = procedural_boneset(np.random.default_rng(args.seed + i))
        times.append(time.perf_counter() - t0)
        first = first or b
        proc_rows.append(measure(b))
    print(
        f"LLP26 subjects: {len(real_rows)}; procedural samples: {len(proc_rows)}; "
        f"procedural_boneset {np.mean(times):.2f} s mean, {np.max(times):.2f} s max"
    )
    print_table(summarise(real_rows), summarise(proc_rows))
    if args.figure is not None and first is not None:
        figure(load_subject(args.shapes, "mean"), first, args.figure)
        print(f"figure written to {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
