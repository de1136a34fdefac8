"""The stage-2 network: MONAI SegResNet, femur vs background in a left-looking crop."""

from __future__ import annotations

from typing import Any

from monai.networks.nets import SegResNet
from torch import nn

from femurseg.segmentation.config import SegmenterConfig

#: output channels: background, femur.
NUM_CLASSES = 2


def build_segresnet(cfg: Any, out_channels: int) -> nn.Module:
    """A 3D SegResNet from a config's ``init_filters``, ``blocks_down`` and ``blocks_up``
    (stage 2 and the single-stage baseline share the architecture), one input channel."""
    return SegResNet(
        spatial_dims=3,
        init_filters=cfg.init_filters,
        in_channels=1,
        out_channels=out_channels,
        blocks_down=cfg.blocks_down,
        blocks_up=cfg.blocks_up,
    )


def build_segmenter(cfg: SegmenterConfig) -> nn.Module:
    """SegResNet mapping (B, 1, X, Y, Z) normalised CT to (B, 2, X, Y, Z) logits.

    X, Y, Z must be multiples of ``cfg.divisor``.
    """
    return build_segresnet(cfg, NUM_CLASSES)
