"""Region types: boxes, masks and points, their validation and conversions.

Conventions used everywhere in regiongpt:

* Image sizes are ``(width, height)`` tuples, as PIL reports them.
* Boxes are pixel ``xyxy`` (``x1, y1, x2, y2``) with ``x2 > x1`` and ``y2 > y1``; other forms
  (xywh, normalised) only enter through explicit constructors such as :meth:`Box.from_xywh`.
* Masks are boolean ``HxW`` arrays at the image's resolution.
* A point is a small disk (radius :attr:`Point.radius` pixels) around ``(x, y)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union

import numpy as np

from regiongpt.imaging import MAX_IMAGE_PIXELS

ImageSize = tuple[int, int]  # (width, height)


def _check_finite(values: Sequence[float], what: str) -> None:
    for value in values:
        if not math.isfinite(float(value)):
            raise ValueError(f"{what} has a non-finite coordinate: {list(values)}")


def _as_float(value: Any, what: str) -> float:
    """A real number as a float; ValueError for strings, None, booleans, complex numbers..."""
    if isinstance(value, (str, bytes, bool, np.bool_, complex, np.complexfloating)) or not hasattr(
        value, "__float__"
    ):
        raise ValueError(f"{what} must be a number, got {value!r:.60}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as error:  # arrays of several items, huge ints
        raise ValueError(f"{what} must be a number, got {value!r:.60} ({error})") from None


def _coerce_fields(obj: Any, what: str) -> None:
    """Store every field of a frozen dataclass as a float (``"10" <= "9"`` must never be compared)."""
    for item in fields(obj):
        object.__setattr__(obj, item.name, _as_float(getattr(obj, item.name), f"{what} {item.name}"))


def _rle_from_string(counts: str | bytes) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString``, checked: it reads
    past the end of a string cut inside a number)."""
    data = counts.encode("latin-1", errors="replace") if isinstance(counts, str) else counts
    runs: list[int] = []
    position = 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data) or shift > 30:
                raise ValueError(f"compressed RLE counts {counts!r:.40} are cut off or malformed")
            char = data[position] - 48
            if not 0 <= char < 64:
                raise ValueError(f"compressed RLE counts hold an invalid character {chr(data[position])!r}")
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"compressed RLE counts {counts!r:.40} decode to a negative run")
        runs.append(value)
    return runs


def check_image_size(size: Any) -> ImageSize:
    """``(width, height)`` as positive ints within :data:`regiongpt.imaging.MAX_IMAGE_PIXELS`."""
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"image size must be (width, height), got {size!r:.60}")
    checked = []
    for value in size:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        ok = ok or (isinstance(value, float) and value.is_integer())
        if not ok or value < 1:
            raise ValueError(f"image size must be two positive integers (width, height), got {size!r:.60}")
        checked.append(int(value))
    width, height = checked
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"image size {width}x{height} exceeds the limit of {MAX_IMAGE_PIXELS} pixels")
    return width, height


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel xyxy coordinates."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        _coerce_fields(self, "box")
        coords = (self.x1, self.y1, self.x2, self.y2)
        _check_finite(coords, "box")
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(
                f"box {list(coords)} is empty or inverted: need x2 > x1 and y2 > y1 (pixel xyxy)"
            )

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> Box:
        """From COCO-style ``x, y, width, height`` in pixels."""
        return cls(x, y, x + w, y + h)

    @classmethod
    def from_normalized(cls, x1: float, y1: float, x2: float, y2: float, size: ImageSize) -> Box:
        """From xyxy in ``[0, 1]`` relative to an image of ``size = (width, height)``."""
        width, height = size
        return cls(x1 * width, y1 * height, x2 * width, y2 * height)

    def as_list(self) -> list[float]:
        return [float(self.x1), float(self.y1), float(self.x2), float(self.y2)]

    @property
    def area(self) -> float:
        return (self.x2 - self.x1) * (self.y2 - self.y1)

    def clip(self, size: ImageSize) -> Box:
        """Clip to the image; raises ValueError if nothing of the box is inside."""
        width, height = size
        x1, y1 = max(self.x1, 0.0), max(self.y1, 0.0)
        x2, y2 = min(self.x2, float(width)), min(self.y2, float(height))
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"box {self.as_list()} lies entirely outside the {width}x{height} image")
        return Box(x1, y1, x2, y2)

    def to_box(self, size: ImageSize) -> Box:
        return self.clip(size)

    def to_mask(self, size: ImageSize) -> np.ndarray:
        """Filled rectangle as a boolean ``(height, width)`` mask (pixels whose centre is inside)."""
        box = self.clip(size)
        width, height = size
        mask = np.zeros((height, width), dtype=bool)
        # a sliver along the right/bottom edge still covers the last pixel column/row
        x1, y1 = min(int(math.floor(box.x1 + 0.5)), width - 1), min(int(math.floor(box.y1 + 0.5)), height - 1)
        x2, y2 = int(math.ceil(box.x2 - 0.5)), int(math.ceil(box.y2 - 0.5))
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        mask[y1:y2, x1:x2] = True
        return mask


@dataclass(frozen=True, eq=False)
class Mask:
    """A binary region mask, ``data`` is a boolean ``(height, width)`` array."""

    data: np.ndarray

    def __post_init__(self) -> None:
        array = np.asarray(self.data)
        if array.ndim != 2:
            raise ValueError(f"mask must be 2-D (height, width), got shape {array.shape}")
        if array.size == 0:
            raise ValueError(f"mask of shape {array.shape} has no pixels")
        if array.dtype != bool and array.dtype.kind not in "uif":
            raise ValueError(f"mask must hold booleans or real numbers, got dtype {array.dtype}")
        if array.dtype != bool:
            if not np.all(np.isfinite(array.astype(np.float64))):
                raise ValueError("mask has non-finite values")
            array = array > (127 if array.dtype == np.uint8 and array.max() > 1 else 0.5)
        if not array.any():
            raise ValueError(f"mask of shape {array.shape} is empty (all zeros)")
        object.__setattr__(self, "data", array)

    @classmethod
    def from_png(cls, path: str | Path) -> Mask:
        """A mask image file; any non-zero pixel (or alpha) counts as inside."""
        from regiongpt.imaging import load_mask_image

        return cls(load_mask_image(path))

    @classmethod
    def from_rle(cls, rle: dict[str, Any]) -> Mask:
        """COCO run-length encoding (compressed string or uncompressed counts list).

        Decoded here, strictly (see :func:`rle_runs`): pycocotools returns uninitialised memory
        for runs that cover too few pixels and accepts fractional ones."""
        height, width, runs = rle_runs(rle)
        values = np.arange(len(runs)) % 2 == 1  # runs alternate 0, 1, 0... in column-major order
        return cls(np.repeat(values, runs).reshape(width, height).T)

    @classmethod
    def from_polygon(cls, polygons: Sequence[Sequence[float]], size: ImageSize) -> Mask:
        """COCO polygons (a list of flat ``[x0, y0, x1, y1, ...]`` lists) at ``size=(w, h)``,
        checked by :func:`polygon_parts`."""
        from pycocotools import mask as mask_utils

        width, height = check_image_size(size)
        rles = mask_utils.frPyObjects(polygon_parts(polygons, (width, height)), height, width)
        return cls(mask_utils.decode(mask_utils.merge(rles)).astype(bool))

    @property
    def size(self) -> ImageSize:
        return (self.data.shape[1], self.data.shape[0])

    def _check_size(self, size: ImageSize) -> None:
        if tuple(size) != self.size:
            raise ValueError(
                f"mask is {self.size[0]}x{self.size[1]} (w x h) but the image is {size[0]}x{size[1]}"
            )

    def to_box(self, size: ImageSize) -> Box:
        """Tight box around the mask's pixels (pixel xyxy, right/bottom edges exclusive)."""
        self._check_size(size)
        ys, xs = np.nonzero(self.data)
        return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))

    def to_mask(self, size: ImageSize) -> np.ndarray:
        self._check_size(size)
        return self.data


@dataclass(frozen=True)
class Point:
    """A point ``(x, y)`` in pixels, treated as a disk of ``radius`` pixels."""

    x: float
    y: float
    radius: float = 8.0

    def __post_init__(self) -> None:
        _coerce_fields(self, "point")
        _check_finite((self.x, self.y, self.radius), "point")
        if self.radius <= 0:
            raise ValueError(f"point radius must be positive, got {self.radius}")

    def _check_inside(self, size: ImageSize) -> None:
        width, height = size
        if not (0 <= self.x <= width and 0 <= self.y <= height):
            raise ValueError(f"point ({self.x:g}, {self.y:g}) lies outside the {width}x{height} image")

    def to_box(self, size: ImageSize) -> Box:
        self._check_inside(size)
        width, height = size
        r = self.radius
        x1, y1 = max(self.x - r, 0.0), max(self.y - r, 0.0)
        x2, y2 = min(self.x + r, float(width)), min(self.y + r, float(height))
        if x2 <= x1 or y2 <= y1:  # radius below float resolution on the border: the pixel under it
            px, py = min(int(self.x), width - 1), min(int(self.y), height - 1)
            return Box(px, py, px + 1, py + 1)
        return Box(x1, y1, x2, y2)

    def to_mask(self, size: ImageSize) -> np.ndarray:
        self._check_inside(size)
        width, height = size
        ys, xs = np.mgrid[0:height, 0:width]
        mask = (xs + 0.5 - self.x) ** 2 + (ys + 0.5 - self.y) ** 2 <= self.radius**2
        if not mask.any():  # sub-pixel radius: take the pixel under the point
            mask[min(int(self.y), height - 1), min(int(self.x), width - 1)] = True
        return mask


def rle_runs(rle: Any) -> tuple[int, int, list[int]]:
    """``(height, width, run lengths)`` of a COCO RLE dict, checked: ``size`` is two positive
    integers within the pixel cap, the runs are non-negative integers (or a well-formed compressed
    string) and cover exactly ``height * width`` pixels."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"RLE must be a dict with 'size' and 'counts', got {rle!r:.80}")
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r:.60}")
    width, height = check_image_size((size[1], size[0]))
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        runs = _rle_from_string(counts)
    elif isinstance(counts, (list, tuple)):
        runs = []
        for value in counts:
            integral = isinstance(value, numbers.Integral) or (
                isinstance(value, float) and value.is_integer()
            )
            if isinstance(value, bool) or not integral or value < 0:
                raise ValueError(f"RLE 'counts' must be non-negative integers, got {value!r:.40}")
            runs.append(int(value))
    else:
        raise ValueError(
            f"RLE 'counts' must be a list of run lengths or a compressed string, got {counts!r:.60}"
        )
    total = sum(runs)
    if total != height * width:
        raise ValueError(f"RLE runs cover {total} pixels but 'size' [{height}, {width}] has {height * width}")
    return height, width, runs


def polygon_parts(polygons: Any, size: ImageSize) -> list[list[float]]:
    """COCO polygons as float lists, checked: each part has >= 3 finite (x, y) points, at most
    one image size outside the ``size=(w, h)`` image (pycocotools rasterises every edge at 5x in
    C ints: a point 1e9 px away costs gigabytes or crashes the process)."""
    width, height = check_image_size(size)
    if not isinstance(polygons, (list, tuple)) or not polygons:
        raise ValueError(f"polygon must be a list of flat [x0, y0, x1, y1, ...] lists, got {polygons!r:.80}")
    parts = []
    margin = max(width, height)
    for part in polygons:
        if not isinstance(part, (list, tuple, np.ndarray)):
            raise ValueError(f"polygon part must be a flat list of numbers, got {part!r:.80}")
        values = [_as_float(v, "polygon coordinate") for v in part]
        if len(values) < 6 or len(values) % 2:
            raise ValueError(f"polygon needs >= 3 (x, y) pairs per part, got {polygons!r:.80}")
        _check_finite(values, "polygon")
        for x, y in zip(values[0::2], values[1::2]):
            if not (-margin <= x <= width + margin and -margin <= y <= height + margin):
                raise ValueError(f"polygon point ({x:g}, {y:g}) lies far outside the {width}x{height} image")
        parts.append(values)
    return parts


Region = Union[Box, Mask, Point]
RegionLike = Union[Region, Sequence[float], np.ndarray]


def as_region(value: RegionLike, index: int = 0) -> Region:
    """Turn a user value into a region: a Box/Mask/Point, 4 numbers (always pixel xyxy, never
    guessed to be normalised), or a 2-D boolean/0-1 array (a mask). ``index`` is 0-based and is
    reported 1-based (as in ``<region1>``) in errors."""
    where = f"region {index + 1}"
    if isinstance(value, (Box, Mask, Point)):
        return value
    try:
        if hasattr(value, "detach"):  # torch tensor
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray) and value.ndim == 2:
            return Mask(value)
        if isinstance(value, (str, bytes, dict)):
            raise TypeError(f"a {type(value).__name__} is not a region")
        if np.iscomplexobj(np.asarray(value)):
            raise TypeError("complex numbers are not coordinates")
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{where}: cannot read {value!r:.80} as a region ({error})") from None
    if array.shape != (4,):
        raise ValueError(
            f"{where}: expected a Box/Mask/Point, 4 numbers x1,y1,x2,y2 or an HxW mask, "
            f"got an array of shape {array.shape}"
        )
    try:
        return Box(*array.tolist())
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def validate_regions(regions: Sequence[RegionLike], size: ImageSize) -> list[Region]:
    """Check every region against an image of ``size=(w, h)``; boxes partly outside are clipped.

    Raises ValueError naming the region (1-based, as ``<regionK>``) and the bad value."""
    if isinstance(regions, (Box, Mask, Point, str, bytes, dict)) or not isinstance(
        regions, (Sequence, np.ndarray)
    ):
        raise ValueError(f"expected a list of regions, got {type(regions).__name__} {regions!r:.60}")
    size = check_image_size(size)
    checked: list[Region] = []
    for index, value in enumerate(regions):
        region = as_region(value, index)
        try:
            if isinstance(region, Box):
                region = region.clip(size)
            else:
                region.to_box(size)  # size / inside checks
        except ValueError as error:
            raise ValueError(f"region {index + 1}: {error}") from None
        checked.append(region)
    return checked


def region_to_json(region: Region) -> dict[str, Any]:
    """A JSON-friendly description (masks as their box plus pixel count)."""
    if isinstance(region, Box):
        return {"type": "box", "box": region.as_list()}
    if isinstance(region, Point):
        return {"type": "point", "point": [float(region.x), float(region.y)], "radius": region.radius}
    return {"type": "mask", "box": region.to_box(region.size).as_list(), "pixels": int(region.data.sum())}


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0
