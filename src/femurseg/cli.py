"""The ``femurseg`` command line: one Typer app, each command a thin wrapper over the library.

Errors raised on purpose (:class:`femurseg.errors.FemursegError`) become a one-line message on
stderr and a non-zero exit code (2 for bad input); nothing else reaches the user as a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

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


def main() -> None:  # pragma: no cover - console entry point convenience
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
