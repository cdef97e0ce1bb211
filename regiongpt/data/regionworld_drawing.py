"""RegionWorld's pixels: the image size, the palette, shape masks, textures and the background clutter.

Drawing is exact and without anti-aliasing (see :mod:`regiongpt.data.regionworld` for what the
scenes promise); everything here is a pure function of its arguments and the generator passed in.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 224
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 55, 185),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}


def _unit_polygons() -> dict[str, np.ndarray]:
    def regular(n: int, radius: float, start: float) -> list[tuple[float, float]]:
        return [
            (radius * math.cos(start + 2 * math.pi * i / n), radius * math.sin(start + 2 * math.pi * i / n))
            for i in range(n)
        ]

    star = [
        (r * math.cos(-math.pi / 2 + math.pi * i / 5), r * math.sin(-math.pi / 2 + math.pi * i / 5))
        for i, r in zip(range(10), [0.5, 0.22] * 5)
    ]
    a = 0.17
    cross = [
        (-a, -0.5),
        (a, -0.5),
        (a, -a),
        (0.5, -a),
        (0.5, a),
        (a, a),
        (a, 0.5),
        (-a, 0.5),
        (-a, a),
        (-0.5, a),
        (-0.5, -a),
        (-a, -a),
    ]
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    heart = np.stack(
        [16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1
    )
    heart = (heart - (heart.max(0) + heart.min(0)) / 2) / (heart.max(0) - heart.min(0)).max()
    polygons = {
        "square": [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)],
        "triangle": [(0.0, -0.5), (0.5, 0.5), (-0.5, 0.5)],
        "star": star,
        "hexagon": regular(6, 0.5, 0.0),
        "diamond": [(0.0, -0.5), (0.34, 0.0), (0.0, 0.5), (-0.34, 0.0)],
        "cross": cross,
        "heart": heart,
    }
    return {name: np.asarray(points, dtype=np.float64) for name, points in polygons.items()}


_POLYGONS = _unit_polygons()


def shape_mask(shape: str, centre: tuple[float, float], side: float, angle: float = 0.0) -> np.ndarray:
    """Boolean ``(224, 224)`` mask of a shape whose unrotated extent is ``side`` px."""
    image = Image.new("1", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(image)
    cx, cy = centre
    if shape == "circle":
        r = side / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        points = _POLYGONS[shape] @ np.array([[c, s], [-s, c]]) * side + np.array([cx, cy])
        draw.polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(image, dtype=bool)


def texture_shade(colour: str) -> tuple[int, int, int]:
    """Second colour of a textured object: the colour 40% towards white (dark colours) or black."""
    rgb = np.array(COLOURS[colour], dtype=np.float64)
    target = 255.0 if rgb @ np.array([0.299, 0.587, 0.114]) < 100 else 0.0
    return tuple(int(round(v)) for v in rgb + 0.4 * (target - rgb))  # type: ignore[return-value]


def texture_pattern(texture: str, height: int, width: int, side: float) -> np.ndarray | None:
    """Where the shade goes, on a ``height x width`` patch anchored at the object's box."""
    if texture == "solid":
        return None
    ys, xs = np.mgrid[0:height, 0:width]
    if texture == "striped":  # diagonal stripes
        period = max(5, int(side) // 5)
        return (xs + ys) % period < 0.4 * period
    if texture == "dotted":
        period = max(5, int(side) // 4)
        dx, dy = xs % period - (period - 1) / 2, ys % period - (period - 1) / 2
        return dx**2 + dy**2 <= (0.3 * period) ** 2
    cell = max(3, int(side) // 6)  # checkered
    return (xs // cell + ys // cell) % 2 == 1


@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) / IMAGE_SIZE
    return xs, ys


def background(rng: np.random.Generator) -> Image.Image:
    """Muted gradient, thin muted lines and sparse speckle: clutter that is not an object."""
    base = rng.uniform(100, 165) + rng.uniform(-14, 14, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    xs, ys = _grid()
    ramp = (xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle)
    array = base[None, None, :] + ramp[..., None] * rng.uniform(15, 45)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        points = rng.uniform(0, IMAGE_SIZE, size=4).tolist()
        tone = tuple(int(v) for v in np.clip(base + rng.uniform(-30, 30, size=3), 0, 255))
        draw.line(points, fill=tone, width=1)
    array = np.array(image, dtype=np.int16)  # sparse speckle noise
    count = int(rng.integers(300, 900))
    ys, xs = rng.integers(0, IMAGE_SIZE, size=(2, count))
    array[ys, xs] += rng.integers(-20, 21, size=(count, 1), dtype=np.int16)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
