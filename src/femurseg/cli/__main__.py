"""``python -m femurseg.cli`` (as torchrun starts it): the same as the ``femurseg`` command."""

from femurseg.cli import run

run()
