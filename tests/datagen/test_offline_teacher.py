"""The offline teacher with the real EfficientNet-Lite0 and SmolLM2 (slow: real generation)."""

from __future__ import annotations

import json

import pytest

from regiongpt.datagen.filters import FilterConfig
from regiongpt.datagen.offline_teacher import imagenet_categories
from regiongpt.datagen.pipeline import DatagenConfig, run_datagen, side_paths
from regiongpt.datagen.sources import coco_items
from regiongpt.datagen.teacher import RegionRequest
from regiongpt.regions import Box
from tests.datagen.conftest import photos

pytestmark = [pytest.mark.slow, pytest.mark.real]


@pytest.fixture(scope="module")
def teacher():
    from regiongpt.datagen.offline_teacher import OfflineTeacher

    return OfflineTeacher(top_k=3, max_new_tokens=24)


def test_imagenet_names_ship_with_torchvision():
    names = imagenet_categories()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


def test_only_the_crop_changes_the_caption(teacher):
    images = photos()
    cat, coffee = images["chelsea.jpg"], images["coffee.jpg"]
    box = Box(40, 20, 180, 140)
    common = dict(
        image=cat,
        region=box,
        box=box,
        class_name=None,
        position="in the center of the photo, covering 50% of it",
        global_caption="A photo on a table.",
    )
    first = teacher.region_caption(RegionRequest(crop=cat.crop((40, 10, 200, 150)), **common))
    second = teacher.region_caption(RegionRequest(crop=coffee.crop((40, 10, 200, 150)), **common))
    assert first.text and second.text and first.text != second.text
    cat_labels = [name for name, _ in first.meta["labels"]]
    coffee_labels = [name for name, _ in second.meta["labels"]]
    assert any("cat" in name or name == "tabby" for name in cat_labels), cat_labels
    assert {"espresso", "cup", "coffee mug"} & set(coffee_labels), coffee_labels
    assert all(0 < score <= 1 for _, score in first.meta["labels"])
    again = teacher.region_caption(RegionRequest(crop=cat.crop((40, 10, 200, 150)), **common))
    assert again.text == first.text  # greedy: deterministic


def test_offline_pipeline_on_a_handful_of_images(teacher, coco_file, image_dir, tmp_path):
    out = tmp_path / "gen.jsonl"
    summary = run_datagen(
        coco_items(coco_file, image_dir),
        teacher,
        DatagenConfig(out=out, filters=FilterConfig(min_words=3), progress=False, limit=5),
    )
    print(summary.format())
    assert summary.missing == 0 and summary.regions == 5
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    rows = kept + [json.loads(line) for line in side_paths(out)[0].read_text().splitlines()]
    assert len(rows) == 5 and kept
    meta = kept[0]["meta"]
    assert meta["teacher"].startswith("offline:") and len(meta["teacher_meta"]["labels"]) == 3
    assert len(meta["global_meta"]["labels"]) == 3 and meta["global_caption"]
    assert all(row["meta"].get("scores") is not None for row in rows)
