"""Detector outputs in the COCO results format, used as context regions (LLaVA-Instruct with
detector boxes) and as region proposals for the REC benchmark.

A results file is a json list of ``{"image_id", "bbox": [x, y, w, h], "score",
"category_id"}`` (pixels); a class name may be given instead of (or besides) the id as
``category_name``, ``category`` or ``label``. Ids are named through a COCO-style json with a
``categories`` list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from regiongpt.data.converters.base import at, fail, get, load_json, xywh_to_xyxy
from regiongpt.regions import Box

ImageKey = int | str
_NAME_KEYS = ("category_name", "category", "label")


@dataclass(frozen=True)
class Detection:
    """One detected box (pixel xyxy), its score and class name (None when unknown)."""

    box: Box
    score: float
    label: str | None = None


def image_key(value: Any) -> ImageKey:
    """A key shared by detection ``image_id`` values and image file names: an integer id, or
    the trailing digits of a file stem (``000000033471.jpg``, ``COCO_val2014_000000310196.jpg``
    -> 33471, 310196); any other name stays a string stem."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    stem = PurePosixPath(str(value)).stem
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else stem


def load_categories(path: str | Path) -> dict[Any, str]:
    """``category id -> name`` from any json with a COCO ``categories`` list."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise ValueError(f"{path}: expected a COCO-style object with a 'categories' list")
    names = {}
    for index, category in enumerate(data["categories"]):
        where = at(path, "categories", index)
        names[get(category, "id", where, "id")] = get(category, "name", where, "str")
    return names


def load_detections(
    path: str | Path,
    *,
    categories: str | Path | dict[Any, str] | None = None,
    score_threshold: float = 0.0,
    max_per_image: int | None = None,
    require_labels: bool = False,
) -> dict[ImageKey, list[Detection]]:
    """Detections per image (key: :func:`image_key` of ``image_id``), best score first, those
    scoring below ``score_threshold`` dropped, at most ``max_per_image`` kept. Boxes of zero
    size are dropped. ``require_labels`` makes a detection without a class name an error."""
    names = load_categories(categories) if isinstance(categories, (str, Path)) else (categories or {})
    data = load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a COCO results list of {{image_id, bbox, score, category_id}}")
    out: dict[ImageKey, list[Detection]] = {}
    for index, item in enumerate(data):
        where = at(path, "", index)
        key = image_key(get(item, "image_id", where, "id"))
        score = float(get(item, "score", where, "number", default=1.0))
        box = xywh_to_xyxy(get(item, "bbox", where, "list"), where)
        label = next((item[k] for k in _NAME_KEYS if isinstance(item.get(k), str)), None)
        if label is None and item.get("category_id") is not None and names:
            category_id = get(item, "category_id", where, "id")
            label = names.get(category_id)
            if label is None:
                raise fail(where, f"category_id {item['category_id']!r} is not in the categories given")
        if label is None and require_labels:
            raise fail(
                where,
                "detection has no class name: give 'category_name', or 'category_id' and a categories json",
            )
        if box is None or score < score_threshold:
            continue
        out.setdefault(key, []).append(Detection(Box(*box), score, label))
    for key, found in out.items():
        found.sort(key=lambda d: -d.score)
        out[key] = found[:max_per_image] if max_per_image is not None else found
    return out


def load_proposals(
    path: str | Path, *, score_threshold: float = 0.0, max_per_image: int | None = None
) -> dict[ImageKey, list[Detection]]:
    """REC proposals per image from a COCO results file (class names optional): the boxes a
    model chooses among (RegionGPT's REC protocol); ``proposals[image_key(image_id)]``."""
    return load_detections(path, score_threshold=score_threshold, max_per_image=max_per_image)
