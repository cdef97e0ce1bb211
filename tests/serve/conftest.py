"""Fixtures for the serving tests: one tiny random model per session (untied LM head, so it
writes visible words instead of newlines)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_engine(tokenizer_source):
    from transformers import AutoTokenizer

    from regiongpt.api import RegionGPT
    from tests.tiny import make_tiny

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    model, processor = make_tiny(tokenizer, seed=1, text_overrides={"tie_word_embeddings": False})
    return RegionGPT(model, processor, name="tiny")
