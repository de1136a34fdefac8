"""``femurseg info``, ``inspect`` and ``demo``: look at the installation, an input, a demo run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from femurseg.cli import app, as_device, run_guarded


def _weights_info() -> dict[str, dict[str, object]]:
    """The shipped weights: path, size, SHA-256 now and in SHA256SUMS (hashlib; no torch)."""
    import femurseg
    from femurseg.checksum import read_checksums, sha256_file

    folder = Path(femurseg.__file__).parent / "weights"
    listed = read_checksums(folder)
    out: dict[str, dict[str, object]] = {}
    for stage in ("stage1", "stage2"):
        path = folder / f"{stage}.pt"
        digest = sha256_file(path) if path.is_file() else None
        expected = listed.get(path.name)
        out[stage] = {
            "path": str(path),
            "bytes": path.stat().st_size if path.is_file() else None,
            "sha256": digest,
            "expected_sha256": expected,
            "ok": digest is not None and digest == expected,
        }
    return out


@app.command()
def info(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object, with the weights' checksums.")
    ] = False,
) -> None:
    """Print versions, paths and the shipped weights' checksums. Imports no torch."""
    import importlib.metadata as md
    import json
    import platform

    import femurseg

    packages: dict[str, str | None] = {}
    for pkg in ("numpy", "nibabel", "SimpleITK", "pydicom", "monai", "torch", "dask"):
        try:
            packages[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            packages[pkg] = None
    weights = _weights_info()
    if as_json:
        doc = {
            "femurseg": femurseg.__version__,
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "packages": packages,
            "package_path": str(Path(femurseg.__file__).parent),
            "weights": weights,
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"femurseg {femurseg.__version__}")
    typer.echo(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    for pkg, version in packages.items():
        typer.echo(f"{pkg} {version or 'not installed'}")
    typer.echo(f"package at {Path(femurseg.__file__).parent}")
    for stage, w in weights.items():
        state = "checksum ok" if w["ok"] else "CHECKSUM MISMATCH or missing"
        typer.echo(f"weights {stage}: {w['path']} sha256 {w['sha256']} ({state})")


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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
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
