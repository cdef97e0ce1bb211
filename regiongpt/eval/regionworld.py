"""RegionWorld benchmark: every task of a split (``test`` or ``test_comp``), scored per task.

========================  =====================================================================
task                      metrics
========================  =====================================================================
category                  exact match (normalised) overall, by size and (test_comp) by
                          compositional flag
brief                     all four attributes right (strict parser, no extra word of a kind),
                          per attribute kind, by size
detailed                  the region's attribute words (first sentence up to the neighbour)
                          equal the reference's, whatever the template; position named;
                          BLEU-4 and CIDEr (java-free tokenizer)
relation                  exact match, by relation kind (position / larger / overlap)
choose_region             parsed "region K" equals the reference, by size
yes_no                    accuracy, precision, recall, F1, yes-ratio per POPE split and overall;
                          recall by queried shape and by the size of its largest instance
multiple_choice           parsed option letter equals the reference, by attribute asked
========================  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regiongpt.data.regionworld import VOCAB
from regiongpt.eval.harness import EngineSource, EvalItem, load_items, run_benchmark
from regiongpt.eval.metrics import (
    accuracy,
    caption_attributes_correct,
    first_sentence,
    grouped_mean,
    is_yes,
    normalize_answer,
    parse_attributes,
    parse_choice_letter,
    parse_region_answer,
    yes_no_metrics,
)
from regiongpt.eval.scorers import caption_scores
from regiongpt.tasks import Task

#: Answer length limits per task (tokens): RegionWorld answers are short and closed-set.
MAX_NEW_TOKENS: dict[Task | None, int] = {
    Task.CATEGORY: 12,
    Task.BRIEF: 16,
    Task.DETAILED: 80,
    Task.RELATION: 8,
    Task.YES_NO: 6,
    Task.CHOOSE_REGION: 8,
    Task.MULTIPLE_CHOICE: 6,
}
SPLITS = ("test", "test_comp", "val", "train")


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values)


def _with_groups(hits: list[bool], items: list[EvalItem], *keys: str) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": _mean(hits), "count": len(hits)}
    for key in keys:
        groups = [it.meta.get(key) for it in items]
        if any(groups):  # a flag such as "compositional" only where some item has it
            out[f"by_{key}"] = grouped_mean(hits, groups)
    return out


def _category(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    hits = [accuracy([p], [it.reference]) == 1.0 for p, it in zip(preds, items)]
    return _with_groups(hits, items, "size", "compositional")


def _brief(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    attrs = [{k: it.meta["objects"][0][k] for k in VOCAB} for it in items]
    hits = [caption_attributes_correct(p, a, VOCAB) for p, a in zip(preds, attrs)]
    out = _with_groups(hits, items, "size", "compositional")
    out["all_attributes_correct"] = out.pop("accuracy")
    found = [parse_attributes(p, VOCAB) for p in preds]
    out["by_attribute"] = {k: _mean([f[k] == [a[k]] for f, a in zip(found, attrs)]) for k in VOCAB}
    return out


#: Where a detailed caption's first sentence turns to the neighbour ("..., to the left of the white star").
NEIGHBOUR_CLAUSE = re.compile(r"\b(?:to the left of|to the right of|above|below)\b")


def described_attributes(caption: str) -> dict[str, list[str]]:
    """Attribute words, by kind, of the region a RegionWorld detailed caption describes: its first
    sentence up to where it turns to the neighbour, whichever template it follows (each names the
    region first). A right answer has exactly the reference's one word of each kind."""
    region_part = NEIGHBOUR_CLAUSE.split(first_sentence(caption), maxsplit=1)[0]
    return parse_attributes(region_part, VOCAB)


def _detailed(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    hits = [described_attributes(p) == described_attributes(it.reference) for p, it in zip(preds, items)]
    out = _with_groups(hits, items, "size")
    out["region_attributes_correct"] = out.pop("accuracy")
    positions = [it.meta.get("position") for it in items]
    out["position_named"] = _mean(
        [
            bool(pos) and f" {normalize_answer(pos)} " in f" {normalize_answer(p)} "
            for p, pos in zip(preds, positions)
        ]
    )
    ids = [str(i) for i in range(len(items))]
    scores = caption_scores(
        dict(zip(ids, preds)),
        {i: [it.reference] for i, it in zip(ids, items)},
        metrics=("bleu", "cider"),
        tokenizer="simple",
    )
    out["bleu4"], out["cider"] = scores["bleu4"], scores["cider"]
    return out


def _relation(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    hits = [accuracy([p], [it.reference]) == 1.0 for p, it in zip(preds, items)]
    return _with_groups(hits, items, "relation", "size")


def _choose_region(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    hits = [parse_region_answer(p) == parse_region_answer(it.reference) for p, it in zip(preds, items)]
    out = _with_groups(hits, items, "size", "compositional")
    out["parsed"] = _mean([parse_region_answer(p) is not None for p in preds])
    return out


def _yes_no(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"all": yes_no_metrics(preds, [it.reference for it in items]), "count": len(items)}
    for split in ("random", "popular", "adversarial"):
        chosen = [(p, it.reference) for p, it in zip(preds, items) if it.meta.get("pope_split") == split]
        if chosen:
            out[split] = yes_no_metrics([p for p, _ in chosen], [r for _, r in chosen])
    present = [(is_yes(p), it.meta) for p, it in zip(preds, items) if is_yes(it.reference)]
    if present:  # where "yes" is missed: which shapes, how small
        said_yes = [said for said, _ in present]
        out["recall_by_query"] = grouped_mean(said_yes, [meta.get("query") for _, meta in present])
        sizes = [meta.get("size") for _, meta in present]
        if any(sizes):  # sets generated before the size was recorded (generator 1.0) lack it
            out["recall_by_size"] = grouped_mean(said_yes, sizes)
            out["recall_by_size_count"] = sum(size is not None for size in sizes)
    return out


def _multiple_choice(items: list[EvalItem], preds: list[str]) -> dict[str, Any]:
    hits = [parse_choice_letter(p) == it.reference.strip().upper() for p, it in zip(preds, items)]
    out = _with_groups(hits, items, "attribute", "size")
    out["parsed"] = _mean([parse_choice_letter(p) is not None for p in preds])
    return out


SCORERS = {
    Task.CATEGORY: _category,
    Task.BRIEF: _brief,
    Task.DETAILED: _detailed,
    Task.RELATION: _relation,
    Task.CHOOSE_REGION: _choose_region,
    Task.YES_NO: _yes_no,
    Task.MULTIPLE_CHOICE: _multiple_choice,
}


def score_regionworld(items: list[EvalItem], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics per task present (see the module docstring), in :class:`Task` order."""
    out: dict[str, Any] = {}
    for task, scorer in SCORERS.items():
        chosen = [(it, row["prediction"] or "") for it, row in zip(items, rows) if it.task == task]
        if chosen:
            out[task.value] = scorer([it for it, _ in chosen], [p for _, p in chosen])
    return out


def evaluate_regionworld(
    engine: EngineSource,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    model_name: str | None = None,
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run and score ``<data>/<split>.jsonl`` (a folder written by ``regiongpt data regionworld``);
    writes predictions, metrics and a report under ``out``. ``tasks``: only these (default all;
    ``limit`` then counts their questions)."""
    if split not in SPLITS:
        raise ValueError(f"unknown RegionWorld split {split!r}; choose one of {list(SPLITS)}")
    chosen = sorted({Task.parse(t) for t in tasks}, key=list(Task).index) if tasks else None
    data = Path(data)
    items = load_items(data / f"{split}.jsonl", chosen, max_new_tokens=MAX_NEW_TOKENS)
    config = {"model": model_name, "data": str(data), "split": split}
    if chosen:
        config["tasks"] = ",".join(t.value for t in chosen)
    return run_benchmark(
        f"regionworld-{split}",
        engine,
        items,
        root=data,
        out=Path(out),
        score=score_regionworld,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        config=config,
    )
