"""Stage-2 training task: patches of left-looking femur crops, femur vs background."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from femurseg.config import to_dict
from femurseg.detection.boxes import SIDES, boxes_from_labels
from femurseg.io import read_labels, read_volume
from femurseg.preprocessing.boxes import Box, voxel_range
from femurseg.preprocessing.grid import Grid
from femurseg.preprocessing.resample import resample
from femurseg.segmentation.config import SegmenterConfig
from femurseg.segmentation.network import build_segmenter
from femurseg.segmentation.prepare import crop_image, side_grid
from femurseg.training.augment import draw_patches, step_rng
from femurseg.training.config import TrainConfig
from femurseg.training.data import CaseEntry
from femurseg.training.tasks import TaskBase
from femurseg.types import Label

log = logging.getLogger(__name__)


#: HU above which a voxel is bone when placing negative crops.
NEGATIVE_BONE_HU = 300.0
#: a negative crop is centred at least this far (mm) outside every femur's box.
NEGATIVE_CLEARANCE_MM = 20.0
#: size range (mm) of a negative crop's box on a scan without a usable femur box: from a
#: short distal or proximal end to a long shaft, as stage 1 might wrongly propose.
NEGATIVE_BOX_MM = ((55.0, 110.0), (55.0, 110.0), (70.0, 420.0))
#: a negative crop needs at least this many bone voxels (else it is air or soft tissue only).
NEGATIVE_MIN_BONE_VOXELS = 500
#: ``end_fraction`` patches are centred within this many mm of a femur's top or bottom.
END_ZONE_MM = 25.0
#: an end is a joint end (not cut by the scan) when the crop shows tissue this many mm past it.
END_PROBE_MM = 6.0


def joint_end_voxels(
    image: npt.NDArray[Any], label: npt.NDArray[Any], spacing_mm: float
) -> npt.NDArray[np.int_]:
    """Flat indices of the label voxels within :data:`END_ZONE_MM` of the femur's top or bottom
    (the crop's third axis runs foot to head), for ends the scan does not cut off.

    An end is left out when the crop holds no tissue :data:`END_PROBE_MM` beyond it over the
    end slice's footprint: outside the scan the crop reads 0 (air below the window), and a
    femur cut by the field of view shows no joint to learn.
    """
    zs = np.flatnonzero(label.any(axis=(0, 1)))
    if zs.size == 0:
        return np.zeros(0, dtype=np.int64)
    zone = max(1, round(END_ZONE_MM / spacing_mm))
    probe = max(1, round(END_PROBE_MM / spacing_mm))
    keep = np.zeros(label.shape[2], dtype=bool)
    for end, step in ((int(zs[0]), -1), (int(zs[-1]), 1)):
        beyond = end + step * probe
        if not 0 <= beyond < label.shape[2]:
            continue
        foot = label[:, :, end].astype(bool)
        if float(np.max(image[:, :, beyond][foot], initial=0.0)) <= 0.0:
            continue
        lo, hi = (end, end + zone) if step < 0 else (end - zone + 1, end + 1)
        keep[max(lo, 0) : min(hi, label.shape[2])] = True
    sel = label.astype(bool) & keep[None, None, :]
    return np.flatnonzero(sel)


def negative_boxes(
    hu: npt.NDArray[Any],
    like: Grid,
    femur_boxes: dict[Label, Box | None],
    n: int,
    rng: np.random.Generator,
) -> list[tuple[Label, Box]]:
    """Up to ``n`` boxes placed off the femurs, each with the side it is cropped as.

    With a femur box: the box shifted along the body axis by 80-120 % of its height, down
    onto the knee, tibia and fibula or up onto the acetabulum and ilium (alternately). Without
    one, or when the shift leaves the scan: a femur-sized box centred on a bone voxel at least
    :data:`NEGATIVE_CLEARANCE_MM` outside every femur box (tibia, patella, pelvis, sacrum,
    spine). Boxes whose crop would hold almost no bone are skipped.
    """
    found = [(s, b) for s, b in femur_boxes.items() if b is not None]
    out: list[tuple[Label, Box]] = []
    bone = hu >= NEGATIVE_BONE_HU
    for k in range(n):
        box: Box | None = None
        side = SIDES[int(rng.integers(2))]
        if found and (k % 2 == 0 or rng.random() < 0.5):
            side, fb = found[int(rng.integers(len(found)))]
            h = fb.size_mm[2]
            dz = h * rng.uniform(0.8, 1.2) * (-1.0 if rng.random() < 0.6 else 1.0)
            box = Box((fb.lo[0], fb.lo[1], fb.lo[2] + dz), (fb.hi[0], fb.hi[1], fb.hi[2] + dz))
        else:
            cand = bone.copy()
            for fb in (b for _, b in found):
                rngv = voxel_range(fb.expand(NEGATIVE_CLEARANCE_MM), like)
                if rngv is not None:
                    cand[rngv] = False
            idx = np.flatnonzero(cand[::2, ::2, ::2])
            if idx.size:
                sub = np.unravel_index(int(idx[rng.integers(idx.size)]), cand[::2, ::2, ::2].shape)
                c = like.index_to_world(np.asarray(sub, dtype=np.float64) * 2.0)
                half = np.array([rng.uniform(*r) for r in NEGATIVE_BOX_MM]) / 2.0
                box = Box(tuple(c - half), tuple(c + half))  # type: ignore[arg-type]
        if box is None:
            continue
        vr = voxel_range(box, like)
        if vr is None or int(np.count_nonzero(bone[vr])) < NEGATIVE_MIN_BONE_VOXELS:
            continue
        out.append((side, box))
    return out


def prepare_stage2(
    cases: list[CaseEntry],
    cfg: SegmenterConfig,
    jitter_mm: float,
    negatives: int = 0,
    seed: int = 0,
) -> dict[str, npt.NDArray[Any]]:
    """Crops (truth box + ``jitter_mm`` + margin) of each femur in view, right ones mirrored,
    and ``negatives`` crops per case placed off the femur (:func:`negative_boxes`), each with
    the true label of its side as target (mostly or wholly empty)."""
    out: dict[str, npt.NDArray[Any]] = {}
    n = 0
    for k, case in enumerate(cases):
        vol = read_volume(case.image)
        labels, _ = read_labels(case.label, like=vol)
        like = Grid.of(vol)
        boxes = boxes_from_labels(labels, like)
        crops: list[tuple[Label, Box]] = [
            (side, box.expand(jitter_mm)) for side, box in boxes.items() if box is not None
        ]
        if negatives:
            rng = np.random.default_rng([seed, 7919, k])
            crops += negative_boxes(vol.array, like, boxes, negatives, rng)
        for side, box in crops:
            grid = side_grid(like, box, side, cfg)
            out[f"img_{n}"] = crop_image(vol.array, like, grid, cfg).numpy().astype(np.float16)
            mask = (labels == int(side)).astype(np.float32)
            out[f"lab_{n}"] = (resample(mask, like, grid, fill=0.0) >= 0.5).numpy().astype(np.uint8)
            n += 1
        log.info("prepared stage-2 case %s (%d crops so far)", case.case_id, n)
    return out


class Stage2Task(TaskBase):
    """Training and validation data and steps for the segmenter.

    Args:
        train_cases: training cases.
        val_cases: validation cases.
        model_cfg: segmenter config.
        train_cfg: training config.
        cache_dir: where prepared arrays are cached.
    """

    stage = "stage2"

    def __init__(
        self,
        train_cases: list[CaseEntry],
        val_cases: list[CaseEntry],
        model_cfg: SegmenterConfig,
        train_cfg: TrainConfig,
        cache_dir: Path,
    ) -> None:
        super().__init__(model_cfg, train_cfg, cache_dir)
        self.cfg: TrainConfig = train_cfg
        conf = to_dict(model_cfg)
        jit = train_cfg.box_jitter_mm
        neg = train_cfg.negative_crops
        key: dict[str, Any] = {**conf, "jitter": jit}
        if neg:
            key.update(negatives=neg, seed=train_cfg.seed)
        tr = self.cached(
            "train",
            train_cases,
            key,
            lambda: prepare_stage2(train_cases, model_cfg, jit, neg, train_cfg.seed),
        )
        vcases = val_cases[: train_cfg.val_cases]
        vkey: dict[str, Any] = {**conf, "jitter": 0.0}
        if neg:
            vkey.update(negatives=neg, seed=train_cfg.seed)
        va = self.cached(
            "val",
            vcases,
            vkey,
            lambda: prepare_stage2(vcases, model_cfg, 0.0, neg, train_cfg.seed),
        )
        self.train = [(tr[f"img_{n}"], tr[f"lab_{n}"]) for n in range(len(tr) // 2)]
        self.val = [(va[f"img_{n}"], va[f"lab_{n}"]) for n in range(len(va) // 2)]
        self._fg = [np.flatnonzero(lab) for _, lab in self.train]
        self._ends = (
            [joint_end_voxels(img, lab, model_cfg.spacing_mm) for img, lab in self.train]
            if train_cfg.end_fraction > 0.0
            else None
        )
        if self._ends is not None:
            with_ends = sum(1 for e in self._ends if e.size)
            log.info(
                "stage 2: %d of %d training crops show a joint end", with_ends, len(self.train)
            )

    def build(self) -> nn.Module:
        """A fresh segmenter network."""
        return build_segmenter(self.model_cfg)

    def batch(self, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (B, 1, *patch) and labels (B, 1, *patch) of one step."""
        return draw_patches(
            self.train,
            self._fg,
            self.model_cfg.roi_size,
            self.cfg.batch_size,
            self.cfg.fg_fraction,
            step_rng(self.cfg.seed, rank, step),
            self.cfg.shape_aug,
            self.cfg.domain_rand,
            self.cfg.noise_aug,
            self._ends,
            self.cfg.end_fraction,
        )

    @torch.inference_mode()
    def validate(self, net: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean Dice of whole validation crops (truth box + margin, and with
        ``negative_crops`` the off-femur crops too: an empty prediction on an empty target
        counts 1, any femur voxel there 0), by sliding windows."""
        net.eval()
        dices = []
        for img, lab in self.val:
            x = torch.from_numpy(img.astype(np.float32))[None, None].to(device)
            logits = sliding_window_inference(
                x, self.model_cfg.roi_size, 1, net, overlap=0.25, mode="gaussian"
            )
            if not isinstance(logits, torch.Tensor):  # monai's return type is a union
                raise TypeError(f"sliding_window_inference returned {type(logits).__name__}")
            pred = (torch.softmax(logits.float(), dim=1)[0, 1] >= 0.5).cpu().numpy()
            truth = lab.astype(bool)
            denom = pred.sum() + truth.sum()
            dices.append(2.0 * (pred & truth).sum() / denom if denom else 1.0)
        net.train()
        dice = float(np.mean(dices)) if dices else 0.0
        return {"metric": dice, "val_dice": dice}
