"""VCR: multiple-choice Q->A and QA->R records (``regiongpt data convert vcr``) answered by a
letter; Q->AR counts a question right when both of its records are (``meta.annot_id`` links
them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from regiongpt.eval.harness import EngineSource, EvalItem, load_items, run_benchmark
from regiongpt.eval.metrics import parse_choice_letter, vcr_metrics
from regiongpt.tasks import Task

_OPTION = re.compile(r"^\(([A-J])\) ", re.MULTILINE)


def option_letters(question: str) -> str:
    """The letters of the ``(A) ...`` options listed one per line in a question ("ABCD" if none)."""
    return "".join(_OPTION.findall(question)) or "ABCD"


def score_vcr(items: list[EvalItem], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``q_a``, ``qa_r``, ``q_ar`` accuracies (see :func:`~regiongpt.eval.metrics.vcr_metrics`)
    and the share of answers with a readable letter."""
    qa: dict[Any, bool] = {}
    qar: dict[Any, bool] = {}
    parsed = 0
    for item, row in zip(items, rows):
        letter = parse_choice_letter(row["prediction"] or "", option_letters(item.question))
        parsed += letter is not None
        mode = item.meta.get("mode", "qa")
        key = item.meta.get("annot_id", item.id)
        (qar if mode == "qar" else qa)[key] = letter == item.reference.strip().upper()
    return {**vcr_metrics(qa, qar), "parsed": parsed / len(items)}


def evaluate_vcr(
    engine: EngineSource,
    data: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Answer the multiple-choice records of a canonical VCR JSONL file."""
    data = Path(data)
    items = load_items(data, (Task.MULTIPLE_CHOICE,), max_new_tokens=8)
    root = Path(image_root) if image_root is not None else data.parent
    config = {"model": model_name, "data": str(data), "image_root": str(root)}
    return run_benchmark(
        "vcr",
        engine,
        items,
        root=root,
        out=Path(out),
        score=score_vcr,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        config=config,
    )
