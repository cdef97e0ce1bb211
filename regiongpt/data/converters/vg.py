"""Visual Genome region descriptions to region-caption records.

* ``region_descriptions.json``: a list of ``{"id": image_id, "regions": [{"region_id", "x",
  "y", "width", "height", "phrase", "image_id"}]}``; ``x, y`` is the top-left corner in pixels.
  Optional ``image_data.json`` (``[{"image_id" | "id", "url", "width", "height"}]``) gives the
  image folder (``VG_100K/1.jpg`` or ``VG_100K_2/...``, from the url) and the size used to clip
  boxes; without it images are written as ``{image_id}.jpg`` and boxes are not clipped.
* GRiT's COCO-format VG (``train.json`` / ``test.json``): COCO images and annotations whose
  ``caption`` is the phrase, boxes ``[x, y, w, h]``.

Regions are pixel xyxy boxes. The question is :attr:`Task.BRIEF` (default) or
:attr:`Task.DETAILED`, answered by the phrase.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from regiongpt.data.converters.base import (
    Stats,
    at,
    chunks,
    clip_xyxy,
    fail,
    get,
    image_path,
    load_json,
    progress,
    region_turns,
    xywh_to_xyxy,
)
from regiongpt.data.converters.coco import image_file, image_size, load_coco
from regiongpt.data.format import Record
from regiongpt.tasks import Task

CAPTION_TASKS = (Task.BRIEF, Task.DETAILED)


def _caption_task(task: Task | str) -> Task:
    task = Task.parse(task)
    if task not in CAPTION_TASKS:
        raise ValueError(f"region captions need task 'brief' or 'detailed', got {task.value!r}")
    return task


def _phrase(text: str) -> str:
    return " ".join(text.split())


def load_image_data(path: str | Path) -> dict[Any, tuple[str, tuple[int, int] | None]]:
    """``image_id -> (relative file, (width, height))`` from VG's ``image_data.json``."""
    data = load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of image entries")
    out: dict[Any, tuple[str, tuple[int, int] | None]] = {}
    for index, entry in enumerate(data):
        where = at(path, "", index)
        image_id = get(entry, "image_id", where, "id", default=None)
        image_id = image_id if image_id is not None else get(entry, "id", where, "id")
        url = get(entry, "url", where, "str")
        out[image_id] = (str(PurePosixPath(*PurePosixPath(url).parts[-2:])), image_size(entry, where))
    return out


def _caption_records(
    items: list[tuple[list[float], str, Any]],
    *,
    record_prefix: str,
    image: str,
    size: tuple[int, int] | None,
    task: Task,
    regions_per_sample: int | None,
    meta: dict[str, Any],
) -> Iterator[Record]:
    for chunk_index, chunk in chunks(items, regions_per_sample):
        suffix = chunk[0][2] if regions_per_sample == 1 else chunk_index
        yield Record(
            id=f"{record_prefix}-{suffix}",
            image=image,
            regions=[{"box": box} for box, _, _ in chunk],
            conversations=region_turns(task, [phrase for _, phrase, _ in chunk]),
            task=task,
            width=size[0] if size else None,
            height=size[1] if size else None,
            meta={**meta, "region_ids": [region_id for _, _, region_id in chunk]},
        )


def vg_region_records(
    path: str | Path,
    *,
    image_root: str = "",
    image_data: str | Path | None = None,
    task: Task | str = Task.BRIEF,
    regions_per_sample: int = 1,
    min_size: float = 0.0,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Region-caption records from ``region_descriptions.json``; ``min_size`` (pixels) skips
    regions whose width or height is smaller."""
    task = _caption_task(task)
    stats = stats if stats is not None else Stats()
    images = load_image_data(image_data) if image_data is not None else {}
    data = load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of {{'id', 'regions'}} image entries")
    for index, entry in enumerate(progress(data, "vg images", enabled=show_progress)):
        where = at(path, "", index, entry.get("id") if isinstance(entry, dict) else None)
        image_id = get(entry, "id", where, "id", default=None)
        image_id = image_id if image_id is not None else get(entry, "image_id", where, "id")
        if images and image_id not in images:
            raise fail(where, f"image {image_id!r} is not in {Path(str(image_data)).name}")
        file, size = images.get(image_id, (f"{image_id}.jpg", None))
        items: list[tuple[list[float], str, Any]] = []
        for number, region in enumerate(get(entry, "regions", where, "list")):
            rwhere = f"{where} regions[{number}]"
            region_id = get(region, "region_id", rwhere, "id", default=number)
            rwhere = f"{where} regions[{number}] (region_id {region_id})"
            values = [get(region, key, rwhere, "number") for key in ("x", "y", "width", "height")]
            phrase = _phrase(get(region, "phrase", rwhere, "str"))
            box = xywh_to_xyxy(values, rwhere)
            if box is not None and size is not None:
                box = clip_xyxy(box, *size)
            if box is None or min(box[2] - box[0], box[3] - box[1]) < min_size:
                stats.skip("degenerate or small box")
                continue
            if not phrase:
                stats.skip("empty phrase")
                continue
            items.append((box, phrase, region_id))
        yield from _caption_records(
            items,
            record_prefix=f"vg-{image_id}" if regions_per_sample != 1 else "vg",
            image=image_path(image_root, file),
            size=size,
            task=task,
            regions_per_sample=regions_per_sample,
            meta={"source": "vg", "image_id": image_id},
        )


def vg_grit_records(
    path: str | Path,
    *,
    image_root: str = "",
    task: Task | str = Task.BRIEF,
    regions_per_sample: int = 1,
    min_size: float = 0.0,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Region-caption records from GRiT's COCO-format VG json (``caption`` per annotation)."""
    task = _caption_task(task)
    stats = stats if stats is not None else Stats()
    coco = load_coco(path)
    by_image: dict[Any, list[tuple[list[float], str, Any]]] = {}
    for where, ann in progress(coco.annotations, "vg annotations", enabled=show_progress):
        image_id, image = coco.image_of(ann, where)
        phrase = _phrase(get(ann, "caption", where, "str"))
        box = xywh_to_xyxy(ann.get("bbox"), where)
        size = image_size(image, where)
        if box is not None and size is not None:
            box = clip_xyxy(box, *size)
        if box is None or min(box[2] - box[0], box[3] - box[1]) < min_size:
            stats.skip("degenerate or small box")
            continue
        if not phrase:
            stats.skip("empty phrase")
            continue
        by_image.setdefault(image_id, []).append((box, phrase, ann.get("id")))
    for image_id, items in by_image.items():
        image = coco.images[image_id]
        where = f"{coco.path.name} image {image_id}"
        yield from _caption_records(
            items,
            record_prefix=f"vg-grit-{image_id}" if regions_per_sample != 1 else "vg-grit",
            image=image_path(image_root, image_file(image, where)),
            size=image_size(image, where),
            task=task,
            regions_per_sample=regions_per_sample,
            meta={"source": "vg-grit", "image_id": image_id},
        )
