"""The case preview: coronal plus one sagittal panel per femur, black background, outlines."""

from __future__ import annotations

import io

import numpy as np
from model_synth import synth_case
from PIL import Image

from femurseg.export.preview import render_preview
from femurseg.types import Volume


def test_preview_panels_and_no_white_margins() -> None:
    image, labels, affine = synth_case(seed=1)
    both = Image.open(io.BytesIO(render_preview(Volume(image, affine), labels))).convert("RGB")
    one_side = labels.copy()
    one_side[one_side == 2] = 0
    one = Image.open(io.BytesIO(render_preview(Volume(image, affine), one_side))).convert("RGB")
    none = Image.open(io.BytesIO(render_preview(Volume(image, affine), labels * 0))).convert("RGB")
    # a sagittal panel per femur found: the picture widens with each
    assert none.width < one.width < both.width and none.height == both.height
    px = np.asarray(both)
    corners = [px[0, 0], px[0, -1], px[-1, 0], px[-1, -1]]
    assert all(int(c.max()) < 40 for c in corners)  # black, not white, margins
    # both outline colours are drawn: orange (left) and blue (right)
    orange = (px[..., 0] > 200) & (px[..., 1] > 100) & (px[..., 1] < 180) & (px[..., 2] < 80)
    blue = (px[..., 2] > 200) & (px[..., 0] < 100)
    assert orange.sum() > 20 and blue.sum() > 20


def test_preview_from_known_boxes_equals_the_whole_map_search() -> None:
    """The pipeline hands the femur boxes over instead of searching the map: same picture,
    whatever the map's memory order."""
    from scipy import ndimage

    from femurseg.types import Label

    image, labels, affine = synth_case(seed=2)
    vol = Volume(image, affine)
    found = ndimage.find_objects(labels)
    boxes = {Label.FEMUR_LEFT: found[0], Label.FEMUR_RIGHT: found[1]}
    searched = render_preview(vol, labels)
    assert render_preview(vol, labels, boxes) == searched
    assert render_preview(vol, np.asfortranarray(labels)) == searched
    one = labels.copy()
    one[one == 2] = 0
    assert render_preview(vol, one, {Label.FEMUR_LEFT: found[0], Label.FEMUR_RIGHT: None}) == (
        render_preview(vol, one)
    )
