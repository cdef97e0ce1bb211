"""Property tests of region parsing: any input gives a valid region or a ValueError with a message.

"Valid" is checked, not assumed: a validated box lies inside the image with ``x2 > x1`` and
``y2 > y1``, a mask has the image's shape and at least one pixel, a point lies inside, and a
region's mask is never empty."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pycocotools import mask as mask_utils

from regiongpt.imaging import MAX_IMAGE_PIXELS
from regiongpt.regions import Box, Mask, Point, as_region, validate_regions
from tests.reliability.helpers import PROPS, count

# ------------------------------------------------------------------------------------ strategies
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
any_float = st.floats(allow_nan=True, allow_infinity=True)
scalar = st.one_of(
    any_float,
    finite,
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(-1000, 1000),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.just("12.5"),
    st.binary(max_size=4),
)
json_like = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
sizes = st.tuples(st.integers(1, 48), st.integers(1, 48))
small_arrays = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from([np.bool_, np.uint8, np.int16, np.float32, np.float64, np.complex64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    ),
    st.lists(st.lists(scalar, min_size=2, max_size=2), min_size=1, max_size=3).map(
        lambda v: np.array(v, dtype=object)
    ),
)


def region_values(size: tuple[int, int]) -> st.SearchStrategy:
    width, height = size
    near = st.floats(-0.25 * width - 2, 1.25 * width + 2, allow_nan=False)
    boxes = st.lists(st.one_of(near, finite, any_float, st.integers(-5, 60)), min_size=4, max_size=4)
    masks = hnp.arrays(
        np.bool_, st.sampled_from([(height, width), (height + 1, width), (height, max(width - 1, 1))])
    )
    points = st.builds(Point, near, near, st.floats(1e-3, 50))
    return st.one_of(
        boxes,
        boxes.map(tuple),
        boxes.map(lambda v: np.asarray(v, dtype=np.float64)),
        masks,
        masks.map(lambda m: m.astype(np.uint8) * 255),
        points,
        json_like,
    )


# ------------------------------------------------------------------------------------ checks
def check_region(region, size: tuple[int, int]) -> None:
    """The guarantees of a validated region (see the module docstring)."""
    width, height = size
    if isinstance(region, Box):
        coords = region.as_list()
        assert all(isinstance(v, float) and math.isfinite(v) for v in coords), coords
        assert 0 <= region.x1 < region.x2 <= width and 0 <= region.y1 < region.y2 <= height, (coords, size)
    elif isinstance(region, Point):
        assert 0 <= region.x <= width and 0 <= region.y <= height and region.radius > 0
        box = region.to_box(size)
        assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height
    else:
        assert isinstance(region, Mask)
        assert region.data.shape == (height, width) and region.data.dtype == bool and region.data.any()
    mask = region.to_mask(size)
    assert mask.shape == (height, width) and mask.dtype == bool
    assert mask.any(), f"{region!r} gives an empty mask on a {width}x{height} image"
    box = region.to_box(size)
    ys, xs = np.nonzero(mask)  # the mask lies within its box (one pixel of rounding allowed)
    assert (
        xs.min() >= math.floor(box.x1) - 1
        and xs.max() <= math.ceil(box.x2)
        and ys.min() >= math.floor(box.y1) - 1
    )
    assert ys.max() <= math.ceil(box.y2)


def check_error(error: ValueError) -> None:
    assert str(error).strip(), "a ValueError without a message"


# ------------------------------------------------------------------------------------ tests
@settings(max_examples=600, **PROPS)
@given(value=st.one_of(json_like, small_arrays), index=st.integers(0, 40))
def test_as_region_gives_a_region_or_a_value_error(value, index):
    count("regions.as_region")
    try:
        region = as_region(value, index)
    except ValueError as error:
        check_error(error)
        assert f"region {index + 1}" in str(error)
        return
    assert isinstance(region, (Box, Mask, Point))


@settings(max_examples=600, **PROPS)
@given(data=st.data(), size=sizes)
def test_validate_regions_output_is_always_usable(data, size):
    values = data.draw(st.lists(region_values(size), max_size=4))
    count("regions.validate_regions")
    try:
        checked = validate_regions(values, size)
    except ValueError as error:
        check_error(error)
        assert str(error).startswith("region "), str(error)
        return
    assert len(checked) == len(values)
    for region in checked:
        check_region(region, size)


@settings(max_examples=400, **PROPS)
@given(coords=st.lists(st.one_of(scalar, finite), min_size=4, max_size=4), size=sizes)
def test_box_constructor_and_clip(coords, size):
    count("regions.Box")
    try:
        box = Box(*coords)
    except ValueError as error:
        check_error(error)
        return
    assert all(isinstance(v, float) for v in box.as_list()), "coordinates are stored as floats"
    assert box.x2 > box.x1 and box.y2 > box.y1
    try:
        clipped = box.clip(size)
    except ValueError as error:
        assert "outside" in str(error)
        return
    check_region(clipped, size)


def test_box_constructor_refuses_non_numbers():
    for bad in (("1", 2, 3, 4), (None, 0, 1, 1), (b"1", 0, 2, 2), ([1], 0, 2, 2)):
        with pytest.raises(ValueError, match="number"):
            Box(*bad)
    assert Box(np.float32(1), np.int64(2), 3, 4).as_list() == [1.0, 2.0, 3.0, 4.0]


@settings(max_examples=400, **PROPS)
@given(size=sizes, data=st.data())
def test_thin_boxes_at_the_border_still_cover_a_pixel(size, data):
    """A box inside the image always has a non-empty mask, even a sliver along the right edge."""
    width, height = size
    x1 = data.draw(st.floats(0, width, exclude_max=True))
    x2 = data.draw(st.floats(x1, width, exclude_min=True))
    y1 = data.draw(st.floats(0, height, exclude_max=True))
    y2 = data.draw(st.floats(y1, height, exclude_min=True))
    assume(x2 > x1 and y2 > y1)
    count("regions.Box.to_mask")
    check_region(Box(x1, y1, x2, y2), size)


def test_sliver_at_the_right_edge_regression():
    mask = Box(79.6, 0, 80, 10).to_mask((80, 60))
    assert mask[:10, 79].all() and mask.sum() == 10


@settings(max_examples=400, **PROPS)
@given(
    x=st.one_of(scalar, finite),
    y=st.one_of(scalar, finite),
    radius=st.one_of(scalar, st.floats(1e-300, 1e3)),
    size=sizes,
)
def test_point_constructor_and_geometry(x, y, radius, size):
    count("regions.Point")
    try:
        point = Point(x, y, radius)
        checked = validate_regions([point], size)
    except ValueError as error:
        check_error(error)
        return
    check_region(checked[0], size)


def test_point_with_sub_ulp_radius_on_the_border():
    point = Point(80, 30, radius=1e-300)
    (checked,) = validate_regions([point], (80, 60))
    assert checked.to_box((80, 60)) == Box(79, 30, 80, 31)
    assert checked.to_mask((80, 60))[30, 79]


@settings(max_examples=300, **PROPS)
@given(array=small_arrays)
def test_mask_constructor(array):
    count("regions.Mask")
    try:
        mask = Mask(array)
    except ValueError as error:
        check_error(error)
        return
    assert mask.data.ndim == 2 and mask.data.dtype == bool and mask.data.any()


# ------------------------------------------------------------------------------------ RLE
masks = hnp.arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12)))


@settings(max_examples=300, **PROPS)
@given(mask=masks)
def test_rle_round_trips_against_pycocotools(mask):
    assume(mask.any())
    count("regions.Mask.from_rle (round trip)")
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    compressed = {"size": encoded["size"], "counts": encoded["counts"].decode()}
    assert np.array_equal(Mask.from_rle(compressed).data, mask)
    assert np.array_equal(Mask.from_rle({**compressed, "counts": encoded["counts"]}).data, mask)
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat]))).tolist()
    runs = np.diff([0, *changes, flat.size]).tolist()
    assert np.array_equal(Mask.from_rle({"size": list(mask.shape), "counts": runs}).data, mask)


rle_counts = st.one_of(
    st.lists(
        st.one_of(st.integers(-3, 40), st.floats(-2, 40), st.just(2**40), st.none(), st.text(max_size=2)),
        max_size=8,
    ),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=130), max_size=10),
    st.binary(max_size=10),
    scalar,
)
rle_sizes = st.one_of(
    st.lists(st.integers(-2, 8), min_size=2, max_size=2),
    st.lists(st.integers(0, 10**6), min_size=2, max_size=2),
    st.lists(scalar, max_size=3),
    scalar,
)


@settings(max_examples=800, **PROPS)
@given(
    size=rle_sizes,
    counts=rle_counts,
    extra=st.dictionaries(st.sampled_from(["x", "size", "counts"]), scalar, max_size=1),
)
def test_arbitrary_rle_gives_the_exact_mask_or_a_value_error(size, counts, extra):
    count("regions.Mask.from_rle (arbitrary)")
    rle = {"size": size, "counts": counts, **extra}
    try:
        mask = Mask.from_rle(rle)
    except ValueError as error:
        check_error(error)
        return
    height, width = rle["size"]
    assert mask.data.shape == (height, width) and mask.data.any()
    if isinstance(rle["counts"], list):  # the runs are exactly what was given
        runs = [int(c) for c in rle["counts"]]
        assert sum(runs) == height * width
        expected = np.repeat(np.arange(len(runs)) % 2 == 1, runs).reshape(width, height).T
        assert np.array_equal(mask.data, expected)
    else:  # a compressed string decodes to what pycocotools makes of it
        raw = rle["counts"].encode() if isinstance(rle["counts"], str) else rle["counts"]
        reference = mask_utils.decode({"size": [height, width], "counts": raw}).astype(bool)
        assert np.array_equal(mask.data, reference)


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [2, 2], "counts": [0, 3]}, "cover 3 pixels"),  # pycocotools returns uninitialised memory
        ({"size": [2, 2], "counts": [1.5, 2.5]}, "non-negative integers"),
        ({"size": [2, 2], "counts": "\x00\x01"}, "compressed RLE"),
        ({"size": [2, 2], "counts": "0P"}, "compressed RLE"),
        ({"size": [-2, 2], "counts": [4]}, "size"),
        ({"size": [100000, 100000], "counts": [0, 10**10]}, "size"),
        ({"size": 5, "counts": [4]}, "size"),
        ({"size": [2, 2], "counts": None}, "counts"),
    ],
)
def test_rle_errors_name_the_problem(rle, message):
    with pytest.raises(ValueError, match=message):
        Mask.from_rle(rle)


# ------------------------------------------------------------------------------------ polygons
@settings(max_examples=300, **PROPS)
@given(size=sizes, data=st.data())
def test_polygons_inside_the_image_match_pycocotools(size, data):
    width, height = size
    xs = st.floats(-0.5 * width, 1.5 * width, allow_nan=False)
    ys = st.floats(-0.5 * height, 1.5 * height, allow_nan=False)
    parts = data.draw(st.lists(st.lists(st.tuples(xs, ys), min_size=3, max_size=7), min_size=1, max_size=3))
    flat = [[c for point in part for c in point] for part in parts]
    count("regions.Mask.from_polygon (reference)")
    reference = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, height, width))).astype(bool)
    if not reference.any():
        with pytest.raises(ValueError, match="empty"):
            Mask.from_polygon(flat, size)
        return
    assert np.array_equal(Mask.from_polygon(flat, size).data, reference)


@settings(max_examples=500, **PROPS)
@given(
    polygons=st.one_of(
        json_like,
        st.lists(st.lists(st.one_of(finite, st.floats(-1e12, 1e12), any_float), max_size=10), max_size=3),
    ),
    size=st.one_of(sizes, st.lists(scalar, max_size=3), st.just((0, 5)), st.just((10**5, 10**5))),
)
def test_arbitrary_polygons_give_a_mask_or_a_value_error(polygons, size):
    count("regions.Mask.from_polygon (arbitrary)")
    try:
        mask = Mask.from_polygon(polygons, size)
    except ValueError as error:
        check_error(error)
        return
    assert mask.data.shape == (size[1], size[0]) and mask.data.any()


def test_far_away_polygon_points_are_refused_quickly():
    """pycocotools rasterises every edge at 5x: a point 1e9 px away would need gigabytes."""
    with pytest.raises(ValueError, match="far outside"):
        Mask.from_polygon([[0, 0, 1e9, 0, 0, 1e9]], (64, 48))


def test_region_sizes_above_the_pixel_cap_are_refused():
    side = int(math.isqrt(MAX_IMAGE_PIXELS)) + 1
    with pytest.raises(ValueError, match="pixel"):
        Mask.from_polygon([[0, 0, 5, 0, 0, 5]], (side, side))


def test_validate_regions_wants_a_list():
    with pytest.raises(ValueError, match="list of regions"):
        validate_regions(Box(0, 0, 5, 5), (10, 10))
    with pytest.raises(ValueError, match="region 1"):
        validate_regions([[10**400, 0, 1, 1]], (10, 10))
