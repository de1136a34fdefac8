"""Analytic femur-like phantoms with known length, head radius and neck-shaft angle (for tests).

A femur is the union of: a capsule shaft along world z, a sphere head on an angled neck
cylinder at the top, and a flattened ellipsoid (the condyles) at the bottom. The head points
medially: world +x for the left femur (label 1, which sits at x < 0), -x for the right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class FemurSpec:
    """Known geometry (mm, degrees) of one phantom femur, world RAS+."""

    shaft_x: float  # x of the shaft axis
    shaft_y: float = 0.0
    z_bottom: float = 0.0  # shaft capsule axis from z_bottom to z_top
    z_top: float = 300.0
    shaft_radius: float = 13.0
    neck_length: float = 50.0  # neck base (on the shaft axis) to head centre
    neck_radius: float = 14.0
    head_radius: float = 22.0
    nsa_deg: float = 128.0
    condyle_radii: tuple[float, float, float] = (38.0, 28.0, 24.0)
    medial: float = 1.0  # +1: head towards +x (left femur), -1: towards -x (right femur)
    anteversion_deg: float = 0.0  # neck turned from the medial direction towards +y (anterior)
    posterior_condyles: bool = False  # two spheres behind the condyles (a posterior line)
    lesser_trochanter: bool = False  # a posteromedial bump 55 mm below the neck base

    def _turn(self, medial_part: float, anterior_part: float) -> npt.NDArray[np.float64]:
        """A horizontal direction given in (medial, anterior) parts, turned by the anteversion."""
        a = np.radians(self.anteversion_deg)
        m = medial_part * np.cos(a) - anterior_part * np.sin(a)
        n = medial_part * np.sin(a) + anterior_part * np.cos(a)
        return np.array([self.medial * m, n, 0.0])

    @property
    def neck_base(self) -> npt.NDArray[np.float64]:
        return np.array([self.shaft_x, self.shaft_y, self.z_top - 8.0])

    @property
    def neck_dir(self) -> npt.NDArray[np.float64]:
        theta = np.radians(180.0 - self.nsa_deg)  # from the proximal shaft axis
        return np.sin(theta) * self._turn(1.0, 0.0) + np.array([0.0, 0.0, np.cos(theta)])

    @property
    def lesser_trochanter_centre(self) -> npt.NDArray[np.float64]:
        down = self.neck_base - np.array([0.0, 0.0, 55.0])
        return down + 13.0 * self._turn(np.sqrt(0.5), -np.sqrt(0.5))

    @property
    def condyle_centres(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(medial, lateral) centres of the posterior condyle spheres."""
        base = np.array([self.shaft_x, self.shaft_y - 10.0, self.z_bottom - 8.0])
        side = np.array([self.medial * 22.0, 0.0, 0.0])
        return base + side, base - side

    @property
    def head_centre(self) -> npt.NDArray[np.float64]:
        return self.neck_base + self.neck_length * self.neck_dir

    @property
    def length(self) -> float:
        """Along z (the shaft axis): head top to condyle bottom."""
        return float(
            self.head_centre[2] + self.head_radius - (self.z_bottom - self.condyle_radii[2])
        )


def _segment_dist(
    p: npt.NDArray[np.float64], a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - a - t[..., None] * ab, axis=-1)


def femur_mask(spec: FemurSpec, world: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Inside test for world points of shape (..., 3)."""
    a = np.array([spec.shaft_x, spec.shaft_y, spec.z_bottom])
    b = np.array([spec.shaft_x, spec.shaft_y, spec.z_top])
    inside = _segment_dist(world, a, b) <= spec.shaft_radius
    inside |= _segment_dist(world, spec.neck_base, spec.head_centre) <= spec.neck_radius
    inside |= np.linalg.norm(world - spec.head_centre, axis=-1) <= spec.head_radius
    rel = (world - a) / np.asarray(spec.condyle_radii)
    inside |= (rel**2).sum(axis=-1) <= 1.0
    if spec.posterior_condyles:
        for c in spec.condyle_centres:
            inside |= np.linalg.norm(world - c, axis=-1) <= 20.0
    if spec.lesser_trochanter:
        inside |= np.linalg.norm(world - spec.lesser_trochanter_centre, axis=-1) <= 9.0
    return inside


def bilateral_phantom(
    spacing: tuple[float, float, float] = (1.2, 1.5, 2.5),
    nsa: tuple[float, float] = (128.0, 122.0),
    anteversion: tuple[float, float] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64], dict[int, FemurSpec]]:
    """Label map (X, Y, Z) with a left (1) and right (2) femur, its affine and the specs.

    With ``anteversion`` (left, right degrees) the femurs also get posterior condyles and a
    lesser trochanter, so that torsion can be measured, and the field of view grows to hold
    a neck turned forwards.
    """
    extra: dict[str, object] = {}
    lo = np.array([-140.0, -40.0, -40.0])
    hi = np.array([140.0, 40.0, 375.0])
    if anteversion is not None:
        extra = {"posterior_condyles": True, "lesser_trochanter": True}
        lo[1], hi[1] = -45.0, 75.0
    av = anteversion or (0.0, 0.0)
    specs = {
        1: FemurSpec(shaft_x=-90.0, medial=1.0, nsa_deg=nsa[0], head_radius=22.0,
                     anteversion_deg=av[0], **extra),  # type: ignore[arg-type]
        2: FemurSpec(shaft_x=90.0, medial=-1.0, nsa_deg=nsa[1], head_radius=24.0,
                     anteversion_deg=av[1], **extra),  # type: ignore[arg-type]
    }  # fmt: skip
    sp = np.asarray(spacing)
    shape = tuple(int(n) for n in np.ceil((hi - lo) / sp) + 1)
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = lo
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = ijk * sp + lo
    labels = np.zeros(shape, dtype=np.uint8)
    for value, spec in specs.items():
        labels[femur_mask(spec, world)] = value
    return labels, affine, specs
