"""``femurseg evaluate`` and ``benchmark``: score predictions, compare methods on the same cases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from femurseg.cli import app, as_device, as_precision, progress, run_guarded


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


def _curve_option(items: list[str]) -> dict[str, Sequence[Path]]:
    """``NAME=RUN[:RUN...]`` options as ``{name: [run folders]}``."""
    from femurseg.errors import InputError

    out: dict[str, Sequence[Path]] = {}
    for item in items:
        name, sep, runs = item.partition("=")
        if not sep or not name or not runs:
            raise InputError(
                f"--curve {item!r} is malformed; expected NAME=RUN_DIR or NAME=RUN1:RUN2 "
                "(training run folders in the order they were trained)"
            )
        out[name] = [Path(r) for r in runs.split(":")]
    return out


def _baseline_class(name: str) -> Any:
    """The segmenter class of a learnt baseline (imported only when asked for)."""
    if name == "segresnet":
        from femurseg.baselines.single_stage import SingleStageSegmenter

        return SingleStageSegmenter
    from femurseg.baselines.transunet_infer import TransUNetSegmenter

    return TransUNetSegmenter


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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="Inference arithmetic of every network: auto, float32, bfloat16.")
    ] = "auto",
) -> None:
    """Run every method on the same cases; write Markdown, CSV, JSON and a PNG side by side."""

    def _benchmark() -> None:
        from femurseg.devices import resolve_device
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

        dev = as_device(device)
        prec = as_precision(precision)
        cfg = BenchmarkConfig(split=split, max_cases=max_cases, surface=not no_surface)
        curves = _curve_option(curve or [])
        for path in (segresnet, transunet):
            if path is not None and not path.is_file():
                raise InputError(f"checkpoint {path} does not exist; expected a .pt file")
        methods: list[Method] = [
            TwoStageMethod(
                Predictor(
                    stage1_weights,
                    stage2_weights,
                    PredictConfig(device=dev, precision=prec, preview=False),
                )
            )
        ]
        skipped: dict[str, str] = {}
        torch_dev = resolve_device(dev)
        for name, ckpt in (("segresnet", segresnet), ("transunet", transunet)):
            if ckpt is None:
                skipped[name] = f"no --{name} checkpoint given"
                continue
            segmenter = _baseline_class(name)(ckpt, device=torch_dev, precision=prec)
            methods.append(LabelMethod(name, segmenter.segment))
        if classical:
            from femurseg.baselines.classical import segment_classical

            methods.append(LabelMethod("classical", segment_classical))
        with progress("benchmark", None) as update:

            def on_step(done: int, total: int, text: str) -> None:
                update(completed=done, total=total, info=text)

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


def _model_option(items: list[str]) -> list[tuple[str, Path | None, Path | None]]:
    """``NAME=STAGE1.pt:STAGE2.pt`` options (``shipped`` for the shipped weights)."""
    from femurseg.errors import InputError

    out: list[tuple[str, Path | None, Path | None]] = []
    for item in items:
        name, sep, pair = item.partition("=")
        if name == "shipped" and not sep:
            out.append(("shipped", None, None))
            continue
        s1, colon, s2 = pair.partition(":")
        if not sep or not name or not colon or not s1 or not s2:
            raise InputError(
                f"--model {item!r} is malformed; expected NAME=STAGE1.pt:STAGE2.pt or shipped"
            )
        for p in (s1, s2):
            if p != "shipped" and not Path(p).is_file():
                raise InputError(f"--model {name}: checkpoint {p} does not exist; expected a .pt")
        out.append(
            (name, None if s1 == "shipped" else Path(s1), None if s2 == "shipped" else Path(s2))
        )
    return out


def _settings_option(items: list[str], names: list[str]) -> dict[str, Path]:
    """``NAME=FILE`` options, each naming one of the ``--model`` names."""
    from femurseg.errors import InputError

    out: dict[str, Path] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--settings {item!r} is malformed; expected NAME=FILE")
        if name not in names:
            raise InputError(
                f"--settings {item!r} names no model; expected one of {', '.join(names)} "
                "(the NAME of a --model)"
            )
        if not Path(file).is_file():
            raise InputError(
                f"--settings {name}: {file} does not exist; expected a JSON or TOML file"
            )
        out[name] = Path(file)
    return out


@app.command()
def scorecard(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for scorecard.md / .json.")],
    real: Annotated[
        Path,
        typer.Option(help="Folder of real scans (TotalSegmentator layout; negatives folders)."),
    ] = Path("../shared/data"),
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="Model to score, NAME=STAGE1.pt:STAGE2.pt (either may be 'shipped'); "
            "repeatable; default the shipped weights."
        ),
    ] = None,
    phantoms: Annotated[
        Path | None, typer.Option(help="Also score this phantom dataset folder (held-out split).")
    ] = None,
    split: Annotated[str, typer.Option(help="Phantom split to score.")] = "test",
    no_surface: Annotated[
        bool, typer.Option("--no-surface", help="Skip HD95 on the real scans (faster).")
    ] = False,
    derived: Annotated[
        bool,
        typer.Option(
            help="Also score each labelled real scan mirrored (sides must swap), its slices "
            "above the femoral heads (must be not_found) and at twice its slice thickness."
        ),
    ] = True,
    fov_trims: Annotated[
        bool,
        typer.Option(
            help="Also score each labelled real scan with one voxel layer cut from each face "
            "of its field of view in turn: Dice mean, sd and range over the seven views (six "
            "more predictions per scan), a steadier figure to compare models by."
        ),
    ] = False,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            help="Inference settings for one --model, NAME=FILE (JSON or TOML of PredictConfig "
            'keys, as predict --config; e.g. {"box_rules": {"min_volume_ml": 10}}), so that '
            "the same weights under other rules score side by side; repeatable."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="Inference arithmetic: auto, float32, bfloat16.")
    ] = "auto",
) -> None:
    """Score models on every real scan under --real (and a phantom split), side by side."""

    def _scorecard() -> None:
        import json

        from femurseg.atomic import atomic_write
        from femurseg.errors import InputError
        from femurseg.evaluation.scorecard import find_real_cases, markdown, score_model
        from femurseg.pipeline import PredictConfig, Predictor

        if not real.is_dir():
            raise InputError(
                f"real-scan folder {real} does not exist; expected ../shared/data or --real DIR"
            )
        cases, notes = find_real_cases(real)
        if not cases:
            raise InputError(
                f"no real case (a folder with ct.nii.gz) under {real}; expected the "
                "TotalSegmentator layout"
            )
        from femurseg.config import apply_overrides, read_config_file

        dev = as_device(device)
        prec = as_precision(precision)
        models = _model_option(model or ["shipped"])
        files = _settings_option(settings or [], [name for name, _, _ in models])
        # every settings file is read once and checked before any model runs
        read = {name: read_config_file(path) for name, path in files.items()}
        base = PredictConfig(device=dev, precision=prec, preview=False)
        configs = {
            name: apply_overrides(base, read[name], f"--settings {files[name]}")
            if name in read
            else base
            for name, _, _ in models
        }
        scored = []
        for name, s1, s2 in models:
            predictor = Predictor(s1, s2, configs[name])
            scored.append(
                score_model(
                    name,
                    predictor,
                    cases,
                    phantoms,
                    split,
                    surface=not no_surface,
                    derived=derived,
                    fov_trims=fov_trims,
                )
            )
        text = markdown(scored)
        if notes:
            text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        out.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            [
                {
                    "name": m.name,
                    "settings": read.get(m.name),
                    "real": m.real,
                    "phantoms": m.phantoms,
                    "seconds": m.seconds,
                }
                for m in scored
            ],
            indent=2,
            default=float,
        ).replace("NaN", "null")

        def _writer(body: str) -> Callable[[Path], None]:
            def write(p: Path) -> None:
                p.write_text(body)

            return write

        atomic_write(out / "scorecard.json", _writer(payload))
        atomic_write(out / "scorecard.md", _writer(text))
        typer.echo(text)
        typer.echo(f"scorecard: {out / 'scorecard.md'}")

    run_guarded(_scorecard)
