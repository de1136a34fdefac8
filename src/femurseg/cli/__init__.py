"""The ``femurseg`` command line: one Typer app, each command a thin wrapper over the library.

Errors raised on purpose (:class:`femurseg.errors.FemursegError`) become a one-line message on
stderr and a non-zero exit code (2 for bad input); nothing else reaches the user as a traceback
unless ``--debug`` is given. Command-line usage errors (unknown option, bad value, missing
argument) are one line with exit code 2 as well.

This module holds the app and what every command shares; the commands live in one module per
group (:mod:`.info`, :mod:`.phantom`, :mod:`.dataset`, :mod:`.train`, :mod:`.predict`,
:mod:`.evaluate`), imported at the bottom so that they register. Heavy libraries (torch, MONAI,
the pipeline) are imported inside the commands, so ``femurseg --help`` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup

from femurseg.errors import FemursegError

if TYPE_CHECKING:
    from femurseg.devices import Device, Precision

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


def _exit_code(call: Callable[[], object]) -> int:
    """Run a non-standalone invocation of the app and return its exit code.

    A usage error becomes one line on stderr: Click would print a usage block and a framed
    message; users asked for one line that says what was wrong and where to look.
    """
    from typer.exceptions import TyperException

    try:
        code = call()
    except TyperException as err:  # usage errors: unknown option, bad value, missing argument
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "femurseg"
        what = " ".join(err.format_message().split()).rstrip(".")
        if what:  # empty when a group run without a command has just printed its help
            typer.echo(f"error: {what}; see `{where} --help`", err=True)
        return int(err.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    return code if isinstance(code, int) else 0


#: options of the root command that may also be written after the subcommand.
GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet", "--debug")


def _global_flags_first(args: Sequence[str]) -> list[str]:
    """``femurseg predict X -v`` as ``femurseg -v predict X``: the logging flags are the root
    command's, but users write them after the subcommand too. Nothing after ``--`` moves."""
    args = list(args)
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return flags + rest + args[end:]


class _OneLineErrors(TyperGroup):
    """The root group: usage errors are one line however the app is run.

    :func:`main` runs the app non-standalone; a standalone run (``app()``, or Typer's
    ``CliRunner`` in tests) goes through the same :func:`_exit_code`, so both print the same.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(
            super().main,
            _global_flags_first(sys.argv[1:] if args is None else list(args)),
            prog_name,
            complete_var,
            standalone_mode=False,
            windows_expand_args=windows_expand_args,
            **extra,
        )
        if not standalone_mode:
            return run()
        sys.exit(_exit_code(run))


app = typer.Typer(
    name="femurseg",
    help="Two-stage segmentation of the left and right femur in lower-limb CT.",
    cls=_OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("femurseg")
_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from femurseg import __version__

        typer.echo(f"femurseg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Log progress details (also after the command)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors (also after the command).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on error.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Configure logging once for every command."""
    _state["debug"] = debug
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    if verbose:
        level = logging.INFO
    if debug:
        level = logging.DEBUG
    if not debug:
        # nibabel prints header repairs itself and through the root logger (the same line
        # twice, before our own one-line error says what matters)
        for name in ("nibabel", "nibabel.global"):
            logging.getLogger(name).setLevel(logging.ERROR)
    logging.basicConfig(
        level=level,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(err: BaseException, code: int) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    msg = " ".join(str(err).split()) or type(err).__name__
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def run_guarded(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
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
        from femurseg.cohort.run import out_of_memory_message

        raise fail(RuntimeError(out_of_memory_message()), 1) from err
    except Exception as err:  # noqa: BLE001 - last line of defence: never a raw traceback
        if _state["debug"]:
            raise
        from femurseg.cohort.run import is_out_of_memory, out_of_memory_message

        if is_out_of_memory(err):
            raise fail(RuntimeError(out_of_memory_message()), 1) from err
        raise fail(
            RuntimeError(f"unexpected {type(err).__name__}: {err} (rerun with --debug and report)"),
            1,
        ) from err


def _choice(option: str, text: str, kind: type[E]) -> E:
    """An option's text as a member of the enum ``kind``, or a one-line InputError naming the
    accepted values."""
    from femurseg.errors import InputError

    try:
        return kind(text)
    except ValueError as err:
        values = [str(m.value) for m in kind]
        expected = f"{', '.join(values[:-1])} or {values[-1]}"
        raise InputError(f"{option} {text!r} is unknown; expected {expected}") from err


def as_device(text: str) -> Device | str:
    """The ``--device`` option: a :class:`~femurseg.devices.Device`, or ``cuda:N`` (checked
    without importing torch; whether CUDA is there is found out when the networks load)."""
    from femurseg.devices import parse_device

    return parse_device(text)


def as_precision(text: str) -> Precision:
    """The ``--precision`` option as a :class:`~femurseg.devices.Precision`."""
    from femurseg.devices import Precision

    return _choice("--precision", text, Precision)


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr, shown only on a terminal, with one task.

    Yields:
        The task's update function: ``update(completed=, total=, advance=, info=)``; ``info``
        is the free text shown after the bar.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    ) as bar:
        yield functools.partial(bar.update, bar.add_task(description, total=total, info=""))


def main(argv: list[str] | None = None) -> int:
    """Run the app; a command-line usage error is one line and exit 2."""
    return _exit_code(lambda: app(args=argv, standalone_mode=False))


def run() -> NoReturn:
    """Console entry point (``femurseg``, ``python -m femurseg.cli``): :func:`main`, then exit.

    Every output is written, closed and renamed into place before :func:`main` returns; what
    is left is the interpreter unloading torch, MONAI, SciPy and matplotlib, which takes about
    a second on a 2-core CPU (0.9-1.2 s measured after ``femurseg predict``). So the exit
    handlers run, the logs and both streams are flushed, and the process ends without that
    teardown.
    """
    code = main()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that closed the pipe wanted no more
            pass
    os._exit(code)


# Importing a command module registers its commands on ``app`` (the modules need the names
# above); ``--help`` lists commands in this order, the pipeline's, and sub-groups after them.
# isort: off
from femurseg.cli import info, phantom, dataset, train, predict, evaluate  # noqa: E402, F401
# isort: on

__all__ = ["app", "main", "run"]
