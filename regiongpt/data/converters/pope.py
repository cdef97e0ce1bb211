"""POPE object-hallucination questions to yes/no records.

A POPE file (``coco_pope_random.json``, ``..._popular.json``, ``..._adversarial.json``) holds
one json object per line: ``{"question_id", "image", "text": "Is there a X in the image?",
"label": "yes" | "no"}``. Records are image-level (no regions), :attr:`Task.YES_NO`, with the
split in ``meta.pope_split`` (taken from the file name unless given). For REC proposals from
a detector see :func:`regiongpt.data.converters.detections.load_proposals`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from regiongpt.data.converters.base import Stats, fail, get, image_path, iter_json_records, progress
from regiongpt.data.format import Record
from regiongpt.tasks import Task, with_instruction

POPE_SPLITS = ("random", "popular", "adversarial")


def pope_split_of(path: str | Path) -> str:
    """The POPE split named in a file name (``coco_pope_popular.json`` -> ``popular``)."""
    found = [split for split in POPE_SPLITS if split in Path(path).name.lower()]
    if len(found) != 1:
        raise ValueError(
            f"{path}: cannot tell the POPE split from the file name; pass one of {list(POPE_SPLITS)}"
        )
    return found[0]


def pope_records(
    path: str | Path,
    *,
    image_root: str = "",
    split: str | None = None,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Yes/no records from a POPE question file."""
    split = split if split is not None else pope_split_of(path)
    if split not in POPE_SPLITS:
        raise ValueError(f"unknown POPE split {split!r}; choose one of {list(POPE_SPLITS)}")
    stats = stats if stats is not None else Stats()
    for position, item in progress(iter_json_records(path), f"pope {split}", enabled=show_progress):
        question_id = get(item, "question_id", position, "id")
        where = f"{position} (question_id {question_id})"
        text = get(item, "text", where, "str").strip()
        label = get(item, "label", where, "str").strip().lower()
        if label not in ("yes", "no"):
            raise fail(where, f"'label' must be 'yes' or 'no', got {item['label']!r:.40}")
        if not text:
            stats.skip("empty question")
            continue
        yield Record(
            id=f"pope-{split}-{question_id}",
            image=image_path(image_root, get(item, "image", where, "str")),
            regions=[],
            conversations=[
                {"from": "human", "value": with_instruction(text, Task.YES_NO)},
                {"from": "gpt", "value": label},
            ],
            task=Task.YES_NO,
            meta={"source": "pope", "pope_split": split, "question_id": question_id},
        )
