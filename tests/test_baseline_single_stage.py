"""Single-stage SegResNet: trained by the shared loop; labels come back on the input grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_synth import synth_case, write_dataset

from femurseg.baselines.single_stage import (
    SingleStageConfig,
    SingleStageSegmenter,
    labels_on_grid,
    network_grid,
)
from femurseg.errors import ConfigError, InputError
from femurseg.preprocessing.grid import Grid
from femurseg.training import TrainConfig, train
from femurseg.types import Volume
from femurseg.weights import Stage, load_checkpoint, save_checkpoint

TINY = SingleStageConfig(
    spacing_mm=4.0, init_filters=8, blocks_down=(1, 1, 1), blocks_up=(1, 1), roi_size=(40, 28, 56)
)
CFG = TrainConfig(
    stage=Stage.SEGRESNET,
    steps=150,
    batch_size=2,
    lr=3e-3,
    val_every=75,
    warmup_steps=5,
    val_cases=1,
)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(int(a.sum()) + int(b.sum()), 1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth"), n=4)


def test_config_refuses_bad_windows() -> None:
    with pytest.raises(ConfigError, match="roi_size"):
        SingleStageConfig(roi_size=(96, 96, 100))
    with pytest.raises(ConfigError, match="init_filters"):
        SingleStageConfig(init_filters=12)


@pytest.mark.parametrize("slab", [5, 48])
def test_labels_on_grid_follow_world_positions(slab) -> None:
    # three-class probabilities on a coarse grid of the synthetic anatomy, pasted onto a finer,
    # flipped grid: the labels must land at the same world places, whatever the slab size
    image, truth, affine = synth_case(shape=(40, 30, 60), spacing=3.0, seed=2)
    fine = Grid((60, 45, 90), affine @ np.diag([2 / 3, 2 / 3, 2 / 3, 1.0]))
    like = Grid(fine.shape, fine.affine.copy())
    like.affine[:3, 0] *= -1  # flip i: a left-handed grid
    like.affine[:3, 3] = fine.index_to_world([fine.shape[0] - 1, 0, 0])
    coarse = Grid(truth.shape, affine)
    probs = np.stack([(truth == c).astype(np.float32) for c in range(3)])
    labels = labels_on_grid(probs, coarse, like, slab=slab)
    assert labels.shape == like.shape
    world = like.index_to_world(np.argwhere(labels == 1))
    assert (world[:, 0] < 0).all()  # left femur stays at world x < 0
    back = coarse.world_to_index(like.index_to_world(np.argwhere(labels == 2)))
    hits = truth[tuple(np.clip(np.round(back).astype(int), 0, np.asarray(truth.shape) - 1).T)]
    assert (hits == 2).mean() > 0.95


def test_shared_loop_trains_it_and_it_segments_both_sides(data, tmp_path) -> None:
    run = tmp_path / "run"
    summary = train(data, run, CFG, TINY, device="cpu")
    assert summary["stage"] == "segresnet" and summary["best_metric"] > 0.5
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val_dice_left" in header and "seconds" in header
    ckpt = load_checkpoint(run / "best.pt", Stage.SEGRESNET)
    assert tuple(ckpt["model_config"]["roi_size"]) == (40, 28, 56)

    seg = SingleStageSegmenter(run / "best.pt", overrides={"spacing_mm": 4.0})
    for key, value in seg.net.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key
    image, truth, affine = synth_case(seed=11)
    volume = Volume(image, affine)
    labels = seg.segment(volume)
    assert labels.shape == volume.shape and labels.dtype == np.uint8
    left, right = truth == 1, truth == 2
    assert dice(labels > 0, truth > 0) > 0.7
    # each femur gets mostly its own side's label (a tiny net may still confuse some voxels)
    assert dice(labels == 1, left) > 0.5 and dice(labels == 2, right) > 0.5
    assert dice(labels == 1, left) > dice(labels == 2, left)
    assert dice(labels == 2, right) > dice(labels == 1, right)


def test_resume_of_a_segresnet_run_is_exact(data, tmp_path) -> None:
    cfg = dataclasses.replace(CFG, steps=4, val_every=2)
    whole, part = tmp_path / "whole", tmp_path / "part"
    cache = tmp_path / "cache"
    train(data, whole, cfg, TINY, device="cpu", cache_dir=cache)
    train(data, part, dataclasses.replace(cfg, steps=2), TINY, device="cpu", cache_dir=cache)
    train(data, part, cfg, TINY, resume=True, device="cpu", cache_dir=cache)
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(part / "last.pt")
    for key, value in a["model"].items():
        assert torch.allclose(value, b["model"][key], atol=1e-5), key


def test_segmenter_refuses_other_checkpoints(tmp_path) -> None:
    path = save_checkpoint({"stage": "stage2", "model_config": {}, "model": {}}, tmp_path / "s.pt")
    with pytest.raises(InputError, match="expected segresnet"):
        SingleStageSegmenter(path)


def test_network_grid_keeps_the_field_of_view_centre() -> None:
    like = Grid((100, 80, 200), np.diag([0.8, 0.8, 1.0, 1.0]))
    g = network_grid(like, SingleStageConfig())
    assert np.allclose(g.spacing, 1.5)
    centre = like.index_to_world((np.asarray(like.shape) - 1) / 2)
    assert np.allclose(g.index_to_world((np.asarray(g.shape) - 1) / 2), centre)
