"""Stage 1: find one 3D box per femur at coarse spacing (whole scan, small 3D UNet)."""

from femurseg.detection.boxes import (
    SIDES,
    SideDetection,
    boxes_from_labels,
    boxes_from_probabilities,
)
from femurseg.detection.config import BoxRules, DetectorConfig
from femurseg.detection.inference import Detector
from femurseg.detection.network import build_detector
from femurseg.detection.prepare import coarse_image, coarse_labels

__all__ = [
    "SIDES",
    "BoxRules",
    "Detector",
    "DetectorConfig",
    "SideDetection",
    "boxes_from_labels",
    "boxes_from_probabilities",
    "build_detector",
    "coarse_image",
    "coarse_labels",
]
