"""Region captioning (RefCOCOg, Visual Genome, RegionWorld brief/detailed): BLEU-1..4, METEOR,
ROUGE-L, CIDEr (and SPICE where its models are installed) with pycocoevalcap and its
PTBTokenizer, corpus-level.

Questions asked identically about the same region of the same image (RefCOCOg gives several
expressions per object, one record each) are asked once; all their answers become the
references of that one prediction, keyed by the first record's id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regiongpt.eval.harness import EngineSource, EvalItem, load_items, run_benchmark
from regiongpt.eval.scorers import CAPTION_METRICS, caption_scores
from regiongpt.tasks import Task

CAPTION_TASKS = (Task.BRIEF, Task.DETAILED)
MAX_NEW_TOKENS: dict[Task | None, int] = {Task.BRIEF: 32, Task.DETAILED: 160, None: 64}


def merge_references(items: list[EvalItem]) -> list[EvalItem]:
    """One item per distinct (image, regions, conversation), in first-seen order, carrying the
    references of all its duplicates."""
    merged: dict[str, EvalItem] = {}
    for item in items:
        key = json.dumps([item.image, item.regions, item.conversation], sort_keys=True)
        if key in merged:
            merged[key].references.append(item.reference)
        else:
            merged[key] = EvalItem(**{**item.__dict__, "references": list(item.references)})
    return list(merged.values())


def score_captions(
    items: list[EvalItem], rows: list[dict[str, Any]], metrics: Sequence[str] = CAPTION_METRICS
) -> dict[str, Any]:
    """Corpus-level scores of the rows' predictions against the items' references."""
    preds = {it.id: row["prediction"] or "" for it, row in zip(items, rows)}
    refs = {it.id: it.references for it in items}
    out: dict[str, Any] = dict(caption_scores(preds, refs, metrics=metrics))
    out["references_per_region"] = round(sum(len(r) for r in refs.values()) / len(refs), 2)
    out["empty_predictions"] = sum(not p.strip() for p in preds.values())
    return out


def evaluate_caption(
    engine: EngineSource,
    data: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    metrics: Sequence[str] = CAPTION_METRICS,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Caption every brief/detailed question of a canonical JSONL file (``--limit`` counts
    distinct regions after merging references)."""
    data = Path(data)
    items = merge_references(load_items(data, CAPTION_TASKS, MAX_NEW_TOKENS))
    root = Path(image_root) if image_root is not None else data.parent
    config = {"model": model_name, "data": str(data), "image_root": str(root), "metrics": ",".join(metrics)}
    return run_benchmark(
        "caption",
        engine,
        items,
        root=root,
        out=Path(out),
        score=lambda its, rows: score_captions(its, rows, metrics),
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        config=config,
    )
