"""Tiny synthetic 'lower limbs' for the model tests: two ellipsoid femurs with a medial head.

World RAS+ mm: the left femur lies at x < 0, the right at x > 0; each head points medially
(towards x = 0), so the two sides are mirror images, as real femurs are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from femurseg.io import write_image


def synth_case(
    shape: tuple[int, int, int] = (48, 36, 72),
    spacing: float = 3.0,
    seed: int = 0,
    sides: tuple[int, ...] = (1, 2),
    z_shift: float = 0.0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """HU image, label map and affine (canonical RAS+ axes) of one synthetic case."""
    rng = np.random.default_rng(seed)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * spacing
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    x = affine[0, 0] * ii + affine[0, 3]
    y = affine[1, 1] * jj + affine[1, 3]
    z = affine[2, 2] * kk + affine[2, 3] - z_shift
    labels = np.zeros(shape, dtype=np.uint8)
    jitter = rng.uniform(-3, 3, size=3)
    for side in sides:
        sign = -1.0 if side == 1 else 1.0
        cx = sign * 38.0 + jitter[0]
        shaft = ((x - cx) / 10) ** 2 + ((y - jitter[1]) / 10) ** 2 + (
            (z - jitter[2]) / 75
        ) ** 2 <= 1
        hx = cx - sign * 16.0
        head = (x - hx) ** 2 + (y - jitter[1]) ** 2 + (z - 62 - jitter[2]) ** 2 <= 11.0**2
        labels[shaft | head] = side
    body = (x / 75) ** 2 + (y / 50) ** 2 <= 1
    image = np.where(body, 40.0, -1000.0) + rng.normal(0, 15, size=shape)
    image[labels > 0] = 700.0 + rng.normal(0, 30, size=int((labels > 0).sum()))
    return image.astype(np.float32), labels, affine


def write_dataset(root: Path, n: int = 4, axcodes: tuple[str, ...] = ("RAS", "LPS")) -> Path:
    """A dataset folder (images/, labels/, dataset.json) of ``n`` synthetic cases."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(n):
        image, labels, affine = synth_case(seed=i)
        cid = f"synth_{i:03d}"
        code = axcodes[i % len(axcodes)]
        write_image(image, affine, root / "images" / f"{cid}.nii.gz", axcodes=code, dtype=np.int16)
        write_image(labels, affine, root / "labels" / f"{cid}.nii.gz", axcodes=code)
        cases.append({"id": cid, "image": f"images/{cid}.nii.gz", "label": f"labels/{cid}.nii.gz"})
    ids = [c["id"] for c in cases]
    split = {
        "train": ids[: max(1, n - 2)],
        "val": ids[max(1, n - 2) : n - 1] or ids[:1],
        "test": ids[n - 1 :],
    }
    (root / "dataset.json").write_text(json.dumps({"cases": cases, "split": split}, indent=2))
    return root


def tiny_configs() -> tuple[Any, Any]:
    """The smallest stage-1 and stage-2 network configs the model tests train or load."""
    from femurseg.detection import DetectorConfig
    from femurseg.segmentation import SegmenterConfig

    return (
        DetectorConfig(spacing_mm=6.0, channels=(4, 8, 16), strides=(2, 2), num_res_units=0),
        SegmenterConfig(spacing_mm=3.0, blocks_down=(1, 1), blocks_up=(1,), roi_size=(16, 16, 32)),
    )


def write_tiny_weights(root: Path) -> tuple[Path, Path]:
    """Real (untrained, seeded) checkpoints of both tiny networks: ``root/s1.pt``, ``s2.pt``."""
    import torch

    from femurseg.config import to_dict
    from femurseg.detection import build_detector
    from femurseg.segmentation import build_segmenter
    from femurseg.weights import save_checkpoint

    s1, s2 = tiny_configs()
    torch.manual_seed(0)
    out = []
    for name, stage, cfg, build in (
        ("s1.pt", "stage1", s1, build_detector),
        ("s2.pt", "stage2", s2, build_segmenter),
    ):
        payload = {"stage": stage, "model_config": to_dict(cfg), "model": build(cfg).state_dict()}
        out.append(save_checkpoint(payload, root / name))
    return out[0], out[1]
