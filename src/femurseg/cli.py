"""The ``femurseg`` command line: one Typer app, each command a thin wrapper over the library.

Errors raised on purpose (:class:`femurseg.errors.FemursegError`) become a one-line message on
stderr and a non-zero exit code (2 for bad input); nothing else reaches the user as a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from femurseg.errors import FemursegError

app = typer.Typer(
    name="femurseg",
    help="Two-stage segmentation of the left and right femur in lower-limb CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("femurseg")
_state = {"debug": False}


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on error.")] = False,
) -> None:
    """Configure logging once for every command."""
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(err: BaseException, code: int) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    msg = " ".join(str(err).split()) or type(err).__name__
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def run_guarded(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call ``fn``, mapping femurseg errors to their exit code and anything else to exit 1."""
    try:
        return fn(*args, **kwargs)
    except FemursegError as err:
        if _state["debug"]:
            raise
        raise fail(err, err.exit_code) from err
    except (KeyboardInterrupt, typer.Exit):
        raise
    except MemoryError as err:
        raise fail(RuntimeError("out of memory; try a smaller input or fewer workers"), 1) from err
    except Exception as err:  # noqa: BLE001 - last line of defence: never a raw traceback
        if _state["debug"]:
            raise
        raise fail(
            RuntimeError(f"unexpected {type(err).__name__}: {err} (rerun with --debug and report)"),
            1,
        ) from err


@app.command()
def info() -> None:
    """Print versions and paths. Imports no torch."""
    import importlib.metadata as md
    import platform

    import femurseg

    typer.echo(f"femurseg {femurseg.__version__}")
    typer.echo(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    for pkg in ("numpy", "nibabel", "SimpleITK", "pydicom", "monai", "torch"):
        try:
            typer.echo(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            typer.echo(f"{pkg} not installed")
    typer.echo(f"package at {Path(femurseg.__file__).parent}")


@app.command()
def inspect(
    input: Annotated[
        Path, typer.Argument(metavar="INPUT", help="NIfTI/NRRD/MHA file or DICOM series folder.")
    ],
    series: Annotated[
        str | None, typer.Option("--series", help="DICOM SeriesInstanceUID to read.")
    ] = None,
) -> None:
    """Print an input's format, on-disk and canonical layout, spacing, extent and HU range."""

    def _inspect() -> None:
        from femurseg.io import describe_volume, read_volume

        for name, text in describe_volume(read_volume(input, series_uid=series)).items():
            typer.echo(f"{name}: {text}")

    run_guarded(_inspect)


def _progress():  # type: ignore[no-untyped-def]
    """A rich progress bar on stderr, shown only on a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )


@app.command()
def train(
    stage: Annotated[
        str,
        typer.Argument(
            help="Which network: stage1 (boxes), stage2 (femur in a box), or the baselines "
            "segresnet (single-stage, whole scan) and transunet (2D slices)."
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="Dataset folder with dataset.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoints.")],
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps.")] = None,
    epochs: Annotated[
        float | None, typer.Option(help="Passes over the training cases (instead of --steps).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from RUN/last.pt.")] = False,
    batch_size: Annotated[int | None, typer.Option(help="Samples per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    val_every: Annotated[int | None, typer.Option(help="Steps between validations.")] = None,
    val_cases: Annotated[int | None, typer.Option(help="Validation cases used (at most).")] = None,
    patch: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Stage 1: largest coarse sub-volume in voxels (stage 2: roi_size)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    spacing: Annotated[
        float | None, typer.Option(help="Network voxel size in mm (stage default if unset).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    init: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's weights (fine-tune).")
    ] = None,
    roi: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Stage 2 / segresnet: window (training patch and inference) in voxels."),
    ] = None,
) -> None:
    """Train a network on a dataset folder; resumable; torchrun for several GPUs."""

    def _train() -> None:
        import dataclasses
        import math
        import os

        from femurseg.baselines.transunet_train import TransUNetTrainConfig
        from femurseg.errors import ConfigError, InputError
        from femurseg.training import TrainConfig, read_split
        from femurseg.training import train as run_train
        from femurseg.training.loop import task_class
        from femurseg.weights import Stage

        try:
            st = Stage(stage)
        except ValueError as err:
            names = ", ".join(s.value for s in Stage)
            raise InputError(f"network {stage!r} is unknown; expected one of {names}") from err
        if steps is not None and epochs is not None:
            raise ConfigError("--steps and --epochs were both given; give one of them")
        if patch is not None and st != Stage.STAGE1:
            raise ConfigError(f"--patch applies to stage1 only; {st.value} trains on --roi windows")
        if roi is not None and st not in (Stage.STAGE2, Stage.SEGRESNET):
            raise ConfigError(f"--roi applies to stage2 and segresnet only, not {st.value}")
        base: Any
        if st == Stage.TRANSUNET:
            base = TransUNetTrainConfig()
        elif st == Stage.STAGE1:
            base = TrainConfig(stage=st, batch_size=1, lr=3e-3)
        elif st == Stage.SEGRESNET:
            base = TrainConfig(stage=st, batch_size=1)
        else:
            base = TrainConfig(stage=st)
        changes: dict[str, Any] = {
            k: v
            for k, v in {
                "batch_size": batch_size,
                "lr": lr,
                "val_every": val_every,
                "val_cases": val_cases,
                "patch_size": patch,
            }.items()
            if v is not None
        }
        cfg = dataclasses.replace(base, seed=seed, **changes)
        if epochs is not None:
            n = len(read_split(data, "train"))
            cfg = dataclasses.replace(cfg, steps=max(1, math.ceil(epochs * n / cfg.batch_size)))
        elif steps is not None:
            cfg = dataclasses.replace(cfg, steps=steps)
        model: Any = task_class(st)[0]()
        if spacing is not None:
            model = dataclasses.replace(model, spacing_mm=spacing)
        if roi is not None:
            model = dataclasses.replace(model, roi_size=roi)
        with _progress() as bar:
            task = bar.add_task(f"train {st.value}", total=cfg.steps, info="")

            def on_step(done: int, total: int, info: dict[str, float]) -> None:
                text = " ".join(f"{k} {v:.4g}" for k, v in info.items() if k != "metric")
                bar.update(task, completed=done, total=total, info=text)

            summary = run_train(
                data,
                out,
                cfg,
                model,
                resume=resume,
                stage=st,
                device=device,
                progress=on_step,
                init_from=init,
            )
        if int(os.environ.get("RANK", "0")) != 0:
            return  # under torchrun only rank 0 reports
        typer.echo(
            f"trained {summary['stage']} for {summary['steps']} steps; best metric "
            f"{summary['best_metric']:.4f}; checkpoints {summary['best']} and {summary['last']}"
        )

    run_guarded(_train)


@app.command()
def predict(
    inputs: Annotated[
        list[Path], typer.Argument(metavar="INPUT...", help="CT files or DICOM series folders.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
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
) -> None:
    """Segment the left and right femur; writes label map, JSON report and preview per case."""

    def _predict() -> None:
        from femurseg.devices import Device
        from femurseg.errors import InputError
        from femurseg.pipeline import PredictConfig, Predictor, check_inputs, predict_many

        try:
            dev = Device(device)
        except ValueError as err:
            raise InputError(f"--device {device!r} is unknown; expected auto, cpu or cuda") from err
        check_inputs(inputs)
        s1 = {"spacing_mm": stage1_spacing} if stage1_spacing is not None else {}
        wanted = {"spacing_mm": stage2_spacing, "margin_mm": margin}
        s2 = {k: v for k, v in wanted.items() if v is not None}
        predictor = Predictor(
            stage1_weights,
            stage2_weights,
            PredictConfig(device=dev, preview=preview, mesh=mesh, dicom_seg=dicom_seg),
            stage1_overrides=s1,
            stage2_overrides=s2,
        )
        with _progress() as bar:
            task = bar.add_task("predict", total=len(inputs), info="")

            def on_case(path: Path, report: dict) -> None:  # type: ignore[type-arg]
                bar.advance(task)
                status = ", ".join(f"{k} {v['status']}" for k, v in report["femurs"].items())
                bar.update(task, info=f"{path.name}: {status}")
                typer.echo(
                    f"{report['case']}: {status} ({report['seconds']['total']:.1f} s) -> "
                    f"{report['outputs']['labels']}"
                )
                if "message" in report:
                    typer.echo(f"warning: {report['case']}: {report['message']}", err=True)

            predict_many(inputs, out, predictor, on_case=on_case)

    run_guarded(_predict)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_output"),
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 7,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Make a synthetic lower-limb CT, segment it with the shipped weights, print the Dice."""

    def _demo() -> None:
        from femurseg.demo import run_demo

        result = run_demo(out, seed=seed, device=device)
        for name, dice in result["dice"].items():
            typer.echo(f"{name}: Dice {dice:.3f} vs the phantom's known truth")
        typer.echo(f"phantom: {result['image']}")
        for key, path in result["outputs"].items():
            typer.echo(f"{key}: {path}")

    run_guarded(_demo)


@app.command()
def evaluate(
    pred: Annotated[
        Path, typer.Option("--pred", help="Folder of predicted <case>_femur.nii.gz label maps.")
    ],
    truth: Annotated[
        Path, typer.Option("--truth", help="Folder of truth <case>.nii.gz label maps.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for CSV, JSON, Markdown.")],
    nsd_tolerance: Annotated[
        float, typer.Option("--nsd-tolerance", help="Surface Dice tolerance in mm.")
    ] = 1.0,
    no_surface: Annotated[
        bool, typer.Option("--no-surface", help="Skip HD95, ASSD and surface Dice (faster).")
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option("--allow-missing", help="Score truth cases without prediction as empty."),
    ] = False,
) -> None:
    """Score predictions against truth: per-case CSV, summary JSON and a Markdown table."""

    def _evaluate() -> None:
        from femurseg.evaluation.evaluate import EvalConfig, evaluate_folders
        from femurseg.evaluation.report import summarise, write_report

        cfg = EvalConfig(
            nsd_tolerance_mm=nsd_tolerance, surface=not no_surface, allow_missing=allow_missing
        )
        ev = evaluate_folders(pred, truth, cfg)
        paths = write_report(ev, out)
        for side, stats in summarise(ev.rows).items():
            d = stats["dice"]
            typer.echo(f"{side}: Dice mean {d['mean']:.4f} median {d['median']:.4f} (n={d['n']})")
        if ev.detection:
            typer.echo(f"stage 1 mAP@[.50:.95]: {ev.detection['mean']:.4f}")
        for key, path in paths.items():
            typer.echo(f"{key}: {path}")

    run_guarded(_evaluate)


def _curve_option(items: list[str]) -> dict[str, list[Path]]:
    """``NAME=RUN[:RUN...]`` options as ``{name: [run folders]}``."""
    from femurseg.errors import InputError

    out: dict[str, list[Path]] = {}
    for item in items:
        name, sep, runs = item.partition("=")
        if not sep or not name or not runs:
            raise InputError(
                f"--curve {item!r} is malformed; expected NAME=RUN_DIR or NAME=RUN1:RUN2 "
                "(training run folders in the order they were trained)"
            )
        out[name] = [Path(r) for r in runs.split(":")]
    return out


@app.command()
def benchmark(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder with dataset.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report files.")],
    split: Annotated[str, typer.Option(help="train, val, test, or all cases.")] = "test",
    max_cases: Annotated[int, typer.Option(help="Score at most this many cases (0: all).")] = 0,
    stage1_weights: Annotated[
        Path | None, typer.Option(help="Two-stage: stage-1 checkpoint (default: shipped).")
    ] = None,
    stage2_weights: Annotated[
        Path | None, typer.Option(help="Two-stage: stage-2 checkpoint (default: shipped).")
    ] = None,
    segresnet: Annotated[
        Path | None, typer.Option(help="Single-stage SegResNet checkpoint (skipped if unset).")
    ] = None,
    transunet: Annotated[
        Path | None, typer.Option(help="TransUNet checkpoint (skipped if unset).")
    ] = None,
    classical: Annotated[bool, typer.Option(help="Include the classical HU baseline.")] = True,
    curve: Annotated[
        list[str] | None,
        typer.Option(
            help="Convergence curve NAME=RUN[:RUN...] from training run folders (repeatable)."
        ),
    ] = None,
    no_surface: Annotated[
        bool, typer.Option("--no-surface", help="Skip HD95, ASSD and surface Dice (faster).")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Run every method on the same cases; write Markdown, CSV, JSON and a PNG side by side."""

    def _benchmark() -> None:
        from femurseg.devices import Device, resolve_device
        from femurseg.errors import InputError
        from femurseg.evaluation.benchmark import (
            BenchmarkConfig,
            LabelMethod,
            Method,
            TwoStageMethod,
            claims,
            run_benchmark,
            summary_rows,
            write_benchmark,
        )
        from femurseg.pipeline import PredictConfig, Predictor

        try:
            dev = Device(device)
        except ValueError as err:
            raise InputError(f"--device {device!r} is unknown; expected auto, cpu or cuda") from err
        cfg = BenchmarkConfig(split=split, max_cases=max_cases, surface=not no_surface)
        curves = _curve_option(curve or [])
        for path in (segresnet, transunet):
            if path is not None and not path.is_file():
                raise InputError(f"checkpoint {path} does not exist; expected a .pt file")
        methods: list[Method] = [
            TwoStageMethod(
                Predictor(stage1_weights, stage2_weights, PredictConfig(device=dev, preview=False))
            )
        ]
        skipped: dict[str, str] = {}
        torch_dev = resolve_device(dev)
        if segresnet is not None:
            from femurseg.baselines.single_stage import SingleStageSegmenter

            methods.append(
                LabelMethod("segresnet", SingleStageSegmenter(segresnet, device=torch_dev).segment)
            )
        else:
            skipped["segresnet"] = "no --segresnet checkpoint given"
        if transunet is not None:
            from femurseg.baselines.transunet_infer import TransUNetSegmenter

            methods.append(
                LabelMethod("transunet", TransUNetSegmenter(transunet, device=torch_dev).segment)
            )
        else:
            skipped["transunet"] = "no --transunet checkpoint given"
        if classical:
            from femurseg.baselines.classical import segment_classical

            methods.append(LabelMethod("classical", segment_classical))
        with _progress() as bar:
            task = bar.add_task("benchmark", total=None, info="")

            def on_step(done: int, total: int, text: str) -> None:
                bar.update(task, completed=done, total=total, info=text)

            result = run_benchmark(
                data, methods, cfg, curves=curves, skipped=skipped, progress=on_step
            )
        paths = write_benchmark(result, out)
        for row in summary_rows(result):
            typer.echo(
                f"{row['method']}: Dice {row['dice_mean']:.3f}, "
                f"{row['seconds_mean']:.1f} s/scan, peak +{row['peak_mb_max']:.0f} MB"
            )
        for line in claims(result):
            typer.echo(line)
        for key, path in paths.items():
            typer.echo(f"{key}: {path}")

    run_guarded(_benchmark)


dataset_app = typer.Typer(
    help="Import labelled datasets into the femurseg layout and split them.",
    no_args_is_help=True,
)
dataset_import_app = typer.Typer(
    help="Import another layout (TotalSegmentator, nnU-Net raw) into DIR.", no_args_is_help=True
)
dataset_app.add_typer(dataset_import_app, name="import")
app.add_typer(dataset_app, name="dataset")

_SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the train/val/test split.")]
_FractionsOpt = Annotated[
    str, typer.Option("--fractions", help="Train,val,test fractions summing to 1.")
]
_OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing dataset in the output folder.")
]


def _fractions(text: str) -> tuple[float, ...]:
    from femurseg.errors import InputError

    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError as err:
        raise InputError(
            f"--fractions {text!r}; expected three numbers, e.g. 0.85,0.08,0.07"
        ) from err


def _echo_import(result) -> None:  # type: ignore[no-untyped-def]
    s = result.split
    typer.echo(
        f"imported {len(result.imported)} cases into {result.layout.root} "
        f"({len(s.train)} train, {len(s.val)} val, {len(s.test)} test; seed {s.seed})"
    )
    for case, reason in result.skipped.items():
        typer.echo(f"skipped {case}: {reason}", err=True)
    for case, notes in result.notes.items():
        for note in notes:
            typer.echo(f"note {case}: {note}", err=True)


@dataset_import_app.command("totalseg")
def dataset_import_totalseg(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Folder of TotalSegmentator cases.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    seed: _SeedOpt = 0,
    fractions: _FractionsOpt = "0.85,0.08,0.07",
    overwrite: _OverwriteOpt = False,
) -> None:
    """Import <case>/ct.nii.gz + segmentations/femur_left|right.nii.gz cases."""

    def _run() -> None:
        from femurseg.datasets import import_totalseg

        _echo_import(
            import_totalseg(
                src, out, seed=seed, fractions=_fractions(fractions), overwrite=overwrite
            )  # fmt: skip
        )

    run_guarded(_run)


@dataset_import_app.command("nnunet")
def dataset_import_nnunet(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="nnU-Net raw DatasetXXX folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    label_map: Annotated[
        str | None,
        typer.Option(
            "--label-map",
            help="Source values (or names) of the femurs, e.g. 'left=1,right=2'; "
            "default: from dataset.json label names. Other labels become background.",
        ),
    ] = None,
    seed: _SeedOpt = 0,
    fractions: _FractionsOpt = "0.85,0.08,0.07",
    overwrite: _OverwriteOpt = False,
) -> None:
    """Import imagesTr/<case>_0000 + labelsTr/<case> with dataset.json."""

    def _run() -> None:
        from femurseg.datasets import import_nnunet

        _echo_import(
            import_nnunet(
                src,
                out,
                label_map=label_map,
                seed=seed,
                fractions=_fractions(fractions),
                overwrite=overwrite,
            )  # fmt: skip
        )

    run_guarded(_run)


@dataset_app.command("split")
def dataset_split(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="femurseg dataset folder.")],
    seed: _SeedOpt = 0,
    fractions: _FractionsOpt = "0.85,0.08,0.07",
) -> None:
    """Draw a new seeded train/val/test split and save it in DIR/dataset.json."""

    def _run() -> None:
        from femurseg.datasets import resplit_dataset

        s = resplit_dataset(folder, seed=seed, fractions=_fractions(fractions))
        typer.echo(
            f"split {folder}: {len(s.train)} train, {len(s.val)} val, {len(s.test)} test "
            f"(seed {s.seed})"
        )

    run_guarded(_run)


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
        str, typer.Option("--fov", help="full|hip|thighs|knee|one_leg|cut|mixed")
    ] = "mixed",
    spacing: Annotated[
        str | None, typer.Option("--spacing", help="Voxel size mm: 1 or x,y,z; default: drawn.")
    ] = None,
    hip_implants: Annotated[
        float | None, typer.Option("--hip-implants", help="Chance per femur of a hip implant.")
    ] = None,
    knee_implants: Annotated[
        float | None, typer.Option("--knee-implants", help="Chance per leg of a knee implant.")
    ] = None,
    exclude_subjects: Annotated[
        str, typer.Option("--exclude-subjects", help="Comma-separated LLP26 subjects held out.")
    ] = "",
    workers: Annotated[int, typer.Option("--workers", help="Cases generated in parallel.")] = 1,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a non-empty dataset folder.")
    ] = False,
) -> None:
    """Write a synthetic lower-limb CT dataset (images, labels, dataset.json with a split)."""

    def _run() -> None:
        import dataclasses

        from femurseg.errors import ConfigError
        from femurseg.phantoms.dataset import write_dataset
        from femurseg.phantoms.params import FovKind, ImplantParams, PhantomConfig

        try:
            kind = FovKind(fov)
        except ValueError as e:
            kinds = "|".join(k.value for k in FovKind)
            raise ConfigError(f"--fov {fov!r} is unknown; expected one of {kinds}") from e
        imp = ImplantParams()
        changes = {
            k: v
            for k, v in (("hip_probability", hip_implants), ("knee_probability", knee_implants))
            if v is not None
        }
        if changes:
            imp = dataclasses.replace(imp, **changes)
        excl = tuple(s for s in exclude_subjects.split(",") if s)
        cfg = PhantomConfig(
            fov=kind, spacing=_spacing(spacing), implants=imp, exclude_subjects=excl
        )
        with _progress() as bar:
            task = bar.add_task("phantoms", total=n, info="")
            path = write_dataset(
                out,
                n,
                seed,
                cfg,
                shapes,
                workers,
                overwrite,
                on_case=lambda name: bar.update(task, advance=1, info=name),
            )
        typer.echo(f"wrote {n} cases and {path}")

    run_guarded(_run)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app; a command-line usage error is one line and exit 2.

    Click would print a usage block and a framed message; users asked for one line that says
    what was wrong and where to look.
    """
    from typer.exceptions import TyperException

    try:
        code = app(args=argv, standalone_mode=False)
    except TyperException as err:  # usage errors: unknown option, bad value, missing argument
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "femurseg"
        what = " ".join(err.format_message().split()).rstrip(".")
        typer.echo(f"error: {what}; see `{where} --help`", err=True)
        return int(err.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
