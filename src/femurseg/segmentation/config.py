"""Stage-2 configuration: the segmenter's network and preprocessing, and inference rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from femurseg.config import check_range
from femurseg.errors import ConfigError


def segresnet_divisor(blocks_down: tuple[int, ...]) -> int:
    """Input sizes of a SegResNet must be multiples of this (2 ** number of down-samplings)."""
    return int(2 ** (len(blocks_down) - 1))


def fitted_window(
    roi: tuple[int, int, int], shape: tuple[int, ...], divisor: int, whole_voxels: int
) -> tuple[int, int, int]:
    """The sliding-window size for a crop of ``shape`` (see ``SegmentRules.whole_crop_voxels``).

    Each side of the crop is rounded up to a multiple of ``divisor``; if the rounded crop has
    at most ``whole_voxels`` voxels it is the window (one pass), else each side of ``roi`` is
    shrunk to the rounded crop side where that is smaller, so no window is mostly padding.
    """
    rounded = tuple(-(-int(n) // divisor) * divisor for n in shape)
    if rounded[0] * rounded[1] * rounded[2] <= whole_voxels:
        return rounded  # type: ignore[return-value]
    return tuple(min(r, n) for r, n in zip(roi, rounded, strict=True))  # type: ignore[return-value]


def check_segresnet(prefix: str, cfg: Any) -> None:
    """Validate the SegResNet fields a config shares (stage 2, the single-stage baseline).

    Checks ``spacing_mm``, the HU window ``hu_min``/``hu_max``, ``init_filters``,
    ``blocks_down``, ``blocks_up`` and ``roi_size``; messages name the field as
    ``<prefix>.<field>``.

    Raises:
        ConfigError: a value out of range or inconsistent with the others.
    """
    check_range(f"{prefix}.spacing_mm", cfg.spacing_mm, 0.3, 8.0)
    check_range(f"{prefix}.hu_min", cfg.hu_min, -2000.0, 3000.0)
    check_range(f"{prefix}.hu_max", cfg.hu_max, -2000.0, 4000.0)
    if cfg.hu_max <= cfg.hu_min:
        raise ConfigError(
            f"{prefix}.hu_max={cfg.hu_max} must exceed hu_min={cfg.hu_min}; widen the window"
        )
    if cfg.init_filters < 8 or cfg.init_filters % 8:
        raise ConfigError(
            f"{prefix}.init_filters={cfg.init_filters}; expected a multiple of 8 (GroupNorm)"
        )
    if not cfg.blocks_down or any(b < 1 for b in cfg.blocks_down):
        raise ConfigError(f"{prefix}.blocks_down={cfg.blocks_down}; expected positive ints")
    if len(cfg.blocks_up) != len(cfg.blocks_down) - 1 or any(b < 1 for b in cfg.blocks_up):
        raise ConfigError(
            f"{prefix}.blocks_up={cfg.blocks_up}; expected {len(cfg.blocks_down) - 1} positive ints"
        )
    divisor = segresnet_divisor(cfg.blocks_down)
    if len(cfg.roi_size) != 3 or any(r < 1 or r % divisor for r in cfg.roi_size):
        raise ConfigError(
            f"{prefix}.roi_size={cfg.roi_size}; expected 3 positive multiples of {divisor}"
        )


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
        check_segresnet("segmenter", self)
        check_range("segmenter.margin_mm", self.margin_mm, 0.0, 100.0)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (2 ** number of down-samplings)."""
        return segresnet_divisor(self.blocks_down)


@dataclass(frozen=True)
class SegmentRules:
    """Stage-2 inference settings (free to change; not stored in checkpoints).

    Attributes:
        overlap: sliding-window overlap fraction.
        sw_batch_size: windows per forward pass.
        threshold: femur probability at and above which a voxel is femur (after paste-back).
        largest_only: keep the largest connected femur piece of each side and, of the
            others, only those of ``min_fragment_ml`` or more: a femur is one bone, and a
            small second piece is a leak into the pelvis or tibia (with early weights,
            keeping the largest alone took held-out phantom Dice from 0.892 to 0.938 and HD95
            from 30 to 4.8 mm). Off: every piece of ``min_island_ml`` or more is kept.
        min_island_ml: with ``largest_only`` off, pieces smaller than this are removed (the
            largest piece of each side is always kept).
        min_fragment_ml: with ``largest_only`` on, other pieces of at least this size are
            kept too: the pieces of a femur broken in two with a gap between them (a displaced
            shaft or neck fracture; stage 1 boxes every piece of a side). Leaks across a
            joint have been far smaller: on ``ev5/valall``, the real CT and its negative no
            piece of 5 ml or more besides the largest was seen with v13. ``inf`` restores the
            largest piece alone.
        fill_holes: set the probability of whatever the femur mask encloses to 1 (every
            hole closed within an axial slice of the crop, which includes every hole closed
            in 3D): a femur is solid, and the
            network can leave out fatty cancellous bone or the canal round an implant. On the
            held-out phantoms it changed only the implant cases (a hip stem 0.972 -> 0.974, a
            5 mm hip-implant case 0.948 -> 0.954, a nail 0.918 -> 0.921), and on the real CT
            the left femur round its hip screw 0.557 -> 0.602 (right unchanged). After
            paste-back it also fills what the mask and the metal touching it ring together
            within a slice, where the hole borders the mask
            (:func:`~femurseg.segmentation.postprocess.fill_beside_metal`): the fatty bone
            inside a knee replacement's femoral component, which the network leaves out
            beside the metal (a validation knee-implant femur 0.739 -> 0.971).
        max_regrow: times a box may be grown when the femur reaches the crop's edge (a stage-1
            box that cut the femur); 0 disables it.
        regrow_mm: growth per touching face and time.
        whole_crop_voxels: a crop of at most this many voxels (after rounding each side up
            to the network's size multiple) runs as one window, with no overlap work; larger
            crops run by sliding windows of ``roi_size`` shrunk to the crop where it is
            smaller. 0 always uses ``roi_size`` windows. The default holds a long adult femur
            with its margin at 1.5 mm (128 x 128 x 480); one window of 6 M voxels adds about
            0.9 GB at bfloat16 and runs in 4 s on one thread (a 3 M-voxel crop cut into
            windows took 5 s, in one piece 2 s).
        metal_hu: voxels at or above this HU never become femur, whatever the network says
            (the convention: metal is not femur). The networks see HU through a bone window
            that ends far below metal, so a stem or nail looks like cortex to them; cortical
            bone stays under about 2500 HU and a 12-bit scanner clips metal at 3071. None
            keeps every voxel the network calls femur.
        edge_refine: move the final mask's outer layer to the bone's half-maximum edge (see
            :mod:`femurseg.segmentation.edges`): outer voxels darker than ``edge_fraction``
            (0.5: halfway) of the way from the surrounding soft tissue to the bone's local
            peak (within ``edge_window_mm``, after smoothing by ``edge_smooth_mm``) are
            removed, up to ``edge_depth_mm`` deep, where the peak stands at least
            ``edge_min_contrast_hu`` above the soft tissue, and not within ``edge_metal_mm``
            of HU at or above ``edge_metal_hu``. In 3D on scans whose voxels are all at most
            ``edge_max_voxel_mm``; with ``edge_planar``, within each slice on scans where
            only the slices are thicker; never on coarser scans (the real 3 mm CT).
            Chosen on validation phantoms: the 3D step on ``valall`` (43 found femurs:
            0.9737 -> 0.9764 with a 200 HU limit; a fraction of 0.4 or 0.3, a 2.5 mm gate or a
            1.5 mm window scored lower); the in-slice step on its 25 femurs of 2-5 mm slices
            (0.9714 -> 0.9752, none lower); the 500 HU limit asks for a visible cortex: on
            blurred knees of porotic bone with a 0.6 mm cortex (``vf_blurknee``) stage 2
            already leaves the rim out, and a 200 HU limit peeled the trabecular rim further
            (a femur 0.945 -> 0.919; 0.935 with 500 HU), at 0.0009 of mean Dice on ``valall``
            and the hard knees (0.9799 -> 0.9790; without the step 0.9743).
    """

    overlap: float = 0.25
    sw_batch_size: int = 1
    threshold: float = 0.5
    largest_only: bool = True
    min_island_ml: float = 5.0
    min_fragment_ml: float = 15.0
    fill_holes: bool = True
    max_regrow: int = 1
    regrow_mm: float = 40.0
    whole_crop_voxels: int = 8_000_000
    metal_hu: float | None = 3000.0
    edge_refine: bool = True
    edge_max_voxel_mm: float = 1.5
    edge_planar: bool = True
    edge_depth_mm: float = 1.5
    edge_smooth_mm: float = 0.4
    edge_window_mm: float = 2.5
    edge_min_contrast_hu: float = 500.0
    edge_fraction: float = 0.5
    edge_metal_hu: float = 2000.0
    edge_metal_mm: float = 3.0

    def __post_init__(self) -> None:
        if self.metal_hu is not None:
            check_range("metal_hu", self.metal_hu, 2000.0, 40000.0)
        check_range("overlap", self.overlap, 0.0, 0.9)
        check_range("whole_crop_voxels", self.whole_crop_voxels, 0, 10**9)
        check_range("sw_batch_size", self.sw_batch_size, 1, 64)
        check_range("threshold", self.threshold, 0.01, 0.99)
        check_range("min_island_ml", self.min_island_ml, 0.0, 1000.0)
        check_range("min_fragment_ml", self.min_fragment_ml, 0.0, float("inf"))
        check_range("max_regrow", self.max_regrow, 0, 10)
        check_range("regrow_mm", self.regrow_mm, 1.0, 500.0)
        check_range("edge_max_voxel_mm", self.edge_max_voxel_mm, 0.0, 10.0)
        check_range("edge_depth_mm", self.edge_depth_mm, 0.0, 10.0)
        check_range("edge_smooth_mm", self.edge_smooth_mm, 0.0, 5.0)
        check_range("edge_window_mm", self.edge_window_mm, 0.5, 20.0)
        check_range("edge_min_contrast_hu", self.edge_min_contrast_hu, 0.0, 5000.0)
        check_range("edge_fraction", self.edge_fraction, 0.05, 0.95)
        check_range("edge_metal_hu", self.edge_metal_hu, 1000.0, 40000.0)
        check_range("edge_metal_mm", self.edge_metal_mm, 0.0, 50.0)
