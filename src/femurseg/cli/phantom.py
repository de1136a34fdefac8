"""``femurseg phantom``: write a synthetic lower-limb CT dataset with exact femur labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from femurseg.cli import app, progress, run_guarded
from femurseg.phantoms.params import FovKind


def _spacing(text: str | None) -> tuple[float, float, float] | None:
    """``"1"`` (isotropic) or ``"0.8,0.8,2"`` (x, y, z mm) -> a spacing triple."""
    from femurseg.errors import ConfigError

    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise ConfigError(
            f"--spacing {text!r} is not a number list; expected e.g. 1 or 0.8,0.8,2 (mm)"
        ) from e
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ConfigError(f"--spacing {text!r} has {len(vals)} values; expected 1 or 3 (x,y,z mm)")
    return (vals[0], vals[1], vals[2])


def _range(option: str, text: str | None) -> tuple[float, float] | None:
    """``"-10,40"`` -> (-10.0, 40.0); ``"15"`` -> (15.0, 15.0)."""
    from femurseg.errors import ConfigError

    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise ConfigError(f"{option} {text!r} is not a number or LO,HI pair") from e
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or vals[0] > vals[1]:
        raise ConfigError(f"{option} {text!r}: expected one value or LO,HI with LO <= HI")
    return (vals[0], vals[1])


def _subject_ids(text: str) -> tuple[str, ...]:
    """``"LLP26_24, LLP26_25"`` -> ``("LLP26_24", "LLP26_25")``; empty items are dropped."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


@app.command()
def phantom(
    n: Annotated[int, typer.Option("--n", help="Number of cases.")] = 10,
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to create.")] = Path(
        "phantoms"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Dataset seed (same seed, same files).")] = 0,
    shapes: Annotated[
        Path | None, typer.Option("--shapes", help="LLP26 mesh folder; default: procedural bones.")
    ] = None,
    fov: Annotated[
        FovKind,
        typer.Option(
            "--fov",
            metavar="<kind>",
            help=f"Field of view: {'|'.join(k.value for k in FovKind)}; mixed draws one per case.",
        ),
    ] = FovKind.MIXED,
    spacing: Annotated[
        str | None, typer.Option("--spacing", help="Voxel size mm: 1 or x,y,z; default: drawn.")
    ] = None,
    hip_implants: Annotated[
        float | None, typer.Option("--hip-implants", help="Chance per femur of a hip implant.")
    ] = None,
    knee_implants: Annotated[
        float | None, typer.Option("--knee-implants", help="Chance per leg of a knee implant.")
    ] = None,
    fixation_implants: Annotated[
        float | None,
        typer.Option(
            "--fixation-implants",
            help="Chance per femur of a fracture fixation (lag screw with plate or nail, or "
            "cannulated screws; the head is kept).",
        ),
    ] = None,
    subjects: Annotated[
        str,
        typer.Option(
            "--subjects", help="Comma-separated LLP26 subjects to draw bones from (needs --shapes)."
        ),
    ] = "",
    exclude_subjects: Annotated[
        str, typer.Option("--exclude-subjects", help="Comma-separated LLP26 subjects held out.")
    ] = "",
    torsion: Annotated[
        str | None,
        typer.Option(
            "--torsion",
            help="Impose a femoral torsion (high-neck method, degrees) drawn per femur from "
            "LO,HI (e.g. -10,40) or one value.",
        ),
    ] = None,
    femur_length: Annotated[
        str | None,
        typer.Option(
            "--femur-length",
            help="Impose a femoral length (mm, head top to condyles) drawn per femur from LO,HI.",
        ),
    ] = None,
    truth: Annotated[
        bool,
        typer.Option(
            help="Measure each posed femur mesh (landmarks, torsion, lengths) into dataset.json.",
        ),
    ] = True,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings file (JSON, or TOML) of PhantomConfig keys, e.g. "
            '{"scanner": {"noise_sd_hu": [20, 40]}, "tissues": {"cortex_shaft_mm": [3, 5]}}; '
            "its values override the options. Unknown keys are an error.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Cases generated in parallel.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty dataset folder.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish an interrupted run in --out (same options): only missing cases are made.",
        ),
    ] = False,
) -> None:
    """Write a synthetic lower-limb CT dataset (images, labels, dataset.json with a split)."""

    def _run() -> None:
        import dataclasses

        from femurseg.config import with_settings_file
        from femurseg.errors import ConfigError
        from femurseg.phantoms.dataset import write_dataset
        from femurseg.phantoms.generate import pick_subjects
        from femurseg.phantoms.params import ImplantParams, PhantomConfig

        imp = ImplantParams()
        changes: dict[str, Any] = {
            k: v
            for k, v in (
                ("hip_probability", hip_implants),
                ("knee_probability", knee_implants),
                ("fixation_probability", fixation_implants),
            )
            if v is not None
        }
        if changes:
            imp = dataclasses.replace(imp, **changes)
        use, excl = _subject_ids(subjects), _subject_ids(exclude_subjects)
        if use and shapes is None:
            raise ConfigError(
                f"--subjects {subjects!r} names LLP26 subjects but no --shapes folder was given; "
                "pass --shapes DIR (the shapes/llp26 folder) or leave --subjects out for "
                "procedural bones"
            )
        cfg = PhantomConfig(
            fov=fov,
            spacing=_spacing(spacing),
            implants=imp,
            subjects=use,
            exclude_subjects=excl,
            femur_torsion_deg=_range("--torsion", torsion),
            femur_length_mm=_range("--femur-length", femur_length),
            femur_truth=truth,
        )
        cfg = with_settings_file(cfg, config)
        if shapes is not None and (use or excl):
            pick_subjects(cfg, shapes)  # unknown ids fail here, before the output folder is made
        with progress("phantoms", n) as update:
            path = write_dataset(
                out,
                n,
                seed,
                cfg,
                shapes,
                workers,
                overwrite,
                on_case=lambda name: update(advance=1, info=name),
                resume=resume,
            )
        typer.echo(f"wrote {n} cases and {path}")

    run_guarded(_run)
