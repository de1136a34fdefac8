"""Tissue classes, the per-case draw of their HU values, and smooth random fields for texture.

The renderer works on a tissue class map (uint8, :class:`Tissue`) alongside the HU image; the
class map is what tests check HU ranges against. :class:`CaseTissues` holds one case's draw of
every tissue parameter from :class:`~femurseg.phantoms.params.TissueParams`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from femurseg.phantoms.params import Range, TissueParams

F32 = npt.NDArray[np.float32]


class Tissue(enum.IntEnum):
    """Tissue classes of the clean (pre-scanner) phantom."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    SKIN = 3
    FLUID = 4
    BOWEL = 5
    GAS = 6
    TABLE_FOAM = 7
    TABLE_SHELL = 8
    CORTICAL = 9
    CANCELLOUS = 10
    MARROW = 11
    METAL = 12
    ORGAN = 13  # liver, spleen, kidneys, great vessels, intervertebral discs
    CARTILAGE = 14  # articular cartilage and menisci in the joint spaces


#: ``put(where, value, tissue)``: paint a HU value (a number or a per-pixel array) and a
#: :class:`Tissue` class into the pixels of a slice where ``where`` holds.
Put = Callable[[npt.NDArray[np.bool_], "float | F32", Tissue], None]


def painter(hu: F32, cls: npt.NDArray[np.uint8]) -> Put:
    """A :data:`Put` writing into one slice's HU and tissue-class arrays (in place)."""

    def put(where: npt.NDArray[np.bool_], value: float | F32, c: Tissue) -> None:
        np.copyto(hu, np.float32(value) if isinstance(value, float) else value, where=where)
        np.copyto(cls, np.uint8(c), where=where)

    return put


def draw(rng: np.random.Generator, r: Range) -> float:
    """One uniform draw from a ``(low, high)`` range."""
    return float(rng.uniform(r[0], r[1]))


@dataclass(frozen=True)
class CaseTissues:
    """One case's tissue parameters (HU and mm), drawn from :class:`TissueParams`.

    ``bone_quality`` is in [0, 1]: 0 osteoporotic, 1 young dense bone; it sets cortical and
    cancellous HU and the cortical thickness together so that they stay consistent.
    """

    fat: float
    muscle: float
    skin: float
    fluid: float
    bowel: float
    gas: float
    liver: float
    spleen: float
    kidney: float
    blood: float
    disc: float
    stool: float
    air: float
    table_shell: float
    table_foam: float
    mattress: float
    pad_cover: float
    cortical: float
    cancellous: float
    marrow: float
    trabecular_contrast: float
    cortex_shaft_mm: float
    cortex_end_mm: float
    cortex_pelvis_mm: float
    bone_quality: float
    subcut_fat_mm: float
    marbling: float
    fascia_mm: float
    skin_mm: float
    muscle_margin_mm: float
    thigh_ml_mm: float
    thigh_ap_mm: float
    knee_mm: float
    calf_mm: float
    ankle_mm: float
    gluteal_mm: float
    bladder_mm: float
    gas_fraction: float
    trabecular_grain_mm: float = 0.5
    cancellous_variation: float = 0.0
    end_plate_density: float = 1.0
    sourcil_mm: float = 0.0
    cortex_metaphysis_mm: float = 1.0
    metaphysis_density: float = 1.0
    head_cancellous_hu: float = 0.0

    def to_meta(self) -> dict[str, float]:
        """JSON-ready dict of the drawn values, rounded for readability."""
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


def draw_case_tissues(p: TissueParams, rng: np.random.Generator) -> CaseTissues:
    """Draw one case's tissue parameters.

    Args:
        p: the ranges.
        rng: random generator (consumed in a fixed order, so a seed fixes the draw).
    """
    # Bone quality: most cases in between, skewed towards the older patients CT mostly sees.
    q = float(rng.beta(p.bone_quality_a, p.bone_quality_b))

    def lerp(dense: Range, porotic: Range) -> float:
        return q * draw(rng, dense) + (1.0 - q) * draw(rng, porotic)

    cortical = lerp(p.cortical_dense_hu, p.cortical_porotic_hu)
    cancellous = lerp(p.cancellous_dense_hu, p.cancellous_porotic_hu)
    thin = q + (1.0 - q) * draw(rng, p.porotic_cortex_factor)
    # Obesity skews to the low end: draw the subcutaneous fat thickness on a squared scale.
    u = float(rng.uniform()) ** 1.6
    subcut = p.subcut_fat_mm[0] + u * (p.subcut_fat_mm[1] - p.subcut_fat_mm[0])
    return CaseTissues(
        fat=draw(rng, p.fat_hu),
        muscle=draw(rng, p.muscle_hu),
        skin=draw(rng, p.skin_hu),
        fluid=draw(rng, p.fluid_hu),
        bowel=draw(rng, p.bowel_hu),
        gas=draw(rng, p.gas_hu),
        liver=draw(rng, p.liver_hu),
        spleen=draw(rng, p.spleen_hu),
        kidney=draw(rng, p.kidney_hu),
        blood=draw(rng, p.blood_hu),
        disc=draw(rng, p.disc_hu),
        stool=draw(rng, p.stool_hu),
        air=draw(rng, p.air_hu),
        table_shell=draw(rng, p.table_shell_hu),
        table_foam=draw(rng, p.table_foam_hu),
        mattress=draw(rng, p.mattress_hu),
        pad_cover=draw(rng, p.pad_cover_hu),
        cortical=cortical,
        cancellous=cancellous,
        marrow=draw(rng, p.marrow_hu) - 30.0 * (1.0 - q),  # fattier marrow with age
        trabecular_contrast=draw(rng, p.trabecular_contrast),
        cortex_shaft_mm=draw(rng, p.cortex_shaft_mm) * thin,
        cortex_end_mm=draw(rng, p.cortex_end_mm),
        cortex_pelvis_mm=draw(rng, p.cortex_pelvis_mm),
        bone_quality=q,
        subcut_fat_mm=subcut,
        marbling=draw(rng, p.marbling),
        fascia_mm=draw(rng, p.fascia_mm),
        skin_mm=draw(rng, p.skin_mm),
        muscle_margin_mm=draw(rng, p.muscle_margin_mm),
        thigh_ml_mm=draw(rng, p.thigh_ml_mm),
        thigh_ap_mm=draw(rng, p.thigh_ap_mm),
        knee_mm=draw(rng, p.knee_mm),
        calf_mm=draw(rng, p.calf_mm),
        ankle_mm=draw(rng, p.ankle_mm),
        gluteal_mm=draw(rng, p.gluteal_mm),
        bladder_mm=draw(rng, p.bladder_mm),
        gas_fraction=draw(rng, p.gas_fraction),
        # Older bone: coarser trabeculae. Drawn last so earlier draws keep their values.
        trabecular_grain_mm=draw(rng, p.trabecular_grain_mm) * (1.3 - 0.5 * q),
        cancellous_variation=draw(rng, p.cancellous_variation),
        end_plate_density=draw(rng, p.end_plate_density),
        sourcil_mm=draw(rng, p.sourcil_mm),
        cortex_metaphysis_mm=draw(rng, p.cortex_metaphysis_mm),
        metaphysis_density=draw(rng, p.metaphysis_density),
        head_cancellous_hu=draw(rng, p.head_cancellous_hu),
    )


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float | tuple[float, ...]
) -> F32:
    """Gaussian-smoothed white noise normalised to zero mean and unit SD.

    Args:
        rng: random generator.
        shape: output shape (any dimension).
        sigma_vox: Gaussian sigma in voxels (scalar or per axis).

    Returns:
        float32 array of ``shape``.
    """
    f = rng.standard_normal(shape, dtype=np.float32)
    f = ndi.gaussian_filter(f, sigma_vox, mode="wrap")
    sd = float(f.std())
    return ((f - f.mean()) / (sd if sd > 0 else 1.0)).astype(np.float32)


def bandpass_noise(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    fine_vox: tuple[float, float, float],
    coarse_vox: tuple[float, float, float],
) -> F32:
    """Unit-SD band-pass noise (difference of Gaussians) for trabecular texture.

    Args:
        rng: random generator.
        shape: (X, Y, Z) voxels.
        fine_vox: sigma per axis of the fine Gaussian, voxels.
        coarse_vox: sigma per axis of the coarse Gaussian, voxels.
    """
    w = rng.standard_normal(shape, dtype=np.float32)
    a = ndi.gaussian_filter(w, fine_vox, truncate=3.0)
    b = ndi.gaussian_filter(a, coarse_vox, truncate=3.0)
    a -= b
    sd = float(a.std())
    a /= sd if sd > 0 else 1.0
    return a


class SliceField:
    """A coarse 3D random field sampled slice by slice on a fine axis-aligned grid.

    The field lives on a coarse lattice (``step_mm`` apart) covering the fine grid; each axial
    slice is interpolated linearly in z, then in x and y by two small matrix products, which
    is much cheaper than 3D interpolation of the whole volume.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        origin: npt.ArrayLike,
        spacing: npt.ArrayLike,
        shape: tuple[int, int, int],
        step_mm: tuple[float, float, float],
        smooth_vox: float = 1.0,
    ) -> None:
        """Draw the field.

        Args:
            rng: random generator.
            origin: world RAS mm of fine voxel (0, 0, 0).
            spacing: fine voxel size (x, y, z) mm (positive: axis-aligned RAS grid).
            shape: fine grid (X, Y, Z).
            step_mm: coarse lattice step (x, y, z) mm.
            smooth_vox: extra Gaussian smoothing of the coarse lattice, in coarse voxels.
        """
        o = np.asarray(origin, dtype=np.float64)
        sp = np.asarray(spacing, dtype=np.float64)
        st = np.asarray(step_mm, dtype=np.float64)
        ext = sp * (np.asarray(shape) - 1)
        n = np.ceil(ext / st).astype(int) + 2
        self._coarse = smooth_field(rng, (int(n[0]), int(n[1]), int(n[2])), smooth_vox)
        self._z0 = o[2]
        self._sz = sp[2] / st[2]
        self._ix = _interp_index(shape[0], sp[0] / st[0], int(n[0]))
        self._iy = _interp_index(shape[1], sp[1] / st[1], int(n[1]))

    def slice(
        self, k: int, i0: int = 0, i1: int | None = None, j0: int = 0, j1: int | None = None
    ) -> F32:
        """The field on fine slice ``k`` over the window [i0:i1, j0:j1]: float32, about unit SD."""
        zc = k * self._sz
        k0 = min(int(np.floor(zc)), self._coarse.shape[2] - 2)
        t = np.float32(zc - k0)
        c = (1 - t) * self._coarse[:, :, k0] + t * self._coarse[:, :, k0 + 1]
        xi, xt = self._ix[0][i0:i1], self._ix[1][i0:i1, None]
        yi, yt = self._iy[0][j0:j1], self._iy[1][None, j0:j1]
        r = c[xi] * (1 - xt) + c[xi + 1] * xt
        return (r[:, yi] * (1 - yt) + r[:, yi + 1] * yt).astype(np.float32, copy=False)


def _interp_index(n_fine: int, ratio: float, n_coarse: int) -> tuple[npt.NDArray[np.intp], F32]:
    """Lower coarse index and weight of the upper one for fine index i at coarse i * ratio."""
    pos = np.arange(n_fine) * ratio
    i0 = np.minimum(np.floor(pos).astype(np.intp), n_coarse - 2)
    return i0, (pos - i0).astype(np.float32)
