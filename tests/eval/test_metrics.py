"""Metrics on hand-computed examples."""

from __future__ import annotations

import pytest

from regiongpt.data.regionworld import VOCAB
from regiongpt.eval.metrics import (
    accuracy,
    caption_attributes_correct,
    clean_category_answer,
    first_sentence,
    grouped_mean,
    is_yes,
    normalize_answer,
    parse_attributes,
    parse_choice_letter,
    parse_region_answer,
    rec_accuracy,
    semantic_iou,
    vcr_metrics,
    yes_no_metrics,
)
from regiongpt.regions import Box


def test_normalize_answer() -> None:
    assert normalize_answer("The Red circle.") == "red circle"
    assert normalize_answer("  an  Apple, a day! ") == "apple day"
    assert normalize_answer("region-2") == "region 2"


def test_accuracy_normalized_exact_and_custom() -> None:
    preds = ["The circle.", "red  Circle", "square", "a star!"]
    refs = ["circle", "red circle", "circle", ["heart", "star"]]
    assert accuracy(preds, refs) == 0.75
    assert accuracy(preds, refs, normalize=False) == 0.0
    assert accuracy(["Circle"], ["circle"], normalize=False) == 0.0
    assert accuracy(["Circle"], ["circle"], normalize=str.lower) == 1.0
    with pytest.raises(ValueError, match="2 predictions but 1"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        accuracy([], [])


def test_yes_no_metrics_hand_computed() -> None:
    preds = ["Yes", "no", "yes, there is", "No.", "I don't know", "nope"]
    labels = ["yes", "yes", "no", "no", "yes", "no"]
    # predicted yes: T F T F F F; truth: T T F F T F -> tp 1, fp 1, fn 2, tn 2
    metrics = yes_no_metrics(preds, labels)
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["precision"] == pytest.approx(1 / 2)
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(0.4)
    assert metrics["yes_ratio"] == pytest.approx(2 / 6)
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "yes_ratio"}


def test_yes_no_edge_cases() -> None:
    assert is_yes("Yes.") and is_yes("yes it is") and not is_yes("yesterday") and not is_yes("")
    none_yes = yes_no_metrics(["no", "no"], [True, False])
    assert none_yes["precision"] == 0.0 and none_yes["recall"] == 0.0 and none_yes["f1"] == 0.0
    assert none_yes["accuracy"] == 0.5


def test_rec_accuracy_iou_threshold() -> None:
    gt = [[0, 0, 10, 20], [5, 0, 15, 10], [0, 0, 1, 1], Box(0, 0, 10, 10)]
    pred = [[0, 0, 10, 10], [0, 0, 10, 10], None, [10, 10, 0, 0]]
    # IoUs: 100/200 = 0.5 (a hit at >= 0.5), 50/150 = 1/3, None is a miss, inverted box is a miss
    assert rec_accuracy(pred, gt) == 0.25
    assert rec_accuracy(pred, gt, threshold=0.6) == 0.0
    assert rec_accuracy([Box(0, 0, 10, 10)], [[0, 0, 10, 10]]) == 1.0
    assert rec_accuracy([[0, 0, 10, 10]] * 300, [[0, 0, 10, 10]] * 299 + [[50, 50, 60, 60]]) == pytest.approx(
        299 / 300
    )
    with pytest.raises(ValueError, match="4 numbers"):
        rec_accuracy([[0, 0, 1]], [[0, 0, 1, 1]])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region 2", 2),
        ("Region2", 2),
        ("<region2>", 2),
        ("It is <region 3>.", 3),
        ("3", 3),
        ("region 1 or region 2", 1),
        ("region 0", None),
        ("the second one", None),
        ("", None),
    ],
)
def test_parse_region_answer(text: str, expected: int | None) -> None:
    assert parse_region_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B) red", "B"),
        ("The answer is B.", "B"),
        ("b", "B"),
        ("(c) green", "C"),
        ("Option D", "D"),
        ("I pick C", "C"),
        ("A.", "A"),
        ("A red circle", None),
        ("the answer is a star", None),
        ("E", None),
        ("", None),
    ],
)
def test_parse_choice_letter(text: str, expected: str | None) -> None:
    assert parse_choice_letter(text) == expected


def test_parse_choice_letter_custom_letters() -> None:
    assert parse_choice_letter("E", letters="ABCDE") == "E"


def test_parse_attributes_by_kind() -> None:
    found = parse_attributes("A small red striped circle, next to a blue one.", VOCAB)
    assert found == {
        "size": ["small"],
        "colour": ["red", "blue"],
        "texture": ["striped"],
        "shape": ["circle"],
    }
    assert parse_attributes("reddish circles", VOCAB) == {
        "size": [],
        "colour": [],
        "texture": [],
        "shape": [],
    }
    multi = parse_attributes("a light blue star", {"colour": ["blue", "light blue"]})
    assert multi == {"colour": ["light blue"]}
    assert parse_attributes("blue and light blue", {"colour": ["blue", "light blue"]}) == {
        "colour": ["blue", "light blue"]
    }


def test_caption_attributes_correct() -> None:
    ref = {"size": "small", "colour": "red", "texture": "striped", "shape": "circle"}
    assert caption_attributes_correct("small red striped circle", ref, VOCAB)
    assert caption_attributes_correct("The small, red, striped circle.", ref, VOCAB)
    assert not caption_attributes_correct("small red blue striped circle", ref, VOCAB)  # conflicting colour
    assert not caption_attributes_correct("small red striped square", ref, VOCAB)  # wrong shape
    assert not caption_attributes_correct("red striped circle", ref, VOCAB)  # size missing
    assert not caption_attributes_correct("large small red striped circle", ref, VOCAB)
    assert caption_attributes_correct("red blue circle", {"shape": "circle"}, VOCAB)  # colour not judged
    with pytest.raises(ValueError, match="not in the vocabulary"):
        caption_attributes_correct("red", {"hue": "red"}, VOCAB)


def test_semantic_iou_and_category_cleaning() -> None:
    assert clean_category_answer("Category: Baseball_bat.") == "baseball bat"
    assert semantic_iou("a red cup", "cup") == pytest.approx(1 / 3)
    assert semantic_iou("", "") == 0.0


def test_grouped_mean_and_first_sentence() -> None:
    assert grouped_mean([True, False, True, 1.0], ["small", "small", None, "large"]) == {
        "large": 1.0,
        "small": 0.5,
    }
    with pytest.raises(ValueError, match="2 predictions but 1"):
        grouped_mean([1, 2], ["a"])
    assert first_sentence("A red circle. It is left of 3.5 squares.") == "A red circle."
    assert first_sentence("no stop at all") == "no stop at all"


def test_vcr_metrics_counts_both_right_over_linked_questions() -> None:
    found = vcr_metrics({1: True, 2: True, 3: False}, {1: True, 2: False})
    assert found["q_a"] == pytest.approx(2 / 3) and found["qa_r"] == 0.5 and found["q_ar"] == 0.5
    assert found["n_q_ar"] == 2
    assert vcr_metrics({}, {})["q_a"] is None
