"""The stage-1 network: a compact MONAI UNet with three output classes."""

from __future__ import annotations

from monai.networks.nets import UNet
from torch import nn

from femurseg.detection.config import DetectorConfig
from femurseg.types import Label

#: output channels: background, femur_left, femur_right (the label values).
NUM_CLASSES = len(Label)


def build_detector(cfg: DetectorConfig) -> nn.Module:
    """A 3D UNet mapping (B, 1, X, Y, Z) normalised CT to (B, 3, X, Y, Z) class logits.

    The input axes are canonical RAS+ (X to patient right), so the network can tell a left
    femur from a right one by its shape and position.
    """
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=NUM_CLASSES,
        channels=cfg.channels,
        strides=cfg.strides,
        num_res_units=cfg.num_res_units,
        norm="instance",
    )
