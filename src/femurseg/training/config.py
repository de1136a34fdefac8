"""Training configuration (frozen, validated, saved in every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from femurseg.config import check_range
from femurseg.errors import ConfigError
from femurseg.weights import Stage


@dataclass(frozen=True)
class TrainConfig:
    """How one network is trained (stage 1, stage 2 or the single-stage SegResNet baseline).

    Attributes:
        stage: which network.
        steps: total optimiser steps (global, the same on every DDP rank).
        batch_size: samples per step and rank (stage 1 pads whole scans to a common size).
        lr: peak learning rate (AdamW), reached after ``warmup_steps``, cosine decay to 5 %.
        warmup_steps: linear warm-up length.
        weight_decay: AdamW weight decay.
        patch_size: stage 1: the largest coarse sub-volume (i, j, k) in voxels; whole scans
            larger than this are cropped at random. Stage 2 trains on windows of its model
            config's ``roi_size`` instead, so training and sliding-window inference match.
        flip_lr: stage 1: mirror half the samples left-right and exchange their labels (a
            mirrored body is a valid body); off by default, since it hides the position cues
            that tell left from right and slows learning.
        fg_fraction: stage 2 and segresnet: share of patches centred on a femur voxel.
        end_fraction: stage 2: of those, the share centred within 25 mm of the femur's top or
            bottom where the crop shows the joint (hip or knee), where the mask is hardest to
            place (0: every femur voxel alike).
        box_jitter_mm: stage 2: extra random context around the truth box, so training crops
            cover stage-1 box errors of about this size.
        shape_aug: stage 2 and segresnet: chance of each geometry / blur / gamma change per
            patch (see ``augment.shape_augment``); 0 turns them off.
        negative_crops: stage 2: crops per training case placed off the femur (shifted from
            the femur box onto the tibia or the pelvis, or on another bone of a scan without a
            femur), each with its true, mostly empty, target, so that a wrong stage-1 box yields
            an empty mask instead of a femur-shaped one.
        domain_rand: stage 2 and segresnet: chance per patch of intensity domain randomisation
            (a random intensity transfer curve, bias field, sharpening; see
            ``augment.domain_randomize``), so that the network must use shape, not the
            phantoms' exact HU.
        noise_aug: stage 1, stage 2 and segresnet: chance per sample of correlated CT-like
            noise of up to about 80 HU (``augment.correlated_noise``), for low-dose and large
            patients' scans.
        val_every: steps between validations (each writes ``last.pt``; the best also
            ``best.pt``).
        val_cases: at most this many validation cases (to keep validation quick).
        seed: all randomness derives from (seed, rank, step), so a resumed run continues
            exactly as an uninterrupted one would.
        amp: mixed precision: float16 on CUDA, bfloat16 on CPUs that run it natively
            (AVX512-BF16 or AMX; about 2x faster steps there); ignored on other CPUs.
    """

    stage: Stage = Stage.STAGE2
    steps: int = 2000
    batch_size: int = 2
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 1e-5
    patch_size: tuple[int, int, int] = (112, 96, 192)
    flip_lr: bool = False
    fg_fraction: float = 0.7
    end_fraction: float = 0.0
    box_jitter_mm: float = 10.0
    shape_aug: float = 0.3
    negative_crops: int = 0
    domain_rand: float = 0.0
    noise_aug: float = 0.0
    val_every: int = 100
    val_cases: int = 6
    seed: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "stage", Stage(self.stage))
        except ValueError as err:
            raise ConfigError(
                f"stage={self.stage!r}; expected one of {', '.join(s.value for s in Stage)}"
            ) from err
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("batch_size", self.batch_size, 1, 1024)
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("warmup_steps", self.warmup_steps, 0, 1_000_000)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        if len(self.patch_size) != 3 or any(p < 8 or p % 8 for p in self.patch_size):
            raise ConfigError(
                f"patch_size={self.patch_size}; expected 3 multiples of 8, each at least 8"
            )
        check_range("fg_fraction", self.fg_fraction, 0.0, 1.0)
        check_range("end_fraction", self.end_fraction, 0.0, 1.0)
        check_range("box_jitter_mm", self.box_jitter_mm, 0.0, 100.0)
        check_range("shape_aug", self.shape_aug, 0.0, 1.0)
        check_range("negative_crops", self.negative_crops, 0, 16)
        check_range("domain_rand", self.domain_rand, 0.0, 1.0)
        check_range("noise_aug", self.noise_aug, 0.0, 1.0)
        check_range("val_every", self.val_every, 1, 10_000_000)
        check_range("val_cases", self.val_cases, 1, 100_000)
        check_range("seed", self.seed, 0, 2**31 - 1)
