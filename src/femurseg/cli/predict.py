"""``femurseg predict``: segment the left and right femur in CT scans."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from femurseg.cli import app, as_device, as_precision, progress, run_guarded

if TYPE_CHECKING:
    from femurseg.cohort import CaseResult


@app.command()
def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...",
            help="CT files, DICOM series folders, folders of scans (searched recursively) or a "
            "manifest CSV (columns case,path).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
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
            help="Keep every femur piece of 5 ml or more (by default: the largest, and other "
            "pieces of 15 ml or more, the pieces of a broken femur).",
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
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings file (JSON, or TOML) of PredictConfig keys, e.g. "
            '{"femur_checks": {"min_volume_ml": 20}, "measure_settings": {...}}; its values '
            "override the options. Unknown keys are an error.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes, each loading the networks once (default: one per two "
            "cores and per 3 GB of free memory). With --dask local: the cluster's workers.",
            min=1,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Redo every case, also those already done in the output folder (by default "
            "a rerun does only what is missing).",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Try the cases that failed in an earlier run again."),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            help="Run only shard I of N (I/N, 0-based); 'auto' takes I and N from "
            "SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX (+ FEMURSEG_SHARD_COUNT).",
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Run the cases on Dask: a scheduler address (tcp://host:8786) or 'local' for "
            "a local cluster (needs femurseg[cohort]).",
        ),
    ] = None,
) -> None:
    """Segment the left and right femur; writes label map, JSON report and preview per case.

    Each case is isolated: a scan that fails is recorded in <case>_error.json and the run goes
    on. A rerun into the same folder does only what is missing. cohort.csv, cohort.html and
    run.json summarise the run. Exit code 0 when every case is done, 2 when cases failed on
    bad input, 1 when one failed otherwise.
    """

    def _predict() -> int:
        from femurseg.cohort import collect_cases, parse_shard
        from femurseg.cohort.cases import check_output_dir
        from femurseg.errors import InputError
        from femurseg.io.validate import ReadChecks

        check_output_dir(out)

        dev = as_device(device)
        prec = as_precision(precision)
        read_checks = ReadChecks(assume_orientation=assume_orientation)
        cases = collect_cases(inputs)
        if series is not None and len(cases) != 1:
            raise InputError(
                f"--series {series} was given with {len(cases)} scans; expected one DICOM "
                "folder with it; predict the other inputs in a separate run"
            )
        shard_of = parse_shard(shard)
        # a lone scan is read on a thread from here on, while torch and the networks load
        # (seconds each); should the case turn out done already, the read is left unused
        ahead = None
        if len(cases) == 1 and dask is None and shard_of is None:
            from femurseg.io import ReadAhead

            ahead = ReadAhead(cases[0].path, read_checks, series)
        from femurseg.cohort import CohortOptions, PredictorSpec, run_cohort
        from femurseg.config import with_settings_file
        from femurseg.pipeline import PredictConfig
        from femurseg.segmentation import SegmentRules
        from femurseg.segmentation.checks import FemurCheckRules

        s1 = {"spacing_mm": stage1_spacing} if stage1_spacing is not None else {}
        wanted = {"spacing_mm": stage2_spacing, "margin_mm": margin}
        s2 = {k: v for k, v in wanted.items() if v is not None}
        predict_config = PredictConfig(
            device=dev,
            precision=prec,
            preview=preview,
            mesh=mesh,
            dicom_seg=dicom_seg,
            segment_rules=SegmentRules(largest_only=not all_pieces),
            femur_checks=FemurCheckRules(enabled=not no_femur_checks),
            read_checks=read_checks,
            series_uid=series,
        )
        predict_config = with_settings_file(predict_config, config)
        spec = PredictorSpec(stage1_weights, stage2_weights, predict_config, s1, s2)
        options = CohortOptions(
            workers=workers,
            retry_failed=retry_failed,
            overwrite=overwrite,
            shard=shard_of,
            dask=dask,
        )
        with progress("predict", None) as update:

            def on_case(result: CaseResult) -> None:
                update(advance=1, info=result.case)
                if result.status == "failed":
                    typer.echo(f"error: {result.case}: {result.error}", err=True)
                    return
                if result.status == "busy":
                    typer.echo(f"note: {result.case}: skipped, {result.error}", err=True)
                    return
                report = result.report or {}
                status = ", ".join(f"{k} {v['status']}" for k, v in report["femurs"].items())
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

            result = run_cohort(cases, out, spec, options, on_case, ahead)
        failed = result.failed
        kinds = [r.kind for r in failed] + [k for k, _ in result.failed_before.values()]
        if result.skipped:
            typer.echo(
                f"{len(result.skipped)} case(s) already done or failed in {out} were skipped "
                "(--overwrite redoes them, --retry-failed retries failures)",
                err=True,
            )
        for cid, (_, msg) in sorted(result.failed_before.items()):
            typer.echo(f"error: {cid} (failed in an earlier run): {msg}", err=True)
        if len(cases) > 1 or kinds:
            typer.echo(
                f"{result.done} done, {len(failed)} failed, {len(result.skipped)} skipped "
                f"({len(result.failed_before)} of them failed before) in {result.seconds:.1f} s "
                f"-> {out / 'cohort.csv'}",
                err=True,
            )
        if not kinds:
            return 0
        user_errors = ("InputError", "ConfigError", "OutputError")
        return 2 if all(k in user_errors for k in kinds) else 1

    code = run_guarded(_predict)
    if code:
        raise typer.Exit(code)
