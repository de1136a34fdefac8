"""``femurseg info``, ``inspect`` and ``demo``: look at the installation, an input, a demo run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from femurseg.cli import app, as_device, run_guarded


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


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_output"),
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 7,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Make a synthetic lower-limb CT, segment it with the shipped weights, print the Dice."""

    def _demo() -> None:
        from femurseg.demo import run_demo

        result = run_demo(out, seed=seed, device=as_device(device))
        for name, dice in result["dice"].items():
            typer.echo(f"{name}: Dice {dice:.3f} vs the phantom's known truth")
        typer.echo(f"phantom: {result['image']}")
        for key, path in result["outputs"].items():
            typer.echo(f"{key}: {path}")

    run_guarded(_demo)
