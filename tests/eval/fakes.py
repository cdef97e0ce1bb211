"""Fake engines and tiny canonical records for the benchmark tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from regiongpt.data.format import Record
from regiongpt.imaging import load_image
from regiongpt.tasks import Task


class Killed(Exception):
    """Stands for the process being killed mid-run."""


class FakeEngine:
    """Answers with ``answer(question, regions, image_name)``; records every call. Features
    are the image's file name, so a question answered with another image's features shows."""

    def __init__(
        self,
        answer: Callable[[str, Sequence[Any], str], str] | dict[str, str],
        fail_after_calls: int | None = None,
        score: Callable[[Sequence[Any], str], float] | None = None,
    ) -> None:
        self.answer = answer if callable(answer) else (lambda q, regions, name: answer[q])
        self.fail_after_calls = fail_after_calls
        self.score_fn = score
        self.encoded: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def encode_image(self, image):
        self.encoded.append(Path(image).name)
        return load_image(image), Path(image).name

    def generate(self, conversations, image, regions, features=None, max_new_tokens=48):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise Killed
        questions = [conv[-1]["value"] for conv in conversations]
        self.calls.append(
            {
                "features": features,
                "questions": questions,
                "size": image.size,
                "max_new_tokens": max_new_tokens,
            }
        )
        return [self.answer(q, regs, features) for q, regs in zip(questions, regions)]


class FakeScoringEngine(FakeEngine):
    """Adds ``score``: ``score(regions, answer_text)`` per conversation."""

    def score(self, conversations, image, regions, features=None):
        self.calls.append({"features": features, "score_batch": len(conversations)})
        return [self.score_fn(regs, conv[-1]["value"]) for conv, regs in zip(conversations, regions)]


def write_images(root: Path, names: Sequence[str], size: tuple[int, int] = (64, 48)) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)


def record(
    rid: str,
    image: str,
    question: str,
    answer: str,
    regions: list[dict] | None = None,
    task: Task = Task.BRIEF,
    **meta: Any,
) -> Record:
    return Record(
        id=rid,
        image=image,
        regions=regions or [],
        conversations=[{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
        task=task,
        meta=meta,
    )


def caption_answer(question: str, regions: Sequence[Any], name: str) -> str:
    """A deterministic caption that depends on the region and the image."""
    box = regions[0]
    words = {"a.png": "red", "b.png": "green", "c.png": "blue"}[name]
    return f"a {words} thing {'big' if box.x2 - box.x1 > 20 else 'small'}"
