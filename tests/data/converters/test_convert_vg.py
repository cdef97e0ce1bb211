"""Visual Genome region descriptions and GRiT's COCO-format VG -> region-caption records."""

import json

import pytest

from regiongpt.data.converters import Stats, vg_grit_records, vg_region_records
from regiongpt.data.format import read_jsonl, write_jsonl
from regiongpt.tasks import Task, build_question

REGIONS = [
    {"regions": [
        {"region_id": 1382, "width": 82, "height": 139, "image_id": 1, "phrase": "the clock is green in colour",
         "y": 57, "x": 421},
        {"region_id": 1383, "width": 20, "height": 30, "image_id": 1, "phrase": "  shade  is along the street ",
         "y": 590, "x": 790},
        {"region_id": 1384, "width": 0, "height": 10, "image_id": 1, "phrase": "a line", "y": 1, "x": 1},
    ], "id": 1},
    {"regions": [
        {"region_id": 5000, "width": 5, "height": 6, "image_id": 10, "phrase": "man", "y": 2, "x": 3},
    ], "id": 10},
]  # fmt: skip

IMAGE_DATA = [
    {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg", "height": 600,
     "image_id": 1, "coco_id": None, "flickr_id": None},
    {"width": 640, "url": "https://cs.stanford.edu/people/rak248/VG_100K/10.jpg", "height": 480,
     "image_id": 10, "coco_id": None, "flickr_id": None},
]  # fmt: skip


def _round_trip(tmp_path, records):
    out = tmp_path / "out.jsonl"
    write_jsonl(out, records)
    return list(read_jsonl(out))


def test_vg_region_descriptions(tmp_path):
    path = tmp_path / "region_descriptions.json"
    path.write_text(json.dumps(REGIONS))
    stats = Stats()
    records = _round_trip(
        tmp_path, vg_region_records(path, image_root="vg", stats=stats, show_progress=False)
    )
    assert [r.id for r in records] == ["vg-1382", "vg-1383", "vg-5000"]
    first = records[0]
    assert first.image == "vg/1.jpg"
    assert first.regions == [{"box": [421.0, 57.0, 503.0, 196.0]}]  # x, y, w, h = 421, 57, 82, 139
    assert first.conversations[0]["value"] == build_question(Task.BRIEF, 1)
    assert first.conversations[1]["value"] == "the clock is green in colour"
    assert records[1].conversations[1]["value"] == "shade is along the street"
    assert stats.skipped == {"degenerate or small box": 1}


def test_vg_image_data_clips_and_groups(tmp_path):
    path = tmp_path / "region_descriptions.json"
    path.write_text(json.dumps(REGIONS))
    image_data = tmp_path / "image_data.json"
    image_data.write_text(json.dumps(IMAGE_DATA))
    records = _round_trip(
        tmp_path,
        vg_region_records(
            path, image_data=image_data, task="detailed", regions_per_sample=4, show_progress=False
        ),
    )
    first = records[0]
    assert first.id == "vg-1-0" and first.image == "VG_100K_2/1.jpg"
    assert (first.width, first.height) == (800, 600)
    # [790, 590, 810, 620] clipped to the 800x600 image
    assert first.regions == [{"box": [421.0, 57.0, 503.0, 196.0]}, {"box": [790.0, 590.0, 800.0, 600.0]}]
    assert [t["value"] for t in first.conversations[::2]] == [
        build_question(Task.DETAILED, 1),
        build_question(Task.DETAILED, 2),
    ]
    assert records[1].image == "VG_100K/10.jpg"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": "12"}, r"region_descriptions\.json\[1\] \(id 10\) regions\[0\] \(region_id 5000\): 'x' must be a number, got '12'"),
        ({"phrase": None}, r"\[1\] \(id 10\) regions\[0\] \(region_id 5000\): 'phrase' is null"),
    ],
)  # fmt: skip
def test_vg_malformed_region(tmp_path, change, message):
    data = json.loads(json.dumps(REGIONS))
    data[1]["regions"][0].update(change)
    path = tmp_path / "region_descriptions.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        list(vg_region_records(path, show_progress=False))


def test_vg_rejects_other_tasks(tmp_path):
    with pytest.raises(ValueError, match="'brief' or 'detailed'"):
        list(vg_region_records(tmp_path / "x.json", task="category"))


GRIT = {
    "images": [{"file_name": "2.jpg", "height": 600, "width": 800, "id": 2}],
    "annotations": [
        {"area": 1000.0, "bbox": [100, 50, 40, 25], "image_id": 2, "id": 7, "category_id": 1, "iscrowd": 0,
         "caption": "white clouds in blue sky"},
        {"area": 1.0, "bbox": [0, 0, 1, 1], "image_id": 2, "id": 8, "category_id": 1, "iscrowd": 0,
         "caption": "dot"},
    ],
    "categories": [{"supercategory": "object", "id": 1, "name": "object"}],
}  # fmt: skip


def test_vg_grit(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps(GRIT))
    stats = Stats()
    records = _round_trip(
        tmp_path, vg_grit_records(path, image_root="vg/images", min_size=2, stats=stats, show_progress=False)
    )
    assert len(records) == 1 and records[0].id == "vg-grit-7"
    assert records[0].image == "vg/images/2.jpg"
    assert records[0].regions == [{"box": [100.0, 50.0, 140.0, 75.0]}]
    assert records[0].conversations[1]["value"] == "white clouds in blue sky"
    assert stats.skipped == {"degenerate or small box": 1}
    bad = json.loads(json.dumps(GRIT))
    del bad["annotations"][1]["caption"]
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"test\.json annotations\[1\] \(id 8\): missing key 'caption'"):
        list(vg_grit_records(path, show_progress=False))
