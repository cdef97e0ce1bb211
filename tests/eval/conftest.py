"""Fixtures for the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from regiongpt.data.format import write_jsonl
from regiongpt.tasks import Task, build_question
from tests.eval.fakes import record, write_images


@pytest.fixture()
def caption_data(tmp_path) -> Path:
    """6 caption records on 3 images, interleaved; rc-b-2 repeats rc-b-1's question (2 refs)."""
    write_images(tmp_path, ["a.png", "b.png", "c.png"])
    q = build_question(Task.BRIEF)
    recs = [
        record("rc-a-1", "a.png", q, "a red ball", [{"box": [0, 0, 10, 10]}]),
        record("rc-b-1", "b.png", q, "the green cup", [{"box": [5, 5, 30, 30]}]),
        record("rc-a-2", "a.png", q, "a small dog on grass", [{"box": [20, 10, 60, 40]}]),
        record("rc-c-1", "c.png", q, "blue car", [{"box": [1, 1, 40, 40]}]),
        record("rc-b-2", "b.png", q, "green mug on the table", [{"box": [5, 5, 30, 30]}]),
        record("rc-c-2", "c.png", q, "a tall man in black", [{"box": [10, 2, 50, 46]}]),
    ]
    write_jsonl(tmp_path / "captions.jsonl", recs)
    return tmp_path / "captions.jsonl"
