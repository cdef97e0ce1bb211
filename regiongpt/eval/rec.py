"""Referring expression comprehension by choosing among candidate regions (RegionGPT's protocol):
accuracy = share of questions whose chosen region's box has IoU >= 0.5 with the referred box.

Candidates are the record's regions (``choose_region`` records from ``regiongpt data convert
refcoco --task rec`` or RegionWorld) or, with ``proposals``, a detector's boxes for the image
(COCO results json, :func:`~regiongpt.data.converters.detections.load_proposals`). Two modes:

* ``choose``: ask "Which region does '<expr>' describe? <region1> ... <regionK>" and parse
  "region K" from the answer (an unreadable answer is a miss);
* ``likelihood``: score ``log p(expression | "Give a brief description of <region1>.")`` with
  each candidate as ``<region1>``, all candidates of a question in one forward pass (chunks of
  ``batch_size``), and take the best.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from regiongpt.data.converters.detections import Detection, image_key, load_proposals
from regiongpt.data.format import region_from_json
from regiongpt.eval.engine import Engine, ScoringEngine
from regiongpt.eval.harness import Answer, EngineSource, EvalItem, load_items, run_benchmark
from regiongpt.eval.metrics import parse_region_answer, rec_accuracy
from regiongpt.regions import Box, Region, box_iou
from regiongpt.tasks import Task, build_question, with_instruction

REC_MODES = ("choose", "likelihood")
_EXPRESSION = re.compile(r"Which region does '(.*)' describe\?", re.DOTALL)


@dataclass
class RecItem(EvalItem):
    """A REC question: ``regions`` are the candidates; the referred region is ``target_box``
    (pixel xyxy) or, when absent, ``target_region`` (canonical region json)."""

    expression: str = ""
    target_box: list[float] | None = None
    target_region: dict[str, Any] | None = field(default=None)


def expression_of(item: EvalItem) -> str:
    """``meta.expression``, else the quoted expression of a refcoco REC question."""
    if item.meta.get("expression"):
        return str(item.meta["expression"])
    match = _EXPRESSION.search(item.question)
    if match is None:
        raise ValueError(f"record {item.id}: cannot find the referring expression (no meta.expression)")
    return match.group(1)


def rec_question(expression: str, count: int) -> str:
    """The refcoco converter's REC question over ``count`` candidates."""
    tags = " ".join(f"<region{k}>" for k in range(1, count + 1))
    return with_instruction(f"Which region does '{expression}' describe? {tags}", Task.CHOOSE_REGION)


def rec_items(items: list[EvalItem], proposals: dict[Any, list[Detection]] | None = None) -> list[RecItem]:
    """REC questions from ``choose_region`` items, candidates replaced by ``proposals`` if given."""
    out = []
    for item in items:
        expression = expression_of(item)
        target_box = item.meta.get("target_box")
        target = parse_region_answer(item.reference)
        target_region = item.regions[target - 1] if target and target <= len(item.regions) else None
        if target_box is None and target_region is None:
            raise ValueError(f"record {item.id}: no meta.target_box and the answer names no given region")
        fields = {
            **item.__dict__,
            "expression": expression,
            "target_box": target_box,
            "target_region": target_region,
        }
        if proposals is not None:
            key = item.meta.get("image_id")
            found = proposals.get(key) if key in proposals else proposals.get(image_key(item.image), [])
            fields["regions"] = [{"box": d.box.as_list()} for d in found]
            fields["conversation"] = [{"from": "human", "value": rec_question(expression, len(found))}]
        out.append(RecItem(**fields))
    return out


def _boxes(regions: list[Region], size: tuple[int, int]) -> list[list[float]]:
    return [r.to_box(size).as_list() for r in regions]


def _row(
    item: RecItem,
    root: Path,
    size: tuple[int, int],
    boxes: list[list[float]],
    choice: int | None,
    prediction: str,
    **extra: Any,
) -> dict[str, Any]:
    target = item.target_box
    if target is None and item.target_region is not None:
        target = region_from_json(item.target_region, root, size).to_box(size).as_list()
    chosen = boxes[choice - 1] if choice is not None and 1 <= choice <= len(boxes) else None
    return {
        "prediction": prediction,
        "choice": choice if chosen else None,
        "box": chosen,
        "target_box": target,
        "boxes": boxes,
        **extra,
    }


def make_answer(mode: str, root: Path, batch_size: int) -> Answer:
    """The harness answer function of a mode (``choose`` or ``likelihood``)."""
    if mode not in REC_MODES:
        raise ValueError(f"unknown REC mode {mode!r}; choose one of {list(REC_MODES)}")

    def choose(
        engine: Engine, image: Image.Image, features: Any, items: list[EvalItem], regions: list[list[Region]]
    ) -> list[dict[str, Any]]:
        asked = [i for i, regs in enumerate(regions) if regs]
        texts = (
            engine.generate(
                [items[i].conversation for i in asked],
                image,
                [regions[i] for i in asked],
                features=features,
                max_new_tokens=max(it.max_new_tokens for it in items),
            )
            if asked
            else []
        )
        answers = dict(zip(asked, texts))
        return [
            _row(
                item,
                root,
                image.size,
                _boxes(regs, image.size),
                parse_region_answer(answers.get(i, "")),
                answers.get(i, ""),
            )
            for i, (item, regs) in enumerate(zip(items, regions))
        ]

    def likelihood(
        engine: Engine, image: Image.Image, features: Any, items: list[EvalItem], regions: list[list[Region]]
    ) -> list[dict[str, Any]]:
        if not isinstance(engine, ScoringEngine):
            raise TypeError("REC by likelihood needs an engine with a score() method")
        rows = []
        for item, regs in zip(items, regions):
            conv = [
                {"from": "human", "value": build_question(Task.BRIEF, 1)},
                {"from": "gpt", "value": item.expression},
            ]
            scores: list[float] = []
            for start in range(0, len(regs), batch_size):
                chunk = regs[start : start + batch_size]
                scores += engine.score([conv] * len(chunk), image, [[r] for r in chunk], features=features)
            choice = max(range(len(scores)), key=scores.__getitem__) + 1 if scores else None
            rows.append(
                _row(
                    item,
                    root,
                    image.size,
                    _boxes(regs, image.size),
                    choice,
                    f"region {choice}" if choice else "",
                    scores=scores,
                )
            )
        return rows

    return choose if mode == "choose" else likelihood


def score_rec(items: list[EvalItem], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``accuracy`` (IoU >= 0.5), ``parsed`` (a candidate was chosen), ``candidate_recall`` (some
    candidate has IoU >= 0.5: the ceiling with proposals) and candidates per question."""
    targets = [row["target_box"] for row in rows]
    best = []
    for row in rows:
        target = Box(*row["target_box"])
        ious = [box_iou(Box(*b), target) for b in row["boxes"] if b[2] > b[0] and b[3] > b[1]]
        best.append(max(ious, default=0.0) >= 0.5)
    return {
        "accuracy": rec_accuracy([row["box"] for row in rows], targets),
        "parsed": sum(row["box"] is not None for row in rows) / len(rows),
        "candidate_recall": sum(best) / len(best),
        "candidates_per_question": sum(len(row["boxes"]) for row in rows) / len(rows),
    }


def evaluate_rec(
    engine: EngineSource,
    data: str | Path,
    out: str | Path,
    *,
    mode: str = "choose",
    image_root: str | Path | None = None,
    proposals: str | Path | None = None,
    max_proposals: int | None = None,
    proposal_score: float = 0.0,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Run REC on the ``choose_region`` records of a canonical JSONL file."""
    if mode not in REC_MODES:
        raise ValueError(f"unknown REC mode {mode!r}; choose one of {list(REC_MODES)}")
    data = Path(data)
    root = Path(image_root) if image_root is not None else data.parent
    found = None
    if proposals is not None:
        if not Path(proposals).is_file():
            raise FileNotFoundError(f"no proposals file at {proposals}")
        found = load_proposals(proposals, score_threshold=proposal_score, max_per_image=max_proposals)
    items = rec_items(load_items(data, (Task.CHOOSE_REGION,), max_new_tokens=8), found)
    answer = make_answer(mode, root, batch_size)
    config = {
        "model": model_name,
        "data": str(data),
        "image_root": str(root),
        "mode": mode,
        "proposals": str(proposals) if proposals else None,
        "max_proposals": max_proposals,
        "candidate_batch_size": batch_size if mode == "likelihood" else None,
    }
    return run_benchmark(
        f"rec-{mode}",
        engine,
        items,
        root=root,
        out=Path(out),
        score=score_rec,
        answer=answer,
        batch_size=1 if mode == "likelihood" else batch_size,
        limit=limit,
        progress=progress,
        config=config,
    )
