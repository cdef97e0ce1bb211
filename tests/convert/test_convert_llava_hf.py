"""HF LLaVA -> regiongpt: the converted model's image-only forward equals LLaVA's logits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from regiongpt.api import RegionGPT
from regiongpt.convert.llava_hf import REQUIRED_SETTINGS, convert_llava_hf
from regiongpt.convert.weights import ConversionError
from regiongpt.modeling.configuration import RegionEncoderConfig
from tests.convert.builders import make_llava

HAS_SETTINGS = set(REQUIRED_SETTINGS) <= {f.name for f in dataclasses.fields(RegionEncoderConfig)}
needs_settings = pytest.mark.skipif(
    not HAS_SETTINGS,
    reason=f"RegionEncoderConfig lacks {REQUIRED_SETTINGS} (see regiongpt/convert/llava_hf.py)",
)


@pytest.fixture()
def image():
    rng = np.random.default_rng(0)
    return (rng.random((60, 80, 3)) * 255).astype(np.uint8)


@needs_settings
@pytest.mark.parametrize("encoder", ["gpt4roi", "regiongpt"])
def test_image_forward_equals_llava(tmp_path, tokenizer, image, encoder):
    llava = make_llava(tmp_path / "llava", tokenizer)
    out = convert_llava_hf(tmp_path / "llava", tmp_path / "out", encoder=encoder)
    engine = RegionGPT.from_pretrained(out)
    conversation = [{"role": "user", "content": "What is in the picture?"}]
    batch = engine.processor([conversation], [image], add_generation_prompt=True)
    ids = batch["input_ids"]
    # Our image placeholders sit exactly where LLaVA expects its <image> tokens (same id).
    assert engine.model.config.image_token_id == llava.config.image_token_index
    assert int((ids == llava.config.image_token_index).sum()) == 16
    with torch.no_grad():
        ours = engine.model(
            input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]
        ).logits
        reference = llava(
            input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]
        ).logits
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)

    # The new region encoder is wired in: a region question runs end to end.
    answers = engine.describe(image, [[5, 5, 40, 50]], task="category", max_new_tokens=2)
    assert len(answers) == 1


@needs_settings
def test_prompt_follows_llava_format(tmp_path, tokenizer):
    make_llava(tmp_path / "llava", tokenizer)
    engine = RegionGPT.from_pretrained(convert_llava_hf(tmp_path / "llava", tmp_path / "out"))
    bos, eos = engine.processor.tokenizer.bos_token or "", engine.processor.tokenizer.eos_token
    rendered = engine.processor._render(
        [
            {"role": "system", "content": "SYS"},
            {"role": "user", "content": "<image>\nQ"},
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": "Q2"},
        ],
        True,
    )
    assert rendered == f"{bos}SYS USER: <image>\nQ ASSISTANT: A{eos}USER: Q2 ASSISTANT:"
    state = engine.model.state_dict()
    assert engine.model.config.region.image_token_source == "tower"
    assert "region_projector.2.weight" in state  # the LLaVA MLP is the shared connector


@pytest.mark.skipif(HAS_SETTINGS, reason="only meaningful before the settings exist")
def test_missing_settings_are_reported(tmp_path, tokenizer):
    make_llava(tmp_path / "llava", tokenizer)
    with pytest.raises(ConversionError, match="cannot express LLaVA's image path"):
        convert_llava_hf(tmp_path / "llava", tmp_path / "out")
