"""VCR jsonl + per-image metadata json -> Q->A and QA->R multiple-choice records."""

import json

import pytest

from regiongpt.data.converters import Stats, vcr_records
from regiongpt.data.converters.vcr import detokenize
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.tasks import Task, with_instruction

LINE = {
    "movie": "1054_Harry_Potter_and_the_prisoner_of_azkaban", "objects": ["person", "person", "car"],
    "interesting_scores": [0], "answer_likelihood": "likely",
    "img_fn": "lsmdc_1054_Harry_Potter/1054_00.01.jpg", "metadata_fn": "lsmdc_1054_Harry_Potter/1054_00.01.json",
    "question": ["What", "is", [0], "doing", "with", [2], "?"],
    "answer_choices": [
        [[0], "is", "driving", [2], "."], [[1], "is", "sleeping", "."], ["He", "is", "reading", "."],
        [[0, 1], "are", "dancing", "."],
    ],
    "answer_label": 0,
    "rationale_choices": [
        [[0], "is", "holding", "the", "steering", "wheel", "."], ["It", "'s", "night", "."],
        [[1], "is", "n't", "there", "."], ["(", "Nothing", ")", "else", "."],
    ],
    "rationale_label": 0, "img_id": "val-0", "question_number": 0, "annot_id": "val-0", "match_fold": "val_0",
}  # fmt: skip

METADATA = {
    "boxes": [[10.0, 10.0, 50.0, 80.0, 0.99], [60.0, 10.0, 90.0, 80.0, 0.9], [0.0, 40.0, 130.0, 100.0, 0.8]],
    "segms": [[[[10, 10], [50, 10], [50, 80], [10, 80]]], [[[60, 10], [90, 10], [90, 80]]], []],
    "names": ["person", "person", "car"],
    "width": 120,
    "height": 100,
}


def _files(tmp_path, lines):
    images = tmp_path / "vcr1images"
    (images / "lsmdc_1054_Harry_Potter").mkdir(parents=True)
    (images / LINE["metadata_fn"]).write_text(json.dumps(METADATA))
    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path, images


def test_detokenize():
    assert (
        detokenize(["It", "'s", "(", "not", ")", "there", ",", "is", "n't", "it", "?"])
        == "It's (not) there, isn't it?"
    )


def test_vcr_records(tmp_path):
    unlabelled = {k: v for k, v in LINE.items() if k not in ("answer_label", "rationale_label")}
    path, images = _files(tmp_path, [LINE, unlabelled])
    stats = Stats()
    out = tmp_path / "out.jsonl"
    write_jsonl(
        out, vcr_records(path, images_dir=images, image_root="vcr1images", stats=stats, show_progress=False)
    )
    qa, qar = read_jsonl(out)
    assert stats.skipped == {"unlabelled": 1}
    assert qa.id == "vcr-val-0-qa" and qar.id == "vcr-val-0-qar"
    assert qa.image == "vcr1images/lsmdc_1054_Harry_Potter/1054_00.01.jpg"
    assert qa.task is Task.MULTIPLE_CHOICE and (qa.width, qa.height) == (120, 100)
    prompt = (
        "What is <region1> doing with <region2>?\n(A) <region1> is driving <region2>.\n(B) <region3> is sleeping.\n"
        "(C) He is reading.\n(D) <region1> and <region3> are dancing."
    )
    assert qa.conversations == [
        {"from": "human", "value": with_instruction(prompt, Task.MULTIPLE_CHOICE)},
        {"from": "gpt", "value": "A"},
    ]
    # regions in order of first reference: object 0 (polygon), object 2 (no polygon: box clipped to 120
    # wide), object 1 (its polygon)
    assert qa.regions == [
        {"polygon": [[10.0, 10.0, 50.0, 10.0, 50.0, 80.0, 10.0, 80.0]]},
        {"box": [0.0, 40.0, 120.0, 100.0]},
        {"polygon": [[60.0, 10.0, 90.0, 10.0, 90.0, 80.0]]},
    ]
    assert qa.meta["objects"] == ["person", "car", "person"]
    assert qar.conversations[0]["value"] == with_instruction(
        "What is <region1> doing with <region2>?\nAnswer: <region1> is driving <region2>.\nWhy?\n"
        "(A) <region1> is holding the steering wheel.\n(B) It's night.\n(C) <region3> isn't there.\n"
        "(D) (Nothing) else.",
        Task.MULTIPLE_CHOICE,
    )
    assert qar.conversations[1]["value"] == "A"
    assert len(qar.regions) == 3


def test_vcr_boxes(tmp_path):
    path, images = _files(tmp_path, [LINE])
    (qa,) = vcr_records(path, images_dir=images, geometry="box", modes=["qa"], show_progress=False)
    assert qa.regions == [
        {"box": [10.0, 10.0, 50.0, 80.0]},
        {"box": [0.0, 40.0, 120.0, 100.0]},
        {"box": [60.0, 10.0, 90.0, 80.0]},
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"question": ["Is", [5], "ok", "?"]},
            r"val\.jsonl:2 \(id val-1\): question: object reference \[5\]",
        ),
        ({"answer_label": 7}, r"val\.jsonl:2 \(id val-1\): 'answer_label' 7 does not index the 4 answer"),
        ({"answer_choices": "yes"}, r"val\.jsonl:2 \(id val-1\): 'answer_choices' must be list, got 'yes'"),
    ],
)
def test_vcr_malformed(tmp_path, change, message):
    bad = {**LINE, "annot_id": "val-1", **change}
    path, images = _files(tmp_path, [LINE, bad])
    with pytest.raises(ValueError, match=message):
        list(vcr_records(path, images_dir=images, show_progress=False))
