"""Orchestration only: read -> stage 1 -> stage 2 -> paste back -> outputs.

For each input scan :func:`predict_case` writes, in the output folder,

* ``<case>_femur.nii.gz``: label map (0 background, 1 femur_left, 2 femur_right) in the input's
  own geometry (through :func:`femurseg.io.write_labels`);
* ``<case>_report.json``: per-side status, boxes in world mm and input voxels, scores, femur
  volumes in ml, seconds per stage, versions, configs and weights checksums;
* ``<case>_preview.png``: coronal maximum-intensity view with both femurs overlaid.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from femurseg.atomic import atomic_write
from femurseg.checksum import sha256_file
from femurseg.detection import SIDES, BoxRules, Detector, SideDetection
from femurseg.devices import Device, Precision, effective_dtype, resolve_device
from femurseg.errors import FemursegError, InputError, OutputError
from femurseg.export.mesh import MeshConfig
from femurseg.export.report import build_report, measure_report
from femurseg.io import ReadAhead, read_volume, write_labels
from femurseg.io.validate import ReadChecks
from femurseg.measure import MeasureConfig, QualityConfig
from femurseg.preprocessing import Box, Grid, Pasted, paste_back
from femurseg.preprocessing.boxes import index_range_box, mask_index_range
from femurseg.resources import check_memory
from femurseg.segmentation import Segmenter, SegmentRules, SideProbability
from femurseg.segmentation.checks import (
    FemurCheck,
    FemurCheckRules,
    FemurStatus,
    body_midline,
    check_femur,
    check_pair,
    surround_of,
)
from femurseg.segmentation.edges import refine_edges
from femurseg.segmentation.postprocess import fill_beside_metal
from femurseg.threads import map_sides
from femurseg.types import LABELS, Label, Volume

log = logging.getLogger(__name__)

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass(frozen=True)
class PredictConfig:
    """Inference settings of the whole pipeline (reported; the networks' own preprocessing
    comes from their checkpoints).

    Attributes:
        device: where the networks run.
        precision: inference arithmetic; ``auto`` uses bfloat16 on CPUs that run it natively
            (see :class:`~femurseg.devices.Precision`).
        box_rules: stage-1 acceptance thresholds.
        segment_rules: stage-2 sliding window, threshold and island removal.
        preview: write the coronal PNG preview.
        mesh: write one STL mesh per femur (world LPS mm, as 3D Slicer expects).
        dicom_seg: write a DICOM-SEG for DICOM input (a non-DICOM input is an error).
        measure: put measurements and quality flags per femur in the report.
        femur_checks: the rules that decide whether a side's final mask is reported as a
            femur (size, side of the body midline, thickness; see
            :mod:`femurseg.segmentation.checks`).
        read_checks: reading tolerances and options (e.g. the orientation the user states
            for a NIfTI without one).
        series_uid: the DICOM series to read from a folder holding several (one input only).
        measure_settings: regions, limits and landmark search of the measurements.
        quality_settings: thresholds of the quality flags.
        mesh_settings: smoothing and decimation of the STL meshes.
    """

    device: Device | str = Device.AUTO
    precision: Precision = Precision.AUTO
    box_rules: BoxRules = field(default_factory=BoxRules)
    segment_rules: SegmentRules = field(default_factory=SegmentRules)
    preview: bool = True
    mesh: bool = False
    dicom_seg: bool = False
    measure: bool = True
    femur_checks: FemurCheckRules = field(default_factory=FemurCheckRules)
    read_checks: ReadChecks = field(default_factory=ReadChecks)
    series_uid: str | None = None
    measure_settings: MeasureConfig = field(default_factory=MeasureConfig)
    quality_settings: QualityConfig = field(default_factory=QualityConfig)
    mesh_settings: MeshConfig = field(default_factory=MeshConfig)


@dataclass
class Prediction:
    """Everything the pipeline computed for one volume.

    Attributes:
        labels: uint8 (X, Y, Z) label map on the canonical grid of the volume.
        detections: stage-1 result per side.
        probabilities: stage-2 crop probabilities of the sides that were found.
        volumes_ml: femur volume per side in ml (0 when not found).
        seconds: wall time per stage.
        mask_boxes: tight world box of each side's final label (None when it has no voxel):
            the refined box around the femur, tighter than stage 1's coarse box.
        mask_index: the same boxes as index slices of ``labels``, so that measuring need not
            search the whole map again; None when not known.
        checks: the femur checks' verdict per side (status found / low_confidence /
            not_found with reasons); a not_found side has no voxel in ``labels``.
    """

    labels: npt.NDArray[np.uint8]
    detections: dict[Label, SideDetection]
    probabilities: dict[Label, SideProbability]
    volumes_ml: dict[Label, float]
    seconds: dict[str, float] = field(default_factory=dict)
    mask_boxes: dict[Label, Box | None] = field(default_factory=dict)
    mask_index: dict[Label, tuple[slice, slice, slice] | None] | None = None
    checks: dict[Label, FemurCheck] = field(default_factory=dict)


def _check_finite_output(values: Any, stage: str, what: str) -> None:
    """Refuse network outputs holding NaN or infinity (damaged weights, overflow)."""
    arr = values.numpy() if hasattr(values, "numpy") else np.asarray(values)
    if not np.isfinite(arr).all():
        raise FemursegError(
            f"{stage} gave NaN or infinite probabilities for {what}; expected finite outputs; "
            "rerun with --precision float32, or check the weights"
        )


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


class Predictor:
    """Both networks, loaded once; call :meth:`predict` per volume.

    Args:
        stage1: stage-1 checkpoint, None for the shipped weights.
        stage2: stage-2 checkpoint, None for the shipped weights.
        config: inference settings.
        stage1_overrides: preprocessing values expected of the stage-1 checkpoint (e.g.
            ``{"spacing_mm": 4.0}``); a contradiction is a :class:`ConfigError`.
        stage2_overrides: same for stage 2 (e.g. ``{"spacing_mm": 1.5, "margin_mm": 10}``).
    """

    def __init__(
        self,
        stage1: str | Path | None = None,
        stage2: str | Path | None = None,
        config: PredictConfig | None = None,
        *,
        stage1_overrides: dict[str, Any] | None = None,
        stage2_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or PredictConfig()
        device = resolve_device(self.config.device)
        self.detector = Detector(
            stage1,
            device=device,
            rules=self.config.box_rules,
            overrides=stage1_overrides,
            precision=self.config.precision,
        )
        self.segmenter = Segmenter(
            stage2,
            device=device,
            rules=self.config.segment_rules,
            overrides=stage2_overrides,
            precision=self.config.precision,
        )
        self.runtime = {
            "device": str(device),
            "precision": str(effective_dtype(device, self.config.precision)).removeprefix("torch."),
        }
        log.info("networks on %s (%s)", device, self.runtime["precision"])

    def predict(self, volume: Volume) -> Prediction:
        """Run stage 1, stage 2 and paste-back on one canonical volume (no file output)."""
        seconds: dict[str, float] = {}
        rules = self.config.femur_checks
        check_memory(volume.shape)
        with _timed(seconds, "stage1"):
            midline = (
                body_midline(volume.array, Grid.of(volume), rules.body_hu)
                if rules.enabled
                else None
            )
            detections = self.detector.detect(volume, midline)
        probabilities: dict[Label, SideProbability] = {}
        with _timed(seconds, "stage2"):
            for side in SIDES:
                det = detections[side]
                if det.found and det.box is not None:
                    probabilities[side] = self.segmenter.segment(volume, side, det.box)
                    _check_finite_output(probabilities[side].prob, "stage 2", LABELS[side])
        with _timed(seconds, "paste_back"):
            target = Grid.of(volume)
            pasted = {
                side: paste_back(p.prob, p.grid, target, fill=0.0)
                for side, p in probabilities.items()
            }
            labels = assemble_labels(
                volume.shape,
                {s: p for s, p in pasted.items() if p is not None},
                self.config.segment_rules.threshold,
                "F" if volume.array.flags.f_contiguous else "C",
            )
            metal_hu = self.config.segment_rules.metal_hu
            if metal_hu is not None:
                for side, p in pasted.items():
                    if p is not None:
                        remove_metal(labels, volume.array, p.index, side, metal_hu)
                        if self.config.segment_rules.fill_holes:
                            fill_beside_metal(labels, volume.array, p.index, int(side), metal_hu)
            extents = {
                side: _label_extent(labels, pasted.get(side), side, target) for side in SIDES
            }
        with _timed(seconds, "edges"):
            todo = {side: e[1] for side, e in extents.items() if e[1] is not None}

            def refine(side: Label) -> int:
                return refine_edges(
                    labels,
                    volume.array,
                    todo[side],
                    int(side),
                    target.spacing,
                    self.config.segment_rules,
                )

            # each side only clears its own label's voxels
            removed = map_sides(refine, todo, torch.get_num_threads())
            for side, n in removed.items():
                if n:
                    extents[side] = _label_extent(labels, pasted.get(side), side, target)
        with _timed(seconds, "checks"):
            checks = self._check_sides(volume, labels, pasted, extents, midline)
            checks = check_pair(
                checks,
                {s: None if e[2] is None else (e[2].lo[2], e[2].hi[2]) for s, e in extents.items()},
                rules,
            )
            for side, chk in checks.items():
                if chk.status is not FemurStatus.NOT_FOUND or extents[side][1] is None:
                    continue
                # not a femur: its voxels leave the label map, and the side is not found
                region = labels[extents[side][1]]
                region[region == int(side)] = 0
                extents[side] = (0.0, None, None)
                d = detections[side]
                detections[side] = replace(d, found=False, message="; ".join(chk.reasons))
        return Prediction(
            labels,
            detections,
            probabilities,
            volumes_ml={side: e[0] for side, e in extents.items()},
            seconds=seconds,
            mask_boxes={side: e[2] for side, e in extents.items()},
            mask_index={side: e[1] for side, e in extents.items()},
            checks=checks,
        )

    def _check_sides(
        self,
        volume: Volume,
        labels: npt.NDArray[np.uint8],
        pasted: dict[Label, Pasted | None],
        extents: dict[Label, tuple[float, tuple[slice, slice, slice] | None, Box | None]],
        midline: float | None,
    ) -> dict[Label, FemurCheck]:
        """The femur checks of each side's final mask (see :mod:`femurseg.segmentation.checks`)."""
        rules = self.config.femur_checks
        grid = Grid.of(volume)

        def check(side: Label) -> FemurCheck:
            index = extents[side][1]
            if index is None:
                return FemurCheck(side, FemurStatus.NOT_FOUND, (), 0.0)
            mask = labels[index] == int(side)
            prob = None
            p = pasted.get(side)
            if p is not None:
                sl = tuple(
                    slice(i.start - q.start, i.stop - q.start)
                    for i, q in zip(index, p.index, strict=True)
                )
                prob = np.asarray(p.values[sl], dtype=np.float32)
            origin = (index[0].start, index[1].start, index[2].start)
            hu = np.asarray(volume.array[index])
            surround = (
                surround_of(volume.array, labels, index, side, grid.spacing, rules)
                if rules.enabled
                else None
            )
            return check_femur(side, mask, origin, grid, midline, rules, prob, hu, surround)

        # the checks only read the label map and the CT
        return map_sides(check, SIDES, torch.get_num_threads())


def remove_metal(
    labels: npt.NDArray[np.uint8],
    hu: npt.NDArray[Any],
    index: tuple[slice, slice, slice],
    side: Label,
    metal_hu: float,
) -> int:
    """Take voxels of ``side`` at or above ``metal_hu`` out of ``labels`` within ``index``.

    Returns:
        how many voxels were taken out.
    """
    region = labels[index]
    metal = (region == int(side)) & (hu[index] >= metal_hu)
    region[metal] = 0
    return int(np.count_nonzero(metal))


def assemble_labels(
    shape: tuple[int, int, int],
    pasted: dict[Label, Pasted],
    threshold: float,
    order: Literal["C", "F"] = "C",
) -> npt.NDArray[np.uint8]:
    """Threshold pasted per-side probabilities into one label map.

    Args:
        shape: canonical grid shape (X, Y, Z).
        pasted: femur probability per side, each on a region of the canonical grid.
        threshold: probability at and above which a voxel is femur.
        order: memory order of the label map; that of the volume, so that writing it back in
            the file's axis order is a straight copy, not a transpose.

    Returns:
        uint8 (X, Y, Z): 0 background, else the side label; where both sides reach the
        threshold the more probable side wins.
    """
    labels = np.zeros(shape, dtype=np.uint8, order=order)
    if order == "F":
        # boolean indexing across memory orders is slow: bring each region to the map's order
        pasted = {side: Pasted(p.index, np.asfortranarray(p.values)) for side, p in pasted.items()}
    for side, p in pasted.items():
        region = labels[p.index]
        region[p.values >= threshold] = int(side)
    if len(pasted) == 2:
        a, b = pasted[Label.FEMUR_LEFT], pasted[Label.FEMUR_RIGHT]
        inter = tuple(
            slice(max(sa.start, sb.start), min(sa.stop, sb.stop))
            for sa, sb in zip(a.index, b.index, strict=True)
        )
        if all(s.stop > s.start for s in inter):

            def local(p: Pasted) -> npt.NDArray[np.float32]:
                sl = tuple(
                    slice(s.start - ps.start, s.stop - ps.start)
                    for s, ps in zip(inter, p.index, strict=True)
                )
                return p.values[sl]

            pa, pb = local(a), local(b)
            both = (pa >= threshold) & (pb >= threshold)
            if both.any():
                region = labels[inter]
                region[both] = np.where(
                    pa[both] >= pb[both], int(Label.FEMUR_LEFT), int(Label.FEMUR_RIGHT)
                )
    return labels


def _label_extent(
    labels: npt.NDArray[np.uint8], pasted: Pasted | None, side: Label, grid: Grid
) -> tuple[float, tuple[slice, slice, slice] | None, Box | None]:
    """Volume (ml), index slices on ``grid`` and world box of one side's final label.

    The label lies only where its pasted probability does, so only that region is searched.
    """
    if pasted is None:
        return 0.0, None, None
    region = labels[pasted.index] == int(side)
    rng = mask_index_range(region)
    if rng is None:
        return 0.0, None, None
    a, b, c = (
        slice(p.start + r.start, p.start + r.stop) for p, r in zip(pasted.index, rng, strict=True)
    )
    ml = float(np.count_nonzero(region[rng])) * grid.voxel_ml
    return ml, (a, b, c), index_range_box(grid, (a, b, c))


def case_name(path: Path) -> str:
    """Case name of an input: the file name without its image ending, or the folder name."""
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _atomic_bytes(data: bytes, path: Path) -> Path:
    def _write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, _write)


def predict_case(
    path: str | Path,
    out_dir: str | Path,
    predictor: Predictor,
    *,
    protect: Sequence[Path] = (),
    ahead: ReadAhead | None = None,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read one scan, segment both femurs and write the label map, report and preview.

    The report is written last, after every other output is in place: a case whose report
    exists is complete (see :mod:`femurseg.cohort`).

    Args:
        path: input file or DICOM folder.
        out_dir: output folder (created if needed).
        predictor: loaded networks.
        protect: input paths that must never be written to.
        ahead: a read of ``path`` already under way (see :class:`~femurseg.io.ReadAhead`).
        name: case name of the outputs (default: :func:`case_name` of ``path``).
        extra: more top-level report entries (e.g. the cohort run's settings key).

    Returns:
        The report dict (also written as ``<case>_report.json``).

    Raises:
        InputError: unreadable input.
        OutputError: an output would overwrite an input, or cannot be written.
    """
    path = Path(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or case_name(path)
    files = {
        "labels": out / f"{name}_femur.nii.gz",
        "report": out / f"{name}_report.json",
        "preview": out / f"{name}_preview.png",
    }
    guarded = {p.resolve() for p in (*protect, path)}
    for target in files.values():
        if target.resolve() in guarded:
            raise OutputError(
                f"output {target} would overwrite an input; expected a separate output folder; "
                "choose another -o"
            )

    seconds: dict[str, float] = {}
    if ahead is not None and ahead.path == path:
        volume, took = ahead.result()
        seconds["read"] = round(took, 3)
    else:
        with _timed(seconds, "read"):
            volume = read_volume(
                path, predictor.config.series_uid, checks=predictor.config.read_checks
            )
    cfg = predictor.config
    if cfg.dicom_seg and (volume.source is None or volume.source.fmt != "dicom"):
        raise InputError(
            f"--dicom-seg was asked for but {path} is not a DICOM series; expected a DICOM "
            "folder; leave out --dicom-seg for NIfTI/NRRD/MHA input"
        )
    if cfg.dicom_seg:
        from femurseg.export.dicom_seg import check_dicom_seg_source

        check_dicom_seg_source(volume)
    pred = predictor.predict(volume)
    seconds.update(pred.seconds)
    with _timed(seconds, "write"):
        write_labels(pred.labels, volume, files["labels"])
    if cfg.mesh:
        from femurseg.export import write_femur_meshes

        with _timed(seconds, "mesh"):
            meshes = write_femur_meshes(pred.labels, volume.affine, out, name, cfg.mesh_settings)
        files.update({f"mesh_{side}": p for side, p in meshes.items()})
    notes: list[str] = []
    if cfg.dicom_seg and not pred.labels.any():
        notes.append("no DICOM-SEG written: no femur voxels to store")
    elif cfg.dicom_seg:
        from femurseg.export import write_dicom_seg

        with _timed(seconds, "dicom_seg"):
            files["dicom_seg"] = write_dicom_seg(pred.labels, volume, out / f"{name}_femur_seg.dcm")
    if predictor.config.preview:
        from femurseg.export.preview import write_preview

        with _timed(seconds, "preview"):
            write_preview(volume, pred.labels, files["preview"], pred.mask_index)
    else:
        files.pop("preview")
    measured: dict[str, Any] = {}
    if cfg.measure:
        from femurseg.export.landmarks import write_landmark_figure, write_markups

        with _timed(seconds, "measure"):
            measured = measure_report(
                volume,
                pred,
                cfg.measure_settings,
                cfg.quality_settings,
                workers=torch.get_num_threads(),
            )
            files["landmarks"] = write_markups(
                measured["measurements"], out / f"{name}_landmarks.mrk.json"
            )
            if cfg.preview:
                files["landmarks_figure"] = write_landmark_figure(
                    pred.labels,
                    volume.affine,
                    measured["measurements"],
                    out / f"{name}_landmarks.png",
                    boxes=pred.mask_index,
                )
    seconds["total"] = round(sum(seconds.values()), 3)
    pred.seconds = seconds
    report = build_report(name, volume, pred, predictor, {k: str(v) for k, v in files.items()})
    report.update(measured)
    # what the report describes, so that a file changed or replaced later can be told
    report["output_sha256"] = {k: sha256_file(v) for k, v in files.items() if k != "report"}
    if notes:
        report["notes"] = notes
    if extra:
        report.update(extra)
    if not any(d.found for d in pred.detections.values()):
        report["message"] = (
            "no femur found in the scan; expected a CT covering the hips or thighs; check the "
            "field of view (an empty label map was written)"
        )
        log.warning("%s: %s", name, report["message"])
    _atomic_bytes(json.dumps(report, indent=2).encode(), files["report"])
    return report


def check_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Check that inputs exist and have distinct case names (before loading any network).

    Raises:
        InputError: no inputs, a missing input, or two inputs with the same case name.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input given; expected one or more CT files or DICOM folders")
    for p in paths:
        if not p.exists():
            raise InputError(f"input {p} does not exist; expected a CT file or DICOM folder")
    names = [case_name(p) for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(
            f"inputs share the case names {dup}; expected unique names per output folder; "
            "rename them or predict them into separate folders"
        )
    return paths


def predict_many(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    predictor: Predictor,
    on_case: Callable[[Path, dict[str, Any]], None] | None = None,
    *,
    ahead: ReadAhead | None = None,
) -> list[dict[str, Any]]:
    """Predict several inputs into one folder; case names must be unique.

    Args:
        inputs: files or DICOM folders.
        out_dir: output folder.
        predictor: loaded networks.
        on_case: called after each case with its path and report (e.g. to advance a progress
            bar).
        ahead: a read of one of the inputs already under way (the first, started before the
            networks were loaded); the others are read in turn, one volume in memory at a time.

    Raises:
        InputError: two inputs would write the same case name, or an input is missing.
    """
    paths = check_inputs(inputs)
    reports = []
    for p in paths:
        report = predict_case(p, out_dir, predictor, protect=paths, ahead=ahead)
        reports.append(report)
        if on_case is not None:
            on_case(p, report)
    return reports
