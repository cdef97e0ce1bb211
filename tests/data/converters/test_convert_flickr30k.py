"""Flickr30k Entities (MDETR json) -> multi-region description + phrase turns."""

import json

import pytest

from regiongpt.data.converters import flickr30k_records
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.tasks import Task, build_question, with_instruction

CAPTION = "Two young guys with shaggy hair look at their hands while hanging out in the yard ."

FLICKR = {
    "images": [
        {"file_name": "1000092795.jpg", "height": "333", "width": "500", "id": 0, "caption": CAPTION,
         "dataset_name": "flickr", "tokens_negative": [[0, 14]], "sentence_id": 0,
         "original_img_id": 1000092795, "tokens_positive_eval": [[[0, 14]], [[40, 51]]]},
        {"file_name": "1000092795.jpg", "height": "333", "width": "500", "id": 1, "caption": "A yard .",
         "dataset_name": "flickr", "tokens_negative": [], "sentence_id": 1,
         "original_img_id": 1000092795, "tokens_positive_eval": []},
    ],
    "annotations": [
        {"area": 1000, "iscrowd": 0, "image_id": 0, "category_id": 1, "id": 0, "bbox": [100, 20, 50, 80],
         "tokens_positive": [[40, 51]]},
        {"area": 2000, "iscrowd": 0, "image_id": 0, "category_id": 1, "id": 1, "bbox": [10, 30, 60, 150],
         "tokens_positive": [[0, 3], [10, 14]]},
        {"area": 1500, "iscrowd": 0, "image_id": 0, "category_id": 1, "id": 2, "bbox": [480, 300, 40, 50],
         "tokens_positive": [[0, 14]]},
    ],
    "categories": [{"supercategory": "object", "id": 1, "name": "object"}],
}  # fmt: skip


def _round_trip(tmp_path, records):
    out = tmp_path / "out.jsonl"
    write_jsonl(out, records)
    return list(read_jsonl(out))


def test_flickr30k_records(tmp_path):
    path = tmp_path / "final_flickr_separateGT_val.json"
    path.write_text(json.dumps(FLICKR))
    (record,) = _round_trip(tmp_path, flickr30k_records(path, image_root="flickr30k", show_progress=False))
    assert record.id == "flickr30k-0" and record.image == "flickr30k/1000092795.jpg"
    assert (record.width, record.height) == (500, 333)
    # ordered by where the phrase starts; xywh -> xyxy; the last box is clipped to 500x333
    assert record.regions == [
        {"box": [10.0, 30.0, 70.0, 180.0]},
        {"box": [480.0, 300.0, 500.0, 333.0]},
        {"box": [100.0, 20.0, 150.0, 100.0]},
    ]
    question = with_instruction(
        "Give a description of the image that mentions <region1>, <region2> and <region3>.", Task.DETAILED
    )
    assert record.conversations[:2] == [
        {"from": "human", "value": question},
        {"from": "gpt", "value": CAPTION},
    ]
    assert record.conversations[2:] == [
        {"from": "human", "value": build_question(Task.BRIEF, 1)}, {"from": "gpt", "value": "Two guys"},
        {"from": "human", "value": build_question(Task.BRIEF, 2)}, {"from": "gpt", "value": "Two young guys"},
        {"from": "human", "value": build_question(Task.BRIEF, 3)}, {"from": "gpt", "value": "their hands"},
    ]  # fmt: skip


def test_flickr30k_phrases_only_and_cap(tmp_path):
    path = tmp_path / "flickr.json"
    path.write_text(json.dumps(FLICKR))
    (record,) = _round_trip(
        tmp_path, flickr30k_records(path, describe=False, max_regions=1, show_progress=False)
    )
    assert record.task is Task.BRIEF
    assert record.conversations == [
        {"from": "human", "value": build_question(Task.BRIEF, 1)},
        {"from": "gpt", "value": "Two guys"},
    ]


def test_flickr30k_bad_span(tmp_path):
    data = json.loads(json.dumps(FLICKR))
    data["annotations"][2]["tokens_positive"] = [[70, 500]]
    path = tmp_path / "flickr.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"flickr\.json annotations\[2\] \(id 2\): span \[70, 500\] is not"):
        list(flickr30k_records(path, show_progress=False))
