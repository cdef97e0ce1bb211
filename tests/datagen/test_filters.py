"""Caption filters on hand-made captions."""

from __future__ import annotations

import pytest

from regiongpt.datagen.filters import (
    CLASS_MISMATCH,
    DUPLICATE,
    EMPTY,
    REPEATED,
    TOO_LONG,
    TOO_SHORT,
    CaptionFilter,
    FilterConfig,
    clean_caption,
    repeated_ngram_ratio,
    words,
)

GOOD = "A tabby cat with green eyes lies on a red blanket next to the window."


def no_similarity(texts, others):  # a class check that must not be reached
    raise AssertionError("similarity should not be computed")


@pytest.mark.parametrize(
    ("caption", "reason"),
    [
        ("", EMPTY),
        ("  ... !! ", EMPTY),
        ("A cat.", TOO_SHORT),
        ("word " * 200, TOO_LONG),
        ("The cat is a cat that is a cat that is a cat that is a cat that is a cat.", REPEATED),
        (GOOD, None),
    ],
)
def test_length_and_repetition(caption, reason):
    assert CaptionFilter(FilterConfig(min_class_similarity=0), no_similarity).check(caption)[0] == reason


def test_repeated_ngram_ratio():
    assert repeated_ngram_ratio(words(GOOD)) == 0.0
    assert repeated_ngram_ratio(words("a b c a b c a b c a b c")) > 0.5
    assert repeated_ngram_ratio(["one", "two"]) == 0.0


def test_duplicates_across_regions_are_normalised():
    check = CaptionFilter(FilterConfig(min_class_similarity=0), no_similarity).check
    assert check(GOOD)[0] is None
    assert check("a TABBY cat with green eyes lies on a red blanket, next to the window")[0] == DUPLICATE
    assert CaptionFilter(FilterConfig(min_class_similarity=0, dedupe=False)).check(GOOD)[0] is None
    fresh = CaptionFilter(FilterConfig(min_class_similarity=0), no_similarity)
    assert fresh.check(GOOD, global_caption=GOOD.upper())[0] == DUPLICATE


def test_remembered_captions_count_as_seen():
    caption_filter = CaptionFilter(FilterConfig(min_class_similarity=0), no_similarity)
    caption_filter.remember([GOOD])
    assert caption_filter.check(GOOD)[0] == DUPLICATE


def test_class_check_uses_similarity_unless_the_class_is_named():
    calls = []

    def similarity(texts, others):
        calls.append((list(texts), list(others)))
        return [0.05, 0.1]

    caption_filter = CaptionFilter(FilterConfig(min_class_similarity=0.15), similarity)
    reason, scores = caption_filter.check("A red double-decker bus drives down a busy street.", "cat")
    assert reason == CLASS_MISMATCH and scores["class_similarity"] == 0.1
    assert calls[0][1] == ["cat", "a photo of a cat"]
    reason, scores = caption_filter.check("Two small cats sleep on the sofa in the sun.", "cat")
    assert reason is None and scores["class_mentioned"] is True and len(calls) == 1
    assert caption_filter.check("A person on a long wooden dining table.", "dining_table")[0] is None


@pytest.mark.real
def test_class_mismatch_with_minilm():
    pytest.importorskip("sentence_transformers")
    caption_filter = CaptionFilter(FilterConfig(min_class_similarity=0.15))
    assert (
        caption_filter.check("A red double-decker bus drives down a busy street.", "cat")[0] == CLASS_MISMATCH
    )
    assert caption_filter.check("A cup of espresso stands on a wooden table.", "person")[0] == CLASS_MISMATCH
    reason, scores = caption_filter.check("A tabby with green eyes curls up on a blanket.", "kitten")
    assert reason is None and scores["class_similarity"] > 0.25


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  A cat sleeps.  It is", ("A cat sleeps.", True)),
        ('"A cat sleeps on a mat."', ("A cat sleeps on a mat.", False)),
        ("A cat sleeps on a", ("A cat sleeps on a", False)),
        ("Mr. Smith's cat (a tabby.) sleeps", ("Mr. Smith's cat (a tabby.)", True)),
        ("", ("", False)),
    ],
)
def test_clean_caption(raw, expected):
    assert clean_caption(raw) == expected


def test_config_validation():
    with pytest.raises(ValueError):
        FilterConfig(min_words=10, max_words=5)
    with pytest.raises(ValueError):
        FilterConfig(max_repeat_ratio=1.5)
