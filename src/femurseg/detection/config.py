"""Stage-1 configuration: the detector's network and preprocessing, and the box rules."""

from __future__ import annotations

from dataclasses import dataclass

from femurseg.config import check_range
from femurseg.errors import ConfigError


@dataclass(frozen=True)
class DetectorConfig:
    """Stage-1 network and its preprocessing; saved in every stage-1 checkpoint.

    Attributes:
        spacing_mm: isotropic voxel size of the coarse grid the network sees.
        hu_min: HU mapped to 0 (window floor).
        hu_max: HU mapped to 1 (window ceiling).
        channels: feature channels per level of the MONAI UNet.
        strides: down-sampling stride between levels (len(channels) - 1 values).
        num_res_units: residual units per UNet block (0 for plain convolutions).
    """

    spacing_mm: float = 4.0
    hu_min: float = -200.0
    hu_max: float = 1600.0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1

    def __post_init__(self) -> None:
        check_range("detector.spacing_mm", self.spacing_mm, 1.0, 16.0)
        check_range("detector.hu_min", self.hu_min, -2000.0, 3000.0)
        check_range("detector.hu_max", self.hu_max, -2000.0, 4000.0)
        if self.hu_max <= self.hu_min:
            raise ConfigError(
                f"detector.hu_max={self.hu_max} must exceed hu_min={self.hu_min}; widen the window"
            )
        if len(self.channels) < 2 or any(c < 1 for c in self.channels):
            raise ConfigError(
                f"detector.channels={self.channels}; expected 2 or more positive channel counts"
            )
        if len(self.strides) != len(self.channels) - 1 or any(
            s not in (1, 2) for s in self.strides
        ):
            raise ConfigError(
                f"detector.strides={self.strides}; expected {len(self.channels) - 1} "
                "values of 1 or 2"
            )
        check_range("detector.num_res_units", self.num_res_units, 0, 4)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (product of the strides)."""
        out = 1
        for s in self.strides:
            out *= s
        return out


@dataclass(frozen=True)
class BoxRules:
    """How coarse probabilities become one box per side (inference-time; not in checkpoints).

    Attributes:
        min_volume_ml: smallest coarse femur component accepted as a femur; smaller means
            "not found" for that side.
        min_score: smallest accepted mean class probability over the component.
        threshold: femur probability (left + right) defining the components; the box faces
            are placed where it crosses this value (sub-voxel).
        min_separation_mm: two components whose centres are closer than this in world x are
            two pieces of one femur (femurs are about 150-200 mm apart).
        mirror_average: also run the network on the scan mirrored left-right and average the
            two (the mirrored left femur counting as right): one more coarse pass (stage 1
            0.6 -> 0.8-0.9 s on a 512 x 512 x 1000 scan); box IoU 0.891 -> 0.909 on the
            validation phantoms.
        side_margin_mm: a lone femur whose centre lies further than this on the other side of
            the body's midline than the network's vote says (patient right is world +x) is
            rejected as contradictory; nearer the midline, or when the midline cannot be told
            (one leg filling the field of view), the network's vote decides.
        shifted_pass: when a femur is found, run the network (with its mirrored pass) once
            more on the coarse grid moved half a voxel along every axis and average each
            box with that pass's (which femurs are found stays the first pass's): each face
            is then placed from two interleaved samplings. Off by default. Measured with the
            v14 weights on the validation phantoms (``ev5/valall``, 42 found femurs): stage-1
            box IoU 0.895 -> 0.906 (a pass on every one of the 8 half-voxel shifts: 0.906
            too), found-femur Dice 0.9753 -> 0.9760; on the real CT with a fixation screw
            the left Dice without metal 0.614 -> 0.604 (mean over one-voxel field-of-view
            trims 0.6125 -> 0.6089, within that measure's noise); it costs one more coarse
            pass, about 2 s on a 512 x 512 x 1000 scan, for little Dice.
    """

    min_volume_ml: float = 15.0
    min_score: float = 0.5
    threshold: float = 0.5
    min_separation_mm: float = 60.0
    mirror_average: bool = True
    side_margin_mm: float = 30.0
    shifted_pass: bool = False

    def __post_init__(self) -> None:
        check_range("min_volume_ml", self.min_volume_ml, 0.0, 5000.0)
        check_range("side_margin_mm", self.side_margin_mm, 0.0, 200.0)
        check_range("min_score", self.min_score, 0.0, 1.0)
        check_range("box threshold", self.threshold, 0.01, 0.99)
        check_range("min_separation_mm", self.min_separation_mm, 0.0, 500.0)
