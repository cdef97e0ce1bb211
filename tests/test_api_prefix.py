"""Chat sessions reuse the cached conversation and answer exactly as a full recomputation would."""

from __future__ import annotations

import pytest
import torch

from regiongpt import Box, Point, RegionGPT
from tests.test_inference import loud_engine, reference_generate

TURNS = [
    ("What is <region1>?", [Box(0, 0, 20, 20)]),
    ("Compare <region1> with <region2>.", [Box(30, 10, 79, 59)]),
    ("And now?", []),
    ("Where is <region3> relative to <region1>?", [Point(40, 30)]),
    ("Thanks, one more word about <region2>.", []),
]


@pytest.fixture()
def engine(tiny_factory) -> RegionGPT:
    return loud_engine(tiny_factory)


def from_scratch(engine, session, text: str, regions, max_new_tokens: int) -> str:
    """The reply of the unshared implementation to the whole conversation so far."""
    conversation = [*session.history, {"role": "user", "content": text}]
    sample = engine.processor.encode(conversation, session.image, session.regions + list(regions), True)
    return engine.processor.decode(reference_generate(engine, [sample], session.features, max_new_tokens)[0])


def lengths_seen(engine) -> list[int]:
    """Record the sequence length of every decoder forward."""
    seen: list[int] = []

    def hook(module, args, kwargs):
        given = kwargs.get("inputs_embeds")
        seen.append((given if given is not None else kwargs["input_ids"]).shape[1])

    engine.model.language_model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_session_follow_ups_equal_recomputing_from_scratch(engine, rgb_image) -> None:
    session = engine.session(rgb_image)
    seen = lengths_seen(engine)
    replies = []
    for text, regions in TURNS:
        expected = from_scratch(engine, session, text, regions, 6)
        seen.clear()
        reply = session.ask(text, regions=regions, max_new_tokens=6)
        assert reply == expected, text
        replies.append(reply)
        full = len(engine.processor.encode_text(session.history[:-1], len(session.regions), True)[0])
        if len(replies) > 1:  # only the new turn's tokens (plus a re-tokenised reply tail) ran
            assert seen[0] < full - engine.processor.num_image_tokens, (seen[0], full)
        else:
            assert seen[0] == full
    assert len(set(replies)) >= 3


def test_session_cache_survives_edits_and_resets(engine, rgb_image) -> None:
    session = engine.session(rgb_image)
    session.ask("What is <region1>?", regions=[Box(0, 0, 20, 20)], max_new_tokens=4)
    session.history[1]["content"] = "a blue square"  # a user-edited reply: reused up to the change
    expected = from_scratch(engine, session, "Really?", [], 4)
    assert session.ask("Really?", max_new_tokens=4) == expected
    cache = session._prefix.cache  # an interrupted generation left entries beyond the known ids
    for index, layer in enumerate(cache.layers):
        junk = torch.randn(1, layer.keys.shape[1], 3, layer.keys.shape[-1])
        cache.update(junk, junk, index)
    expected = from_scratch(engine, session, "Sure?", [], 4)
    assert session.ask("Sure?", max_new_tokens=4) == expected
    session.regions = [Box(40, 30, 79, 59)]  # other regions: the cached region features are stale
    expected = from_scratch(engine, session, "And <region1>?", [], 4)
    assert session.ask("And <region1>?", max_new_tokens=4) == expected
    session.reset()
    assert session._prefix is None
    expected = from_scratch(engine, session, "Hi <region1>", [Box(0, 0, 30, 30)], 4)
    assert session.ask("Hi <region1>", regions=[Box(0, 0, 30, 30)], max_new_tokens=4) == expected


def test_sampling_session_runs_on_the_cache(engine, rgb_image) -> None:
    torch.manual_seed(0)
    session = engine.session(rgb_image)
    first = session.ask("What is <region1>?", regions=[Box(0, 0, 20, 20)], max_new_tokens=3, temperature=0.7)
    second = session.ask("More?", max_new_tokens=3, temperature=0.7)
    assert isinstance(first, str) and isinstance(second, str) and len(session.history) == 4
    assert session._prefix is not None and len(session._prefix) > engine.processor.num_image_tokens
