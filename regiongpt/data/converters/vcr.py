"""VCR (Visual Commonsense Reasoning) ``train.jsonl`` / ``val.jsonl`` to multiple-choice records.

Each line has ``objects`` (class names), ``img_fn`` and ``metadata_fn`` (both relative to the
``vcr1images`` folder), ``question``, ``answer_choices`` and ``rationale_choices`` as token
lists, where a token that is a list of integers refers to objects by 0-based index
(``["What", "is", [0], "doing", "?"]``), and ``answer_label`` / ``rationale_label``. The metadata
json holds ``boxes`` (``[x1, y1, x2, y2, score]``, pixels), ``segms`` (per object a list of
polygons, each a list of ``[x, y]`` points), ``width`` and ``height``.

Object references become ``<regionK>`` tags, K in order of first reference within the record
(prompt order: question, then choices); only referenced objects become regions, as their
polygon (``geometry="mask"``, when usable) or pixel xyxy box. The class name is not kept in
the text (``[0]`` -> ``<region1>``, ``[0, 1]`` -> ``<region1> and <region2>``); the names are in
``meta.objects``. Two records per line, :attr:`Task.MULTIPLE_CHOICE`, answered by a letter:

* ``qa`` (Q->A): "<question>\\n(A) ...\\n(B) ..." -> "B";
* ``qar`` (QA->R): "<question>\\nAnswer: <correct answer>\\nWhy?\\n(A) ...".

Lines without labels (the test split) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from regiongpt.data.converters.base import (
    Geometry,
    Stats,
    clip_xyxy,
    fail,
    get,
    image_path,
    iter_json_records,
    join_tags,
    load_json,
    numbers,
    progress,
    usable_segmentation,
)
from regiongpt.data.format import Record
from regiongpt.tasks import Task, with_instruction

LETTERS = "ABCDEFGHIJ"
VCR_MODES = ("qa", "qar")
_NO_SPACE_BEFORE = {".", ",", "?", "!", ":", ";", "'s", "'", "n't", "'re", "'ll", "'ve", "'m", "'d", ")"}


def detokenize(words: Sequence[str]) -> str:
    """Join tokens with spaces, except before punctuation/clitics and after ``(``."""
    text = ""
    for word in words:
        if text and word not in _NO_SPACE_BEFORE and not text.endswith("("):
            text += " "
        text += word
    return text


class ObjectTagger:
    """Renders VCR token lists, numbering referenced objects in order of first reference."""

    def __init__(self, count: int, where: str) -> None:
        self.count, self.where, self.order = count, where, []

    def render(self, tokens: Any, what: str) -> str:
        if not isinstance(tokens, list):
            raise fail(self.where, f"{what} must be a token list, got {tokens!r:.80}")
        words = []
        for token in tokens:
            if isinstance(token, str):
                words.append(token)
                continue
            ok = isinstance(token, list) and token and all(isinstance(v, int) for v in token)
            if not ok or not all(0 <= v < self.count for v in token):
                raise fail(
                    self.where,
                    f"{what}: object reference {token!r:.40} is not a list of indices into the "
                    f"{self.count} objects",
                )
            for value in token:
                if value not in self.order:
                    self.order.append(value)
            words.append(join_tags(self.order.index(v) + 1 for v in token))
        return detokenize(words)


def _options(choices: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))


def _region(metadata: dict[str, Any], obj: int, where: str, geometry: Geometry) -> dict[str, Any] | None:
    size = (get(metadata, "width", where, "int"), get(metadata, "height", where, "int"))
    box = numbers(metadata["boxes"][obj], 4, where, f"boxes[{obj}] [x1, y1, x2, y2, score]", exact=False)
    if geometry == "mask" and isinstance(metadata.get("segms"), list) and obj < len(metadata["segms"]):
        parts = []
        polygons = metadata["segms"][obj] or []
        if not isinstance(polygons, list):
            raise fail(
                where, f"segms[{obj}] must be a list of polygons ([[x, y], ...]), got {polygons!r:.60}"
            )
        for polygon in polygons:
            if not isinstance(polygon, list):
                raise fail(
                    where, f"segms[{obj}] must be a list of polygons ([[x, y], ...]), got {polygon!r:.60}"
                )
            points = [numbers(p, 2, where, f"segms[{obj}] point") for p in polygon]
            if len(points) >= 3:
                parts.append([c for point in points for c in point])
        if parts and usable_segmentation({"polygon": parts}, size):
            return {"polygon": parts}
    clipped = clip_xyxy(box, *size)
    return None if clipped is None else {"box": clipped}


def vcr_records(
    path: str | Path,
    *,
    images_dir: str | Path,
    image_root: str = "",
    geometry: Geometry = "mask",
    modes: Sequence[str] = VCR_MODES,
    stats: Stats | None = None,
    show_progress: bool = True,
) -> Iterator[Record]:
    """Q->A and/or QA->R records from a VCR jsonl; ``images_dir`` is the ``vcr1images`` folder
    (read for the metadata json), ``image_root`` how image paths are written."""
    unknown = sorted(set(modes) - set(VCR_MODES))
    if unknown or not modes:
        raise ValueError(f"unknown VCR modes {unknown or list(modes)}; choose from {list(VCR_MODES)}")
    stats = stats if stats is not None else Stats()
    for position, line in progress(iter_json_records(path), "vcr", enabled=show_progress):
        annot_id = line.get("annot_id") if isinstance(line, dict) else None
        where = f"{position} (id {annot_id})" if annot_id is not None else position
        objects = get(line, "objects", where, "list")
        img_fn = get(line, "img_fn", where, "str")
        question = get(line, "question", where, "list")
        answers = get(line, "answer_choices", where, "list")
        rationales = get(line, "rationale_choices", where, "list")
        answer_label = get(line, "answer_label", where, "int", default=None)
        rationale_label = get(line, "rationale_label", where, "int", default=None)
        if answer_label is None or rationale_label is None:
            stats.skip("unlabelled")
            continue
        for label, choices, key in (
            (answer_label, answers, "answer"),
            (rationale_label, rationales, "rationale"),
        ):
            if not 0 <= label < len(choices) or len(choices) > len(LETTERS):
                raise fail(where, f"'{key}_label' {label} does not index the {len(choices)} {key} choices")
        metadata_fn = get(line, "metadata_fn", where, "str")
        metadata_path = Path(images_dir) / metadata_fn
        if not metadata_path.is_file():
            raise fail(where, f"metadata file {metadata_fn!r} not found in {images_dir}")
        metadata = load_json(metadata_path)
        meta_where = f"{metadata_fn} for {where}"
        boxes = get(metadata, "boxes", meta_where, "list")
        width, height = get(metadata, "width", meta_where, "int"), get(metadata, "height", meta_where, "int")
        count = min(len(objects), len(boxes))
        for mode in modes:
            tagger = ObjectTagger(count, where)
            text = tagger.render(question, "question")
            if mode == "qa":
                options = [tagger.render(a, f"answer_choices[{i}]") for i, a in enumerate(answers)]
                prompt, answer = f"{text}\n{_options(options)}", LETTERS[answer_label]
            else:
                correct = tagger.render(answers[answer_label], f"answer_choices[{answer_label}]")
                options = [tagger.render(r, f"rationale_choices[{i}]") for i, r in enumerate(rationales)]
                prompt = f"{text}\nAnswer: {correct}\nWhy?\n{_options(options)}"
                answer = LETTERS[rationale_label]
            regions = [_region(metadata, obj, meta_where, geometry) for obj in tagger.order]
            if any(region is None for region in regions):
                stats.skip("referenced box outside image")
                continue
            yield Record(
                id=f"vcr-{annot_id if annot_id is not None else position}-{mode}",
                image=image_path(image_root, img_fn),
                regions=regions,
                conversations=[
                    {"from": "human", "value": with_instruction(prompt, Task.MULTIPLE_CHOICE)},
                    {"from": "gpt", "value": answer},
                ],
                task=Task.MULTIPLE_CHOICE,
                width=width,
                height=height,
                meta={
                    "source": "vcr",
                    "mode": mode,
                    "annot_id": annot_id,
                    "img_id": line.get("img_id"),
                    "objects": [objects[obj] for obj in tagger.order],
                },
            )
