"""Shipped weights and checkpoint files: checksums, size limit, safe loading, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from femurseg.detection import Detector, DetectorConfig
from femurseg.errors import FemursegError, InputError
from femurseg.segmentation import Segmenter, SegmenterConfig
from femurseg.weights import (
    WEIGHTS_DIR,
    Stage,
    default_weights,
    load_checkpoint,
    read_checksums,
    save_checkpoint,
    sha256_file,
    verify_checksum,
    write_checksums,
)


def test_shipped_weights_verify_and_load() -> None:
    paths = [default_weights(Stage.STAGE1), default_weights(Stage.STAGE2)]
    assert sum(p.stat().st_size for p in paths) <= 25 * 1024 * 1024
    sums = read_checksums(WEIGHTS_DIR)
    for p in paths:
        assert sums[p.name] == sha256_file(p)
    det = Detector(device="cpu")
    seg = Segmenter(device="cpu")
    assert isinstance(det.config, DetectorConfig) and isinstance(seg.config, SegmenterConfig)
    assert det.sha256 == sums["stage1.pt"] and seg.sha256 == sums["stage2.pt"]


def test_checksum_mismatch_is_refused(tmp_path) -> None:
    a = tmp_path / "stage1.pt"
    b = tmp_path / "stage2.pt"
    save_checkpoint({"stage": "stage1", "model_config": {}, "model": {}}, a)
    save_checkpoint({"stage": "stage2", "model_config": {}, "model": {}}, b)
    write_checksums(tmp_path)
    sums = read_checksums(tmp_path)
    assert verify_checksum(a, sums["stage1.pt"]) == sums["stage1.pt"]
    a.write_bytes(a.read_bytes() + b"x")
    with pytest.raises(FemursegError, match="damaged or was replaced"):
        verify_checksum(a, sums["stage1.pt"])


def test_load_checkpoint_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="is not a checkpoint file"):
        load_checkpoint(junk)
    # a damaged archive: one clear line, and never torch's advice to drop weights_only
    good = tmp_path / "good.pt"
    torch.save({"weights": torch.zeros(2)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="cannot read checkpoint") as info:
        load_checkpoint(cut)
    assert "weights_only" not in str(info.value)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="not a femurseg checkpoint"):
        load_checkpoint(other)
    bad = save_checkpoint(
        {"stage": "stage1", "model_config": {}, "model": {"x": torch.zeros(1)}}, tmp_path / "b.pt"
    )
    with pytest.raises(InputError, match="do not fit"):
        Detector(bad)


def test_stage1_mirror_average_swaps_sides_under_a_left_right_flip() -> None:
    """Averaging with the mirrored pass makes stage 1 exactly left-right equivariant."""
    from femurseg.detection import BoxRules
    from femurseg.types import Volume

    rng = np.random.default_rng(0)
    hu = rng.normal(0.0, 400.0, (32, 24, 48)).astype(np.float32)  # sizes divisible by 8
    hu[4:12, 8:16, 4:44] = 1200.0  # something bone-like on one side only
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    det = Detector(device="cpu", precision="float32")
    p, _ = det.probabilities(Volume(hu, affine))
    q, _ = det.probabilities(Volume(np.ascontiguousarray(hu[::-1]), affine))
    np.testing.assert_allclose(q, np.flip(p, axis=1)[[0, 2, 1]], atol=1e-5)
    single = Detector(device="cpu", precision="float32", rules=BoxRules(mirror_average=False))
    p0, _ = single.probabilities(Volume(hu, affine))
    assert not np.allclose(p0, p, atol=1e-3)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)


def test_damaged_or_diverged_weights_are_refused(tmp_path) -> None:
    import torch

    from femurseg.detection import DetectorConfig, build_detector
    from femurseg.errors import InputError
    from femurseg.weights import Stage, load_checkpoint, load_network, save_checkpoint

    cfg = DetectorConfig(spacing_mm=6.0, channels=(4, 8, 16), strides=(2, 2), num_res_units=0)
    state = build_detector(cfg).state_dict()
    from femurseg.config import to_dict

    good = save_checkpoint(
        {"stage": "stage1", "model_config": to_dict(cfg), "model": state}, tmp_path / "g.pt"
    )
    ckpt = load_checkpoint(good, Stage.STAGE1)
    assert len(ckpt["model_sha256"]) == 64
    # one weight changed after saving (a bit flip): the stored checksum no longer matches
    damaged = torch.load(good, weights_only=True)
    name = next(k for k, v in damaged["model"].items() if v.is_floating_point())
    damaged["model"][name].view(-1)[0] += 1.0
    torch.save(damaged, tmp_path / "d.pt")
    with pytest.raises(InputError, match="do not match the checksum"):
        load_checkpoint(tmp_path / "d.pt", Stage.STAGE1)
    # a diverged run saved NaN weights with a valid checksum: refused when loading the network
    nan = {k: v.clone() for k, v in state.items()}
    nan[name].view(-1)[0] = float("nan")
    bad = save_checkpoint(
        {"stage": "stage1", "model_config": to_dict(cfg), "model": nan}, tmp_path / "n.pt"
    )
    with pytest.raises(InputError, match="NaN or infinite"):
        load_network(Stage.STAGE1, bad, DetectorConfig, build_detector)
