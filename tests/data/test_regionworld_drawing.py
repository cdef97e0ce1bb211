"""RegionWorld's drawing primitives: exact masks, textures, palette shades, background."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regiongpt.data.regionworld import SHAPES, TEXTURES, tight_box
from regiongpt.data.regionworld_drawing import (
    COLOURS,
    IMAGE_SIZE,
    background,
    shape_mask,
    texture_pattern,
    texture_shade,
)


@pytest.mark.parametrize("shape", SHAPES)
def test_an_unrotated_shape_fills_its_side_around_its_centre(shape: str) -> None:
    mask = shape_mask(shape, (100.0, 80.0), 40.0)
    assert mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and mask.dtype == bool
    x1, y1, x2, y2 = tight_box(mask)
    assert 26 <= x2 - x1 <= 42 and 26 <= y2 - y1 <= 42  # diamond is narrower; polygons close inclusive
    assert abs((x1 + x2) / 2 - 100) <= 1.5 and abs((y1 + y2) / 2 - 80) <= 1.5
    assert 0.2 * 40**2 < mask.sum() < 40**2 + 4 * 41


def test_a_circle_has_the_area_of_its_diameter_and_rotation_keeps_a_squares_area() -> None:
    circle = shape_mask("circle", (112.0, 112.0), 60.0)
    assert circle.sum() == pytest.approx(math.pi * 30**2, rel=0.05)
    square, turned = (
        shape_mask("square", (112.0, 112.0), 50.0),
        shape_mask("square", (112.0, 112.0), 50.0, 12.0),
    )
    assert turned.sum() == pytest.approx(square.sum(), rel=0.05)
    assert not np.array_equal(turned, square)


def test_textures_shade_part_of_the_patch_and_solid_shades_none() -> None:
    assert texture_pattern("solid", 30, 30, 30.0) is None
    for texture in TEXTURES[1:]:
        pattern = texture_pattern(texture, 30, 40, 30.0)
        assert pattern.shape == (30, 40) and 0.1 < pattern.mean() < 0.7, texture


def test_the_shade_of_a_colour_is_a_different_colour_towards_white_or_black() -> None:
    assert texture_shade("black") == (114, 114, 114)  # (20, 20, 20), 40% of the way to white
    assert texture_shade("white") == (147, 147, 147)  # (245, 245, 245), 40% of the way to black
    shades = {texture_shade(name) for name in COLOURS}
    assert len(shades) == len(COLOURS) and not shades & set(COLOURS.values())


def test_the_background_is_a_function_of_the_generator() -> None:
    first = np.asarray(background(np.random.default_rng(3)))
    assert first.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert np.array_equal(first, np.asarray(background(np.random.default_rng(3))))
    assert not np.array_equal(first, np.asarray(background(np.random.default_rng(4))))
