"""Region types: validation errors name the region and the bad value; conversions are exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from regiongpt.regions import Box, Mask, Point, as_region, validate_regions


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([10, 10, 5, 20], r"region 1: box \[10.0, 10.0, 5.0, 20.0\] is empty or inverted"),
        ([0, 0, math.nan, 5], "region 1: box has a non-finite coordinate"),
        ([0, 0, math.inf, 5], "non-finite"),
        ([200, 200, 300, 300], r"lies entirely outside the 100x80 image"),
        ([1, 2, 3], r"region 1: expected .* shape \(3,\)"),
        ("abcd", "region 1"),
    ],
)
def test_bad_boxes_raise_value_errors_naming_the_region(value, message):
    with pytest.raises(ValueError, match=message):
        validate_regions([value], (100, 80))


def test_error_names_the_index_of_the_bad_region():
    with pytest.raises(ValueError, match="region 3"):
        validate_regions([[0, 0, 5, 5], [1, 1, 4, 4], [5, 5, 5, 9]], (100, 80))


def test_box_partly_outside_is_clipped():
    (box,) = validate_regions([[-5, 10, 150, 40]], (100, 80))
    assert box.as_list() == [0.0, 10.0, 100.0, 40.0]


def test_masks_wrong_size_or_empty_are_errors():
    with pytest.raises(ValueError, match="region 1: mask is 10x8 .* image is 100x80"):
        validate_regions([np.ones((8, 10), dtype=bool)], (100, 80))
    with pytest.raises(ValueError, match="empty"):
        validate_regions([np.zeros((80, 100), dtype=bool)], (100, 80))


def test_mask_box_is_tight_and_box_mask_covers_pixel_centres():
    data = np.zeros((20, 30), dtype=bool)
    data[5:9, 10:21] = True
    mask = Mask(data)
    assert mask.to_box((30, 20)).as_list() == [10.0, 5.0, 21.0, 9.0]
    assert np.array_equal(Box(10, 5, 21, 9).to_mask((30, 20)), data)


def test_rle_and_polygon_round_trip():
    from pycocotools import mask as mask_utils

    data = np.zeros((20, 30), dtype=np.uint8)
    data[2:6, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(data))
    rle["counts"] = rle["counts"].decode()
    assert np.array_equal(Mask.from_rle(rle).data, data.astype(bool))
    polygon = Mask.from_polygon([[3, 2, 9, 2, 9, 6, 3, 6]], (30, 20))
    assert polygon.to_box((30, 20)).as_list() == pytest.approx([3, 2, 9, 6], abs=1)
    with pytest.raises(ValueError, match="polygon needs"):
        Mask.from_polygon([[1, 2, 3]], (30, 20))


def test_point_is_a_small_disk_and_outside_points_fail():
    point = Point(10, 10, radius=3)
    assert point.to_box((50, 50)).as_list() == [7.0, 7.0, 13.0, 13.0]
    assert 20 < point.to_mask((50, 50)).sum() < 36
    with pytest.raises(ValueError, match=r"point \(60, 10\) lies outside"):
        validate_regions([Point(60, 10)], (50, 50))


def test_normalised_and_xywh_only_through_explicit_constructors():
    assert Box.from_xywh(1, 2, 3, 4).as_list() == [1, 2, 4, 6]
    assert Box.from_normalized(0.1, 0.2, 0.5, 1.0, (100, 50)).as_list() == pytest.approx([10, 10, 50, 50])
    assert as_region([0.1, 0.2, 0.5, 0.9]).as_list() == [0.1, 0.2, 0.5, 0.9]  # never guessed normalised
