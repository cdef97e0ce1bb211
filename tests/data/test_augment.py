"""Augmentations move boxes, masks and points with the image; a flip rewrites left/right."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from regiongpt.data.augment import Sample, apply_all, hflip, resize, shift, swap_left_right
from regiongpt.regions import Box, Mask, Point


def _sample() -> Sample:
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[5:15, 10:20] = 255  # a white square under the box
    mask = np.zeros((40, 60), dtype=bool)
    mask[20:30, 40:50] = True
    pixels[mask] = (255, 0, 0)
    turns = [
        {"from": "human", "value": "Is <region1> left of <region2>?"},
        {"from": "gpt", "value": "Left, yes."},
    ]
    return Sample(Image.fromarray(pixels), [Box(10, 5, 20, 15), Mask(mask), Point(15, 10, 2)], turns)


def test_swap_left_right_keeps_case_and_tags():
    assert swap_left_right("Left of <region1>, the rightmost one") == "Right of <region1>, the leftmost one"
    assert swap_left_right("leftover") == "leftover"


def test_hflip_moves_regions_onto_the_same_pixels_and_rewrites_text():
    flipped = hflip(_sample())
    box, mask, point = flipped.regions
    assert box.as_list() == [40.0, 5.0, 50.0, 15.0]
    pixels = np.asarray(flipped.image)
    assert (pixels[5:15, 40:50] == 255).all()
    assert (pixels[mask.data] == (255, 0, 0)).all()
    assert point.x == 45 and point.y == 10
    assert flipped.conversations[0]["value"] == "Is <region1> right of <region2>?"
    assert flipped.conversations[1]["value"] == "Right, yes."


def test_resize_scales_boxes_and_masks_consistently():
    resized = resize(_sample(), 2.0)
    assert resized.image.size == (120, 80)
    assert resized.regions[0].as_list() == [20.0, 10.0, 40.0, 30.0]
    assert resized.regions[1].to_box((120, 80)).as_list() == [80.0, 40.0, 100.0, 60.0]
    with pytest.raises(ValueError, match="scale must be positive"):
        resize(_sample(), 0)


def test_shift_moves_content_and_regions_together():
    moved = shift(_sample(), 5, -3)
    box, mask, _ = moved.regions
    assert box.as_list() == [15.0, 2.0, 25.0, 12.0]
    pixels = np.asarray(moved.image)
    assert (pixels[2:12, 15:25] == 255).all()
    assert (pixels[mask.data] == (255, 0, 0)).all()
    with pytest.raises(ValueError, match="region 1 leaves the image"):
        shift(_sample(), -30, 0)


def test_apply_all_is_deterministic_per_seed():
    a = apply_all(_sample(), ["hflip", "resize", "shift"], np.random.default_rng(3))
    b = apply_all(_sample(), ["hflip", "resize", "shift"], np.random.default_rng(3))
    assert a.regions[0].as_list() == b.regions[0].as_list() and a.image.size == b.image.size
