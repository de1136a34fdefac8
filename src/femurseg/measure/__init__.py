"""Measurements and quality flags per femur, from a label map on its grid (world RAS+ mm).

::

    measure_femurs(labels, affine, config=None) -> {"femur_left": FemurMeasurements, ...}
        volume (ml), length (mm), head diameter (mm), neck-shaft angle (deg); each omitted,
        with its reason, when the part it needs is out of view.
    quality_flags(labels, affine, *, hu=None, scores=None, config=None)
        -> {"femur_left": [QualityFlag], ...}: not found, cut by the edge (which end), metal
        suspected (voxel count), low stage-1 confidence.
"""

from femurseg.measure.measurements import (
    FemurMeasurements,
    MeasureConfig,
    Measurement,
    measure_femur,
    measure_femurs,
    withhold_for_metal,
)
from femurseg.measure.quality import (
    CutEnd,
    EdgeContact,
    FlagCode,
    QualityConfig,
    QualityFlag,
    edge_contact,
    quality_flags,
    side_flags,
)

__all__ = [
    "CutEnd",
    "EdgeContact",
    "FemurMeasurements",
    "FlagCode",
    "MeasureConfig",
    "Measurement",
    "QualityConfig",
    "QualityFlag",
    "edge_contact",
    "measure_femur",
    "measure_femurs",
    "quality_flags",
    "side_flags",
    "withhold_for_metal",
]
