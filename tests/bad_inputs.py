"""Bad inputs, one builder each, shared by the tests and the generated table in docs/.

``BAD`` maps a case name to (builder, pattern the one-line error must match, what the file is).
``tests/test_io_validation.py`` checks every case's error; :func:`markdown_table` renders what
``femurseg inspect`` answers for each (exit code and the line itself) into
``docs/bad_inputs.md`` (``python scripts/bad_inputs_table.py``), and a test keeps that page
equal to what the current code answers. Imported, not collected.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from io_cases import save_independent, unique_ct


def _nii(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(
        nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine), path
    )
    return path


def _ct(shape: tuple[int, ...] = (5, 6, 7)) -> np.ndarray:
    return unique_ct(shape[:3]).astype(np.float32).reshape(shape[:3] + (1,) * (len(shape) - 3))


def _missing(p: Path) -> Path:
    return p / "nope.nii.gz"


def _unknown_ext(p: Path) -> Path:
    (p / "scan.png").write_bytes(b"\x89PNG not really")
    return p / "scan.png"


def _empty(p: Path) -> Path:
    (p / "empty.nii.gz").write_bytes(b"")
    return p / "empty.nii.gz"


def _corrupt_gzip(p: Path) -> Path:
    (p / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 20)
    return p / "bad.nii.gz"


def _truncated(p: Path) -> Path:
    full = _nii(p / "full.nii.gz", _ct((20, 20, 20)))
    (p / "cut.nii.gz").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return p / "cut.nii.gz"


def _not_gzip(p: Path) -> Path:
    (p / "plain.nii.gz").write_bytes(gzip.compress(b"this is not a nifti header" * 20))
    return p / "plain.nii.gz"


def _garbage_mha(p: Path) -> Path:
    (p / "bad.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nbroken")
    return p / "bad.mha"


def _two_d(p: Path) -> Path:
    return _nii(p / "flat.nii.gz", unique_ct((5, 6, 1))[:, :, 0].astype(np.float32))


def _single_slice(p: Path) -> Path:
    return _nii(p / "slice.nii.gz", _ct((5, 6, 1)))


def _two_d_mha(p: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(unique_ct((5, 6, 1))[:, :, 0]), str(p / "flat.mha"))
    return p / "flat.mha"


def _four_d(p: Path) -> Path:
    return _nii(p / "t.nii.gz", np.stack([_ct(), _ct()], axis=-1))


def _nan(p: Path) -> Path:
    data = _ct()
    data[1, 2, 3] = np.nan
    return _nii(p / "nan.nii.gz", data)


def _inf(p: Path) -> Path:
    data = _ct()
    data[0, 0, 0] = np.inf
    save_independent(data, np.eye(4), p / "inf.nrrd")
    return p / "inf.nrrd"


def _normalised(p: Path) -> Path:
    return _nii(p / "norm.nii.gz", np.random.default_rng(0).random((5, 6, 7)).astype(np.float32))


def _mr_like(p: Path) -> Path:
    return _nii(p / "mr.nii.gz", np.linspace(0, 1500, 210, dtype=np.float32).reshape(5, 6, 7))


def _singular(p: Path) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)  # a zero-length voxel axis
    nib.save(nib.Nifti1Image(_ct(), None, header=hdr), p / "sing.nii.gz")
    return p / "sing.nii.gz"


def _no_xform(data: np.ndarray, path: Path) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_zooms((1.0, 1.0, 3.0))  # qform and sform codes stay 0
    nib.save(nib.Nifti1Image(data, None, header=hdr), path)
    return path


def _unoriented(p: Path) -> Path:
    return _no_xform(_ct(), p / "unoriented.nii.gz")


def _zero_pixdim(p: Path) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((5, 6, 7))
    hdr.set_qform(np.diag([1.0, 1.0, 3.0, 1.0]), code=1)
    hdr.set_sform(None, code=0)
    nib.save(nib.Nifti1Image(_ct(), None, header=hdr), p / "q.nii")
    raw = bytearray((p / "q.nii").read_bytes())
    raw[88:92] = np.float32(0.0).tobytes()  # pixdim[3]: a 3 mm scan whose slice size was lost
    (p / "zero.nii.gz").write_bytes(gzip.compress(bytes(raw)))  # nibabel would "fix" it to 1
    return p / "zero.nii.gz"


def _no_dicom(p: Path) -> Path:
    (p / "d").mkdir()
    (p / "d" / "readme.txt").write_text("hello")
    return p / "d"


def _empty_dir(p: Path) -> Path:
    (p / "e").mkdir()
    return p / "e"


def _series_for_nifti(p: Path) -> Path:
    return _nii(p / "ok.nii.gz", _ct())


def _hu_field(seed: int, scale: float, shift: float, path: Path) -> Path:
    from model_synth import synth_case

    from femurseg.io import write_image

    image, _, affine = synth_case(seed=seed)
    return write_image(image * scale + shift, affine, path, dtype=np.int16)


def _intercept_twice(p: Path) -> Path:
    return _hu_field(4, 1.0, -1024.0, p / "twice.nii.gz")


def _hu_times_ten(p: Path) -> Path:
    return _hu_field(4, 10.0, 0.0, p / "ten.nii.gz")


def _claims_more(p: Path) -> Path:
    path = p / "big.nii"
    nib.save(nib.Nifti1Image(np.full((20, 20, 20), -1000, np.int16), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<hhh", raw, 42, 4000, 4000, 4000)  # dim[1..3]: 128 GB of int16
    path.write_bytes(bytes(raw))
    return path


BAD: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "missing": (_missing, "input not found", "a path that does not exist"),
    "unknown_ext": (_unknown_ext, "unsupported file type '.png'", "a PNG given as the scan"),
    "empty": (_empty, "is empty", "a 0-byte .nii.gz"),
    "corrupt_gzip": (_corrupt_gzip, "cannot read .* as NIfTI", "gzip header followed by garbage"),
    "truncated": (_truncated, "truncated", "a .nii.gz cut in half (interrupted copy)"),
    "not_nifti": (_not_gzip, "cannot read .* as NIfTI", "valid gzip holding text"),
    "garbage_mha": (_garbage_mha, "cannot read .* as MHA", "an MHA with a broken header"),
    "2d": (_two_d, "2D image", "a 2D NIfTI"),
    "single_slice": (_single_slice, "2D image", "a 3D NIfTI with one slice"),
    "2d_mha": (_two_d_mha, "2D image", "a 2D MHA"),
    "4d": (_four_d, "4D image .*2 volumes", "a 4D NIfTI (two volumes)"),
    "nan": (_nan, "1 NaN or infinite", "a NIfTI with a NaN voxel"),
    "inf": (_inf, "1 NaN or infinite", "an NRRD with an infinite voxel"),
    "normalised": (_normalised, "not CT in Hounsfield units", "intensities normalised to 0..1"),
    "mr_like": (_mr_like, "nothing below -200", "MR-like intensities 0..1500"),
    "singular": (_singular, "unusable affine", "an sform with a zero-length axis"),
    "unoriented": (
        _unoriented,
        "no qform or sform .*--assume-orientation",
        "qform_code = sform_code = 0",
    ),
    "zero_pixdim": (
        _zero_pixdim,
        r"voxel sizes \(pixdim\) \[1.0, 1.0, 0.0\]",
        "a qform-only NIfTI with pixdim[3] = 0",
    ),
    "no_dicom": (_no_dicom, "no DICOM files found", "a folder with no DICOM file"),
    "empty_dir": (_empty_dir, "no DICOM files found", "an empty folder"),
    "intercept_twice": (
        _intercept_twice,
        "intercept seems applied twice",
        "a CT with the rescale intercept applied twice (air at -2048)",
    ),
    "hu_times_ten": (_hu_times_ten, "times ten", "a CT stored as HU x 10"),
    "claims_more": (
        _claims_more,
        "header claims a 4000 x 4000 x 4000",
        "a 16 kB NIfTI whose header claims 4000^3 voxels",
    ),
}


def _scan(p: Path) -> Path:
    from model_synth import synth_case

    from femurseg.io import write_image

    image, _, affine = synth_case(seed=5)
    return write_image(image, affine, p / "scan.nii.gz", dtype=np.int16)


def _weights(p: Path) -> tuple[Path, Path]:
    from model_synth import write_tiny_weights

    return write_tiny_weights(p)


def _predict_args(p: Path, s1: Path | None = None, s2: Path | None = None) -> list[str]:
    w1, w2 = _weights(p)
    return [
        "predict",
        str(_scan(p)),
        "-o",
        str(p / "out"),
        "--device",
        "cpu",
        "--stage1-weights",
        str(s1 or w1),
        "--stage2-weights",
        str(s2 or w2),
    ]


def _weights_text(p: Path) -> list[str]:
    (p / "notes.pt").write_text("these are not weights\n")
    return _predict_args(p, s2=p / "notes.pt")


def _weights_flipped(p: Path) -> list[str]:
    import torch

    w1, _ = _weights(p)
    ckpt = torch.load(w1, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name].view(-1)[0] += 1.0  # one weight changed after saving
    torch.save(ckpt, p / "flipped.pt")
    return _predict_args(p, s1=p / "flipped.pt")


def _weights_nan(p: Path) -> list[str]:
    import torch

    from femurseg.weights import save_checkpoint

    w1, _ = _weights(p)
    ckpt = torch.load(w1, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name].view(-1)[0] = float("nan")  # a diverged run, checksum valid
    keep = {k: ckpt[k] for k in ("stage", "model_config", "model")}
    save_checkpoint(keep, p / "nan.pt")
    return _predict_args(p, s1=p / "nan.pt")


def _weights_other_stage(p: Path) -> list[str]:
    w1, _ = _weights(p)
    return _predict_args(p, s2=w1)


def _out_is_file(p: Path) -> list[str]:
    args = _predict_args(p)
    (p / "taken").write_text("a file")
    return [*args[:3], str(p / "taken"), *args[4:]]


def _out_under_file(p: Path) -> list[str]:
    args = _predict_args(p)
    (p / "taken").write_text("a file")
    return [*args[:3], str(p / "taken" / "out"), *args[4:]]


def _output_would_overwrite_an_input(p: Path) -> list[str]:
    args = _predict_args(p)
    scan = Path(args[1])
    other = p / "scan_femur.nii.gz"  # the label map name of case "scan"
    other.write_bytes(scan.read_bytes())
    return [args[0], str(scan), str(other), "-o", str(p), *args[4:]]


def _bad_precision(p: Path) -> list[str]:
    return [*_predict_args(p), "--precision", "float8"]


def _bad_config(p: Path) -> list[str]:
    (p / "settings.json").write_text('{"femur_checks": {"min_volume_mL": 20}}')
    return [*_predict_args(p), "--config", str(p / "settings.json")]


#: faults of the predict command itself: name -> (builder of the arguments, what it is)
PREDICT_BAD: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "weights_text": (_weights_text, "a text file given as --stage2-weights"),
    "weights_flipped": (_weights_flipped, "a checkpoint with one weight changed after saving"),
    "weights_nan": (_weights_nan, "a checkpoint holding a NaN weight (valid checksum)"),
    "weights_other_stage": (_weights_other_stage, "stage-1 weights given as --stage2-weights"),
    "out_is_file": (_out_is_file, "-o names an existing file"),
    "out_under_file": (_out_under_file, "-o lies under a file"),
    "output_is_an_input": (
        _output_would_overwrite_an_input,
        "a case's label map would overwrite another input (scan and scan_femur in one folder)",
    ),
    "bad_precision": (_bad_precision, "--precision float8"),
    "bad_config": (_bad_config, "--config with a misspelt key"),
}


def markdown_table(workdir: Path) -> str:
    """What ``femurseg inspect`` answers for every case of :data:`BAD`, as Markdown.

    Paths under ``workdir`` are written as ``DIR`` so that the page does not depend on where
    it was made.
    """
    from typer.testing import CliRunner

    from femurseg.cli import app

    runner = CliRunner()
    rows = [
        "# Bad inputs and what femurseg answers",
        "",
        "Generated by `python scripts/bad_inputs_table.py` from the cases in "
        "`tests/bad_inputs.py`; `tests/test_io_validation.py` fails when this page and the "
        "code disagree. Each is `femurseg inspect FILE` (the same reader `femurseg predict` "
        "uses; predict records the same line in `<case>_error.json` and exits 2).",
        "",
        "| case | input | exit | message |",
        "|---|---|---|---|",
    ]

    def answer(folder: Path, args: list[str]) -> tuple[int, str]:
        result = runner.invoke(app, args)
        # the whole answer as the user sees it (one line is the rule; more would show here)
        line = " / ".join(ln.strip() for ln in result.output.splitlines() if ln.strip())
        return result.exit_code, line.replace(str(folder), "DIR").replace("|", "\\|")

    for name, (make, _, what) in BAD.items():
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        code, line = answer(folder, ["inspect", str(make(folder))])
        rows.append(f"| {name} | {what} | {code} | {line} |")
    rows += [
        "",
        "`femurseg predict` faults (weights, output folder, options), each with an otherwise good "
        "scan; all are refused before any case is read:",
        "",
        "| case | fault | exit | message |",
        "|---|---|---|---|",
    ]
    for name, (build, what) in PREDICT_BAD.items():
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        code, line = answer(folder, build(folder))
        rows.append(f"| {name} | {what} | {code} | {line} |")
    return "\n".join(rows) + "\n"
