"""TransUNet baseline: network shapes and gradients, slice geometry, training, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from model_synth import synth_case, write_dataset
from monai.losses import DiceCELoss
from torch import nn

from femurseg.baselines.transunet import (
    TransUNetConfig,
    build_transunet,
    count_parameters,
    transformer_layer_parameters,
)
from femurseg.baselines.transunet_infer import (
    TransUNetSegmenter,
    segment_volume,
    slice_grid,
)
from femurseg.baselines.transunet_train import TransUNetTrainConfig, train_transunet
from femurseg.errors import ConfigError, InputError, OutputError
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.grid import Grid
from femurseg.types import Volume
from femurseg.weights import config_from_dict, load_checkpoint, save_checkpoint

TINY = TransUNetConfig(
    image_size=48,
    spacing_mm=3.5,
    cnn_widths=(8, 8, 16, 16),
    cnn_blocks=(1, 1, 1),
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    mlp_dim=64,
    dropout=0.0,
    decoder_head=16,
    decoder_channels=(16, 16, 8, 8),
)
TRAIN = TransUNetTrainConfig(
    steps=4, batch_size=4, lr=3e-3, warmup_steps=1, val_every=2, val_cases=1, slice_mm=6.0
)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(int(a.sum()) + int(b.sum()), 1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a few shared cores, spinning thread pools cost more than they give."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth"), n=4)  # RAS and LPS files alternate


@pytest.mark.parametrize("hw", [(17, 23), (40, 33), (5, 70), (48, 48)])
def test_forward_keeps_any_slice_size(hw) -> None:
    torch.manual_seed(0)
    net = build_transunet(TINY).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *hw))
    assert out.shape == (2, 3, *hw)
    assert torch.isfinite(out).all()


def test_parameter_count_matches_the_architecture() -> None:
    cfg = TransUNetConfig()
    net = build_transunet(cfg)
    total = count_parameters(net)
    assert 2_500_000 < total < 3_500_000  # CPU-sized; the paper's R50-ViT-B/16 is ~105 M
    d, layer = cfg.hidden_size, transformer_layer_parameters(cfg.hidden_size, cfg.mlp_dim)
    assert count_parameters(net.encoder.layers[0]) == layer
    expected_vit = (
        cfg.cnn_widths[3] * d + d  # 1x1 patch embedding
        + cfg.grid_size**2 * d  # learned position embedding
        + cfg.num_layers * layer
        + 2 * d  # final LayerNorm
    )  # fmt: skip
    assert count_parameters(net.encoder) == expected_vit
    # the paper's ViT-B transformer: 12 layers of about 7.1 M
    assert 84e6 < 12 * transformer_layer_parameters(768, 3072) < 86e6


def test_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = build_transunet(TINY)
    x = torch.rand(2, 1, 32, 48)
    y = torch.randint(0, 3, (2, 1, 32, 48))
    DiceCELoss(to_onehot_y=True, softmax=True)(net(x), y).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_position_embedding_follows_the_token_grid() -> None:
    net = build_transunet(TINY)
    assert net.encoder.position(3, 3) is net.encoder.pos_embed
    assert net.encoder.position(2, 5).shape == (1, 10, TINY.hidden_size)


def _two_slices() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32 x 32 slices with a bright disc per leg: left at low i, right at high i."""
    ii, jj = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = np.zeros((2, 1, 32, 32), np.float32)
    y = np.zeros((2, 1, 32, 32), np.int64)
    for n, r in enumerate((4, 6)):
        x[n, 0] = 0.15
        for label, ci in ((1, 9), (2, 22)):
            disc = (ii - ci) ** 2 + (jj - 16) ** 2 <= r * r
            x[n, 0][disc], y[n, 0][disc] = 0.5, label
    return torch.from_numpy(x), torch.from_numpy(y)


def test_tiny_overfit_reduces_loss() -> None:
    torch.manual_seed(0)
    net = build_transunet(TINY)
    x, y = _two_slices()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    pred = net.eval()(x).argmax(1, keepdim=True)
    for label in (1, 2):
        assert dice((pred == label).numpy(), (y == label).numpy()) > 0.7


class _Oracle(nn.Module):
    """Bone above 0.35 of the window is femur: left in the canvas' low-i half, right above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = (x > 0.35).float()
        right = (torch.arange(x.shape[-2]) >= x.shape[-2] / 2).float().view(1, 1, -1, 1)
        return 10.0 * torch.cat([1 - fg, fg * (1 - right), fg * right], dim=1)


@pytest.mark.parametrize("spacing", [(3.0, 3.0, 3.0), (2.5, 3.2, 4.0)])
def test_volume_inference_returns_labels_on_the_input_grid(spacing) -> None:
    image, truth, affine = synth_case(shape=(52, 40, 50), spacing=3.0, seed=1)
    # same anatomy, another voxel grid (anisotropic, shifted): labels must follow the world
    aff = affine.copy()
    aff[:3, :3] = np.diag(spacing)
    aff[:3, 3] = affine[:3, 3] * np.asarray(spacing) / 3.0
    volume = Volume(image, aff)
    labels = segment_volume(_Oracle(), TINY, volume, batch_slices=7)
    assert labels.shape == volume.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2}
    left, right = (truth == 1), (truth == 2)
    assert (volume.index_to_world(np.argwhere(left))[:, 0] < 0).all()  # left is at world x < 0
    assert dice(labels == 1, left) > 0.8 and dice(labels == 2, right) > 0.8
    assert dice(labels == 1, right) == 0.0 and dice(labels == 2, left) == 0.0


def test_slice_grid_keeps_axial_positions_and_centre() -> None:
    like = Grid((40, 30, 25), np.diag([0.8, 0.8, 2.5, 1.0]))
    g = slice_grid(like, TINY)
    assert g.shape == (48, 48, 25)
    assert np.allclose(g.spacing, (3.5, 3.5, 2.5))
    centre = like.index_to_world((np.asarray(like.shape) - 1) / 2)
    assert np.allclose(g.index_to_world((np.asarray(g.shape) - 1) / 2), centre)
    assert np.allclose(g.index_to_world([0, 0, 7])[2], like.index_to_world([0, 0, 7])[2])
    assert slice_grid(like, TINY, slice_mm=5.0).shape[2] == 12


def test_training_learns_sides_and_checkpoint_round_trips(data, tmp_path) -> None:
    cfg = dataclasses.replace(TRAIN, steps=200, val_every=100, lr=5e-3)
    run = tmp_path / "run"
    summary = train_transunet(data, run, cfg, TINY, device="cpu")
    assert summary["stage"] == "transunet" and summary["best_metric"] > 0.3
    assert (run / "curves.png").stat().st_size > 1000
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and "val_dice_left" in rows[0] and len(rows) == 3
    assert json.loads((run / "config.json").read_text())["model"]["image_size"] == 48

    ckpt = load_checkpoint(run / "best.pt")
    assert config_from_dict(TransUNetConfig, ckpt["model_config"]) == TINY
    assert config_from_dict(TransUNetTrainConfig, ckpt["train_config"]) == cfg
    seg = TransUNetSegmenter(run / "best.pt", overrides={"spacing_mm": 3.5})
    for key, value in seg.net.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key

    case = json.loads((data / "dataset.json").read_text())["split"]["test"][0]
    volume = read_volume(data / "images" / f"{case}.nii.gz")  # written LPS on disk
    truth, _ = read_labels(data / "labels" / f"{case}.nii.gz", like=volume)
    labels = seg.segment(volume)
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1, 2}
    left, right = truth == 1, truth == 2
    assert dice(labels == 1, left) > 0.5 and dice(labels == 2, right) > 0.5
    assert dice(labels == 1, left) > 5 * dice(labels == 1, right)  # no side swap
    assert dice(labels == 2, right) > 5 * dice(labels == 2, left)


def test_resume_continues_exactly_and_refuses_contradictions(data, tmp_path) -> None:
    whole = tmp_path / "whole"
    train_transunet(data, whole, TRAIN, TINY, device="cpu")
    part = tmp_path / "part"
    train_transunet(data, part, dataclasses.replace(TRAIN, steps=2), TINY, device="cpu")
    seen: list[int] = []
    train_transunet(
        data, part, TRAIN, TINY, resume=True, device="cpu",
        progress=lambda s, n, i: seen.append(s),
    )  # fmt: skip
    assert seen == [3, 4]
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(part / "last.pt")
    assert a["step"] == b["step"] == 4
    for key, value in a["model"].items():
        assert torch.allclose(value, b["model"][key], atol=1e-5), key
    assert [r.split(",")[0] for r in (part / "metrics.csv").read_text().splitlines()[1:]] == [
        "2",
        "4",
    ]

    with pytest.raises(OutputError, match="already holds"):
        train_transunet(data, part, TRAIN, TINY, device="cpu")
    with pytest.raises(ConfigError, match="lr"):
        train_transunet(
            data, part, dataclasses.replace(TRAIN, lr=1e-3), TINY, resume=True, device="cpu"
        )
    with pytest.raises(ConfigError, match="hidden_size"):
        other = dataclasses.replace(TINY, hidden_size=64)
        train_transunet(data, part, TRAIN, other, resume=True, device="cpu")
    with pytest.raises(ConfigError, match="contradicts the checkpoint"):
        TransUNetSegmenter(part / "last.pt", overrides={"spacing_mm": 2.0})


def test_segmenter_refuses_other_checkpoints(tmp_path) -> None:
    path = save_checkpoint({"stage": "stage2", "model_config": {}, "model": {}}, tmp_path / "s.pt")
    with pytest.raises(InputError, match="expected transunet"):
        TransUNetSegmenter(path)
    with pytest.raises(InputError, match="does not exist"):
        TransUNetSegmenter(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 40},
        {"image_size": 0},
        {"hidden_size": 30, "num_heads": 4},
        {"hu_min": 500.0, "hu_max": 100.0},
        {"cnn_widths": (8, 8, 16)},
        {"decoder_channels": (16, 16, 0, 8)},
        {"dropout": 1.5},
        {"spacing_mm": 0.0},
    ],
)
def test_config_rejects_bad_values(change) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(TINY, **change)


@pytest.mark.parametrize(
    "change", [{"steps": 0}, {"fg_fraction": 1.5}, {"slice_mm": 0.0}, {"flip_prob": -0.1}]
)
def test_train_config_rejects_bad_values(change) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(TRAIN, **change)
