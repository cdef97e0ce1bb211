"""RegionWorld: procedural 224x224 scenes of shapes with exact masks, and samples for every task.

A scene holds 2-4 objects on a cluttered background (a muted gradient, thin muted lines and
sparse speckle noise). Each object has four attributes, written in this fixed order in brief
captions (:data:`BRIEF_ORDER`): ``size colour texture shape``, e.g. "small red striped circle".

Exactness conventions:

* Objects are drawn without anti-aliasing, later objects over earlier ones. An object's mask is
  its *visible* pixels; its box is the tight pixel-xyxy box of that mask (right/bottom edges
  exclusive, as :meth:`regiongpt.regions.Mask.to_box`). Every visible pixel has exactly the
  object's colour or its texture shade (:func:`texture_shade`); clutter lies under the objects.
* Occlusion is bounded: every object keeps at least ``min_visible`` (0.6) of its area visible.
* Size buckets come from the longest side of the visible box: small < 28 px (1/8 of the image),
  medium < 64 px, large otherwise; placement is rejected when occlusion would change a bucket.
* Shapes are not uniform: a scene theme (:data:`THEMES`) favours certain shape pairs over a Zipf
  base, so the most frequent shapes (POPE "popular") and the shapes that co-occur most with those
  present (POPE "adversarial") differ; :func:`shape_statistics` gives the exact design rates.
* :data:`HELD_OUT_PAIRS` (8 of the 64 colour-shape pairs, one per shape and per colour) appear only
  in the ``test_comp`` split.

Everything is deterministic: split ``s`` image ``i`` of seed ``k`` draws from
``np.random.default_rng([k, SPLIT_CODES[s], i, 0])`` (scene) and ``[..., 1]`` (its samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from regiongpt.data.regionworld_drawing import (
    COLOURS,
    IMAGE_SIZE,
    background,
    shape_mask,
    texture_pattern,
    texture_shade,
)
from regiongpt.tasks import Task

GENERATOR_VERSION = "1.1"  # 1.1: yes/no "yes" questions record the queried shape's size

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
SIZES: tuple[str, ...] = ("small", "medium", "large")
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
BRIEF_ORDER: tuple[str, ...] = ("size", "colour", "texture", "shape")
#: Attribute words per kind; pass to :func:`regiongpt.eval.metrics.parse_attributes`.
VOCAB: dict[str, tuple[str, ...]] = {
    "size": SIZES,
    "colour": tuple(COLOURS),
    "texture": TEXTURES,
    "shape": SHAPES,
}

SMALL_MAX, LARGE_MIN = 28, 64  # bucket edges on the visible box's longest side (px)
NOMINAL_SIDE: dict[str, tuple[int, int]] = {"small": (14, 22), "medium": (34, 52), "large": (70, 96)}
SIZE_PROBS: tuple[float, ...] = (0.35, 0.40, 0.25)
MAX_ROTATION = 12.0  # degrees, polygons only

#: Scene themes partition the shapes into pairs that co-occur, each a frequent shape with a rarer
#: one. A scene's theme is drawn with probability equal to the Zipf mass of its shapes; each object
#: then takes a theme shape (in proportion to their Zipf weights) with probability THEME_AFFINITY,
#: else a shape from the Zipf base. So object-level shape frequencies are exactly
#: Zipf(ZIPF_EXPONENT) in SHAPES order, while co-occurrence is structured: next to a circle the
#: most likely other shape is a heart, though squares are more frequent overall. POPE "popular" and
#: "adversarial" negatives differ on about half of the images.
THEMES: dict[str, tuple[str, ...]] = {
    "hearts": ("circle", "heart"),
    "crosses": ("square", "cross"),
    "diamonds": ("triangle", "diamond"),
    "hexagons": ("star", "hexagon"),
}
THEME_AFFINITY = 0.8
ZIPF_EXPONENT = 0.8

_COLOUR_NAMES = tuple(COLOURS)
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (shape, _COLOUR_NAMES[(3 * i + 1) % len(_COLOUR_NAMES)]) for i, shape in enumerate(SHAPES)
)
SPLITS: tuple[str, ...] = ("train", "val", "test", "test_comp")
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}


def size_bucket(longest_side: float) -> str:
    """``small`` (< 28 px), ``medium`` (< 64 px) or ``large``."""
    return "small" if longest_side < SMALL_MAX else "medium" if longest_side < LARGE_MIN else "large"


def tight_box(mask: np.ndarray) -> list[float]:
    """Pixel xyxy box of a non-empty boolean mask, right/bottom exclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


@dataclass
class SceneObject:
    """One object; ``mask`` holds its visible pixels, ``box`` their tight xyxy box."""

    shape: str
    colour: str
    texture: str
    size: str
    mask: np.ndarray = field(repr=False)
    box: list[float]
    full_area: int
    compositional: bool = False

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def attributes(self) -> dict[str, str]:
        return {"size": self.size, "colour": self.colour, "texture": self.texture, "shape": self.shape}

    @property
    def brief(self) -> str:
        """``"<size> <colour> <texture> <shape>"``, e.g. ``"small red striped circle"``."""
        return " ".join(self.attributes[kind] for kind in BRIEF_ORDER)

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)

    def to_meta(self) -> dict[str, Any]:
        return {
            **self.attributes,
            "box": self.box,
            "area": self.area,
            "visible_fraction": round(self.area / self.full_area, 4),
            "compositional": self.compositional,
        }


@dataclass
class Scene:
    split: str
    index: int
    theme: str
    objects: list[SceneObject]
    image: Image.Image = field(repr=False)


@dataclass
class RegionWorldConfig:
    """Generation settings. ``samples_per_image`` maps a task name to its samples per image (a
    fraction such as 0.25 means one sample on every 4th image, spread evenly); tasks left out use
    :data:`regiongpt.data.regionworld_tasks.DEFAULT_SAMPLES_PER_IMAGE`."""

    min_objects: int = 2
    max_objects: int = 4
    mask_fraction: float = 0.25
    min_visible: float = 0.6
    samples_per_image: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 6, got {self.min_objects}, {self.max_objects}"
            )
        if not 0.0 <= self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction must be in [0, 1], got {self.mask_fraction}")
        for name, rate in self.samples_per_image.items():
            Task.parse(name)
            if rate < 0:
                raise ValueError(f"samples_per_image[{name!r}] must be >= 0, got {rate}")


# ---------------------------------------------------------------------------------------------
# Shape statistics (exact design rates, used for POPE negatives)


def zipf_weights() -> np.ndarray:
    """Object-level shape frequencies, in SHAPES order."""
    weights = 1.0 / np.arange(1, len(SHAPES) + 1) ** ZIPF_EXPONENT
    return weights / weights.sum()


def theme_probabilities() -> dict[str, float]:
    zipf = zipf_weights()
    return {theme: float(sum(zipf[SHAPES.index(s)] for s in shapes)) for theme, shapes in THEMES.items()}


def _shape_distribution(theme: str) -> np.ndarray:
    zipf = zipf_weights()
    favoured = np.array([zipf[i] if s in THEMES[theme] else 0.0 for i, s in enumerate(SHAPES)])
    return THEME_AFFINITY * favoured / favoured.sum() + (1 - THEME_AFFINITY) * zipf


@dataclass(frozen=True)
class ShapeStatistics:
    """``presence[s]`` = P(shape s in an image); ``cooccurrence[s][t]`` = P(s and t both in it)."""

    presence: dict[str, float]
    cooccurrence: dict[str, dict[str, float]]

    def popular_order(self) -> list[str]:
        """Shapes from most to least frequent."""
        return sorted(SHAPES, key=lambda s: (-self.presence[s], SHAPES.index(s)))

    def adversarial_order(self, present: set[str]) -> list[str]:
        """Absent shapes ranked by summed P(t | s) over the present shapes s (then popularity)."""
        absent = [t for t in SHAPES if t not in present]
        score = {t: sum(self.cooccurrence[s][t] / self.presence[s] for s in present) for t in absent}
        return sorted(absent, key=lambda t: (-score[t], -self.presence[t], SHAPES.index(t)))


@lru_cache(maxsize=8)
def shape_statistics(min_objects: int = 2, max_objects: int = 4) -> ShapeStatistics:
    """Exact rates under the design distribution (objects drawn independently given the theme;
    rare placement failures that drop an object are ignored)."""
    k = len(SHAPES)
    presence, both = np.zeros(k), np.zeros((k, k))
    counts = range(min_objects, max_objects + 1)
    for theme, p_theme in theme_probabilities().items():
        q = _shape_distribution(theme)
        for n in counts:
            weight = p_theme / len(counts)
            presence += weight * (1 - (1 - q) ** n)
            miss = (1 - q) ** n
            miss_pair = np.clip(1 - q[:, None] - q[None, :], 0, 1) ** n
            both += weight * (1 - miss[:, None] - miss[None, :] + miss_pair)
    return ShapeStatistics(
        presence={s: float(presence[i]) for i, s in enumerate(SHAPES)},
        cooccurrence={s: {t: float(both[i, j]) for j, t in enumerate(SHAPES)} for i, s in enumerate(SHAPES)},
    )


# ---------------------------------------------------------------------------------------------
# Scenes (the pixels are drawn by regionworld_drawing)


def _sample_attributes(
    rng: np.random.Generator, theme: str, n: int, n_comp: int
) -> list[tuple[str, str, str, str, bool]]:
    """(shape, colour, texture, size, compositional) for n objects; the first n_comp are held-out pairs."""
    q = _shape_distribution(theme)
    held = set(HELD_OUT_PAIRS)
    out = []
    for i in range(n):
        if i < n_comp:
            shape, colour = HELD_OUT_PAIRS[int(rng.integers(len(HELD_OUT_PAIRS)))]
        else:
            shape = SHAPES[int(rng.choice(len(SHAPES), p=q))]
            colours = [c for c in _COLOUR_NAMES if (shape, c) not in held]
            colour = colours[int(rng.integers(len(colours)))]
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        size = SIZES[int(rng.choice(len(SIZES), p=SIZE_PROBS))]
        out.append((shape, colour, texture, size, i < n_comp))
    return out


def _place(
    rng: np.random.Generator,
    attrs: list[tuple[str, str, str, str, bool]],
    min_visible: float,
    tries: int = 40,
) -> list[tuple[tuple[str, str, str, str, bool], np.ndarray, np.ndarray, float]]:
    """Place objects in drawing order; returns (attrs, full mask, visible mask, side) per placed object."""
    placed: list[tuple[Any, np.ndarray, np.ndarray, float]] = []
    for item in attrs:
        shape, _, _, size, _ = item
        for _ in range(tries):
            side = float(rng.uniform(*NOMINAL_SIDE[size]))
            margin = 0.5 * side * 1.2 + 1
            centre = (
                float(rng.uniform(margin, IMAGE_SIZE - margin)),
                float(rng.uniform(margin, IMAGE_SIZE - margin)),
            )
            full = shape_mask(shape, centre, side, float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)))
            x1, y1, x2, y2 = tight_box(full)
            if size_bucket(max(x2 - x1, y2 - y1)) != size:
                continue
            updated, ok = [], True
            for other_item, other_full, other_visible, _ in placed:
                visible = other_visible & ~full if (other_visible & full).any() else other_visible
                if visible is not other_visible:
                    bx1, by1, bx2, by2 = tight_box(visible) if visible.any() else (0, 0, 0, 0)
                    ok = (
                        visible.sum() >= min_visible * other_full.sum()
                        and size_bucket(max(bx2 - bx1, by2 - by1)) == other_item[3]
                    )
                    if not ok:
                        break
                updated.append(visible)
            if ok:
                placed = [(p[0], p[1], v, p[3]) for p, v in zip(placed, updated)]
                placed.append((item, full, full.copy(), side))
                break
    return placed


def render_scene(seed: int, split: str, index: int, config: RegionWorldConfig | None = None) -> Scene:
    """Build image ``index`` of ``split`` deterministically (see the module docstring)."""
    config = config or RegionWorldConfig()
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index, 0])
    themes = theme_probabilities()
    theme = list(themes)[int(rng.choice(len(themes), p=list(themes.values())))]
    image = background(rng)
    placed: list[Any] = []
    while len(placed) < config.min_objects:  # rare: retry until enough objects fit
        n = int(rng.integers(config.min_objects, config.max_objects + 1))
        n_comp = (1 + int(rng.random() < 0.3)) if split == "test_comp" else 0
        placed = _place(rng, _sample_attributes(rng, theme, n, min(n_comp, n)), config.min_visible)
    canvas = np.array(image)
    objects = []
    for (shape, colour, texture, size, comp), full, visible, side in placed:
        x1, y1, x2, y2 = (int(v) for v in tight_box(full))
        patch, inside = canvas[y1:y2, x1:x2], full[y1:y2, x1:x2]
        patch[inside] = COLOURS[colour]
        pattern = texture_pattern(texture, y2 - y1, x2 - x1, side)
        if pattern is not None:
            patch[inside & pattern] = texture_shade(colour)
        objects.append(
            SceneObject(shape, colour, texture, size, visible, tight_box(visible), int(full.sum()), comp)
        )
    return Scene(split=split, index=index, theme=theme, objects=objects, image=Image.fromarray(canvas))


# ---------------------------------------------------------------------------------------------
# Data set generation


def image_path(split: str, index: int) -> str:
    """Image path relative to the data root: ``images/<split>/<index:06d>.png``."""
    return f"images/{split}/{index:06d}.png"


__all__ = [
    "BRIEF_ORDER",
    "COLOURS",
    "GENERATOR_VERSION",
    "HELD_OUT_PAIRS",
    "IMAGE_SIZE",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "TEXTURES",
    "THEMES",
    "VOCAB",
    "RegionWorldConfig",
    "Scene",
    "SceneObject",
    "ShapeStatistics",
    "image_path",
    "render_scene",
    "shape_mask",
    "shape_statistics",
    "size_bucket",
    "texture_shade",
    "theme_probabilities",
    "tight_box",
    "zipf_weights",
]
