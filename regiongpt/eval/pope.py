"""POPE object hallucination: yes/no questions without regions, scored per split (random,
popular, adversarial) with yes as the positive class (:func:`~regiongpt.eval.metrics.is_yes`
reads the first word of an answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regiongpt.eval.harness import EngineSource, EvalItem, load_items, run_benchmark
from regiongpt.eval.metrics import yes_no_metrics
from regiongpt.tasks import Task

POPE_SPLITS = ("random", "popular", "adversarial")


def score_pope(items: list[EvalItem], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """accuracy, precision, recall, f1, yes_ratio per ``meta.pope_split`` (questions without a
    split are counted under ``unknown``), the mean F1 over the splits present, and counts."""
    by_split: dict[str, list[tuple[str, str]]] = {}
    for item, row in zip(items, rows):
        split = str(item.meta.get("pope_split") or "unknown")
        by_split.setdefault(split, []).append((row["prediction"] or "", item.reference))
    order = [s for s in POPE_SPLITS if s in by_split] + sorted(set(by_split) - set(POPE_SPLITS))
    out: dict[str, Any] = {}
    for split in order:
        pairs = by_split[split]
        out[split] = {**yes_no_metrics([p for p, _ in pairs], [r for _, r in pairs]), "count": len(pairs)}
    out["mean_f1"] = sum(out[s]["f1"] for s in order) / len(order)
    return out


def evaluate_pope(
    engine: EngineSource,
    data: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Answer the yes/no questions of a canonical JSONL file (``regiongpt data convert pope``)."""
    data = Path(data)
    items = load_items(data, (Task.YES_NO,), max_new_tokens=8)
    root = Path(image_root) if image_root is not None else data.parent
    config = {"model": model_name, "data": str(data), "image_root": str(root)}
    return run_benchmark(
        "pope",
        engine,
        items,
        root=root,
        out=Path(out),
        score=score_pope,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        config=config,
    )
