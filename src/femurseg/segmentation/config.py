"""Stage-2 configuration: the segmenter's network and preprocessing, and inference rules."""

from __future__ import annotations

from dataclasses import dataclass

from femurseg.config import check_range
from femurseg.errors import ConfigError


@dataclass(frozen=True)
class SegmenterConfig:
    """Stage-2 network and its preprocessing; saved in every stage-2 checkpoint.

    Attributes:
        spacing_mm: isotropic voxel size of the crop the network sees.
        hu_min: HU mapped to 0.
        hu_max: HU mapped to 1.
        margin_mm: added on every face of the stage-1 box before cropping.
        mirror_right: mirror right-femur crops along patient left-right so one network, trained
            on left-looking femurs, serves both sides.
        init_filters: SegResNet channels at full resolution (multiple of 8 for GroupNorm).
        blocks_down: residual blocks per encoder level.
        blocks_up: residual blocks per decoder level (len(blocks_down) - 1 values).
        roi_size: sliding-window size in voxels (i, j, k), multiples of the network divisor;
            also the training patch size, because GroupNorm statistics depend on the window
            (a network trained on one window size and run on another over-segments), and the
            smallest crop (a smaller box is widened with real context, not padding).
    """

    spacing_mm: float = 1.5
    hu_min: float = -200.0
    hu_max: float = 1600.0
    margin_mm: float = 10.0
    mirror_right: bool = True
    init_filters: int = 8
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    roi_size: tuple[int, int, int] = (64, 64, 96)

    def __post_init__(self) -> None:
        check_range("segmenter.spacing_mm", self.spacing_mm, 0.3, 8.0)
        check_range("segmenter.hu_min", self.hu_min, -2000.0, 3000.0)
        check_range("segmenter.hu_max", self.hu_max, -2000.0, 4000.0)
        if self.hu_max <= self.hu_min:
            raise ConfigError(
                f"segmenter.hu_max={self.hu_max} must exceed hu_min={self.hu_min}; widen the window"
            )
        check_range("segmenter.margin_mm", self.margin_mm, 0.0, 100.0)
        if self.init_filters < 8 or self.init_filters % 8:
            raise ConfigError(
                f"segmenter.init_filters={self.init_filters}; expected a multiple of 8 (GroupNorm)"
            )
        if not self.blocks_down or any(b < 1 for b in self.blocks_down):
            raise ConfigError(f"segmenter.blocks_down={self.blocks_down}; expected positive ints")
        if len(self.blocks_up) != len(self.blocks_down) - 1 or any(b < 1 for b in self.blocks_up):
            raise ConfigError(
                f"segmenter.blocks_up={self.blocks_up}; expected {len(self.blocks_down) - 1} "
                "positive ints"
            )
        if len(self.roi_size) != 3 or any(r < 1 or r % self.divisor for r in self.roi_size):
            raise ConfigError(
                f"segmenter.roi_size={self.roi_size}; expected 3 positive multiples of "
                f"{self.divisor}"
            )

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (2 ** number of down-samplings)."""
        return int(2 ** (len(self.blocks_down) - 1))


@dataclass(frozen=True)
class SegmentRules:
    """Stage-2 inference settings (free to change; not stored in checkpoints).

    Attributes:
        overlap: sliding-window overlap fraction.
        sw_batch_size: windows per forward pass.
        threshold: femur probability at and above which a voxel is femur (after paste-back).
        min_island_ml: connected femur pieces smaller than this are removed (the largest
            piece of each side is always kept).
        max_regrow: times a box may be grown when the femur reaches the crop's edge (a stage-1
            box that cut the femur); 0 disables it.
        regrow_mm: growth per touching face and time.
    """

    overlap: float = 0.25
    sw_batch_size: int = 1
    threshold: float = 0.5
    min_island_ml: float = 5.0
    max_regrow: int = 1
    regrow_mm: float = 40.0

    def __post_init__(self) -> None:
        check_range("overlap", self.overlap, 0.0, 0.9)
        check_range("sw_batch_size", self.sw_batch_size, 1, 64)
        check_range("threshold", self.threshold, 0.01, 0.99)
        check_range("min_island_ml", self.min_island_ml, 0.0, 1000.0)
        check_range("max_regrow", self.max_regrow, 0, 10)
        check_range("regrow_mm", self.regrow_mm, 1.0, 500.0)
