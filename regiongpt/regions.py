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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

ImageSize = tuple[int, int]  # (width, height)


def _check_finite(values: Sequence[float], what: str) -> None:
    for value in values:
        if not math.isfinite(float(value)):
            raise ValueError(f"{what} has a non-finite coordinate: {list(values)}")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel xyxy coordinates."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
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
        x1, y1 = int(math.floor(box.x1 + 0.5)), int(math.floor(box.y1 + 0.5))
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
        """COCO run-length encoding (compressed string or uncompressed counts list)."""
        from pycocotools import mask as mask_utils

        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise ValueError(f"RLE must be a dict with 'size' and 'counts', got {rle!r:.80}")
        height, width = rle["size"]
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle["counts"], str):
            rle = {"size": [height, width], "counts": rle["counts"].encode()}
        return cls(mask_utils.decode(rle).astype(bool))

    @classmethod
    def from_polygon(cls, polygons: Sequence[Sequence[float]], size: ImageSize) -> Mask:
        """COCO polygons (a list of flat ``[x0, y0, x1, y1, ...]`` lists) at ``size=(w, h)``."""
        from pycocotools import mask as mask_utils

        width, height = size
        polys = [list(map(float, p)) for p in polygons]
        if not polys or any(len(p) < 6 or len(p) % 2 for p in polys):
            raise ValueError(f"polygon needs >= 3 (x, y) pairs per part, got {polygons!r:.80}")
        for p in polys:
            _check_finite(p, "polygon")
        rles = mask_utils.frPyObjects(polys, height, width)
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
        _check_finite((self.x, self.y, self.radius), "point")
        if self.radius <= 0:
            raise ValueError(f"point radius must be positive, got {self.radius}")

    def _check_inside(self, size: ImageSize) -> None:
        width, height = size
        if not (0 <= self.x <= width and 0 <= self.y <= height):
            raise ValueError(f"point ({self.x}, {self.y}) lies outside the {width}x{height} image")

    def to_box(self, size: ImageSize) -> Box:
        self._check_inside(size)
        r = self.radius
        return Box(self.x - r, self.y - r, self.x + r, self.y + r).clip(size)

    def to_mask(self, size: ImageSize) -> np.ndarray:
        self._check_inside(size)
        width, height = size
        ys, xs = np.mgrid[0:height, 0:width]
        mask = (xs + 0.5 - self.x) ** 2 + (ys + 0.5 - self.y) ** 2 <= self.radius**2
        if not mask.any():  # sub-pixel radius: take the pixel under the point
            mask[min(int(self.y), height - 1), min(int(self.x), width - 1)] = True
        return mask


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
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
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
