"""Caption clean-up and quality filters.

:func:`clean_caption` trims quotes and a sentence cut off by the token limit. :class:`CaptionFilter`
drops, in this order: ``empty``, ``too short``, ``too long`` (words), ``repeated n-grams`` (share of
repeated word n-grams), ``class mismatch`` (all-MiniLM-L6-v2 cosine between the caption and the
known class name under a threshold, unless the caption names the class) and ``duplicate`` (the
same normalised text already kept for another region, or the image's global caption)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

EMPTY, TOO_SHORT, TOO_LONG, REPEATED = "empty", "too short", "too long", "repeated n-grams"
CLASS_MISMATCH, DUPLICATE, TEACHER_ERROR, INVALID_REGION = (
    "class mismatch",
    "duplicate",
    "teacher error",
    "invalid region",
)
REASONS = (EMPTY, TOO_SHORT, TOO_LONG, REPEATED, CLASS_MISMATCH, DUPLICATE, TEACHER_ERROR, INVALID_REGION)

Similarity = Callable[[Sequence[str], Sequence[str]], list[float]]
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """The text compared for duplicates: lower-case words joined by single spaces."""
    return " ".join(words(text))


def clean_caption(text: str) -> tuple[str, bool]:
    """Strip whitespace and wrapping quotes; drop a trailing unfinished sentence when a finished
    one precedes it. Returns ``(text, truncated)``."""
    text = " ".join(text.split()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    if not text or text[-1] in ".!?\"')]":
        return text, False
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text, False
    return text[: ends[-1].end()].strip(), True


def repeated_ngram_ratio(tokens: Sequence[str], n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def embedder_similarity(texts: Sequence[str], others: Sequence[str]) -> list[float]:
    """Pairwise cosine of all-MiniLM-L6-v2 embeddings (the evaluation's offline embedder)."""
    from sentence_transformers.util import cos_sim

    from regiongpt.eval.scorers import _embedder

    model = _embedder("cpu")
    a = model.encode(list(texts), convert_to_tensor=True, batch_size=64)
    b = model.encode(list(others), convert_to_tensor=True, batch_size=64)
    return [float(v) for v in cos_sim(a, b).diagonal()]


@dataclass
class FilterConfig:
    """Thresholds; ``min_class_similarity <= 0`` turns the class check off."""

    min_words: int = 5
    max_words: int = 150
    ngram: int = 3
    max_repeat_ratio: float = 0.3
    min_class_similarity: float = 0.15
    dedupe: bool = True

    def __post_init__(self) -> None:
        if self.min_words < 0 or self.max_words < max(1, self.min_words):
            raise ValueError(f"need 0 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if self.ngram < 1 or not 0 <= self.max_repeat_ratio <= 1:
            raise ValueError("need ngram >= 1 and 0 <= max_repeat_ratio <= 1")


class CaptionFilter:
    """Stateful filter: it remembers kept captions to drop duplicates (seed it on resume)."""

    def __init__(self, config: FilterConfig | None = None, similarity: Similarity | None = None) -> None:
        self.config = config or FilterConfig()
        self.similarity = similarity or embedder_similarity
        self.seen: set[str] = set()

    def remember(self, captions: Iterable[str]) -> None:
        """Captions already kept (by an earlier run) count for duplicate detection."""
        self.seen.update(normalize(c) for c in captions)

    def check(
        self, caption: str, class_name: str | None = None, global_caption: str | None = None
    ) -> tuple[str | None, dict[str, Any]]:
        """``(drop reason or None, scores)``; a kept caption is remembered. A caption that only
        repeats the image's global caption counts as a duplicate."""
        config = self.config
        tokens = words(caption)
        scores: dict[str, Any] = {"words": len(tokens)}
        if not tokens:
            return EMPTY, scores
        if len(tokens) < config.min_words:
            return TOO_SHORT, scores
        if len(tokens) > config.max_words:
            return TOO_LONG, scores
        scores["repeat_ratio"] = round(repeated_ngram_ratio(tokens, config.ngram), 4)
        if scores["repeat_ratio"] > config.max_repeat_ratio:
            return REPEATED, scores
        if class_name and config.min_class_similarity > 0:
            mentioned = _mentions(tokens, class_name)
            scores["class_mentioned"] = mentioned
            if not mentioned:
                name = class_name.replace("_", " ")
                pair = self.similarity([caption, caption], [name, f"a photo of a {name}"])
                scores["class_similarity"] = round(max(pair), 4)
                if scores["class_similarity"] < config.min_class_similarity:
                    return CLASS_MISMATCH, scores
        key = normalize(caption)
        if config.dedupe and (key in self.seen or (global_caption and key == normalize(global_caption))):
            return DUPLICATE, scores
        self.seen.add(key)
        return None, scores


def _mentions(tokens: Sequence[str], class_name: str) -> bool:
    """Whether the caption contains every word of the class name (plural ``s`` allowed)."""
    present = set(tokens) | {t[:-1] for t in tokens if t.endswith("s")}
    name = words(class_name.replace("_", " "))
    return bool(name) and all(w in present for w in name)
