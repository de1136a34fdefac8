"""Pure geometry and intensity functions shared by both stages and training.

Grids and boxes (world RAS+ mm), separable resampling between grids that share axis directions,
crops, padding, HU windowing, and :func:`paste_back`, the single way back to the input grid.
"""

from femurseg.preprocessing.boxes import Box, box_iou, index_box_to_world, mask_box, voxel_range
from femurseg.preprocessing.crop import crop, crop_grid, pad_to_multiple
from femurseg.preprocessing.grid import Grid, mirror_grid, spacing_grid
from femurseg.preprocessing.intensity import AIR_HU, normalise_hu
from femurseg.preprocessing.paste import Pasted, paste_back
from femurseg.preprocessing.resample import index_map, resample, resample_to_spacing

__all__ = [
    "AIR_HU",
    "Box",
    "Grid",
    "Pasted",
    "box_iou",
    "crop",
    "crop_grid",
    "index_box_to_world",
    "index_map",
    "mask_box",
    "mirror_grid",
    "normalise_hu",
    "pad_to_multiple",
    "paste_back",
    "resample",
    "resample_to_spacing",
    "spacing_grid",
    "voxel_range",
]
