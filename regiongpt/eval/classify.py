"""Region classification on COCO / LVIS category records (``regiongpt data convert coco|lvis``),
ground-truth regions given:

* ``accuracy``: the normalised answer equals the category name (RegionGPT's COCO protocol);
* ``map`` / ``map50``: COCO box mAP where every ground-truth box is a score-1 detection labelled
  with the predicted category (needs the instances json; an answer naming no category is a
  missed box);
* ``semantic_similarity`` / ``semantic_iou``: Osprey's LVIS/PACO metrics (all-MiniLM-L6-v2
  cosine similarity and word-set IoU between the answer and the name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regiongpt.data.converters.coco import lvis_name
from regiongpt.eval.harness import EngineSource, EvalItem, load_items, run_benchmark
from regiongpt.eval.metrics import accuracy, normalize_answer, semantic_iou
from regiongpt.eval.scorers import SKIPPED, gt_box_map, semantic_similarity
from regiongpt.tasks import Task


def category_ids(instances: dict[str, Any]) -> dict[str, Any]:
    """Normalised category name -> id, readable LVIS names (``bus_(vehicle)`` -> "bus") too."""
    ids: dict[str, Any] = {}
    for category in instances.get("categories", []):
        for name in (category["name"], lvis_name(category["name"])):
            ids.setdefault(normalize_answer(name), category["id"])
    return ids


def _map(items: list[EvalItem], preds: list[str], instances: dict[str, Any]) -> dict[str, Any]:
    ids = category_ids(instances)
    anns = {a["id"]: a for a in instances.get("annotations", [])}
    detections, evaluated, unmatched = [], [], 0
    for item, pred in zip(items, preds):
        ann_ids = item.meta.get("ann_ids") or []
        if item.turn >= len(ann_ids) or ann_ids[item.turn] not in anns:
            raise ValueError(f"record {item.id}: its meta.ann_ids entry is not in the instances json")
        ann = anns[ann_ids[item.turn]]
        evaluated.append(ann["id"])
        category = ids.get(normalize_answer(pred))
        if category is None:
            unmatched += 1
            continue
        detections.append(
            {"image_id": ann["image_id"], "bbox": list(ann["bbox"]), "category_id": category, "score": 1.0}
        )
    return {**gt_box_map(instances, detections, evaluated), "answers_naming_no_category": unmatched}


def score_classify(
    items: list[EvalItem],
    rows: list[dict[str, Any]],
    instances: dict[str, Any] | None = None,
    semantic: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Accuracy, and mAP (with ``instances``) and the semantic metrics (with ``semantic``);
    those not computed are ``"skipped"``."""
    preds = [row["prediction"] or "" for row in rows]
    refs = [it.reference for it in items]
    out: dict[str, Any] = {"accuracy": accuracy(preds, refs)}
    if instances is not None:
        out.update(_map(items, preds, instances))
    else:
        out["map"] = out["map50"] = SKIPPED
    if semantic:
        sims = semantic_similarity(preds, refs, device=device)
        out["semantic_similarity"] = sum(sims) / len(sims)
        out["semantic_iou"] = sum(semantic_iou(p, r) for p, r in zip(preds, refs)) / len(preds)
    else:
        out["semantic_similarity"] = out["semantic_iou"] = SKIPPED
    return out


def evaluate_classify(
    engine: EngineSource,
    data: str | Path,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    instances: str | Path | None = None,
    semantic: bool = True,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Classify every category question of a canonical JSONL file."""
    data = Path(data)
    gt = None
    if instances is not None:
        if not Path(instances).is_file():
            raise FileNotFoundError(f"no instances json at {instances}")
        gt = json.loads(Path(instances).read_text(encoding="utf-8"))
    items = load_items(data, (Task.CATEGORY,), max_new_tokens=16)
    root = Path(image_root) if image_root is not None else data.parent
    config = {
        "model": model_name,
        "data": str(data),
        "image_root": str(root),
        "instances": str(instances) if instances else None,
    }
    return run_benchmark(
        "classify",
        engine,
        items,
        root=root,
        out=Path(out),
        score=lambda its, rows: score_classify(its, rows, gt, semantic),
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        config=config,
    )
