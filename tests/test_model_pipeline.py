"""Predict: outputs in the input's geometry, report contents, the paste-back chain, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from model_synth import synth_case, write_tiny_weights
from typer.testing import CliRunner

from femurseg.cli import app
from femurseg.detection import boxes_from_labels
from femurseg.errors import ConfigError, OutputError
from femurseg.io import read_labels, read_volume, write_image
from femurseg.pipeline import Predictor, assemble_labels, predict_case
from femurseg.preprocessing import Grid, paste_back, resample
from femurseg.segmentation import SegmenterConfig, side_grid
from femurseg.types import LABELS, Label


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    """Real (untrained, seeded) checkpoints of both tiny networks."""
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic scan stored LPS on disk, and its truth labels."""
    root = tmp_path_factory.mktemp("scan")
    image, labels, affine = synth_case(seed=5)
    img = write_image(image, affine, root / "tiny.nii.gz", axcodes="LPS", dtype=np.int16)
    lab = write_image(labels, affine, root / "tiny_truth.nii.gz", axcodes="LPS")
    return img, lab


def test_predict_writes_labels_in_input_geometry_and_report(weights, scan, tmp_path) -> None:
    predictor = Predictor(*weights)
    report = predict_case(scan[0], tmp_path / "out", predictor)
    out = tmp_path / "out"
    written = nib.load(out / "tiny_femur.nii.gz")
    source = nib.load(scan[0])
    assert written.shape == source.shape
    assert np.allclose(written.affine, source.affine)
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")
    saved = json.loads((out / "tiny_report.json").read_text())
    assert saved["case"] == "tiny" and set(saved["femurs"]) == {"femur_left", "femur_right"}
    # what actually ran, not "auto"
    assert saved["schema_version"] == 2 and saved["runtime"]["device"] == "cpu"
    assert saved["runtime"]["precision"] in ("float32", "bfloat16")
    for side in saved["femurs"].values():
        assert side["status"] in ("found", "low_confidence", "not_found")
        assert side["check"]["status"] in ("found", "low_confidence", "not_found")
        assert "volume_ml" in side and "score" in side and "mask_box_mm" in side
    # what predict writes reads back typed, with the same statuses
    from femurseg.export.report import read_case_report

    typed = read_case_report(out / "tiny_report.json")
    assert {LABELS[s]: r.status for s, r in typed.sides.items()} == {
        k: v["status"] for k, v in saved["femurs"].items()
    }
    assert set(saved["seconds"]) >= {"read", "stage1", "stage2", "paste_back", "write", "total"}
    assert saved["versions"]["torch"] and saved["weights"]["stage1"]["sha256"]
    assert saved["config"]["stage2"]["spacing_mm"] == 3.0
    assert (out / "tiny_preview.png").stat().st_size > 1000
    assert report["case"] == "tiny"
    assert Path(scan[0]).exists()
    # a read started ahead (as the CLI does while loading the networks) gives the same result
    from femurseg.io import ReadAhead

    again = predict_case(scan[0], tmp_path / "out2", predictor, ahead=ReadAhead(scan[0]))
    assert again["seconds"]["read"] > 0.0
    same = nib.load(tmp_path / "out2" / "tiny_femur.nii.gz")
    assert np.array_equal(np.asarray(same.dataobj), np.asarray(written.dataobj))


def test_paste_back_chain_reproduces_truth_in_input_geometry(scan, tmp_path) -> None:
    """Truth probabilities on the stage-2 crop grids (right side mirrored) pasted back and
    written must give the truth label map again in the LPS file (Dice > 0.95)."""
    volume = read_volume(scan[0])
    truth, _ = read_labels(scan[1], like=volume)
    like = Grid.of(volume)
    cfg = SegmenterConfig(spacing_mm=2.0, margin_mm=6.0)
    pasted = {}
    for side, box in boxes_from_labels(truth, like).items():
        grid = side_grid(like, box, side, cfg)
        prob = resample((truth == int(side)).astype(np.float32), like, grid).numpy()
        p = paste_back(prob, grid, like)
        assert p is not None
        pasted[side] = p
    labels = assemble_labels(volume.shape, pasted, 0.5)
    from femurseg.io import write_labels

    path = write_labels(labels, volume, tmp_path / "chain.nii.gz")
    back = np.asarray(nib.load(path).dataobj)
    disk_truth = np.asarray(nib.load(scan[1]).dataobj)
    for side in (Label.FEMUR_LEFT, Label.FEMUR_RIGHT):
        a, b = back == int(side), disk_truth == int(side)
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.95, (side, dice)


def test_assemble_labels_resolves_overlap_by_probability() -> None:
    from femurseg.preprocessing import Pasted

    idx = (slice(0, 4), slice(0, 4), slice(0, 4))
    left = Pasted(idx, np.full((4, 4, 4), 0.9, np.float32))
    right_vals = np.full((4, 4, 4), 0.6, np.float32)
    right_vals[0] = 0.95
    right = Pasted(idx, right_vals)
    labels = assemble_labels((6, 6, 6), {Label.FEMUR_LEFT: left, Label.FEMUR_RIGHT: right}, 0.5)
    assert (labels[0, :4, :4] == 2).all() and (labels[1:4, :4, :4] == 1).all()
    assert labels[4:].max() == 0


def test_predict_refuses_to_overwrite_input_and_contradicting_override(
    weights, scan, tmp_path
) -> None:
    predictor = Predictor(*weights)
    src = tmp_path / "case_femur.nii.gz"
    src.write_bytes(Path(scan[0]).read_bytes())
    with pytest.raises(OutputError, match="overwrite an input"):
        predict_case(tmp_path / "case.nii.gz", tmp_path, predictor, protect=[src])
    with pytest.raises(ConfigError, match="contradicts"):
        Predictor(*weights, stage2_overrides={"margin_mm": 25.0})


def test_cli_predict(weights, scan, tmp_path) -> None:
    runner = CliRunner()
    args = ["predict", str(scan[0]), "-o", str(tmp_path), "--device", "cpu"]
    args += ["--stage1-weights", str(weights[0]), "--stage2-weights", str(weights[1])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny_femur.nii.gz").is_file()
    report = json.loads((tmp_path / "tiny_report.json").read_text())
    assert report["config"]["predict"]["segment_rules"]["largest_only"] is True
    pieces = runner.invoke(app, [*args[:3], str(tmp_path / "all"), *args[4:], "--all-pieces"])
    assert pieces.exit_code == 0, pieces.output
    report = json.loads((tmp_path / "all" / "tiny_report.json").read_text())
    assert report["config"]["predict"]["segment_rules"]["largest_only"] is False
    bad = runner.invoke(app, [*args, "--stage2-spacing", "1.0"])
    assert bad.exit_code == 2 and "contradicts" in bad.output
    missing = runner.invoke(app, ["predict", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path)])
    assert missing.exit_code == 2


def test_cli_predict_unoriented_nifti_needs_a_stated_orientation(weights, scan, tmp_path) -> None:
    img = nib.load(scan[0])
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(img.shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_zooms(img.header.get_zooms())  # qform and sform codes stay 0: no orientation
    bare = tmp_path / "bare.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, header=hdr), bare)
    args = ["predict", str(bare), "-o", str(tmp_path / "out"), "--device", "cpu"]
    args += ["--stage1-weights", str(weights[0]), "--stage2-weights", str(weights[1])]
    runner = CliRunner()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--assume-orientation" in refused.output
    assert not (tmp_path / "out" / "bare_femur.nii.gz").exists()
    ok = runner.invoke(app, [*args, "--assume-orientation", "LPS"])
    assert ok.exit_code == 0, ok.output
    report = json.loads((tmp_path / "out" / "bare_report.json").read_text())
    assert report["assumed_orientation"] == "LPS"
    bad = runner.invoke(app, [*args, "--assume-orientation", "LPQ"])
    assert bad.exit_code == 2 and "three axis codes" in bad.output


def test_cli_predict_series_picks_the_dicom_series_and_names_it(weights, scan, tmp_path) -> None:
    from pydicom.uid import generate_uid

    from femurseg.io import DicomSeriesInfo, write_dicom_series

    vol = read_volume(scan[0])
    small = type(vol)(vol.array[:, :, :6].copy(), vol.affine)
    big_uid, small_uid = generate_uid(), generate_uid()
    write_dicom_series(vol, tmp_path / "dcm", info=DicomSeriesInfo(series_uid=big_uid))
    write_dicom_series(
        small, tmp_path / "dcm2", info=DicomSeriesInfo(series_uid=small_uid, series_number=2)
    )
    for f in (tmp_path / "dcm2").iterdir():
        f.rename(tmp_path / "dcm" / f"small_{f.name}")
    args = ["predict", str(tmp_path / "dcm"), "-o", str(tmp_path / "out"), "--device", "cpu"]
    args += ["--stage1-weights", str(weights[0]), "--stage2-weights", str(weights[1])]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "--series", small_uid])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "dcm_report.json").read_text())
    assert report["series_uid"] == small_uid and report["shape"][2] == 6
    two = runner.invoke(app, [*args[:2], str(scan[0]), *args[2:], "--series", small_uid])
    assert two.exit_code == 2 and "one DICOM folder" in two.output
    # another series into the same folder is another result under the same case name: refused
    other = runner.invoke(app, [*args, "--series", big_uid])
    assert other.exit_code == 2 and "--overwrite" in other.output
    fresh = ["predict", str(tmp_path / "dcm"), "-o", str(tmp_path / "out2"), *args[4:]]
    unknown = runner.invoke(app, [*fresh, "--series", "1.2.3"])
    assert unknown.exit_code == 2 and big_uid in unknown.output


@pytest.mark.slow
def test_predict_clinical_outputs_on_dicom_phantom(tmp_path) -> None:
    """DICOM in -> label map, STL per found femur, DICOM-SEG, measurements and flags in the report,
    with the shipped weights on a small procedural hip phantom."""
    import highdicom as hd

    from femurseg.devices import Device
    from femurseg.errors import InputError
    from femurseg.io import write_dicom_series
    from femurseg.phantoms.generate import generate_case
    from femurseg.phantoms.params import FovKind, PhantomConfig
    from femurseg.pipeline import PredictConfig

    case = generate_case(
        PhantomConfig(fov=FovKind.HIP, spacing=(3.0, 3.0, 3.0)), np.random.default_rng(3), None
    )
    write_dicom_series(case.image, tmp_path / "dcm")
    predictor = Predictor(None, None, PredictConfig(device=Device.CPU, mesh=True, dicom_seg=True))
    report = predict_case(tmp_path / "dcm", tmp_path / "out", predictor)
    labels, _ = read_labels(report["outputs"]["labels"])
    for side, value in (("femur_left", 1), ("femur_right", 2)):
        assert side in report["measurements"] and side in report["quality"]
        has = bool((labels == value).any())
        assert (f"mesh_{side}" in report["outputs"]) == has
        if has:
            assert Path(report["outputs"][f"mesh_{side}"]).stat().st_size > 1000
    assert labels.any(), "the shipped weights found no femur in a hip phantom"
    seg = hd.seg.segread(report["outputs"]["dicom_seg"])
    assert seg.number_of_segments == 2
    # A NIfTI input cannot have a DICOM-SEG: refused before any work, nothing written.
    nifti = write_image(case.image.array, case.image.affine, tmp_path / "ct.nii.gz")
    with pytest.raises(InputError, match="not a DICOM series"):
        predict_case(nifti, tmp_path / "out2", predictor)
    assert not (tmp_path / "out2" / "ct_femur.nii.gz").exists()


def test_label_extent_matches_whole_map_search_on_flipped_grid() -> None:
    """Volume, index box and world box searched in the pasted region equal whole-map ones."""
    from scipy import ndimage as ndi

    from femurseg.measure.quality import label_crops
    from femurseg.pipeline import _label_extent
    from femurseg.preprocessing import Pasted
    from femurseg.preprocessing.boxes import mask_box

    affine = np.diag([-0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [40.0, -12.0, 7.0]
    grid = Grid((30, 24, 20), affine)
    labels = np.zeros(grid.shape, np.uint8, order="F")
    labels[5:12, 3:9, 2:15] = int(Label.FEMUR_LEFT)
    labels[7, 4, 2] = 0
    labels[18:27, 10:20, 4:9] = int(Label.FEMUR_RIGHT)
    region = (slice(2, 16), slice(0, 12), slice(1, 18))
    pasted = Pasted(region, np.zeros((14, 12, 17), np.float32))
    ml, index, got = _label_extent(labels, pasted, Label.FEMUR_LEFT, grid)
    want = mask_box(labels == int(Label.FEMUR_LEFT), grid)
    assert got is not None and want is not None
    np.testing.assert_allclose(got.lo, want.lo)
    np.testing.assert_allclose(got.hi, want.hi)
    assert index == ndi.find_objects(labels)[0]
    assert ml == pytest.approx((7 * 6 * 13 - 1) * grid.voxel_ml)
    # the measuring crops built from these boxes are the ones a whole-map search gives
    boxes = {Label.FEMUR_LEFT: index, Label.FEMUR_RIGHT: ndi.find_objects(labels)[1]}
    assert label_crops(labels, affine, 3, boxes).keys() == label_crops(labels, affine, 3).keys()
    for side, crop in label_crops(labels, affine, 3).items():
        other = label_crops(labels, affine, 3, boxes)[side]
        assert crop is not None and other is not None
        assert crop[0] == other[0]
        np.testing.assert_allclose(crop[1], other[1])
    assert _label_extent(labels, None, Label.FEMUR_RIGHT, grid) == (0.0, None, None)
    empty = Pasted((slice(0, 3), slice(0, 3), slice(0, 3)), np.zeros((3, 3, 3), np.float32))
    assert _label_extent(labels, empty, Label.FEMUR_RIGHT, grid) == (0.0, None, None)


def test_cli_predict_refuses_a_scan_too_large_for_free_memory(
    weights, scan, tmp_path, monkeypatch
) -> None:
    """The memory estimate runs before any network: one line, exit 1, no outputs."""
    import femurseg.resources as res

    monkeypatch.setattr(res, "available_memory_gb", lambda: 0.01)
    # a test process may already hold more than a tiny scan's estimated peak
    monkeypatch.setattr(res, "resident_gb", lambda: 0.0)
    runner = CliRunner()
    args = ["predict", str(scan[0]), "-o", str(tmp_path / "out"), "--device", "cpu"]
    args += ["--stage1-weights", str(weights[0]), "--stage2-weights", str(weights[1])]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    err = json.loads((tmp_path / "out" / "tiny_error.json").read_text())
    assert "GB is free" in err["error"] and "\n" not in err["error"]
    assert err["kind"] == "ResourceError"
    assert not (tmp_path / "out" / "tiny_femur.nii.gz").exists()


def test_memory_estimate_follows_the_measured_peaks() -> None:
    from femurseg.resources import ResourceError, check_memory, inference_peak_gb

    # measured: 2.2 GB for 512 x 512 x 1000, 3.3 GB for 512 x 512 x 2000 (+10 % headroom)
    assert inference_peak_gb(512 * 512 * 1000) == pytest.approx(2.2 * 1.1, rel=0.05)
    assert inference_peak_gb(512 * 512 * 2000) == pytest.approx(3.34 * 1.1, rel=0.05)
    assert check_memory((512, 512, 1000), "c", available_gb=100.0) > 2.0
    with pytest.raises(ResourceError, match=r"c: a 512 x 512 x 4000 scan needs about"):
        check_memory((512, 512, 4000), "c", available_gb=0.5)


def test_metal_is_never_femur(weights) -> None:
    """Voxels at or above ``metal_hu`` leave the femur label whatever the network says (the
    networks see a bone window, in which a stem looks like cortex); ``metal_hu=None`` keeps
    them. Stage 2 at a near-zero threshold labels most of its crop, metal included."""
    from femurseg.detection import BoxRules
    from femurseg.pipeline import PredictConfig, remove_metal
    from femurseg.segmentation import SegmentRules
    from femurseg.segmentation.checks import FemurCheckRules
    from femurseg.types import Volume

    image, truth, affine = synth_case(seed=5)
    stem = np.zeros(truth.shape, dtype=bool)
    core = np.argwhere(truth == int(Label.FEMUR_LEFT))
    centre = np.round(core.mean(axis=0)).astype(int)
    stem[tuple(slice(c - 2, c + 3) for c in centre)] = True
    image = image.copy()
    image[stem] = 4000.0
    vol = Volume(image, affine)

    def labels_with(metal_hu: float | None) -> np.ndarray:
        config = PredictConfig(
            device="cpu",
            box_rules=BoxRules(threshold=0.01, min_score=0.0, min_volume_ml=0.0),
            segment_rules=SegmentRules(threshold=0.01, metal_hu=metal_hu),
            femur_checks=FemurCheckRules(enabled=False),
        )
        return Predictor(*weights, config).predict(vol).labels

    kept = labels_with(None)
    assert np.count_nonzero(kept[stem]) > 0  # the network does call the metal femur
    cleaned = labels_with(3000.0)
    assert np.count_nonzero(cleaned[image >= 3000.0]) == 0
    # nothing else changes
    assert np.array_equal(cleaned[~stem], kept[~stem])

    # remove_metal on its own: only that side, only at or above the threshold, counted
    lab = np.zeros((4, 4, 4), dtype=np.uint8)
    lab[:2] = 1
    lab[2:] = 2
    hu = np.full(lab.shape, 3500.0)
    hu[:, :, :2] = 2999.0
    whole = (slice(0, 4),) * 3
    assert remove_metal(lab, hu, whole, Label.FEMUR_LEFT, 3000.0) == 16
    assert np.all(lab[:2, :, :2] == 1) and np.all(lab[:2, :, 2:] == 0) and np.all(lab[2:] == 2)
    with pytest.raises(ConfigError):
        SegmentRules(metal_hu=500.0)
