"""Property tests of the processor's tag handling with the real SmolLM2 tokenizer.

Random texts mix ``<regionK>`` tags (valid, out of range, zero, huge), GPT4RoI ``<bbox>`` syntax,
reserved placeholders, chat-template specials, unicode and near-miss tags, with 0..5 regions.
Every call gives a consistent encoding or a ValueError with a message: one region placeholder
per reference, every region referenced, exactly ``num_image_tokens`` image placeholders, labels
equal to the ids or -100, and the caller's conversation left unchanged."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regiongpt.processing import IGNORE_INDEX, ImagePreprocessor, RegionGPTProcessor, expand_region_tags
from tests.reliability.helpers import PROPS, count

FRAGMENTS = [
    "<region1>", "<region2>", "<region3>", "<region4>", "<region5>", "<region0>", "<region6>",
    "<region007>", "<region99999999999999999999>", "region1 <bbox>", "region2<bbox>", "<bbox>",
    "<region", "region>", "<", ">", "<region 1>", "<Region1>", "<image>", "<region>", "<ima", "ge>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", " ", "\n", "What is", " and ", "?", "é", "猫", "🙂",
    "\u202e", "\x00", "{", "}", "{{ x }}", "%s",
]  # fmt: skip
texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=8).map("".join)
REGION_TOKEN = "<region>"


@settings(max_examples=500, **PROPS)
@given(text=texts, num_regions=st.integers(0, 6))
def test_expand_region_tags(text, num_regions):
    count("processing.expand_region_tags")
    try:
        expanded, order = expand_region_tags(text, num_regions, REGION_TOKEN)
    except ValueError as error:
        assert "refers to a region that was not given" in str(error)
        return
    assert all(0 <= k < num_regions for k in order)
    assert expanded.count(REGION_TOKEN) >= len(order)
    for k in order:
        assert f"region {k + 1}{REGION_TOKEN}" in expanded


@pytest.fixture()
def processor(tokenizer) -> RegionGPTProcessor:
    return RegionGPTProcessor(tokenizer, ImagePreprocessor(28, (0.5,) * 3, (0.5,) * 3), 3, "Be brief.")


turns = st.lists(texts, min_size=1, max_size=4)
styles = st.sampled_from(["llava", "chat"])


def conversation_of(contents: list[str], style: str) -> list[dict[str, str]]:
    roles = ("human", "gpt") if style == "llava" else ("user", "assistant")
    keys = ("from", "value") if style == "llava" else ("role", "content")
    return [{keys[0]: roles[i % 2], keys[1]: text} for i, text in enumerate(contents)]


@settings(max_examples=300, **PROPS)
@given(contents=turns, style=styles, num_regions=st.integers(0, 5), generation=st.booleans())
def test_encode_text_is_consistent_or_refuses(processor, contents, style, num_regions, generation):
    conversation = conversation_of(contents, style)
    before = copy.deepcopy(conversation)
    count("processing.encode_text")
    try:
        ids, labels, order = processor.encode_text(
            conversation, num_regions, add_generation_prompt=generation
        )
    except ValueError as error:
        assert str(error).strip()
        assert conversation == before
        return
    assert conversation == before, "encode_text changed the caller's conversation"
    assert ids.count(processor.region_token_id) == len(order)
    assert sorted(set(order)) == list(range(num_regions)), (order, num_regions)
    assert ids.count(processor.image_token_id) == processor.num_image_tokens
    assert len(labels) == len(ids)
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids))
    assert processor.image_token_id not in labels
    if len(contents) >= 2:  # a reply (at least its end-of-turn token) is supervised
        assert any(label != IGNORE_INDEX for label in labels), "an assistant reply is not supervised"


def test_region_placeholders_are_never_supervised(processor):
    conversation = [
        {"from": "human", "value": "Which one is the cat, <region1> or <region2>?"},
        {"from": "gpt", "value": "<region2>"},
    ]
    ids, labels, _ = processor.encode_text(conversation, 2)
    assert processor.region_token_id not in labels


def test_lone_surrogates_are_a_value_error(processor):
    with pytest.raises(ValueError):
        processor.encode_text([{"from": "human", "value": "what is \ud800?"}], 0)


def test_gpt4roi_counter_has_no_upper_bound():
    text = "<bbox>" * (10**6 + 1)
    with pytest.raises(ValueError, match="not given"):
        expand_region_tags(text, 3, REGION_TOKEN)
