"""Articular cartilage and menisci: the joint space as a CT shows it.

Between the femur and the tibia, patella or acetabulum a CT does not show an empty gap: the
articular cartilage on both bones (and, in the knee, the menisci wedged round the rim) reads
about 60-120 HU, denser than the fluid and muscle the phantom would otherwise put there, so the
dark line that separates two bones is fainter. Where a case draws it, every non-bone voxel
within :attr:`~femurseg.phantoms.params.JointTissueParams.depth_mm` of both bones of a joint is
painted with the case's cartilage HU: the joint space itself, and the wedge round the contact
where the two surfaces part (the menisci's place in the knee). None of it is femur.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.anatomy.grid import RenderGrid
from femurseg.phantoms.anatomy.model import JOINTS, joint_bones
from femurseg.phantoms.anatomy.voxelize import MaskCrop
from femurseg.phantoms.params import JointTissueParams
from femurseg.phantoms.tissues.materials import Tissue

F32 = npt.NDArray[np.float32]

#: tissue classes that are bone or metal: never painted over.
HARD = (Tissue.CORTICAL, Tissue.CANCELLOUS, Tissue.MARROW, Tissue.METAL)


def paint_joint_tissue(
    crops: dict[str, MaskCrop],
    grid: RenderGrid,
    params: JointTissueParams,
    rng: np.random.Generator,
    hu: F32,
    cls: npt.NDArray[np.uint8],
) -> dict[str, float] | None:
    """Paint cartilage into the joint spaces (in place).

    Nothing is drawn or painted unless the case draws joint tissue (``params.probability``).

    Returns:
        ``{"hu": ..., "voxels": ...}`` (the HU drawn and the render-grid voxels painted), or
        None when the case has none.
    """
    if params.probability <= 0.0 or rng.random() >= params.probability:
        return None
    value = np.float32(rng.uniform(*params.hu))
    reach = [int(np.ceil(params.depth_mm / s)) + 1 for s in grid.spacing]
    painted = 0
    for side in ("left", "right"):
        for joint in JOINTS:
            a_key, b_key = joint_bones(joint, side)
            a, b = crops.get(a_key), crops.get(b_key)
            if a is None or b is None or a.count == 0 or b.count == 0:
                continue
            lo = [
                max(max(sa.start, sb.start) - r, 0)
                for sa, sb, r in zip(a.slices, b.slices, reach, strict=True)
            ]
            hi = [
                min(min(sa.stop, sb.stop) + r, n)
                for sa, sb, r, n in zip(a.slices, b.slices, reach, grid.shape, strict=True)
            ]
            if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
                continue
            region = tuple(slice(lo_, h) for lo_, h in zip(lo, hi, strict=True))
            ma, mb = a.within(region), b.within(region)  # type: ignore[arg-type]
            if not ma.any() or not mb.any():
                continue
            near = ndi.distance_transform_edt(~ma, sampling=grid.spacing) <= params.depth_mm
            near &= ndi.distance_transform_edt(~mb, sampling=grid.spacing) <= params.depth_mm
            c = cls[region]
            near &= ~np.isin(c, np.array(HARD, dtype=np.uint8))
            h = hu[region]
            h[near] = value
            c[near] = np.uint8(Tissue.CARTILAGE)
            painted += int(np.count_nonzero(near))
    return {"hu": round(float(value), 1), "voxels": painted}
