"""The command line's own behaviour: help, info, error mapping."""

from __future__ import annotations

from typer.testing import CliRunner

from femurseg.cli import app

runner = CliRunner()


def test_info_lists_versions() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "femurseg" in result.output
    assert "numpy" in result.output


def test_unknown_command_is_an_error() -> None:
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code != 0
