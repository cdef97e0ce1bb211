"""LLaVA-Instruct + detector boxes, POPE questions, and detector outputs as REC proposals."""

import json

import pytest

from regiongpt.data.converters import image_key, llava_instruct_records, load_proposals, pope_records
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.regions import Box
from regiongpt.tasks import Task, with_instruction

LLAVA = [
    {"id": "000000033471", "image": "000000033471.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."},
        {"from": "human", "value": "What feature can be seen on the back of the bus?"},
        {"from": "gpt", "value": "The back of the bus features an advertisement."}]},
    {"id": "000000052846", "image": "000000052846.jpg", "conversations": [
        {"from": "human", "value": "Where is the cat positioned?\n<image>"},
        {"from": "gpt", "value": "On a pile of books."}]},
]  # fmt: skip

DETECTIONS = [
    {"image_id": 33471, "category_id": 6, "bbox": [10.0, 20.0, 100.0, 50.0], "score": 0.98},
    {"image_id": 33471, "category_id": 1, "bbox": [5.5, 6.5, 10.0, 30.0], "score": 0.7},
    {"image_id": 33471, "category_id": 1, "bbox": [1.0, 1.0, 2.0, 2.0], "score": 0.2},
    {"image_id": 33471, "category_name": "apple", "bbox": [0.0, 0.0, 4.0, 4.0], "score": 0.6},
]
CATEGORIES = {"categories": [{"id": 1, "name": "person"}, {"id": 6, "name": "bus"}]}


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_llava_instruct_with_detections(tmp_path):
    llava = _write(tmp_path, "llava_instruct_150k.json", LLAVA)
    dets = _write(tmp_path, "dets.json", DETECTIONS)
    categories = _write(tmp_path, "instances_val2017.json", CATEGORIES)
    out = tmp_path / "out.jsonl"
    write_jsonl(out, llava_instruct_records(llava, dets, image_root="coco/train2017", categories=categories,
                                            show_progress=False))  # fmt: skip
    bus, cat = read_jsonl(out)
    assert bus.id == "llava-000000033471" and bus.image == "coco/train2017/000000033471.jpg"
    # score >= 0.5, best first; xywh -> xyxy
    assert bus.regions == [{"box": [10.0, 20.0, 110.0, 70.0]}, {"box": [5.5, 6.5, 15.5, 36.5]},
                           {"box": [0.0, 0.0, 4.0, 4.0]}]  # fmt: skip
    assert bus.conversations[0]["value"] == (
        "<region1> may feature a bus. <region2> may feature a person. <region3> may feature an apple.\n"
        "What are the colors of the bus in the image?"
    )
    assert len(bus.conversations) == 4 and "<image>" not in json.dumps(bus.conversations)
    assert cat.regions == [] and cat.conversations[0]["value"] == "Where is the cat positioned?"


def test_llava_instruct_errors(tmp_path):
    dets = _write(tmp_path, "dets.json", DETECTIONS)
    llava = _write(tmp_path, "llava.json", LLAVA)
    with pytest.raises(ValueError, match=r"dets\.json\[0\]: detection has no class name"):
        list(llava_instruct_records(llava, dets, show_progress=False))
    bad = json.loads(json.dumps(LLAVA))
    bad[1]["conversations"][1]["from"] = "human"
    llava = _write(tmp_path, "llava.json", bad)
    named = _write(tmp_path, "named.json", [{**d, "category_name": "thing"} for d in DETECTIONS])
    with pytest.raises(ValueError, match=r"llava\.json\[1\] \(id 000000052846\): conversations\[1\] must be"):
        list(llava_instruct_records(llava, named, show_progress=False))


def test_load_proposals(tmp_path):
    dets = _write(tmp_path, "dets.json", DETECTIONS)
    proposals = load_proposals(dets, score_threshold=0.5, max_per_image=2)
    assert list(proposals) == [33471]
    assert [p.box for p in proposals[image_key("COCO_train2014_000000033471.jpg")]] == [
        Box(10.0, 20.0, 110.0, 70.0),
        Box(5.5, 6.5, 15.5, 36.5),
    ]
    assert proposals[33471][0].score == 0.98
    bad = _write(tmp_path, "bad.json", [{"image_id": 1, "bbox": [0, 0, 1], "score": 0.5}])
    with pytest.raises(ValueError, match=r"bad\.json\[0\]: 'bbox'.*got \[0, 0, 1\]"):
        load_proposals(bad)


POPE_LINES = [
    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
     "label": "yes"},
    {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a dining table in the image?",
     "label": "no"},
]  # fmt: skip


def _pope(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_pope_records(tmp_path):
    path = _pope(tmp_path, "coco_pope_adversarial.json", POPE_LINES)
    out = tmp_path / "out.jsonl"
    write_jsonl(out, pope_records(path, image_root="coco/val2014", show_progress=False))
    first, second = read_jsonl(out)
    assert first.id == "pope-adversarial-1" and first.task is Task.YES_NO
    assert first.image == "coco/val2014/COCO_val2014_000000310196.jpg" and first.regions == []
    assert first.conversations == [
        {"from": "human", "value": with_instruction("Is there a snowboard in the image?", Task.YES_NO)},
        {"from": "gpt", "value": "yes"},
    ]
    assert second.meta == {"source": "pope", "pope_split": "adversarial", "question_id": 2}


def test_pope_errors(tmp_path):
    bad = _pope(tmp_path, "coco_pope_random.json", [POPE_LINES[0], {**POPE_LINES[1], "label": "maybe"}])
    with pytest.raises(
        ValueError, match=r"coco_pope_random\.json:2 \(question_id 2\): 'label' must be 'yes' or 'no'"
    ):
        list(pope_records(bad, show_progress=False))
    unnamed = _pope(tmp_path, "questions.json", POPE_LINES)
    with pytest.raises(ValueError, match="cannot tell the POPE split"):
        list(pope_records(unnamed, show_progress=False))
    assert next(pope_records(unnamed, split="popular", show_progress=False)).meta["pope_split"] == "popular"
