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


def test_usage_errors_are_one_line_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    from femurseg.cli import main

    for argv in (["phantom", "--n", "abc"], ["no-such-command"], ["inspect"]):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, argv
        assert err.startswith("error: ") and "\n" not in err, err
        assert "Traceback" not in err


def test_femurseg_errors_exit_2_through_main(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from femurseg.cli import main

    code = main(["inspect", str(tmp_path / "missing.nii.gz")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "not found" in err and "\n" not in err
