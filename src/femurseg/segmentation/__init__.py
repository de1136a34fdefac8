"""Stage 2: segment each femur inside its box with MONAI SegResNet (sliding windows)."""

from femurseg.segmentation.config import SegmenterConfig, SegmentRules
from femurseg.segmentation.inference import Segmenter, SideProbability
from femurseg.segmentation.network import build_segmenter
from femurseg.segmentation.postprocess import remove_islands
from femurseg.segmentation.prepare import crop_image, side_grid

__all__ = [
    "SegmentRules",
    "Segmenter",
    "SegmenterConfig",
    "SideProbability",
    "build_segmenter",
    "crop_image",
    "remove_islands",
    "side_grid",
]
