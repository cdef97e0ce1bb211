"""LLaVA-Instruct conversations with detector boxes as context regions (GPT4RoI stage 2).

Inputs: a LLaVA json (``[{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}]``,
e.g. ``llava_instruct_150k.json``) and a detections file in the COCO results format (see
:mod:`regiongpt.data.converters.detections`; ``bbox`` is ``[x, y, w, h]`` in pixels). The
detections of an image (matched by :func:`~regiongpt.data.converters.detections.image_key`:
``000000033471.jpg`` <-> ``image_id`` 33471) scoring at least ``score_threshold``, best first,
become regions (pixel xyxy boxes), introduced before the first question as
"<region1> may feature a person. <region2> may feature a bus." The ``<image>`` token is
removed from the turns; the conversation is otherwise unchanged (free-form, no task).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regiongpt.data.converters.base import Stats, article, at, fail, get, image_path, load_json, progress
from regiongpt.data.converters.coco import lvis_name
from regiongpt.data.converters.detections import image_key, load_detections
from regiongpt.data.format import GPT, HUMAN, Record

IMAGE_TOKEN = "<image>"


def context_sentences(labels: list[str]) -> str:
    """``<region1> may feature a person. <region2> may feature an apple.``"""
    return " ".join(f"<region{k}> may feature {article(label)} {label}." for k, label in enumerate(labels, 1))


def _turns(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise fail(where, f"'conversations' must be a non-empty list, got {value!r:.80}")
    turns = []
    for index, turn in enumerate(value):
        expected = HUMAN if index % 2 == 0 else GPT
        if (
            not isinstance(turn, dict)
            or turn.get("from") != expected
            or not isinstance(turn.get("value"), str)
        ):
            raise fail(
                where,
                f"conversations[{index}] must be {{'from': '{expected}', 'value': str}}, got {turn!r:.80}",
            )
        turns.append({"from": expected, "value": turn["value"].replace(IMAGE_TOKEN, "").strip()})
    return turns


def llava_instruct_records(
    path: str | Path,
    detections: str | Path,
    *,
    image_root: str = "",
    categories: str | Path | None = None,
    score_threshold: float = 0.5,
    max_regions: int | None = 10,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """LLaVA conversations with detector boxes as context regions; ``categories`` (a COCO-style
    json) names detections that carry only a ``category_id``. Samples without an image are
    skipped; those without detections are kept with no regions."""
    stats = stats if stats is not None else Stats()
    found = load_detections(
        detections,
        categories=categories,
        score_threshold=score_threshold,
        max_per_image=max_regions,
        require_labels=True,
    )
    data = load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a LLaVA json list of {{id, image, conversations}}")
    for index, sample in enumerate(progress(data, "llava-instruct", enabled=show_progress)):
        where = at(path, "", index, sample.get("id") if isinstance(sample, dict) else None)
        sample_id = get(sample, "id", where, "id")
        image = get(sample, "image", where, "str", default=None)
        turns = _turns(sample.get("conversations"), where)
        if image is None:
            stats.skip("no image")
            continue
        dets = found.get(image_key(image), [])
        if not dets:
            stats.note("kept without detections")
        labels = [lvis_name(d.label or "object") for d in dets]
        if labels:
            turns[0]["value"] = f"{context_sentences(labels)}\n{turns[0]['value']}"
        yield Record(
            id=f"llava-{sample_id}",
            image=image_path(image_root, image),
            regions=[{"box": d.box.as_list()} for d in dets],
            conversations=turns,
            meta={
                "source": "llava-instruct",
                "id": sample_id,
                "detections": [
                    {"label": label, "score": d.score} for label, d in zip(labels, dets, strict=True)
                ],
            },
        )
