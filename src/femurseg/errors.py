"""Exception hierarchy.

Every message says what was found, what was expected and what to do, in one line. The command
line maps :class:`InputError` (the user's data or arguments are wrong) to exit code 2 and any
other :class:`FemursegError` to exit code 1.
"""

from __future__ import annotations


class FemursegError(Exception):
    """Base class for every error femurseg raises on purpose."""

    exit_code = 1


class InputError(FemursegError):
    """The input (file, folder, argument) cannot be used as given; the user must change it."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration value is out of range or contradicts another (e.g. a checkpoint's)."""


class OutputError(FemursegError):
    """An output cannot be written where asked (exists, unwritable, disk full)."""

    exit_code = 2
