"""Training: a few real steps per stage on a tiny synthetic dataset, resumable and exact."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from model_synth import tiny_configs, write_dataset

from femurseg.detection import Detector, DetectorConfig
from femurseg.errors import ConfigError, InputError, OutputError
from femurseg.segmentation import SegmenterConfig
from femurseg.training import TrainConfig, learning_rate, read_split, train
from femurseg.weights import Stage, config_from_dict, load_checkpoint

TINY_S1, TINY_S2 = tiny_configs()
CFG_S1 = TrainConfig(
    stage=Stage.STAGE1,
    steps=3,
    batch_size=1,
    patch_size=(32, 32, 48),
    val_every=2,
    warmup_steps=1,
    val_cases=1,
)
CFG_S2 = TrainConfig(
    stage=Stage.STAGE2,
    steps=3,
    batch_size=2,
    patch_size=(16, 16, 32),
    val_every=2,
    warmup_steps=1,
    val_cases=1,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth"), n=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


CFG_S2_NEG = dataclasses.replace(CFG_S2, negative_crops=2, domain_rand=0.5)


@pytest.mark.parametrize(
    ("cfg", "model"), [(CFG_S1, TINY_S1), (CFG_S2, TINY_S2), (CFG_S2_NEG, TINY_S2)]
)
def test_train_steps_and_resume_continue_exactly(data, cache, tmp_path, cfg, model) -> None:
    whole = train(data, tmp_path / "whole", cfg, model, device="cpu", cache_dir=cache)
    assert whole["steps"] == 3

    part = tmp_path / "part"
    train(data, part, dataclasses.replace(cfg, steps=2), model, device="cpu", cache_dir=cache)
    assert load_checkpoint(part / "last.pt")["step"] == 2
    seen: list[int] = []
    train(
        data, part, cfg, model, resume=True, device="cpu", progress=lambda s, n, i: seen.append(s)
    )
    assert seen == [3]  # continues from the saved step

    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(part / "last.pt")
    assert a["step"] == b["step"] == 3
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-5), key
    rows = (part / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["2", "3"]
    assert (part / "curves.png").stat().st_size > 1000
    assert json.loads((part / "config.json").read_text())["train"]["steps"] == 3


def test_checkpoint_carries_frozen_config_and_refuses_contradictions(data, cache, tmp_path) -> None:
    run = tmp_path / "run"
    train(data, run, dataclasses.replace(CFG_S1, steps=2), TINY_S1, device="cpu", cache_dir=cache)
    ckpt = load_checkpoint(run / "last.pt", Stage.STAGE1)
    assert config_from_dict(DetectorConfig, ckpt["model_config"]) == TINY_S1
    assert config_from_dict(TrainConfig, ckpt["train_config"]) == dataclasses.replace(
        CFG_S1, steps=2
    )
    det = Detector(run / "last.pt", overrides={"spacing_mm": 6.0})
    assert det.config == TINY_S1
    with pytest.raises(ConfigError, match="contradicts the checkpoint"):
        Detector(run / "last.pt", overrides={"spacing_mm": 4.0})
    with pytest.raises(InputError, match="stage1 checkpoint, expected stage2"):
        load_checkpoint(run / "last.pt", Stage.STAGE2)
    with pytest.raises(OutputError, match="--resume"):
        train(data, run, CFG_S1, TINY_S1, device="cpu", cache_dir=cache)
    with pytest.raises(ConfigError, match="lr"):
        train(
            data,
            run,
            dataclasses.replace(CFG_S1, lr=0.5),
            TINY_S1,
            resume=True,
            device="cpu",
            cache_dir=cache,
        )
    other = dataclasses.replace(TINY_S1, spacing_mm=5.0)
    with pytest.raises(ConfigError, match="spacing_mm"):
        train(data, run, CFG_S1, other, resume=True, device="cpu", cache_dir=cache)
    with pytest.raises(InputError, match="does not exist"):
        train(data, tmp_path / "empty", CFG_S1, TINY_S1, resume=True, device="cpu", cache_dir=cache)
    tuned = tmp_path / "tuned"
    one = dataclasses.replace(CFG_S1, steps=1, val_every=1)
    train(data, tuned, one, TINY_S1, device="cpu", cache_dir=cache, init_from=run / "last.pt")
    assert json.loads((tuned / "config.json").read_text())["init_from"] == str(run / "last.pt")


def test_config_validation_and_dataset_errors(data, tmp_path) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(patch_size=(10, 16, 16))
    with pytest.raises(ConfigError):
        TrainConfig(stage="stage3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        DetectorConfig(hu_min=500, hu_max=100)
    with pytest.raises(ConfigError):
        SegmenterConfig(roi_size=(20, 16, 16))
    with pytest.raises(ConfigError, match="unknown keys"):
        config_from_dict(SegmenterConfig, {"spacing": 1.0})
    with pytest.raises(ConfigError, match="spacing_mm"):
        config_from_dict(SegmenterConfig, {"spacing_mm": 100.0})
    assert len(read_split(data, "train")) == 1
    with pytest.raises(InputError, match="dataset.json"):
        read_split(tmp_path, "train")
    with pytest.raises(InputError, match="split"):
        read_split(data, "holdout")
    # both writers' dataset.json forms: ids only (importers) and dicts with names (phantoms)
    meta = json.loads((data / "dataset.json").read_text())
    ids = [c["id"] for c in meta["cases"]]
    (data / "dataset.json").write_text(json.dumps({"cases": ids, "split": meta["split"]}))
    assert read_split(data, "val")[0].image == data / "images" / f"{meta['split']['val'][0]}.nii.gz"
    named = [{"name": c["id"], "image": c["image"], "label": c["label"]} for c in meta["cases"]]
    (data / "dataset.json").write_text(json.dumps({"cases": named, "split": meta["split"]}))
    assert [c.case_id for c in read_split(data, "train")] == meta["split"]["train"]
    (data / "dataset.json").write_text(json.dumps(meta))
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 100) == pytest.approx(0.05)


def test_negative_boxes_lie_off_the_femurs() -> None:
    import numpy as np
    from model_synth import synth_case

    from femurseg.detection.boxes import boxes_from_labels
    from femurseg.preprocessing.grid import Grid
    from femurseg.training.stage2 import negative_boxes

    image, labels, affine = synth_case(shape=(48, 36, 120), z_shift=60.0)
    grid = Grid(labels.shape, affine)
    # a "tibia" of bone below each femur
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in labels.shape], indexing="ij")
    x, z = affine[0, 0] * ii + affine[0, 3], affine[2, 2] * kk + affine[2, 3]
    tibia = ((np.abs(x) - 38.0) ** 2 <= 64.0) & (z < -110.0) & (np.abs(jj - 18) <= 3)
    image[tibia] = 700.0
    boxes = boxes_from_labels(labels, grid)
    got = negative_boxes(image, grid, boxes, 6, np.random.default_rng(0))
    assert got
    for side, box in got:
        fb = boxes[side]
        assert fb is not None
        overlap = box.intersection(fb)
        share = 0.0 if overlap is None else overlap.volume_ml / fb.volume_ml
        assert share < 0.5  # mostly off the femur
    # a scan without femur: boxes on its bone, any side
    none = {s: None for s in boxes}
    free = negative_boxes(image, grid, none, 4, np.random.default_rng(1))
    assert free and all(b.volume_ml > 0 for _, b in free)
    # no bone at all: nothing to place
    assert negative_boxes(np.full_like(image, 40.0), grid, none, 4, np.random.default_rng(1)) == []


def test_task_registry_covers_every_network_without_loading_baselines_in_the_loop() -> None:
    """Each Stage resolves to a model config and a TaskBase subclass with its own stage tag;
    importing the loop loads no baseline (the registry resolves them on first use)."""
    import subprocess
    import sys

    from femurseg.training.tasks import REGISTRY, TaskBase, task_class
    from femurseg.types import Stage

    assert set(REGISTRY) == set(Stage)
    for stage in Stage:
        config_cls, task_cls = task_class(stage)
        assert isinstance(task_cls, type) and issubclass(task_cls, TaskBase)
        assert task_cls.stage == stage.value
        config_cls()  # every model config has usable defaults
    code = (
        "import sys, femurseg.training.loop\n"
        "bad = [m for m in sys.modules if m.startswith('femurseg.baselines')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_average_weights_is_the_mean_and_refuses_other_networks(tmp_path) -> None:
    from model_synth import write_tiny_weights

    from femurseg.config import to_dict
    from femurseg.segmentation import build_segmenter
    from femurseg.training import average_weights
    from femurseg.weights import save_checkpoint

    s1, a = write_tiny_weights(tmp_path)
    torch.manual_seed(7)
    other = build_segmenter(TINY_S2).state_dict()
    b = save_checkpoint(
        {"stage": "stage2", "model_config": to_dict(TINY_S2), "model": other, "step": 9},
        tmp_path / "b.pt",
    )
    out = average_weights([a, b], tmp_path / "avg.pt")
    ck, ca, cb = load_checkpoint(out, Stage.STAGE2), load_checkpoint(a), load_checkpoint(b)
    for key, value in ck["model"].items():
        if value.is_floating_point():
            assert torch.allclose(value, (ca["model"][key] + cb["model"][key]) / 2, atol=1e-6)
    assert [s["step"] for s in ck["averaged_from"]] == [ca.get("step", 0), 9]
    with pytest.raises(ConfigError, match="only checkpoints of one network"):
        average_weights([a, s1], tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="expected two or more"):
        average_weights([a], tmp_path / "bad.pt")
