"""COCO ``instances_*.json`` and LVIS (same layout) to per-region category records, plus the
COCO-style file loader shared by the GRiT VG, MDETR refexp and Flickr30k converters.

Input boxes are COCO ``[x, y, width, height]`` in pixels; regions are written as the
annotation's polygon / RLE (``geometry="mask"``, when it has one) or its pixel xyxy box.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from regiongpt.data.converters.base import (
    Geometry,
    Stats,
    at,
    chunks,
    clip_xyxy,
    coco_region,
    fail,
    get,
    image_path,
    is_number,
    load_json,
    progress,
    region_turns,
    xywh_to_xyxy,
)
from regiongpt.data.format import Record
from regiongpt.tasks import Task


@dataclass
class CocoFile:
    """A parsed COCO-style json: images and category names by id, annotations with positions."""

    path: Path
    images: dict[Any, dict[str, Any]]
    categories: dict[Any, str]
    annotations: list[tuple[str, dict[str, Any]]]

    def image_of(self, ann: dict[str, Any], where: str) -> tuple[Any, dict[str, Any]]:
        """``(image_id, image entry)`` of an annotation; ValueError if the id is unknown."""
        image_id = get(ann, "image_id", where, "id")
        if image_id not in self.images:
            raise fail(where, f"image_id {image_id!r} is not in {self.path.name} 'images'")
        return image_id, self.images[image_id]

    def category_of(self, ann: dict[str, Any], where: str) -> str:
        category_id = get(ann, "category_id", where, "id")
        if category_id not in self.categories:
            raise fail(where, f"category_id {category_id!r} is not in {self.path.name} 'categories'")
        return self.categories[category_id]


def load_coco(path: str | Path) -> CocoFile:
    """Read a COCO-style json (``images``, ``annotations``, optional ``categories``)."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected a COCO-style object with an 'images' list")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{path}: 'annotations' must be a list")
    images: dict[Any, dict[str, Any]] = {}
    for index, image in enumerate(data["images"]):
        images[get(image, "id", at(path, "images", index), "id")] = image
    if not isinstance(data.get("categories") or [], list):
        raise ValueError(f"{path}: 'categories' must be a list")
    categories: dict[Any, str] = {}
    for index, category in enumerate(data.get("categories") or []):
        where = at(path, "categories", index)
        categories[get(category, "id", where, "id")] = get(category, "name", where, "str")
    positions = [(at(path, "annotations", i, _id(a)), a) for i, a in enumerate(annotations)]
    return CocoFile(path, images, categories, positions)


def _id(obj: Any) -> Any:
    return obj.get("id") if isinstance(obj, dict) else None


def image_file(image: dict[str, Any], where: str) -> str:
    """The image's path: ``file_name``, else the last two parts of LVIS's ``coco_url``
    (``train2017/000000391895.jpg``)."""
    if isinstance(image.get("file_name"), str) and image["file_name"]:
        return image["file_name"]
    if isinstance(image.get("coco_url"), str) and image["coco_url"]:
        return str(PurePosixPath(*PurePosixPath(image["coco_url"]).parts[-2:]))
    raise fail(where, "image has neither 'file_name' nor 'coco_url'")


def image_size(image: dict[str, Any], where: str) -> tuple[int, int] | None:
    """``(width, height)`` of an image entry (ints or numeric strings), None when absent."""
    if image.get("width") is None and image.get("height") is None:
        return None
    size = []
    for key in ("width", "height"):
        value = image.get(key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not (is_number(value) and value > 0):
            raise fail(where, f"image {key!r} must be a positive number, got {value!r:.40}")
        size.append(int(value))
    return size[0], size[1]


def lvis_name(raw: str) -> str:
    """A readable LVIS name: ``bus_(vehicle)`` -> ``bus``, ``baseball_bat`` -> ``baseball bat``."""
    return re.sub(r"\s*\([^)]*\)", "", raw.replace("_", " ")).strip() or raw


def coco_category_records(
    path: str | Path,
    *,
    image_root: str = "",
    geometry: Geometry = "mask",
    include_crowd: bool = False,
    min_area: float = 0.0,
    regions_per_sample: int = 1,
    name: str = "coco",
    clean_names: bool = False,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Category records (:attr:`Task.CATEGORY`, answer = category name) from a COCO/LVIS
    instances json. ``regions_per_sample`` > 1 asks about several regions of one image in one
    multi-turn record. ``min_area`` is in pixels (the annotation's ``area``, else its box's).
    ``clean_names`` makes LVIS names readable (:func:`lvis_name`)."""
    stats = stats if stats is not None else Stats()
    coco = load_coco(path)
    by_image: dict[Any, list[tuple[dict[str, Any], str, Any]]] = {}
    for where, ann in progress(coco.annotations, f"{name} annotations", enabled=show_progress):
        image_id, image = coco.image_of(ann, where)
        category = coco.category_of(ann, where)
        if clean_names:
            category = lvis_name(category)
        if ann.get("iscrowd") and not include_crowd:
            stats.skip("crowd")
            continue
        box = xywh_to_xyxy(ann.get("bbox"), where)
        if box is None:
            stats.skip("degenerate box")
            continue
        area = ann["area"] if is_number(ann.get("area")) else (box[2] - box[0]) * (box[3] - box[1])
        if area < min_area:
            stats.skip("below min area")
            continue
        size = image_size(image, f"{coco.path.name} image {image_id}")
        if size is not None:  # a box outside its image would fail at training time
            box = clip_xyxy(box, *size)
            if box is None:
                stats.skip("box outside image")
                continue
        region = coco_region(ann, box, where, geometry, stats, size)
        by_image.setdefault(image_id, []).append((region, category, ann.get("id")))
    for image_id, items in by_image.items():
        image = coco.images[image_id]
        where = f"{coco.path.name} image {image_id}"
        size = image_size(image, where)
        for chunk_index, chunk in chunks(items, regions_per_sample):
            record_id = (
                f"{name}-{chunk[0][2]}" if regions_per_sample == 1 else f"{name}-{image_id}-{chunk_index}"
            )
            yield Record(
                id=record_id,
                image=image_path(image_root, image_file(image, where)),
                regions=[region for region, _, _ in chunk],
                conversations=region_turns(Task.CATEGORY, [category for _, category, _ in chunk]),
                task=Task.CATEGORY,
                width=size[0] if size else None,
                height=size[1] if size else None,
                meta={"source": name, "image_id": image_id, "ann_ids": [ann_id for _, _, ann_id in chunk]},
            )


def lvis_category_records(path: str | Path, **options: Any) -> Iterator[Record]:
    """:func:`coco_category_records` for LVIS (``name="lvis"``, readable names by default)."""
    options.setdefault("name", "lvis")
    options.setdefault("clean_names", True)
    return coco_category_records(path, **options)
