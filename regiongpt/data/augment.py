"""Augmentations that move regions with the image (pixel xyxy boxes, masks, points).

A horizontal flip also rewrites left/right words in the conversation, so "the circle left of
<region2>" stays true. The default recipe uses no augmentation, so the frozen tower's features of
an image stay the same across epochs (and could be cached).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from regiongpt.regions import Box, Mask, Point, Region

_SWAP = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
_SIDE_WORDS = re.compile(r"\b(" + "|".join(_SWAP) + r")\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """Swap left/right words, keeping their capitalisation (``<regionK>`` tags are untouched)."""

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        swapped = _SWAP[word.lower()]
        return swapped.capitalize() if word[0].isupper() else swapped

    return _SIDE_WORDS.sub(replace, text)


@dataclass
class Sample:
    """An image, its regions and the conversation about them (turns as ``{"from", "value"}``)."""

    image: Image.Image
    regions: list[Region]
    conversations: list[dict[str, str]]


def hflip(sample: Sample) -> Sample:
    """Mirror the image left-right; regions and left/right words follow."""
    width = sample.image.width
    regions: list[Region] = []
    for region in sample.regions:
        if isinstance(region, Box):
            regions.append(Box(width - region.x2, region.y1, width - region.x1, region.y2))
        elif isinstance(region, Point):
            regions.append(Point(width - region.x, region.y, region.radius))
        else:
            regions.append(Mask(region.data[:, ::-1].copy()))
    turns = [{**turn, "value": swap_left_right(turn["value"])} for turn in sample.conversations]
    return Sample(sample.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), regions, turns)


def resize(sample: Sample, scale: float) -> Sample:
    """Scale the image by ``scale``; boxes and points scale, masks are resampled (nearest)."""
    if scale <= 0:
        raise ValueError(f"resize scale must be positive, got {scale}")
    width, height = (max(1, round(s * scale)) for s in sample.image.size)
    sx, sy = width / sample.image.width, height / sample.image.height
    regions: list[Region] = []
    for region in sample.regions:
        if isinstance(region, Box):
            regions.append(Box(region.x1 * sx, region.y1 * sy, region.x2 * sx, region.y2 * sy))
        elif isinstance(region, Point):
            regions.append(Point(region.x * sx, region.y * sy, region.radius * (sx + sy) / 2))
        else:
            mask = Image.fromarray(region.data.astype(np.uint8) * 255).resize(
                (width, height), Image.Resampling.NEAREST
            )
            regions.append(Mask(np.asarray(mask) > 127))
    return Sample(
        sample.image.resize((width, height), Image.Resampling.BICUBIC), regions, sample.conversations
    )


def shift(sample: Sample, dx: int, dy: int, fill: tuple[int, int, int] = (0, 0, 0)) -> Sample:
    """Translate the content by ``(dx, dy)`` pixels on a same-size canvas; regions move with it and
    are clipped. A region pushed entirely out of the image raises ValueError naming it."""
    width, height = sample.image.size
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(sample.image, (dx, dy))
    regions: list[Region] = []
    for index, region in enumerate(sample.regions):
        try:
            if isinstance(region, Box):
                regions.append(
                    Box(region.x1 + dx, region.y1 + dy, region.x2 + dx, region.y2 + dy).clip((width, height))
                )
            elif isinstance(region, Point):
                moved = Point(region.x + dx, region.y + dy, region.radius)
                moved.to_box((width, height))
                regions.append(moved)
            else:
                data = np.zeros_like(region.data)
                src = region.data[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
                data[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
                regions.append(Mask(data))
        except ValueError as error:
            raise ValueError(
                f"region {index + 1} leaves the image after shift ({dx}, {dy}): {error}"
            ) from None
    return Sample(canvas, regions, sample.conversations)


def apply_all(sample: Sample, ops: Sequence[str], rng: np.random.Generator) -> Sample:
    """Apply named augmentations (``hflip``, ``resize``, ``shift``) with random parameters."""
    for op in ops:
        if op == "hflip" and rng.random() < 0.5:
            sample = hflip(sample)
        elif op == "resize":
            sample = resize(sample, float(rng.uniform(0.8, 1.25)))
        elif op == "shift":
            limit = max(1, min(sample.image.size) // 16)
            try:
                sample = shift(
                    sample, int(rng.integers(-limit, limit + 1)), int(rng.integers(-limit, limit + 1))
                )
            except ValueError:
                continue  # a shift that would push a region out is simply not applied
        elif op not in ("hflip",):
            raise ValueError(f"unknown augmentation {op!r}; choose from hflip, resize, shift")
    return sample
