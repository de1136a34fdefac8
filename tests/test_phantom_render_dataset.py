"""Dataset writer and ``femurseg phantom``: files, orientations, split, determinism, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.datasets.layout import split_cases
from femurseg.errors import ConfigError, OutputError
from femurseg.io.read import read_labels, read_volume
from femurseg.io.write import write_image
from femurseg.phantoms.dataset import make_case, write_dataset
from femurseg.phantoms.generate import generate_case
from femurseg.phantoms.params import FovKind, PhantomConfig, ScannerParams

runner = CliRunner()
SMALL = PhantomConfig(
    fov=FovKind.KNEE, spacing=(5.0, 5.0, 5.0), scanner=ScannerParams(max_render_mm=5.0)
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "a"
    write_dataset(out, 2, 7, SMALL)
    return out


def test_dataset_layout_and_json(dataset: Path) -> None:
    doc = json.loads((dataset / "dataset.json").read_text())
    assert doc["labels"] == {"background": 0, "femur_left": 1, "femur_right": 2}
    assert doc["cases"] == ["phantom_0000", "phantom_0001"]
    for name in doc["cases"]:
        meta = doc["case_info"][name]
        for key in ("subjects", "fov", "spacing", "orientation", "implants", "seed"):
            assert key in meta
        vol = read_volume(dataset / "images" / f"{name}.nii.gz")
        lab, aff = read_labels(dataset / "labels" / f"{name}.nii.gz", like=vol)
        assert set(np.unique(lab)) <= {0, 1, 2} and lab.any()
        np.testing.assert_allclose(aff, vol.affine)
        assert (
            "".join(nib.aff2axcodes(nib.load(dataset / "images" / f"{name}.nii.gz").affine))
            == meta["orientation"]
        )
    split = doc["split"]
    assert sorted(split["train"] + split["val"] + split["test"]) == ["phantom_0000", "phantom_0001"]
    assert doc["source"]["generator"] == "femurseg phantom"


def test_parallel_workers_give_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    write_dataset(out, 2, 7, SMALL, workers=2)
    for rel in ("dataset.json", "images/phantom_0001.nii.gz", "labels/phantom_0000.nii.gz"):
        assert (out / rel).read_bytes() == (dataset / rel).read_bytes(), rel


def test_refuses_non_empty_folder_unless_overwrite(dataset: Path) -> None:
    with pytest.raises(OutputError, match="not empty"):
        write_dataset(dataset, 1, 7, SMALL)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_dataset(tmp_path / "x", 0, 1, SMALL)
    with pytest.raises(ConfigError):
        write_dataset(tmp_path / "x", 1, 1, SMALL, shapes_dir=tmp_path / "missing")


@pytest.mark.parametrize(
    "n, want", [(100, (85, 8, 7)), (3, (1, 1, 1)), (10, (8, 1, 1)), (1, (1, 0, 0))]
)
def test_split_proportions(n: int, want: tuple[int, int, int]) -> None:
    names = [f"c{i}" for i in range(n)]
    s = split_cases(names, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == want
    assert split_cases(names, seed=3) == s
    assert sorted(s.train + s.val + s.test) == sorted(names)


@pytest.mark.parametrize("code", ["LPS", "PIR", "LAS"])
def test_orientation_variants_read_back_to_same_world_labels(tmp_path: Path, code: str) -> None:
    case = generate_case(SMALL, np.random.default_rng(2))
    img_p, lab_p = tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"
    write_image(case.image.array, case.image.affine, img_p, axcodes=code, dtype=np.int16)
    write_image(case.labels, case.image.affine, lab_p, axcodes=code, dtype=np.uint8)
    vol = read_volume(img_p)
    lab, aff = read_labels(lab_p, like=vol)
    np.testing.assert_allclose(vol.affine, case.image.affine, atol=1e-4)
    np.testing.assert_array_equal(lab, case.labels)
    np.testing.assert_array_equal(vol.array, case.image.array)
    # Left stays left in world coordinates whatever the file's axis order.
    x_l = vol.index_to_world(np.argwhere(lab == 1).mean(axis=0))[0]
    x_r = vol.index_to_world(np.argwhere(lab == 2).mean(axis=0))[0]
    assert x_l < x_r


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "0"],
        ["--fov", "elbow"],
        ["--spacing", "1,2"],
        ["--spacing", "abc"],
        ["--workers", "0"],
        ["--shapes", "/no/such/folder"],
        ["--hip-implants", "2"],
        ["--resume", "--overwrite"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["phantom", "-o", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_cli_refuses_non_empty_output(dataset: Path) -> None:
    result = runner.invoke(app, ["phantom", "--n", "1", "-o", str(dataset)])
    assert result.exit_code == 2
    assert "--overwrite" in result.output
    # a finished dataset is not an interrupted run: nothing is touched
    before = (dataset / "dataset.json").read_bytes()
    result = runner.invoke(
        app, ["phantom", "--n", "2", "--seed", "7", "-o", str(dataset), "--resume"]
    )
    assert result.exit_code == 2 and "finished dataset" in result.output, result.output
    assert (dataset / "dataset.json").read_bytes() == before


def test_cli_writes_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        ["phantom", "--n", "1", "-o", str(out), "--seed", "4", "--fov", "knee", "--spacing", "5"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "dataset.json").read_text())
    meta = doc["case_info"][doc["cases"][0]]
    assert meta["fov"]["kind"] == "knee"
    assert meta["spacing"] == [5.0, 5.0, 5.0]


_REAL_MAKE_CASE = make_case


def _dies_at_case_1(args):
    """Workers end without a word at case 1, as the kernel's out-of-memory killer ends them."""
    if args[0] == 1:
        os._exit(9)
    return _REAL_MAKE_CASE(args)


def _fail_at(index: int):
    """A make_case that stops the run at case ``index`` (as a kill or an out-of-memory would)."""
    import femurseg.phantoms.dataset as ds

    real = ds.make_case

    def make(args):
        if args[0] == index:
            raise KeyboardInterrupt("stopped")
        return real(args)

    return make


def test_an_interrupted_run_resumes_to_the_same_files(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import femurseg.phantoms.dataset as ds

    out = tmp_path / "r"
    real = ds.make_case
    monkeypatch.setattr(ds, "make_case", _fail_at(1))
    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, 2, 7, SMALL)
    assert not (out / "dataset.json").exists()
    assert (out / "images" / "phantom_0000.nii.gz").is_file()
    assert not (out / "images" / "phantom_0001.nii.gz").exists()
    # the same command again refuses the folder; with resume only case 1 is made
    with pytest.raises(OutputError, match="not empty"):
        write_dataset(out, 2, 7, SMALL)
    with pytest.raises(ConfigError, match="seed"):
        write_dataset(out, 2, 8, SMALL, resume=True)
    made: list[tuple[int, ...]] = []

    def counting(args):
        made.append((args[0],))
        return real(args)

    monkeypatch.setattr(ds, "make_case", counting)
    seen: list[str] = []
    write_dataset(out, 2, 7, SMALL, resume=True, on_case=seen.append)
    assert made == [(1,)] and sorted(seen) == ["phantom_0000", "phantom_0001"]
    for rel in ("dataset.json", "images/phantom_0000.nii.gz", "labels/phantom_0001.nii.gz"):
        assert (out / rel).read_bytes() == (dataset / rel).read_bytes(), rel
    assert not (out / ".progress").exists()
    # a finished dataset has nothing to resume; overwrite and resume contradict each other
    with pytest.raises(OutputError, match="finished"):
        write_dataset(out, 2, 7, SMALL, resume=True)
    with pytest.raises(ConfigError, match="overwrite"):
        write_dataset(out, 2, 7, SMALL, resume=True, overwrite=True)


def test_a_dead_worker_is_one_clear_error_and_keeps_the_finished_cases(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    import femurseg.phantoms.dataset as ds
    from femurseg.errors import FemursegError

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("needs forked workers to see the patched case maker")
    monkeypatch.setattr(ds, "make_case", _dies_at_case_1)
    out = tmp_path / "w"
    with pytest.raises(FemursegError, match="--resume"):
        write_dataset(out, 2, 7, SMALL, workers=2)
    monkeypatch.setattr(ds, "make_case", _REAL_MAKE_CASE)
    write_dataset(out, 2, 7, SMALL, resume=True)
    assert (out / "dataset.json").read_bytes() == (dataset / "dataset.json").read_bytes()


def test_a_case_over_the_voxel_cap_keeps_its_view_at_a_coarser_spacing() -> None:
    """A grid over max_voxels_m is coarsened (as a scanner's matrix limits it) with the same
    draws otherwise: same field of view and anatomy; a case under the cap is unchanged."""
    import dataclasses

    from femurseg.phantoms.scanner.fov import capped_spacing

    base = generate_case(SMALL, np.random.default_rng(3))
    n = int(np.prod(base.image.shape))
    again = generate_case(
        dataclasses.replace(SMALL, max_voxels_m=n / 1e6), np.random.default_rng(3)
    )
    assert np.array_equal(again.image.array, base.image.array)  # at the cap: untouched
    capped = generate_case(
        dataclasses.replace(SMALL, max_voxels_m=n / 3e6), np.random.default_rng(3)
    )
    assert np.prod(capped.image.shape) <= n / 3 * 1.05
    sp_b, sp_c = np.asarray(base.meta["spacing"]), np.asarray(capped.meta["spacing"])
    assert np.all(sp_c >= sp_b) and np.any(sp_c > sp_b)
    ext_b = np.asarray(base.image.shape) * sp_b
    ext_c = np.asarray(capped.image.shape) * sp_c
    np.testing.assert_allclose(ext_c, ext_b, atol=float(sp_c.max()))
    assert capped.meta["subjects"] == base.meta["subjects"]
    ml_b = [float((base.labels == k).sum() * np.prod(sp_b)) / 1000 for k in (1, 2)]
    ml_c = [float((capped.labels == k).sum() * np.prod(sp_c)) / 1000 for k in (1, 2)]
    np.testing.assert_allclose(ml_c, ml_b, rtol=0.1)
    # the full-leg view that ended a run: 974 x 974 x 1804 at 0.604 mm and 0.625 mm slices
    sp = capped_spacing((974, 974, 1804), (0.6044, 0.6044, 0.625), 1000e6)
    assert sp[0] == sp[1] == pytest.approx(974 * 0.6044 / 768, abs=1e-3)
    voxels = np.prod(np.ceil(np.array([974 * 0.6044, 974 * 0.6044, 1804 * 0.625]) / sp))
    assert voxels <= 1000e6 * 1.01
