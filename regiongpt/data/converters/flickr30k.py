"""Flickr30k Entities in MDETR's json (``final_flickr_separateGT_train.json`` and friends).

Each ``images`` entry is one caption of one image (``caption``, ``file_name``, ``width``,
``height``, ``original_img_id``, ``sentence_id``); its annotations carry a box
``[x, y, w, h]`` (pixels) and ``tokens_positive``: ``[start, end)`` character spans of the
phrase in the caption. One record per entry, regions numbered in the order their phrases appear
in the caption:

1. a multi-region description turn: "Give a description of the image that mentions <region1>,
   <region2> and <region3>." (+ the :attr:`Task.DETAILED` instruction) answered by the caption;
2. one phrase turn per region: "Give a brief description of <regionK>." (:attr:`Task.BRIEF`)
   answered by its phrase.

The answer is the plain caption: region tags are kept out of answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regiongpt.data.converters.base import (
    Stats,
    at,
    clip_xyxy,
    fail,
    get,
    image_path,
    join_tags,
    progress,
    region_turns,
    xywh_to_xyxy,
)
from regiongpt.data.converters.coco import image_file, image_size, load_coco
from regiongpt.data.format import Record
from regiongpt.tasks import Task, with_instruction


def phrase_of(caption: str, spans: Any, where: str) -> tuple[int, str]:
    """``(first start, phrase)`` of ``tokens_positive`` spans in ``caption``."""
    if not isinstance(spans, list):
        raise fail(where, f"'tokens_positive' must be a list of [start, end] spans, got {spans!r:.80}")
    parts = []
    for span in spans:
        ok = isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)
        if not ok or not 0 <= span[0] < span[1] <= len(caption):
            raise fail(
                where, f"span {span!r:.40} is not [start, end) inside the {len(caption)}-character caption"
            )
        parts.append((span[0], caption[span[0] : span[1]]))
    parts.sort()
    return (parts[0][0], " ".join(text.strip() for _, text in parts)) if parts else (-1, "")


def flickr30k_records(
    path: str | Path,
    *,
    image_root: str = "",
    describe: bool = True,
    phrases: bool = True,
    max_regions: int | None = None,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Records from an MDETR Flickr30k Entities json (see the module docstring); ``describe`` /
    ``phrases`` switch the two kinds of turns, ``max_regions`` keeps the first N regions."""
    if not describe and not phrases:
        raise ValueError("flickr30k: enable the description turn, the phrase turns or both")
    stats = stats if stats is not None else Stats()
    coco = load_coco(path)
    by_entry: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
    for where, ann in coco.annotations:
        by_entry.setdefault(coco.image_of(ann, where)[0], []).append((where, ann))
    entries = progress(coco.images.items(), "flickr30k captions", enabled=show_progress)
    for position, (entry_id, entry) in enumerate(entries):
        where = at(coco.path, "images", position, entry_id)
        caption = get(entry, "caption", where, "str")  # spans index this exact string
        size = image_size(entry, where)
        found: list[tuple[int, str, list[float]]] = []
        for ann_where, ann in by_entry.get(entry_id, []):
            start, phrase = phrase_of(caption, ann.get("tokens_positive"), ann_where)
            box = xywh_to_xyxy(ann.get("bbox"), ann_where)
            if box is not None and size is not None:
                box = clip_xyxy(box, *size)
            if box is None or not phrase:
                stats.skip("degenerate box" if box is None else "box without phrase")
                continue
            found.append((start, phrase, box))
        found.sort(key=lambda item: item[0])
        found = found[:max_regions] if max_regions is not None else found
        if not found:
            stats.skip("caption without boxes")
            continue
        turns: list[dict[str, str]] = []
        if describe:
            tags = join_tags(range(1, len(found) + 1))
            question = with_instruction(
                f"Give a description of the image that mentions {tags}.", Task.DETAILED
            )
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": caption.strip()}]
        if phrases:
            turns += region_turns(Task.BRIEF, [phrase for _, phrase, _ in found])
        yield Record(
            id=f"flickr30k-{entry_id}",
            image=image_path(image_root, image_file(entry, where)),
            regions=[{"box": box} for _, _, box in found],
            conversations=turns,
            task=Task.DETAILED if describe else Task.BRIEF,
            width=size[0] if size else None,
            height=size[1] if size else None,
            meta={
                "source": "flickr30k",
                "image_id": entry.get("original_img_id"),
                "sentence_id": entry.get("sentence_id"),
            },
        )
