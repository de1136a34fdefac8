"""``femurseg train``: train stage 1, stage 2 or a baseline network on a dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from femurseg.cli import app, as_device, progress, run_guarded


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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    init: Annotated[
        Path | None, typer.Option(help="Start from this checkpoint's weights (fine-tune).")
    ] = None,
    roi: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Stage 2 / segresnet: window (training patch and inference) in voxels."),
    ] = None,
    box_jitter: Annotated[
        float | None,
        typer.Option(help="Stage 2: context in mm added around each truth box when cropping."),
    ] = None,
    shape_aug: Annotated[
        float | None,
        typer.Option(help="Stage 2 / segresnet: chance of rotation+scale, blur, gamma per patch."),
    ] = None,
    negative_crops: Annotated[
        int | None,
        typer.Option(
            help="Stage 2: crops per case placed off the femur (tibia, pelvis, other bones) "
            "with their true, mostly empty, target."
        ),
    ] = None,
    domain_rand: Annotated[
        float | None,
        typer.Option(
            help="Stage 2 / segresnet: chance per patch of intensity domain randomisation "
            "(random intensity curve, bias field, sharpening)."
        ),
    ] = None,
    end_fraction: Annotated[
        float | None,
        typer.Option(
            help="Stage 2: share of femur-centred patches centred within 25 mm of the femur's "
            "hip or knee end (where joints are hardest)."
        ),
    ] = None,
    noise_aug: Annotated[
        float | None,
        typer.Option(
            help="Stage 1, stage 2, segresnet: chance per sample of correlated CT-like "
            "noise (up to about 80 HU), as in low-dose scans."
        ),
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
        from femurseg.training.tasks import task_class
        from femurseg.weights import Stage

        try:
            st = Stage(stage)
        except ValueError as err:
            names = ", ".join(s.value for s in Stage)
            raise InputError(f"network {stage!r} is unknown; expected one of {names}") from err
        dev = as_device(device)
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
                "box_jitter_mm": box_jitter,
                "shape_aug": shape_aug,
                "negative_crops": negative_crops,
                "domain_rand": domain_rand,
                "noise_aug": noise_aug,
                "end_fraction": end_fraction,
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
        with progress(f"train {st.value}", cfg.steps) as update:

            def on_step(done: int, total: int, info: dict[str, float]) -> None:
                text = " ".join(f"{k} {v:.4g}" for k, v in info.items() if k != "metric")
                update(completed=done, total=total, info=text)

            summary = run_train(
                data,
                out,
                cfg,
                model,
                resume=resume,
                stage=st,
                device=dev,
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
