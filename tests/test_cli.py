"""The command line's own behaviour: help, info, error mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_phantom_fov_is_a_choice_listed_in_help(capsys) -> None:  # type: ignore[no-untyped-def]
    from femurseg.cli import main
    from femurseg.phantoms.params import FovKind

    result = runner.invoke(app, ["phantom", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "|".join(k.value for k in FovKind) in result.output
    code = main(["phantom", "--fov", "elbow"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "--fov" in err and "one_leg" in err and "\n" not in err


def test_usage_errors_are_one_line_through_the_app_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["phantom", "-o", str(tmp_path / "o"), "--fov", "elbow"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    """A shapes folder with two (empty) LLP26 subject folders: enough for the id checks."""
    root = tmp_path / "llp26"
    for name in ("LLP26_01", "LLP26_02"):
        (root / name).mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--subjects", "LLP26_01"], "--shapes"),  # subjects need the LLP26 meshes
        (["--shapes", "{shapes}", "--subjects", "LLP26_99"], "LLP26_99"),
        (["--shapes", "{shapes}", "--subjects", "llp26_1,LLP26_02"], "llp26_1"),
        (["--shapes", "{shapes}", "--exclude-subjects", "LLP26_99"], "LLP26_99"),
        (
            ["--shapes", "{shapes}", "--subjects", "LLP26_01", "--exclude-subjects", "LLP26_01"],
            "both used and excluded",
        ),
        (["--shapes", "{shapes}", "--exclude-subjects", "LLP26_01,LLP26_02"], "no LLP26 subjects"),
    ],
)
def test_phantom_bad_subjects_exit_2_before_writing(  # type: ignore[no-untyped-def]
    tmp_path: Path, shapes: Path, args: list[str], expected: str, capsys
) -> None:
    from femurseg.cli import main

    out = tmp_path / "out"
    code = main(["phantom", "--n", "1", "-o", str(out), *(a.format(shapes=shapes) for a in args)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert expected in err, err
    assert not out.exists()  # validation runs before any case is generated


def test_no_command_prints_help_without_an_empty_error(capsys) -> None:  # type: ignore[no-untyped-def]
    from femurseg.cli import main

    for argv in ([], ["dataset"]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 2, argv
        assert "Usage" in captured.out and captured.err == "", captured.err


def test_bad_precision_is_one_line_exit_2(tmp_path, capsys) -> None:
    from femurseg.cli import main

    scan = tmp_path / "missing.nii.gz"
    code = main(["predict", str(scan), "-o", str(tmp_path / "o"), "--precision", "half"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--precision 'half' is unknown" in err and len(err.splitlines()) == 1


def test_version_prints_and_exits_0() -> None:
    from femurseg import __version__

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"femurseg {__version__}"


def test_cli_conventions_flags_after_command_info_json_and_devices() -> None:
    import json

    import torch

    from femurseg.cli import _global_flags_first
    from femurseg.devices import Device, Precision, inference_autocast, parse_device, resolve_device
    from femurseg.errors import InputError

    assert _global_flags_first(["predict", "x.nii", "-o", "out", "-v"]) == [
        "-v", "predict", "x.nii", "-o", "out",
    ]  # fmt: skip
    assert _global_flags_first(["info", "-q", "--", "-v"]) == ["-q", "info", "--", "-v"]
    res = CliRunner().invoke(app, ["info", "--json", "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["weights"]["stage2"]["ok"] and len(doc["weights"]["stage1"]["sha256"]) == 64
    assert parse_device("CUDA:1") == "cuda:1" and parse_device("cpu") is Device.CPU
    with pytest.raises(InputError, match="cuda:N"):
        parse_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            resolve_device("cuda:0")
    # bfloat16 on CUDA is bfloat16, never a quiet float16
    ctx = inference_autocast(torch.device("cuda"), Precision.BFLOAT16)
    assert ctx.fast_dtype == torch.bfloat16
    assert inference_autocast(torch.device("cuda"), Precision.AUTO).fast_dtype == torch.float16


def test_nibabel_header_repairs_do_not_leak_before_the_error(tmp_path) -> None:
    import struct
    import subprocess
    import sys

    import nibabel as nib
    import numpy as np

    path = tmp_path / "bad.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<h", raw, 252, 99)  # qform_code 99: nibabel repairs it and logs
    struct.pack_into("<h", raw, 254, 99)
    path.write_bytes(bytes(raw))
    res = subprocess.run(
        [sys.executable, "-m", "femurseg.cli", "inspect", str(path)], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error:"), res.stderr


def test_console_entry_flushes_output_and_keeps_the_exit_code(tmp_path) -> None:
    """``run`` leaves without the interpreter's teardown: what was printed still arrives."""
    import subprocess
    import sys

    from femurseg import __version__

    ok = subprocess.run(
        [sys.executable, "-m", "femurseg.cli", "--version"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"femurseg {__version__}\n"
    missing = tmp_path / "absent.nii.gz"
    bad = subprocess.run(
        [sys.executable, "-m", "femurseg.cli", "inspect", str(missing)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error:") and str(missing) in bad.stderr


def test_predict_start_up_does_not_import_the_mesh_library() -> None:
    """trimesh (about 0.5 s to import) is loaded only when a mesh is made, not on every
    predict's start-up; the mesh writer still works (tests/test_clinical_mesh.py)."""
    import subprocess
    import sys

    code = (
        "import sys, femurseg.pipeline, femurseg.cli.predict\n"
        "assert 'trimesh' not in sys.modules, 'trimesh imported at start-up'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
