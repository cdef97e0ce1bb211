"""Shared fixtures: tiny random models for fast tests, the real offline parts loaded once."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # a stray hub call fails fast instead of hanging
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tokenizer_source():
    """Directory of the converted SmolLM2 checkpoint (tokenizer + weights), converted once."""
    from regiongpt.modeling.pretrained import smollm2_dir

    return smollm2_dir()


@pytest.fixture()
def tokenizer(tokenizer_source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_source)


@pytest.fixture()
def tiny_factory(tokenizer):
    """``make(encoder="regiongpt", tower="clip", **region_overrides) -> (model, processor)``."""
    from tests.tiny import make_tiny

    def make(
        encoder: str = "regiongpt", tower: str = "clip", seed: int = 0, text_overrides=None, **overrides
    ):
        return make_tiny(
            tokenizer, encoder=encoder, tower=tower, seed=seed, text_overrides=text_overrides, **overrides
        )

    return make


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (loaded once per test session)."""
    from regiongpt.modeling.pretrained import load_language_model, load_tokenizer

    return load_language_model("smollm2-135m-instruct").eval(), load_tokenizer("smollm2-135m-instruct")


@pytest.fixture()
def rgb_image():
    rng = np.random.default_rng(0)
    return (rng.random((60, 80, 3)) * 255).astype(np.uint8)
