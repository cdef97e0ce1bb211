"""The pipeline with a fake teacher: inputs, output format, provenance, side files, summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regiongpt.data.format import read_jsonl
from regiongpt.datagen.filters import DUPLICATE, INVALID_REGION, TOO_SHORT, FilterConfig
from regiongpt.datagen.pipeline import DatagenConfig, crop_with_context, run_datagen, side_paths
from regiongpt.datagen.prompts import describe_position, prompt_version
from regiongpt.datagen.sources import coco_items, jsonl_items
from regiongpt.regions import Box
from regiongpt.tasks import Task, build_question
from tests.datagen.fakes import FakeTeacher

NO_CLASS_CHECK = FilterConfig(min_class_similarity=0)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_coco_items(coco_file, image_dir):
    items = coco_items(coco_file, image_dir)
    assert [i.id for i in items] == [f"coco-{n}" for n in range(100, 107)]  # crowd and repeated box dropped
    assert [i.class_name for i in items[:3]] == ["cat", "cat", "couch"]
    assert items[0].image == image_dir / "chelsea.jpg" and items[0].size == (225, 150)
    assert "polygon" in items[0].geometry
    assert "box" in coco_items(coco_file, image_dir, geometry="box")[0].geometry
    assert len(coco_items(coco_file, image_dir, include_crowd=True)) == 8


def test_jsonl_items(regions_file, image_dir):
    items = jsonl_items(regions_file)
    assert [(i.id, i.class_name) for i in items] == [("a-r1", "cat"), ("a-r2", None), ("b-r1", "cup")]
    assert items[0].image == image_dir / "chelsea.jpg" and items[0].geometry == {"box": [40, 10, 180, 145]}


def test_run_writes_trainable_records_with_provenance(coco_file, image_dir, tmp_path):
    out = tmp_path / "gen" / "out.jsonl"
    teacher = FakeTeacher()
    summary = run_datagen(
        coco_items(coco_file, image_dir),
        teacher,
        DatagenConfig(out=out, filters=NO_CLASS_CHECK, progress=False),
    )
    rejected, global_file = side_paths(out)
    kept, dropped = list(read_jsonl(out)), list(read_jsonl(rejected))
    assert (
        summary.regions == 7 and summary.kept == len(kept) and sum(summary.dropped.values()) == len(dropped)
    )
    assert summary.missing == 0 and len(kept) + len(dropped) == 7 and kept
    assert teacher.global_calls == 3 and teacher.region_calls == 7
    assert len(rows(global_file)) == 3
    record = kept[0]
    assert record.task == Task.DETAILED
    assert record.conversations[0] == {"from": "human", "value": build_question(Task.DETAILED, 1)}
    assert record.image == "../images/chelsea.jpg" and (out.parent / record.image).is_file()
    assert record.regions[0]["label"] == "cat" and "polygon" in record.regions[0]
    meta = record.meta
    assert meta["teacher"] == "fake" and meta["prompt_version"] == prompt_version()
    assert meta["global_caption"] == "A test picture of 225 by 150 pixels."
    assert meta["scores"]["words"] > 5 and "box" in meta["teacher_meta"]
    assert {r.meta["drop_reason"] for r in dropped} <= {TOO_SHORT, DUPLICATE}
    regions = record.load_regions(out.parent, (225, 150))  # the geometry reads back
    assert regions[0].to_box((225, 150)).as_list() == pytest.approx([40, 10, 180, 145], abs=1)
    text = summary.format()
    assert "7 regions" in text and "sample captions:" in text


def test_rerun_of_a_finished_run_does_nothing(coco_file, image_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    config = DatagenConfig(out=out, filters=NO_CLASS_CHECK, progress=False)
    run_datagen(coco_items(coco_file, image_dir), FakeTeacher(), config)
    before = out.read_bytes()
    again = FakeTeacher()
    run_datagen(coco_items(coco_file, image_dir), again, config)
    assert again.region_calls == 0 and again.global_calls == 0 and out.read_bytes() == before


def test_other_teacher_cannot_resume(coco_file, image_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    config = DatagenConfig(out=out, filters=NO_CLASS_CHECK, progress=False, limit=2)
    run_datagen(coco_items(coco_file, image_dir), FakeTeacher(), config)
    other = FakeTeacher()
    other.name = "other"
    with pytest.raises(ValueError, match="made with teacher 'fake'"):
        run_datagen(coco_items(coco_file, image_dir), other, config)


def test_invalid_regions_and_missing_images_are_dropped_with_a_reason(image_dir, tmp_path):
    path = tmp_path / "regions.jsonl"
    lines = [
        {
            "id": "out",
            "image": "images/noise.png",
            "regions": [{"box": [500, 500, 600, 600]}],
            "conversations": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "?"}],
        },
        {
            "id": "gone",
            "image": "images/missing.png",
            "regions": [{"box": [0, 0, 5, 5]}],
            "conversations": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "?"}],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out.jsonl"
    summary = run_datagen(jsonl_items(path), FakeTeacher(), DatagenConfig(out=out, progress=False))
    assert summary.kept == 0 and summary.dropped == {INVALID_REGION: 1, "unreadable image": 1}
    dropped = {r["id"]: r["meta"] for r in rows(side_paths(out)[0])}
    assert "outside" in dropped["out-r1"]["error"] and "not found" in dropped["gone-r1"]["error"]


def test_crop_with_context_and_position():
    from PIL import Image

    image = Image.new("RGB", (200, 100))
    assert crop_with_context(image, Box(50, 20, 150, 60), 0.25).size == (150, 60)
    assert crop_with_context(image, Box(0, 0, 200, 100), 0.5).size == (200, 100)
    assert (
        describe_position(Box(0, 0, 40, 20), (200, 100))
        == "in the upper left of the photo, covering 4% of it"
    )
    assert describe_position(Box(80, 30, 120, 70), (200, 100)).startswith("in the center")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown teacher"),
        ("local", "unknown teacher"),
        ("openai:gpt-4o", "expected openai:URL:MODEL"),
        ("py:tests.datagen.fakes:nothing", "has no attribute"),
        ("py:tests.datagen.fakes:WORDS", "is not callable"),
    ],
)
def test_bad_teacher_specs(spec, message):
    from regiongpt.datagen.teacher import make_teacher

    with pytest.raises(ValueError, match=message):
        make_teacher(spec)
