"""Regions to caption, from a COCO-style instances file or a canonical region JSONL.

Every region gets a stable id (the resume key): ``{name}-{annotation id}`` for COCO, and
``{record id}-r{K}`` for the K-th region of a JSONL record. Its class name is the COCO category,
the region's ``label``, or the answer of a single-region ``category`` record. The same region
listed twice (same image, same geometry) is captioned once."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regiongpt.data.converters.base import Geometry, Stats, coco_region, xywh_to_xyxy
from regiongpt.data.converters.coco import image_file, image_size, load_coco, lvis_name
from regiongpt.data.format import GEOMETRY_KEYS, GPT, read_jsonl
from regiongpt.tasks import Task


@dataclass
class RegionItem:
    """One region to caption. ``geometry`` is its canonical JSON entry (mask files relative to
    ``root``); ``image`` the image file; ``size`` ``(w, h)`` when the annotations give it."""

    id: str
    image: Path
    geometry: dict[str, Any]
    class_name: str | None
    root: Path
    size: tuple[int, int] | None = None
    source: dict[str, Any] | None = None


def coco_items(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    geometry: Geometry = "mask",
    include_crowd: bool = False,
    name: str = "coco",
    clean_names: bool = False,
) -> list[RegionItem]:
    """One item per annotation of a COCO/LVIS instances json (crowd regions skipped unless asked);
    images are ``image_root`` (default: the json's folder) / ``file_name``."""
    coco = load_coco(path)
    root = Path(image_root) if image_root is not None else coco.path.parent
    stats = Stats()
    items = []
    for index, (where, ann) in enumerate(coco.annotations):
        image_id, image = coco.image_of(ann, where)
        if ann.get("iscrowd") and not include_crowd:
            continue
        box = xywh_to_xyxy(ann.get("bbox"), where)
        if box is None:
            continue
        category = coco.category_of(ann, where) if "category_id" in ann else None
        if category and clean_names:
            category = lvis_name(category)
        size = image_size(image, where)
        region = coco_region(ann, box, where, geometry, stats, size)
        ann_id = ann.get("id", f"{image_id}-{index}")
        items.append(
            RegionItem(
                id=f"{name}-{ann_id}",
                image=root / image_file(image, where),
                geometry=region,
                class_name=category,
                root=root,
                size=size,
                source={"coco_image_id": image_id, "coco_ann_id": ann.get("id")},
            )
        )
    return _checked(items)


def jsonl_items(path: str | Path, image_root: str | Path | None = None) -> list[RegionItem]:
    """One item per region of each record of a canonical JSONL (paths relative to ``image_root``,
    default: the file's folder)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    items = []
    for number, record in enumerate(read_jsonl(path), start=1):
        record_id = record.id or f"line{number}"
        size = (record.width, record.height) if record.width and record.height else None
        answers = [t["value"] for t in record.conversations if t["from"] == GPT]
        category = (
            answers[0].strip()
            if record.task == Task.CATEGORY and len(record.regions) == 1 and answers
            else None
        )
        for k, region in enumerate(record.regions, start=1):
            label = region.get("label")
            geometry = {key: value for key, value in region.items() if key in GEOMETRY_KEYS}
            items.append(
                RegionItem(
                    id=f"{record_id}-r{k}",
                    image=root / record.image,
                    geometry=geometry,
                    class_name=str(label) if label else category,
                    root=root,
                    size=size,
                    source={"record_id": record.id, "region_index": k},
                )
            )
    return _checked(items)


def _checked(items: Iterable[RegionItem]) -> list[RegionItem]:
    """Drop repeated (image, geometry) pairs, reject repeated ids, group regions by image."""
    seen_geometry: set[tuple[str, str]] = set()
    seen_ids: set[str] = set()
    by_image: dict[Path, list[RegionItem]] = {}
    for item in items:
        key = (str(item.image), json.dumps(item.geometry, sort_keys=True))
        if key in seen_geometry:
            continue
        if item.id in seen_ids:
            raise ValueError(f"region id {item.id!r} occurs twice: record/annotation ids must be unique")
        seen_geometry.add(key)
        seen_ids.add(item.id)
        by_image.setdefault(item.image, []).append(item)
    return [item for group in by_image.values() for item in group]
