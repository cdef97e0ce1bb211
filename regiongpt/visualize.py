"""Draw numbered regions and their answers on a copy of an image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from regiongpt.regions import Mask, Point, Region

PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
]


def draw_regions(image: Image.Image, regions: Sequence[Region], answers: Sequence[str] = ()) -> Image.Image:
    """A copy of ``image`` with each region outlined, numbered and labelled with its answer."""
    canvas = image.convert("RGB").copy()
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for index, region in enumerate(regions):
        colour = PALETTE[index % len(PALETTE)]
        if isinstance(region, Mask):
            tint = np.zeros((*region.data.shape, 4), dtype=np.uint8)
            tint[region.data] = (*colour, 90)
            overlay.alpha_composite(Image.fromarray(tint))
        box = region.to_box(canvas.size)
        shape = draw.ellipse if isinstance(region, Point) else draw.rectangle
        shape(box.as_list(), outline=(*colour, 255), width=2)
        label = f"{index + 1}" + (f": {answers[index]}" if index < len(answers) else "")
        x, y = box.x1, max(0.0, box.y1 - 12)
        text_box = draw.textbbox((x, y), label)
        draw.rectangle(text_box, fill=(*colour, 200))
        draw.text((x, y), label, fill=(255, 255, 255, 255))
    return Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
