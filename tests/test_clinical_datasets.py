"""Dataset layout, seeded split, TotalSegmentator and nnU-Net importers, and their commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.datasets import (
    DatasetLayout,
    import_nnunet,
    import_totalseg,
    read_dataset_json,
    resplit_dataset,
    split_cases,
)
from femurseg.errors import InputError, OutputError
from femurseg.io import read_labels, read_volume
from femurseg.types import Label

runner = CliRunner()


# --- split ------------------------------------------------------------------------------------


def test_split_is_85_8_7_and_seeded() -> None:
    ids = [f"c{i:03d}" for i in range(100)]
    a = split_cases(ids, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (85, 8, 7)
    assert split_cases(reversed(ids), seed=1) == a  # input order does not matter
    assert split_cases(ids, seed=2) != a
    assert a.to_dict()["seed"] == 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**31))
def test_split_is_a_partition(n: int, seed: int) -> None:
    ids = [f"case{i}" for i in range(n)]
    s = split_cases(ids, seed=seed)
    parts = [*s.train, *s.val, *s.test]
    assert sorted(parts) == sorted(ids)
    assert len(set(parts)) == n
    assert len(s.val) == (max(1, round(n * 0.08)) if n >= 3 else round(n * 0.08))
    want_test = max(1, round(n * 0.07)) if n >= 3 else min(round(n * 0.07), n - len(s.val))
    assert len(s.test) == want_test


def test_split_refuses_bad_input() -> None:
    with pytest.raises(InputError, match="fractions"):
        split_cases(["a", "b"], fractions=(0.5, 0.5, 0.5))
    with pytest.raises(InputError, match="fractions"):
        split_cases(["a", "b"], fractions=(1.2, -0.1, -0.1))
    with pytest.raises(InputError, match="duplicate"):
        split_cases(["a", "a"])


# --- TotalSegmentator -------------------------------------------------------------------------


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


@pytest.fixture()
def totalseg_root(tmp_path: Path, totalseg_case: Path) -> Path:
    """A TotalSegmentator-layout root: the real case, one missing a mask, one off-grid."""
    root = tmp_path / "src"
    shutil.copytree(totalseg_case, root / "s0000")
    shutil.copytree(totalseg_case, root / "s0001")
    (root / "s0001" / "segmentations" / "femur_right.nii.gz").unlink()
    shutil.copytree(totalseg_case, root / "s0002")
    mask = nib.load(str(totalseg_case / "segmentations" / "femur_left.nii.gz"))
    moved = mask.affine.copy()
    moved[0, 3] += 3.0
    _save(np.asarray(mask.dataobj), moved, root / "s0002" / "segmentations" / "femur_left.nii.gz")
    return root


@pytest.mark.shared
def test_import_totalseg_real_case(totalseg_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = import_totalseg(totalseg_root, out, seed=3)
    assert result.imported == ("s0000",)
    assert "femur_right.nii.gz" in result.skipped["s0001"]
    assert "placed differently" in result.skipped["s0002"]
    layout = DatasetLayout(out)
    image = read_volume(layout.image_path("s0000"))
    labels, _ = read_labels(layout.label_path("s0000"), like=image)
    src_ct = read_volume(totalseg_root / "s0000" / "ct.nii.gz")
    np.testing.assert_allclose(image.affine, src_ct.affine)
    np.testing.assert_array_equal(image.array, src_ct.array)
    assert set(np.unique(labels)) == {0, 1, 2}
    for side, name in ((Label.FEMUR_LEFT, "femur_left"), (Label.FEMUR_RIGHT, "femur_right")):
        src, _ = read_labels(totalseg_root / "s0000" / "segmentations" / f"{name}.nii.gz")
        np.testing.assert_array_equal(labels == side, src > 0)
    # Sides by world position: patient left is RAS x < 0 here.
    x = {s: image.index_to_world(np.argwhere(labels == s).mean(axis=0))[0] for s in (1, 2)}
    assert x[1] < x[2]
    doc = read_dataset_json(out)
    assert doc["labels"] == {"background": 0, "femur_left": 1, "femur_right": 2}
    assert doc["cases"] == ["s0000"] and doc["split"]["seed"] == 3
    assert doc["case_info"]["s0000"]["femur_left_ml"] == pytest.approx(61.2, abs=0.1)
    assert set(doc["source"]["skipped"]) == {"s0001", "s0002"}
    # The output is not overwritten by accident.
    with pytest.raises(OutputError, match="not empty"):
        import_totalseg(totalseg_root, out)
    again = import_totalseg(totalseg_root, out, overwrite=True, seed=4)
    assert again.split.seed == 4


@pytest.mark.shared
def test_cli_import_totalseg_and_split(totalseg_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    r = runner.invoke(app, ["dataset", "import", "totalseg", str(totalseg_root), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "imported 1 cases" in r.output and "skipped s0001" in r.output
    r = runner.invoke(app, ["dataset", "import", "totalseg", str(totalseg_root), "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["dataset", "split", str(out), "--seed", "7"])
    assert r.exit_code == 0, r.output
    assert read_dataset_json(out)["split"]["seed"] == 7


def test_import_totalseg_refuses_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="TotalSegmentator layout"):
        import_totalseg(tmp_path / "empty", tmp_path / "out")


# --- nnU-Net ----------------------------------------------------------------------------------


def _nnunet_root(tmp_path: Path, labels_json: dict, n: int = 3) -> Path:
    root = tmp_path / "Dataset042_Legs"
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])  # LPS-like on disk: sides must follow the world
    affine[:3, 3] = [20.0, 20.0, 0.0]
    for c in range(n):
        ct = np.full((20, 16, 12), -1000, dtype=np.int16)
        ct[2:18, 2:14, :] = 30
        lab = np.zeros(ct.shape, dtype=np.uint8)
        lab[2:5, 2:14, :] = 1  # pelvis, to be dropped
        lab[5:9, 5:9, 2:10] = 2  # world x = 20 - 2 i: 4..10 mm, patient right
        lab[12:16, 5:9, 2:10] = 3  # x -10..-4 mm, patient left
        _save(ct, affine, root / "imagesTr" / f"legs_{c:03d}_0000.nii.gz")
        _save(lab, affine, root / "labelsTr" / f"legs_{c:03d}.nii.gz")
    doc = {"channel_names": {"0": "CT"}, "labels": labels_json, "numTraining": n,
           "file_ending": ".nii.gz"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def test_import_nnunet_with_label_map(tmp_path: Path) -> None:
    # x = 20 - 2 i: value 2 at i 5..8 lies at x ~ 6..10 (patient right), value 3 at x < 0 (left).
    src = _nnunet_root(tmp_path, {"background": 0, "pelvis": 1, "femur a": 2, "femur b": 3})
    (src / "imagesTr" / "legs_002_0000.nii.gz").unlink()
    result = import_nnunet(src, tmp_path / "ds", label_map="left=3,right=2", seed=0)
    assert result.imported == ("legs_000", "legs_001")
    assert "missing" in result.skipped["legs_002"]
    layout = DatasetLayout(tmp_path / "ds")
    image = read_volume(layout.image_path("legs_000"))
    labels, _ = read_labels(layout.label_path("legs_000"), like=image)
    assert set(np.unique(labels)) == {0, 1, 2}  # pelvis dropped
    x = {s: image.index_to_world(np.argwhere(labels == s).mean(axis=0))[0] for s in (1, 2)}
    assert x[1] < 0 < x[2]
    assert result.notes["legs_000"] == []
    assert read_dataset_json(layout.root)["source"]["label_map"] == {
        "femur_left": 3,
        "femur_right": 2,
    }


def test_import_nnunet_names_and_v1_labels(tmp_path: Path) -> None:
    src = _nnunet_root(tmp_path, {"0": "background", "1": "pelvis", "2": "femur_right",
                                  "3": "femur_left"})  # fmt: skip
    result = import_nnunet(src, tmp_path / "ds")
    assert len(result.imported) == 3
    labels, _ = read_labels(DatasetLayout(tmp_path / "ds").label_path("legs_001"))
    assert np.count_nonzero(labels == 1) == np.count_nonzero(labels == 2) == 4 * 4 * 8


def test_import_nnunet_swapped_sides_are_noted(tmp_path: Path) -> None:
    src = _nnunet_root(tmp_path, {"background": 0, "pelvis": 1, "a": 2, "b": 3})
    result = import_nnunet(src, tmp_path / "ds", label_map="left=2,right=3")
    assert any("mirrored" in n for n in result.notes["legs_000"])


def test_import_nnunet_refuses_unclear_labels(tmp_path: Path) -> None:
    src = _nnunet_root(tmp_path, {"background": 0, "pelvis": 1, "a": 2, "b": 3})
    with pytest.raises(InputError, match="--label-map"):
        import_nnunet(src, tmp_path / "ds")
    for bad in ("left=2", "left=2,right=2", "left=2,middle=3", "left=nope,right=3"):
        with pytest.raises(InputError):
            import_nnunet(src, tmp_path / "ds2", label_map=bad)


def test_cli_import_nnunet(tmp_path: Path) -> None:
    src = _nnunet_root(tmp_path, {"background": 0, "pelvis": 1, "a": 2, "b": 3})
    out = tmp_path / "ds"
    args = ["dataset", "import", "nnunet", str(src), "-o", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--label-map" in r.output
    r = runner.invoke(app, [*args, "--label-map", "left=b,right=a", "--seed", "5"])
    assert r.exit_code == 0, r.output
    assert read_dataset_json(out)["split"]["seed"] == 5


def test_resplit_without_dataset_json_and_empty_folder(tmp_path: Path) -> None:
    src = _nnunet_root(tmp_path, {"background": 0, "femur_left": 3, "femur_right": 2})
    import_nnunet(src, tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").unlink()
    split = resplit_dataset(tmp_path / "ds", seed=9)
    assert sorted([*split.train, *split.val, *split.test]) == ["legs_000", "legs_001", "legs_002"]
    assert read_dataset_json(tmp_path / "ds")["split"]["seed"] == 9
    (tmp_path / "none").mkdir()
    r = runner.invoke(app, ["dataset", "split", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no cases" in r.output


# --- merge ------------------------------------------------------------------------------------


def test_merge_points_into_sources_and_keeps_splits(tmp_path: Path) -> None:
    from femurseg.datasets import merge_datasets
    from femurseg.training import read_split

    src = _nnunet_root(tmp_path, {"background": 0, "pelvis": 1, "femur a": 2, "femur b": 3}, n=6)
    a = tmp_path / "a"
    b = tmp_path / "b"
    import_nnunet(src, a, label_map="left=3,right=2", seed=0)
    import_nnunet(src, b, label_map="left=3,right=2", seed=1)
    sa, sb = read_dataset_json(a)["split"], read_dataset_json(b)["split"]
    out = tmp_path / "merged"
    split = merge_datasets([a, b], out)
    assert split["val"] == sorted([f"a_{c}" for c in sa["val"]] + [f"b_{c}" for c in sb["val"]])
    assert split["test"] == sorted([f"a_{c}" for c in sa["test"]] + [f"b_{c}" for c in sb["test"]])
    train = read_split(out, "train")
    assert len(train) == len(sa["train"]) + len(sb["train"])
    assert all(c.image.is_file() and c.label.is_file() for c in train)
    assert not (out / "images").exists()  # nothing copied
    with pytest.raises(OutputError, match="--overwrite"):
        merge_datasets([a, b], out)
    both = merge_datasets([a, b], out, test_into_train=True, overwrite=True)
    assert not both["test"] and len(both["train"]) == len(split["train"]) + len(split["test"])
    with pytest.raises(InputError, match="share a name"):
        merge_datasets([a, a], tmp_path / "m2")


def test_cli_merge(tmp_path: Path) -> None:
    src = _nnunet_root(tmp_path, {"background": 0, "pelvis": 1, "femur a": 2, "femur b": 3}, n=4)
    import_nnunet(src, tmp_path / "a", label_map="left=3,right=2")
    res = runner.invoke(app, ["dataset", "merge", str(tmp_path / "a"), "-o", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "merged into" in res.output
    res = runner.invoke(
        app, ["dataset", "merge", str(tmp_path / "nope"), "-o", str(tmp_path / "n")]
    )
    assert res.exit_code == 2
