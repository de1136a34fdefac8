"""``femurseg predict``: segment the left and right femur in CT scans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from femurseg.cli import app, as_device, as_precision, progress, run_guarded


@app.command()
def predict(
    inputs: Annotated[
        list[Path], typer.Argument(metavar="INPUT...", help="CT files or DICOM series folders.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bfloat16 on CPUs with native bfloat16, float16 on CUDA), float32 or "
            "bfloat16."
        ),
    ] = "auto",
    stage1_weights: Annotated[
        Path | None, typer.Option(help="Stage-1 checkpoint (default: shipped weights).")
    ] = None,
    stage2_weights: Annotated[
        Path | None, typer.Option(help="Stage-2 checkpoint (default: shipped weights).")
    ] = None,
    stage1_spacing: Annotated[
        float | None, typer.Option(help="Expected stage-1 spacing (must match the weights).")
    ] = None,
    stage2_spacing: Annotated[
        float | None, typer.Option(help="Expected stage-2 spacing (must match the weights).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="Expected stage-2 crop margin in mm (must match).")
    ] = None,
    preview: Annotated[bool, typer.Option(help="Write the coronal PNG preview.")] = True,
    mesh: Annotated[
        bool, typer.Option("--mesh", help="Also write an STL mesh per femur (world LPS mm).")
    ] = False,
    dicom_seg: Annotated[
        bool, typer.Option("--dicom-seg", help="Also write a DICOM-SEG (DICOM input only).")
    ] = False,
    all_pieces: Annotated[
        bool,
        typer.Option(
            "--all-pieces",
            help="Keep every femur piece of 5 ml or more, not only the largest (for a femur "
            "broken into separate pieces).",
        ),
    ] = False,
    no_femur_checks: Annotated[
        bool,
        typer.Option(
            "--no-femur-checks",
            help="Report every mask stage 2 made, without the checks that a side's mask is a "
            "femur (size, side of the body midline, thickness); for unusual anatomy.",
        ),
    ] = False,
    series: Annotated[
        str | None,
        typer.Option(
            "--series",
            help="DICOM SeriesInstanceUID to read from a folder holding several series (one "
            "input only; `femurseg inspect` lists them).",
        ),
    ] = None,
    assume_orientation: Annotated[
        str | None,
        typer.Option(
            "--assume-orientation",
            help="Axis codes (e.g. LPS) of a NIfTI whose header sets no orientation (qform and "
            "sform codes 0); such a file is refused without it. Recorded in the report.",
        ),
    ] = None,
) -> None:
    """Segment the left and right femur; writes label map, JSON report and preview per case."""

    def _predict() -> None:
        from femurseg.errors import InputError
        from femurseg.io import ReadAhead
        from femurseg.io.validate import ReadChecks

        read_checks = ReadChecks(assume_orientation=assume_orientation)
        if series is not None and len(inputs) != 1:
            raise InputError(
                f"--series {series} was given with {len(inputs)} inputs; expected one DICOM "
                "folder with it; predict the other inputs in a separate run"
            )
        # start reading the first scan now: it overlaps importing torch and loading the networks
        first = Path(inputs[0]) if inputs else None
        ahead = (
            ReadAhead(first, read_checks, series) if first is not None and first.exists() else None
        )
        from femurseg.pipeline import PredictConfig, Predictor, check_inputs, predict_many
        from femurseg.segmentation import SegmentRules
        from femurseg.segmentation.checks import FemurCheckRules

        dev = as_device(device)
        prec = as_precision(precision)
        check_inputs(inputs)
        s1 = {"spacing_mm": stage1_spacing} if stage1_spacing is not None else {}
        wanted = {"spacing_mm": stage2_spacing, "margin_mm": margin}
        s2 = {k: v for k, v in wanted.items() if v is not None}
        predictor = Predictor(
            stage1_weights,
            stage2_weights,
            PredictConfig(
                device=dev,
                precision=prec,
                preview=preview,
                mesh=mesh,
                dicom_seg=dicom_seg,
                segment_rules=SegmentRules(largest_only=not all_pieces),
                femur_checks=FemurCheckRules(enabled=not no_femur_checks),
                read_checks=read_checks,
                series_uid=series,
            ),
            stage1_overrides=s1,
            stage2_overrides=s2,
        )
        with progress("predict", len(inputs)) as update:

            def on_case(path: Path, report: dict) -> None:  # type: ignore[type-arg]
                status = ", ".join(f"{k} {v['status']}" for k, v in report["femurs"].items())
                update(advance=1, info=f"{path.name}: {status}")
                typer.echo(
                    f"{report['case']}: {status} ({report['seconds']['total']:.1f} s) -> "
                    f"{report['outputs']['labels']}"
                )
                if "message" in report:
                    typer.echo(f"warning: {report['case']}: {report['message']}", err=True)
                for side in report["femurs"].values():
                    reasons = (side.get("check") or {}).get("reasons") or []
                    if side["status"] != "found" and reasons:
                        typer.echo(f"note: {report['case']}: {'; '.join(reasons)}", err=True)

            predict_many(inputs, out, predictor, on_case=on_case, ahead=ahead)

    run_guarded(_predict)
