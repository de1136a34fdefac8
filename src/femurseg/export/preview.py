"""The case preview: a coronal and two sagittal bone-window projections with femur outlines.

``<case>_preview.png`` is meant to be read at a glance in a file browser or the cohort page:

* **coronal** maximum-intensity projection (patient right on the viewer's left, superior up),
  taken only through the front-to-back band that holds the femurs (plus a margin), so that the
  patient table behind the legs (its carbon shell) is not projected over the bones;
* **sagittal** projections, one per femur found, through that femur's own left-right band,
  anterior on the viewer's left;
* a bone window (-100 to 1300 HU) on black, each femur's outline drawn in its colour (left
  orange, right blue), and no white margins.

Pixel aspect follows the voxel spacing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from femurseg.atomic import atomic_write
from femurseg.measure.quality import IndexBoxes
from femurseg.types import Volume

WINDOW_HU = (-100.0, 1300.0)
MARGIN_MM = 25.0
COLOURS = {1: (1.0, 0.55, 0.0), 2: (0.15, 0.65, 1.0)}
MAX_PIXELS = 512


def _band(mask_any: npt.NDArray[np.bool_], spacing: float, n: int) -> slice:
    """Index range holding ``mask_any`` (a 1D bool profile) widened by the margin."""
    idx = np.flatnonzero(mask_any)
    if idx.size == 0:
        return slice(0, n)
    pad = int(np.ceil(MARGIN_MM / spacing))
    return slice(max(0, int(idx[0]) - pad), min(n, int(idx[-1]) + 1 + pad))


def _panel(ax: Any, ct: npt.NDArray[Any], lab: npt.NDArray[Any], extent: tuple[float, ...]) -> None:
    ax.imshow(ct, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent,
              interpolation="bilinear", aspect="equal")  # fmt: skip
    for value, colour in COLOURS.items():
        m = (lab == value).astype(float)
        if m.any():
            ax.contour(m, levels=[0.5], colors=[colour], linewidths=1.2, extent=extent,
                       origin="upper")  # fmt: skip
    ax.set_axis_off()


def _extents(
    labels: npt.NDArray[np.uint8], boxes: IndexBoxes | None
) -> dict[int, tuple[slice, slice, slice]]:
    """Per label value present, the index box of its voxels (from ``boxes`` when given)."""
    if boxes is not None:
        return {int(side): box for side, box in boxes.items() if box is not None}
    lab = labels.T if labels.flags.f_contiguous and not labels.flags.c_contiguous else labels
    found = ndimage.find_objects(lab, max_label=max(COLOURS))
    flip = lab is not labels  # scipy walks C order: search the C-order view, reverse the axes
    return {n + 1: (b[::-1] if flip else b) for n, b in enumerate(found) if b is not None}


def render_preview(
    volume: Volume, labels: npt.NDArray[np.uint8], boxes: IndexBoxes | None = None
) -> bytes:
    """The preview as PNG bytes (see the module docstring).

    Args:
        volume: the scan.
        labels: its label map (same shape).
        boxes: the tight index box of each femur in ``labels`` when the caller knows them (the
            pipeline does); saves searching the whole map, which on a 512 x 512 x 1000 scan
            took most of the preview's time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arr = volume.array
    sx, sy, sz = volume.spacing
    step = max(1, int(np.ceil(max(arr.shape[0], arr.shape[2]) / MAX_PIXELS)))
    extents = _extents(labels, boxes)
    has_y = np.zeros(arr.shape[1], dtype=bool)
    for box in extents.values():
        has_y[box[1]] = True
    y_band = _band(has_y, sy, arr.shape[1])
    ct = arr[::step, y_band, ::step].max(axis=1)
    lab = labels[::step, y_band, ::step].max(axis=1)
    panels = [
        (
            ct.T[::-1, ::-1],
            lab.T[::-1, ::-1],
            (0.0, ct.shape[0] * sx * step, 0.0, ct.shape[1] * sz * step),
            "coronal",
        )
    ]
    ystep = max(1, int(np.ceil(arr.shape[1] / MAX_PIXELS)))
    for value, name in ((2, "right"), (1, "left")):
        if value not in extents:
            continue
        has_x = np.zeros(arr.shape[0], dtype=bool)
        has_x[extents[value][0]] = True
        x_band = _band(has_x, sx, arr.shape[0])
        sag = arr[x_band, ::ystep, ::step].max(axis=0)
        side = labels[x_band, ::ystep, ::step] == value
        sag_lab = np.where(side.any(axis=0), value, 0)
        # (Y, Z) -> rows superior-first, columns anterior-first
        panels.append((sag.T[::-1, ::-1], sag_lab.T[::-1, ::-1],
                       (0.0, sag.shape[0] * sy * ystep, 0.0, sag.shape[1] * sz * step),
                       f"sagittal {name}"))  # fmt: skip
    widths = [p[2][1] for p in panels]
    height = max(p[2][3] for p in panels)
    total = sum(widths)
    fig_h = 8.0
    fig = Figure(figsize=(max(2.0, fig_h * total / max(height, 1.0)), fig_h), dpi=100,
                 facecolor="black")  # fmt: skip
    FigureCanvasAgg(fig)
    left = 0.0
    for (img, lab_img, extent, title), w in zip(panels, widths, strict=True):
        ax = fig.add_axes((left / total, 0.0, w / total, 1.0))
        ax.set_facecolor("black")
        _panel(ax, img, lab_img, extent)
        ax.text(0.02, 0.99, title, color="w", transform=ax.transAxes, va="top", fontsize=9)
        if title == "coronal":
            ax.text(0.02, 0.02, "R", color="w", transform=ax.transAxes, fontsize=11)
            ax.text(0.98, 0.02, "L", color="w", transform=ax.transAxes, ha="right", fontsize=11)
        else:
            ax.text(0.02, 0.02, "A", color="w", transform=ax.transAxes, fontsize=11)
        left += w
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="black")
    return buf.getvalue()


def write_preview(
    volume: Volume,
    labels: npt.NDArray[np.uint8],
    path: Path,
    boxes: IndexBoxes | None = None,
) -> Path:
    """Write the preview PNG atomically (``boxes`` as for :func:`render_preview`)."""
    data = render_preview(volume, labels, boxes)

    def _write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(Path(path), _write)
