"""Answer-level metrics: pure functions over strings and boxes, no model involved.

Conventions:

* :func:`normalize_answer` is the one normalisation: lowercase, punctuation to spaces, the
  articles "a", "an", "the" dropped, whitespace collapsed ("The red circle." -> "red circle").
* Boxes are pixel xyxy (:mod:`regiongpt.regions`).
* Every function raises ValueError when its inputs have different lengths or are empty, so a
  silently truncated evaluation cannot report a score.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Union

from regiongpt.regions import Box

_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
BoxLike = Union[Box, Sequence[float]]


def normalize_answer(text: str) -> str:
    """Lowercase, punctuation to spaces, drop articles, collapse whitespace."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(w for w in words if w not in _ARTICLES)


def _check_lengths(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} predictions but {len(b)} references")
    if not a:
        raise ValueError(f"{what}: no predictions to score")


def accuracy(
    preds: Sequence[str],
    refs: Sequence[str | Sequence[str]],
    normalize: bool | Callable[[str], str] = True,
) -> float:
    """Share of predictions equal to their reference (or to any of several references).

    ``normalize``: True applies :func:`normalize_answer` to both sides, False compares exact
    strings, a callable is used instead."""
    _check_lengths(preds, refs, "accuracy")
    norm: Callable[[str], str] = (
        normalize if callable(normalize) else normalize_answer if normalize else (lambda s: s)
    )
    hits = 0
    for pred, ref in zip(preds, refs):
        accepted = [ref] if isinstance(ref, str) else list(ref)
        hits += norm(pred) in {norm(r) for r in accepted}
    return hits / len(preds)


def is_yes(answer: str) -> bool:
    """POPE convention here: yes iff the first word after normalisation is "yes"; anything else
    (no, a refusal, an empty string) counts as no."""
    words = normalize_answer(answer).split()
    return bool(words) and words[0] == "yes"


def yes_no_metrics(preds: Sequence[str], labels: Sequence[str | bool]) -> dict[str, float]:
    """POPE metrics with "yes" as the positive class: accuracy, precision, recall, f1 and
    yes_ratio (share of yes predictions). Labels are "yes"/"no" strings (read with
    :func:`is_yes`) or booleans. Precision is 0 when nothing is predicted yes; recall is 0 when
    no label is yes."""
    _check_lengths(preds, labels, "yes_no_metrics")
    predicted = [is_yes(p) for p in preds]
    truth = [lab if isinstance(lab, bool) else is_yes(lab) for lab in labels]
    tp = sum(p and t for p, t in zip(predicted, truth))
    fp = sum(p and not t for p, t in zip(predicted, truth))
    fn = sum(t and not p for p, t in zip(predicted, truth))
    correct = sum(p == t for p, t in zip(predicted, truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": correct / len(preds),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(predicted) / len(preds),
    }


def _as_xyxy(box: BoxLike) -> list[float]:
    values = box.as_list() if isinstance(box, Box) else [float(v) for v in box]
    if len(values) != 4:
        raise ValueError(f"a box needs 4 numbers x1, y1, x2, y2, got {box!r:.80}")
    return values


def rec_accuracy(
    pred_boxes: Sequence[BoxLike | None], gt_boxes: Sequence[BoxLike], threshold: float = 0.5
) -> float:
    """Referring-expression accuracy: share of predictions whose IoU with the ground-truth box is
    >= ``threshold`` (torchvision's ``box_iou``; pixel xyxy). A None (unparsed) or degenerate
    predicted box is a miss."""
    import torch
    from torchvision.ops import box_iou

    _check_lengths(pred_boxes, gt_boxes, "rec_accuracy")
    hits = 0
    for start in range(0, len(gt_boxes), 256):
        pairs = [
            (p, g)
            for p, g in zip(pred_boxes[start : start + 256], gt_boxes[start : start + 256])
            if p is not None
        ]
        pred = torch.tensor([_as_xyxy(p) for p, _ in pairs], dtype=torch.float64).reshape(-1, 4)
        gt = torch.tensor([_as_xyxy(g) for _, g in pairs], dtype=torch.float64).reshape(-1, 4)
        valid = (pred[:, 2] > pred[:, 0]) & (pred[:, 3] > pred[:, 1])
        iou = box_iou(pred, gt).diagonal() if len(pairs) else pred.new_zeros(0)
        hits += int(((iou >= threshold) & valid).sum())
    return hits / len(gt_boxes)


_REGION = re.compile(r"<?\s*region\s*(\d+)\s*>?", re.IGNORECASE)


def parse_region_answer(text: str) -> int | None:
    """The 1-based region index in an answer: "region 2", "Region2", "<region2>", or a bare "2"
    -> 2. The first mention wins; None if there is none (or it is 0)."""
    match = _REGION.search(text)
    if match:
        value = int(match.group(1))
    elif re.fullmatch(r"\s*\d+\s*\.?\s*", text):
        value = int(text.strip().rstrip("."))
    else:
        return None
    return value if value >= 1 else None


def parse_choice_letter(text: str, letters: str = "ABCD") -> str | None:
    """The option letter of a multiple-choice answer, upper case, or None.

    Accepted, first rule that applies: the whole answer is one letter ("B", "b", "(B)", "B."),
    a parenthesised letter anywhere ("... (B) red"), a leading letter with ")", "." or ":"
    ("B) red"), "answer/option is B" forms, then a standalone capital letter ("I pick B"). A
    capital "A" followed by a lower-case word is read as the article, not as an option."""
    allowed = re.escape(letters.upper())
    stripped = text.strip()
    whole = re.fullmatch(rf"[\s(\[]*([{allowed}])[\s)\].:]*", stripped, re.IGNORECASE)
    if whole:
        return whole.group(1).upper()
    lower = allowed.lower()
    for pattern in (
        rf"\(([{allowed}{lower}])\)",
        rf"^\s*([{allowed}{lower}])\s*\)|^\s*([{allowed}])\s*[.:]",
        rf"\b(?i:answer|option|choice)\s*(?i:is|:)?\s*\(?([{allowed}])\b",
    ):
        match = re.search(pattern, stripped)
        if match:
            return next(g for g in match.groups() if g).upper()
    for match in re.finditer(rf"\b([{allowed}])\b", stripped):
        if match.group(1) == "A" and re.match(r"\s+[a-z]", stripped[match.end() :]):
            continue
        return match.group(1)
    return None


def parse_attributes(text: str, vocab: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Attribute words found in ``text``, by kind, in order of appearance without repeats.

    ``vocab`` maps a kind to its words, e.g. ``regiongpt.data.regionworld.VOCAB`` (``size``,
    ``colour``, ``texture``, ``shape``). Matching is strict: whole words (or multi-word phrases)
    after :func:`normalize_answer`; no plurals, synonyms or stems ("reddish" is not "red"). Longer
    phrases win and use up their words: with "light blue" and "blue" in ``vocab``, "light blue
    star" yields only "light blue"."""
    tokens = normalize_answer(text).split()
    used = [False] * len(tokens)
    entries = sorted(
        ((len(normalize_answer(w).split()), kind, w) for kind, words in vocab.items() for w in words),
        key=lambda entry: -entry[0],
    )
    hits: dict[str, list[tuple[int, str]]] = {kind: [] for kind in vocab}
    for length, kind, word in entries:
        phrase = normalize_answer(word).split()
        for start in range(len(tokens) - length + 1):
            if length and tokens[start : start + length] == phrase and not any(used[start : start + length]):
                used[start : start + length] = [True] * length
                if word not in (w for _, w in hits[kind]):
                    hits[kind].append((start, word))
    return {kind: [word for _, word in sorted(found)] for kind, found in hits.items()}


def caption_attributes_correct(
    pred: str, ref_attrs: Mapping[str, str], vocab: Mapping[str, Sequence[str]]
) -> bool:
    """True iff, for every kind in ``ref_attrs`` (e.g. ``{"colour": "red", "shape": "circle"}``),
    the reference word appears in ``pred`` and no other word of that kind does: "small red
    striped circle" is right for red, "red blue circle" is wrong. Kinds absent from ``ref_attrs``
    are not judged."""
    found = parse_attributes(pred, vocab)
    for kind, value in ref_attrs.items():
        if kind not in vocab:
            raise ValueError(f"attribute kind {kind!r} is not in the vocabulary ({', '.join(vocab)})")
        if found[kind] != [value]:
            return False
    return True


def semantic_iou(pred: str, ref: str) -> float:
    """Osprey's semantic IoU: |words(pred) & words(ref)| / |words(pred) | words(ref)|, on
    lower-cased whitespace words after :func:`clean_category_answer`; 0 when both are empty."""
    a, b = set(clean_category_answer(pred).split()), set(clean_category_answer(ref).split())
    return len(a & b) / len(a | b) if a | b else 0.0


def clean_category_answer(text: str) -> str:
    """Osprey's clean-up of a category answer: keep what follows a ``:``, turn ``_ : , . ( )``
    into spaces, lower-case and collapse whitespace ("Category: Baseball_bat." -> "baseball bat")."""
    if ":" in text:
        text = text.split(":", 1)[1]
    return " ".join(re.sub(r"[_:,.()]", " ", text).lower().split())


def grouped_mean(values: Sequence[float | bool], groups: Sequence[object]) -> dict[str, float]:
    """Mean of ``values`` per group (keys are ``str(group)``, groups of None left out), sorted."""
    _check_lengths(values, groups, "grouped_mean")
    sums: dict[str, list[float]] = {}
    for value, group in zip(values, groups):
        if group is not None:
            sums.setdefault(str(group), []).append(float(value))
    return {key: sum(found) / len(found) for key, found in sorted(sums.items())}


def vcr_metrics(qa: Mapping[object, bool], qar: Mapping[object, bool]) -> dict[str, float | int | None]:
    """VCR accuracies from per-question correctness keyed by ``annot_id``: ``q_a`` (Q->A),
    ``qa_r`` (QA->R) and ``q_ar`` (both right, over questions with both answered); a mode with
    no questions scores None. Counts are ``n_q_a``, ``n_qa_r`` and ``n_q_ar``."""
    both = [key for key in qa if key in qar]
    return {
        "q_a": sum(qa.values()) / len(qa) if qa else None,
        "qa_r": sum(qar.values()) / len(qar) if qar else None,
        "q_ar": sum(qa[k] and qar[k] for k in both) / len(both) if both else None,
        "n_q_a": len(qa),
        "n_qa_r": len(qar),
        "n_q_ar": len(both),
    }


def first_sentence(text: str) -> str:
    """Text up to the first ``.``, ``!`` or ``?`` followed by a space or the end."""
    return re.split(r"(?<=[.!?])(?:\s|$)", text.strip(), maxsplit=1)[0]
