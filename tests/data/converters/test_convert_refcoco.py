"""RefCOCO refs pickle + instances.json, and MDETR's refexp json -> caption and REC records."""

import json
import pickle

import pytest

from regiongpt.data.converters import mdetr_refexp_records, refcoco_records
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.tasks import Task, build_question, with_instruction

INSTANCES = {
    "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "width": 100, "height": 80}],
    "categories": [{"id": 1, "name": "person"}, {"id": 44, "name": "bottle"}],
    "annotations": [
        {"id": 1719310, "image_id": 581857, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200.0,
         "iscrowd": 0, "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]},
        {"id": 1719311, "image_id": 581857, "category_id": 44, "bbox": [50, 5, 10, 20], "area": 200.0,
         "iscrowd": 0, "segmentation": [[50, 5, 60, 5, 60, 25, 50, 25]]},
        {"id": 1719312, "image_id": 581857, "category_id": 1, "bbox": [0, 0, 100, 80], "area": 8000.0,
         "iscrowd": 1, "segmentation": {"size": [80, 100], "counts": [0, 8000]}},
    ],
}  # fmt: skip

REFS = [
    {"sent_ids": [0, 1], "file_name": "COCO_train2014_000000581857_1719310.jpg", "ann_id": 1719310,
     "ref_id": 0, "image_id": 581857, "split": "train", "category_id": 1,
     "sentences": [{"tokens": ["the", "lady"], "raw": "The lady", "sent_id": 0, "sent": "the lady"},
                   {"tokens": ["woman", "left"], "raw": "woman left!", "sent_id": 1, "sent": "woman left"}]},
    {"sent_ids": [2], "file_name": "COCO_train2014_000000581857_1719311.jpg", "ann_id": 1719311,
     "ref_id": 1, "image_id": 581857, "split": "val", "category_id": 44,
     "sentences": [{"tokens": ["green", "bottle"], "raw": "green bottle", "sent_id": 2, "sent": "green bottle"}]},
]  # fmt: skip


def _files(tmp_path, refs=REFS):
    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(INSTANCES))
    return refs_path, instances


def _round_trip(tmp_path, records):
    out = tmp_path / "out.jsonl"
    write_jsonl(out, records)
    return {r.id: r for r in read_jsonl(out)}


def test_refcoco_caption_and_rec(tmp_path):
    refs, instances = _files(tmp_path)
    records = _round_trip(tmp_path, refcoco_records(refs, instances, image_root="coco/train2014", geometry="box",
                                                    show_progress=False))  # fmt: skip
    assert sorted(records) == [
        "refcoco-0-0-caption", "refcoco-0-0-rec", "refcoco-0-1-caption", "refcoco-0-1-rec",
        "refcoco-1-2-caption", "refcoco-1-2-rec",
    ]  # fmt: skip
    caption = records["refcoco-0-1-caption"]
    assert caption.image == "coco/train2014/COCO_train2014_000000581857.jpg"  # not the refs file_name
    assert caption.regions == [{"box": [10.0, 20.0, 40.0, 60.0]}]  # xywh [10, 20, 30, 40]
    assert caption.conversations == [
        {"from": "human", "value": build_question(Task.BRIEF, 1)},
        {"from": "gpt", "value": "woman left"},
    ]
    assert caption.meta["split"] == "train"

    rec = records["refcoco-1-2-rec"]
    assert rec.task is Task.CHOOSE_REGION
    # candidates: the two non-crowd annotations in file order; the bottle is the second
    assert rec.regions == [{"box": [10.0, 20.0, 40.0, 60.0]}, {"box": [50.0, 5.0, 60.0, 25.0]}]
    expected = with_instruction(
        "Which region does 'green bottle' describe? <region1> <region2>", Task.CHOOSE_REGION
    )
    assert rec.conversations == [{"from": "human", "value": expected}, {"from": "gpt", "value": "region 2"}]
    assert rec.meta["target_box"] == [50.0, 5.0, 60.0, 25.0]


def test_refcoco_split_filter_masks_and_task(tmp_path):
    refs, instances = _files(tmp_path)
    records = _round_trip(
        tmp_path, refcoco_records(refs, instances, splits=["val"], tasks=["caption"], show_progress=False)
    )
    assert list(records) == ["refcoco-1-2-caption"]
    assert records["refcoco-1-2-caption"].regions == [
        {"polygon": [[50.0, 5.0, 60.0, 5.0, 60.0, 25.0, 50.0, 25.0]]}
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ann_id": 42}, r"refs\(unc\)\.p\[1\] \(id 1\): ann_id 42 is not in instances\.json"),
        ({"sentences": [{"raw": "x"}]}, r"refs\(unc\)\.p\[1\] \(id 1\) sentences\[0\]: missing key 'sent'"),
        ({"split": 3}, r"refs\(unc\)\.p\[1\] \(id 1\): 'split' must be str, got 3"),
        ({"image_id": 5}, r"refs\(unc\)\.p\[1\] \(id 1\): image_id 5 does not match annotation 1719311"),
    ],
)
def test_refcoco_malformed_ref(tmp_path, change, message):
    refs = json.loads(json.dumps(REFS))
    refs[1].update(change)
    refs_path, instances = _files(tmp_path, refs)
    with pytest.raises(ValueError, match=message):
        list(refcoco_records(refs_path, instances, show_progress=False))


def test_refcoco_pickle_with_code_is_refused(tmp_path):
    refs_path, instances = _files(tmp_path)
    refs_path.write_bytes(b"cos\nsystem\n(Vecho hi\ntR.")
    with pytest.raises(ValueError, match=r"refusing to load the global 'os\.system'"):
        list(refcoco_records(refs_path, instances, show_progress=False))


MDETR = {
    "images": [
        {"file_name": "COCO_train2014_000000581857.jpg", "height": 80, "width": 100, "id": 0,
         "original_id": 581857, "caption": "green bottle", "dataset_name": "refcocog",
         "tokens_negative": [[0, 12]], "sentence_id": 0, "tokens_positive_eval": [[[0, 12]]]},
        {"file_name": "COCO_train2014_000000581857.jpg", "height": 80, "width": 100, "id": 1,
         "original_id": 581857, "caption": "the lady", "dataset_name": "refcocog",
         "tokens_negative": [[0, 8]], "sentence_id": 1, "tokens_positive_eval": [[[4, 8]]]},
    ],
    "annotations": [
        {"area": 200.0, "iscrowd": 0, "image_id": 0, "category_id": 44, "id": 0, "bbox": [50, 5, 10, 20],
         "original_id": 1719311, "tokens_positive": [[0, 12]]},
        {"area": 1200.0, "iscrowd": 0, "image_id": 1, "category_id": 1, "id": 1, "bbox": [10, 20, 30, 40],
         "tokens_positive": [[4, 8]]},
    ],
    "categories": [{"supercategory": "person", "id": 1, "name": "person"}],
}  # fmt: skip


def test_mdetr_refexp(tmp_path):
    path = tmp_path / "final_refcocog_val.json"
    path.write_text(json.dumps(MDETR))
    _, instances = _files(tmp_path)
    records = _round_trip(
        tmp_path,
        mdetr_refexp_records(path, image_root="coco/train2014", instances=instances, tasks=["caption", "rec"],
                             geometry="box", show_progress=False),
    )  # fmt: skip
    assert sorted(records) == ["refcocog-0-caption", "refcocog-0-rec", "refcocog-1-caption", "refcocog-1-rec"]
    assert records["refcocog-0-caption"].regions == [{"box": [50.0, 5.0, 60.0, 25.0]}]
    assert records["refcocog-0-caption"].conversations[1]["value"] == "green bottle"
    assert records["refcocog-0-rec"].conversations[1]["value"] == "region 2"  # matched by original_id
    assert records["refcocog-1-rec"].conversations[1]["value"] == "region 1"  # matched by its box


def test_mdetr_refexp_malformed(tmp_path):
    data = json.loads(json.dumps(MDETR))
    data["annotations"][1]["bbox"] = [10, 20, "wide", 40]
    path = tmp_path / "final_refcocog_val.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"final_refcocog_val\.json annotations\[1\] \(id 1\): 'bbox'.*'wide'"
    ):
        list(mdetr_refexp_records(path, show_progress=False))
    with pytest.raises(ValueError, match="need the COCO instances json"):
        list(mdetr_refexp_records(path, tasks=["rec"], show_progress=False))
