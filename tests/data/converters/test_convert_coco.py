"""COCO instances and LVIS -> category records, on hand-written files in the published layout."""

import json

import pytest

from regiongpt.data.converters import Stats, coco_category_records, lvis_category_records
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.regions import Box, Mask
from regiongpt.tasks import Task, build_question

INSTANCES = {
    "info": {"description": "hand-written COCO fixture"},
    "images": [
        {"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "000000000002.jpg", "width": 32, "height": 32},
    ],
    "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 1, "name": "person"}],
    "annotations": [
        {"id": 101, "image_id": 1, "category_id": 18, "bbox": [10, 5, 20, 15], "area": 300.0, "iscrowd": 0,
         "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20], [1, 1, 2, 2]]},
        {"id": 102, "image_id": 1, "category_id": 1, "bbox": [0.5, 1.5, 4, 8], "area": 30.0, "iscrowd": 0,
         "segmentation": {"size": [48, 64], "counts": [100, 20, 2952]}},
        {"id": 103, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48], "area": 3072.0, "iscrowd": 1,
         "segmentation": {"size": [48, 64], "counts": [0, 3072]}},
        {"id": 104, "image_id": 2, "category_id": 18, "bbox": [1, 1, 2, 2], "area": 4.0, "iscrowd": 0,
         "segmentation": [[1, 1, 3, 1, 3, 3]]},
        {"id": 105, "image_id": 2, "category_id": 18, "bbox": [5, 5, 0, 3], "area": 0.0, "iscrowd": 0,
         "segmentation": []},
        {"id": 106, "image_id": 2, "category_id": 1, "bbox": [2, 3, 10, 20], "area": 200.0, "iscrowd": 0,
         "segmentation": []},
    ],
}  # fmt: skip


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _convert(tmp_path, records):
    out = tmp_path / "out.jsonl"
    write_jsonl(out, records)
    return list(read_jsonl(out))


def test_coco_category_records(tmp_path):
    stats = Stats()
    path = _write(tmp_path, "instances_val2017.json", INSTANCES)
    records = _convert(
        tmp_path,
        coco_category_records(path, image_root="coco/val2017", min_area=10, stats=stats, show_progress=False),
    )
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == ["coco-101", "coco-102", "coco-106"]
    assert stats.skipped == {"crowd": 1, "below min area": 1, "degenerate box": 1}

    dog = by_id["coco-101"]
    assert dog.image == "coco/val2017/000000000001.jpg"
    assert (dog.width, dog.height) == (64, 48)
    assert dog.task is Task.CATEGORY
    assert dog.conversations == [
        {"from": "human", "value": build_question(Task.CATEGORY, 1)},
        {"from": "gpt", "value": "dog"},
    ]
    # the polygon is kept (its 2-point part dropped) and decodes to the annotated rectangle
    assert dog.regions == [{"polygon": [[10.0, 5.0, 30.0, 5.0, 30.0, 20.0, 10.0, 20.0]]}]
    (mask,) = dog.load_regions(tmp_path, (64, 48))
    assert isinstance(mask, Mask)
    x1, y1, x2, y2 = mask.to_box((64, 48)).as_list()
    assert abs(x1 - 10) <= 1 and abs(y1 - 5) <= 1 and abs(x2 - 30) <= 1 and abs(y2 - 20) <= 1

    person = by_id["coco-102"]
    assert person.regions == [{"rle": {"size": [48, 64], "counts": [100, 20, 2952]}}]
    assert person.load_regions(tmp_path, (64, 48))[0].data.sum() == 20
    # no segmentation: the box, xywh [2, 3, 10, 20] -> xyxy [2, 3, 12, 23]
    assert by_id["coco-106"].regions == [{"box": [2.0, 3.0, 12.0, 23.0]}]
    assert by_id["coco-106"].meta == {"source": "coco", "image_id": 2, "ann_ids": [106]}


def test_coco_boxes_and_grouping(tmp_path):
    path = _write(tmp_path, "instances.json", INSTANCES)
    records = _convert(
        tmp_path,
        coco_category_records(
            path, geometry="box", include_crowd=True, regions_per_sample=2, show_progress=False
        ),
    )
    first = records[0]
    assert first.id == "coco-1-0"
    # xywh [10, 5, 20, 15] -> xyxy [10, 5, 30, 20]; xywh [0.5, 1.5, 4, 8] -> [0.5, 1.5, 4.5, 9.5]
    assert first.regions == [{"box": [10.0, 5.0, 30.0, 20.0]}, {"box": [0.5, 1.5, 4.5, 9.5]}]
    assert [t["value"] for t in first.conversations] == [
        build_question(Task.CATEGORY, 1),
        "dog",
        build_question(Task.CATEGORY, 2),
        "person",
    ]
    assert records[1].regions == [{"box": [0.0, 0.0, 64.0, 48.0]}]  # the crowd box, kept on request
    assert Box(*first.regions[0]["box"]).area == 300


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bbox": "abc"}, r"instances\.json annotations\[1\] \(id 102\): 'bbox' .* got 'abc'"),
        ({"bbox": [1, 2, 3]}, r"annotations\[1\] \(id 102\): 'bbox' .*4 finite numbers, got \[1, 2, 3\]"),
        ({"category_id": 99}, r"annotations\[1\] \(id 102\): category_id 99 is not in"),
        ({"image_id": 7}, r"annotations\[1\] \(id 102\): image_id 7 is not in"),
        ({"segmentation": [[1, "x", 3, 4, 5, 6]]}, r"annotations\[1\] \(id 102\): polygon part"),
        ({"segmentation": {"counts": "abc"}}, r"annotations\[1\] \(id 102\): RLE 'segmentation' needs"),
    ],
)
def test_coco_malformed_annotation(tmp_path, change, message):
    data = json.loads(json.dumps(INSTANCES))
    data["annotations"][1].update(change)
    path = _write(tmp_path, "instances.json", data)
    with pytest.raises(ValueError, match=message):
        list(coco_category_records(path, show_progress=False))


def test_coco_not_json(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text('{"images": [}')
    with pytest.raises(ValueError, match=r"instances\.json: not valid JSON .*line 1 column 13"):
        list(coco_category_records(path, show_progress=False))


def test_lvis_names_and_coco_url(tmp_path):
    lvis = {
        "images": [{"id": 9, "coco_url": "http://images.cocodataset.org/train2017/000000000009.jpg",
                    "width": 40, "height": 30, "neg_category_ids": [], "not_exhaustive_category_ids": []}],
        "categories": [{"id": 3, "name": "bus_(vehicle)", "synonyms": ["bus_(vehicle)", "autobus"],
                        "frequency": "c"},
                       {"id": 4, "name": "baseball_bat", "synonyms": ["baseball_bat"], "frequency": "f"}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 3, "bbox": [1, 2, 3, 4], "area": 12.0,
             "segmentation": [[1, 2, 4, 2, 4, 6, 1, 6]]},
            {"id": 2, "image_id": 9, "category_id": 4, "bbox": [5, 5, 10, 10], "area": 100.0,
             "segmentation": [[5, 5, 15, 5, 15, 15]]},
        ],
    }  # fmt: skip
    path = _write(tmp_path, "lvis_v1_val.json", lvis)
    records = _convert(
        tmp_path, lvis_category_records(path, image_root="coco", geometry="box", show_progress=False)
    )
    assert [r.image for r in records] == ["coco/train2017/000000000009.jpg"] * 2
    assert [r.conversations[1]["value"] for r in records] == ["bus", "baseball bat"]
    assert records[0].regions == [{"box": [1.0, 2.0, 4.0, 6.0]}]
    assert records[0].id == "lvis-1"
    raw = list(lvis_category_records(path, clean_names=False, show_progress=False))
    assert raw[0].conversations[1]["value"] == "bus_(vehicle)"
