"""Reports how many generated cases the reliability tests tried (also to
``$RELIABILITY_CASES_JSON`` when set), so docs/reliability.md can quote the figures."""

from __future__ import annotations

import json
import os

import pytest

from tests.reliability.helpers import CASES


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not CASES:
        return
    terminalreporter.section("reliability: generated cases")
    for name, count in sorted(CASES.items()):
        terminalreporter.write_line(f"{name}: {count}")
    terminalreporter.write_line(f"total: {sum(CASES.values())}")
    target = os.environ.get("RELIABILITY_CASES_JSON")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(dict(sorted(CASES.items())), handle, indent=2)


@pytest.fixture(scope="session")
def tiny_engine(tokenizer_source):
    """A tiny random model behind the library API (as in tests/serve/conftest.py)."""
    from transformers import AutoTokenizer

    from regiongpt.api import RegionGPT
    from tests.tiny import make_tiny

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    model, processor = make_tiny(tokenizer, seed=1, text_overrides={"tie_word_embeddings": False})
    return RegionGPT(model, processor, name="tiny")
